import { hostname } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { sql } from 'drizzle-orm';
import { openGateway } from '../src/startup.js';
import { runCli } from '../src/cli.js';
import { loadConfig } from '../src/config.js';
import { openDatabase, redactUrl, rowsOf } from '../src/db/index.js';
import { forEachDriver, freshDatabaseUrl, TEST_AUDIT_HASH_KEY, TEST_KEY_ENCRYPTION_KEY } from './helpers/app.js';
import pino from 'pino';

function captureCli() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: (env: Record<string, string>) => ({ env, stdout: (s: string) => void out.push(s), stderr: (s: string) => void err.push(s) }) };
}

async function appliedMigrations(url: string) {
  const database = await openDatabase(url);
  try {
    return rowsOf<{ n: number }>(await database.db.execute(sql`select count(*)::int as n from drizzle.__drizzle_migrations`))[0]?.n;
  } finally {
    await database.close();
  }
}

forEachDriver(t, 'a second start keeps the data and does not re-apply migrations', async (t, driver) => {
  const url = driver === 'pglite' ? join(t.testdir(), 'pglite') : await freshDatabaseUrl(driver);
  // Demo data and download files are tested on their own (test/open/demo.test.ts).
  const config = loadConfig({ DATABASE_URL: url, PUBLIC_URL: 'http://127.0.0.1:3000', KEY_ENCRYPTION_KEY: TEST_KEY_ENCRYPTION_KEY, AUDIT_HASH_KEY: TEST_AUDIT_HASH_KEY, DEMO_DATA: 'off', OPEN_PREBUILD: 'false' });
  const logger = pino({ level: 'silent' });

  const first = await openGateway(config, { logger });
  const installationId = first.installationId;
  t.match(installationId, /^[0-9a-f-]{36}$/);
  await first.close();
  const applied = await appliedMigrations(url);
  t.ok(applied && applied > 0, 'migrations recorded');

  const second = await openGateway(config, { logger });
  t.equal(second.installationId, installationId, 'same installation, same data');
  t.equal((await second.inject({ url: '/readyz' })).statusCode, 200);
  await second.close();
  t.equal(await appliedMigrations(url), applied, 'nothing re-applied');
});

forEachDriver(t, 'gateway migrate applies migrations once and reports them', async (t, driver) => {
  const url = driver === 'pglite' ? join(t.testdir(), 'pglite') : await freshDatabaseUrl(driver);
  const cli = captureCli();
  t.equal(await runCli(['migrate'], cli.io({ DATABASE_URL: url })), 0);
  t.equal(await runCli(['migrate'], cli.io({ DATABASE_URL: url })), 0);
  t.match(cli.out[0], /: [1-9]\d* migration\(s\) applied now, (\d+) of \1 in all\n$/);
  t.match(cli.out[1], /: 0 migration\(s\) applied now, (\d+) of \1 in all\n$/);
  t.same(cli.err, []);
});

t.test('a PGlite directory is held by one process at a time', async (t) => {
  const directory = join(t.testdir(), 'held');
  const holder = await openDatabase(directory);

  await t.rejects(openDatabase(directory), {
    name: 'DatabaseInUseError',
    code: 'database_in_use',
    message: `The PGlite data directory ${directory} is in use by another process (pid ${process.pid} on ${hostname()}, holding it since `,
  });

  const cli = captureCli();
  t.equal(await runCli(['migrate'], cli.io({ DATABASE_URL: directory })), 1);
  t.match(cli.err.join(''), /^gateway: The PGlite data directory .*held is in use by another process/);

  // The holder's data is untouched: it still answers, and once it lets go, others may open it.
  await holder.ping();
  await holder.close();
  const next = await openDatabase(directory);
  await next.ping();
  await next.close();
});

t.test('database locations are logged without credentials', async (t) => {
  t.equal(redactUrl('postgres://gw:s3cret@db:5432/gov'), 'postgres://gw:***@db:5432/gov');
  t.equal(redactUrl('postgres://db/gov'), 'postgres://db/gov');
  t.equal(redactUrl('::nonsense'), '(unparsable database URL)');
  t.equal(redactUrl('postgres://gw:s3cret@/gov?host=/var/run/postgresql'), 'postgres://gw:***@/gov?host=/var/run/postgresql', 'a socket URL, as libpq writes it');
  t.equal(redactUrl('postgres:///gov'), 'postgres:///gov');
});
