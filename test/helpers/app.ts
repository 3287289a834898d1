import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import tap, { type Test } from 'tap';
import pino from 'pino';
import postgres from 'postgres';
import type { App } from '../../src/app.js';
import type { DemoPerson } from '../../src/demo/people.js';
import { openGateway } from '../../src/startup.js';
import { loadConfig, type Config } from '../../src/config.js';
import { gatewayLogger } from '../../src/logger.js';
import { openDatabase, type Database, type Driver } from '../../src/db/index.js';

/** Encrypts the signing keys of test databases (apps sharing a database must share it). */
export const TEST_KEY_ENCRYPTION_KEY = Buffer.alloc(32, 7).toString('base64url');

export const TEST_AUDIT_HASH_KEY = Buffer.alloc(32, 9).toString('base64url');

/** PGlite always; PostgreSQL too when DATABASE_URL names a server. */
export function testDrivers(): Driver[] {
  return process.env.DATABASE_URL?.startsWith('postgres') ? ['pglite', 'postgres'] : ['pglite'];
}

/** Run the same subtest once per driver. */
export function forEachDriver(t: Test, name: string, body: (t: Test, driver: Driver) => Promise<void>) {
  for (const driver of testDrivers()) {
    t.test(`${name} [${driver}]`, (t) => body(t, driver));
  }
}

const createdDatabases: string[] = [];
const shared = new Map<Driver, Promise<Database>>();

tap.teardown(async () => {
  for (const database of shared.values()) await (await database).close();
  if (createdDatabases.length === 0) return;
  const admin = postgres(process.env.DATABASE_URL as string, { max: 1, onnotice: () => {} });
  for (const name of createdDatabases) await admin.unsafe(`drop database if exists "${name}" with (force)`);
  await admin.end();
});

/**
 * A database of its own for this test file: PGlite memory://, or a fresh `test_<uuid>` database
 * on the PostgreSQL server in DATABASE_URL (dropped when the file ends).
 */
export async function freshDatabaseUrl(driver: Driver): Promise<string> {
  if (driver === 'pglite') return 'memory://';
  const serverUrl = process.env.DATABASE_URL as string;
  const name = `test_${randomUUID().replaceAll('-', '')}`;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database "${name}"`);
  await admin.end();
  createdDatabases.push(name);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** A migrated database of the test's own, closed when the test ends. */
export async function freshDatabase(t: Test, driver: Driver): Promise<Database> {
  const database = await openDatabase(await freshDatabaseUrl(driver));
  t.teardown(() => database.close());
  await database.migrate();
  return database;
}

/** One migrated database per driver per test file (PGlite start-up takes seconds). */
export function sharedDatabase(driver: Driver): Promise<Database> {
  let database = shared.get(driver);
  if (!database) {
    database = freshDatabaseUrl(driver).then(async (url) => {
      const opened = await openDatabase(url);
      await opened.migrate();
      return opened;
    });
    shared.set(driver, database);
  }
  return database;
}

/** Log lines an app wrote, parsed, for tests that assert what is (not) logged. */
export class LogCapture {
  readonly lines: Record<string, unknown>[] = [];
  readonly logger = gatewayLogger(
    loadConfig({ LOG_LEVEL: 'debug' }),
    new Writable({
      write: (chunk, _encoding, done) => {
        for (const line of String(chunk).split('\n').filter(Boolean)) this.lines.push(JSON.parse(line));
        done();
      },
    }),
  );
  text(): string {
    return this.lines.map((line) => JSON.stringify(line)).join('\n');
  }
}

export interface TestAppOptions {
  env?: Record<string, string>;
  /** Use this database instead of the file's shared one. */
  database?: Database;
  logs?: LogCapture;
  /** The app's clock (grant expiry, due dates). */
  clock?: () => Date;
  /** Add test-only routes before the app is ready. */
  extend?: (app: App) => void | Promise<void>;
  /** Mount the demo identity provider with these people (see test/helpers/people.ts). */
  demoPeople?: DemoPerson[];
}

/**
 * What a test's gateway runs with, before the test's own variables: quiet, the test keys, no demo
 * data (exchange tests load it themselves, on both drivers) and no prebuilt download files (built
 * where a test asks for them, into a directory of its own).
 */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({
    LOG_LEVEL: 'silent',
    MAX_EVENT_LOOP_DELAY_MS: '0',
    DEMO_DATA: 'off',
    OPEN_PREBUILD: 'false',
    KEY_ENCRYPTION_KEY: TEST_KEY_ENCRYPTION_KEY,
    AUDIT_HASH_KEY: TEST_AUDIT_HASH_KEY,
    ...env,
  });
}

/** Build the gateway as production does, on the file's shared database, closed when the test ends. */
export async function buildTestApp(t: Test, driver: Driver, options: TestAppOptions = {}): Promise<App> {
  // Load shedding is tested on its own (pressure.test.ts); elsewhere a busy shared machine must
  // not turn answers into 503s.
  const downloads = mkdtempSync(join(tmpdir(), 'gateway-downloads-'));
  t.teardown(() => rmSync(downloads, { recursive: true, force: true }));
  const config = testConfig({ OPEN_DATA_DIR: downloads, ...options.env });
  const database = options.database ?? (await sharedDatabase(driver));
  const logger = options.logs?.logger ?? pino({ level: 'silent' });
  const app = await openGateway(config, { database, logger, ...(options.clock ? { clock: options.clock } : {}), ...(options.extend ? { extend: options.extend } : {}), ...(options.demoPeople ? { demoPeople: options.demoPeople } : {}) });
  t.teardown(() => app.close());
  return app;
}

/** Record every COPY … TO STDOUT statement the database runs (PostgreSQL's whole-dataset CSV); PGlite has none. */
export function spyOnCopies(database: Database): string[] {
  const copies: string[] = [];
  const copyOut = database.copyOut?.bind(database);
  if (copyOut) {
    database.copyOut = (statement, idleMs) => {
      copies.push(statement);
      return copyOut(statement, idleMs);
    };
  }
  return copies;
}
