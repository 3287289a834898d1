import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { sql, type SQL } from 'drizzle-orm';
import { PgDialect, type PgDatabase, type PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { migrationsFolder } from '../paths.js';
import { DatabaseBreaker } from './breaker.js';
import { DatabaseInUseError, lockDirectory, type DirectoryLock } from './lock.js';
import { postgresTarget } from './postgres-url.js';
import * as schema from './schema.js';

export { schema, DatabaseInUseError };
export { DatabaseUnavailable, isDatabaseUnavailable } from './breaker.js';

const dialect = new PgDialect();

/** One database type over both drivers: every repository is written against this. */
export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;

export type Driver = 'pglite' | 'postgres';

export interface MigrationStatus {
  /** Migrations shipped with this build (drizzle-kit's journal). */
  expected: number;
  /** Migrations recorded as applied in the database. */
  applied: number;
}

export interface PoolStats {
  max: number;
  open: number;
  busy: number;
}

export interface DatabaseLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface Database {
  readonly driver: Driver;
  readonly db: Db;
  /** Where the data lives, safe to log: a directory, memory://, or the URL without credentials. */
  readonly location: string;
  ping(): Promise<void>;
  migrate(): Promise<MigrationStatus>;
  migrationStatus(): Promise<MigrationStatus>;
  /**
   * LISTEN on a channel; resolves to a function that stops listening. A listener whose connection
   * was lost listens again when the database is back, and then calls `onRelisten`: whatever was
   * announced meanwhile was missed.
   */
  listen(channel: string, onPayload: (payload: string) => void, onRelisten?: () => void): Promise<() => Promise<void>>;
  notify(channel: string, payload: string): Promise<void>;
  /**
   * Whether this process hears announcements right now: a NOTIFY on a channel of its own comes
   * back within a second (PostgreSQL; PGlite's are in this process). A readiness check, since a
   * process that does not hear revocations must not take traffic.
   */
  hearsNotifications(): Promise<boolean>;
  poolStats(): Promise<PoolStats>;
  /**
   * Hold a lock named `key` until the function it resolves to is called, or until this process
   * dies: undefined when somebody holds it already. PostgreSQL: a session advisory lock on a
   * connection reserved for it, so that a killed process lets go with its connection; PGlite: in
   * this process, the only one a PGlite directory has.
   */
  tryHold(key: string): Promise<(() => Promise<void>) | undefined>;
  /**
   * Bulk-load rows with COPY … FROM (CSV): postgres.js streams to STDIN; PGlite takes chunks as
   * blobs. `table` and `columns` must already be quoted identifiers.
   */
  copyInto(table: string, columns: string[], csvChunks: AsyncIterable<string>): Promise<void>;
  /**
   * Rows of a query in batches from a server-side cursor (one snapshot, one connection, the next
   * batch fetched only when the consumer asks): PostgreSQL only. PGlite is one connection, so a
   * long-lived cursor there would hold up every other query; callers page by keyset instead.
   */
  cursor?<T>(query: SQL, batchSize: number): AsyncIterable<T[]>;
  /**
   * The output of `COPY … TO STDOUT`, on a connection of its own (PostgreSQL only). `statement`
   * takes no parameters, so it must be built from identifiers and constants alone. Undefined when
   * `copyLimit` copies are already running: the caller reads another way. A copy that is stopped
   * half-way (the consumer returns or throws) is cancelled on the server and its connection
   * closed. A server error half-way is an error of the read (never a short file that looks
   * whole), and so is `idleMs` without a byte (a connection that hangs).
   */
  copyOut?(statement: string, idleMs?: number): AsyncIterable<Buffer> | undefined;
  /**
   * Say that this process has begun to close and means to be done within `withinMs`: a process
   * that starts on the same PGlite directory meanwhile waits for it instead of failing. Called
   * as soon as closing begins, before in-flight work ends; close() does it too if nobody did.
   * Nothing to say for PostgreSQL and memory://.
   */
  closing(withinMs: number): Promise<void>;
  close(): Promise<void>;
}

export interface OpenDatabaseOptions {
  poolMax?: number;
  /** Copies (`copyOut`) that may run at once, each on a connection beyond the pool (default 2). */
  copyLimit?: number;
  logger?: DatabaseLogger;
}

export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//.test(url);
}

/**
 * Open the database named by a URL: postgres://… → PostgreSQL through postgres.js; memory:// or a
 * directory → embedded PGlite. Driver modules are imported lazily, so a PostgreSQL deployment
 * never loads the WASM build and vice versa.
 */
export async function openDatabase(url: string, options: OpenDatabaseOptions = {}): Promise<Database> {
  return isPostgresUrl(url) ? openPostgres(url, options) : openPglite(url, options);
}

async function openPostgres(url: string, options: OpenDatabaseOptions): Promise<Database> {
  const { default: postgres } = await import('postgres');
  const { drizzle } = await import('drizzle-orm/postgres-js');
  const { migrate } = await import('drizzle-orm/postgres-js/migrator');
  const max = options.poolMax ?? 10;
  // A per-process application name lets poolStats() count this pool's own connections.
  const applicationName = `govdata-gateway-${randomUUID().slice(0, 8)}`;
  const onnotice = (notice: unknown) => options.logger?.debug({ notice }, 'postgres notice');
  const target = postgresTarget(url);
  const connect = (options: Parameters<typeof postgres>[1]) =>
    postgres(target.url, {
      // A server that is away is tried again within a second (postgres.js backs off to 20 s,
      // which would leave the LISTEN connection, and with it revocations, behind for as long),
      // and a connection that cannot be made gives up in 5 s, not 30.
      backoff: reconnectBackoff,
      connect_timeout: options?.connect_timeout ?? 5,
      ...options,
      ...(target.host ? { host: target.host } : {}),
      ...(target.port ? { port: target.port } : {}),
    });
  const client = connect({
    max,
    onnotice,
    connection: { application_name: applicationName },
  });
  const breaker = new DatabaseBreaker(options.logger ? { logger: options.logger } : {});
  const db = drizzle(guarded(client, breaker), { schema }) as unknown as Db;
  const location = redactUrl(url);
  const copyLimit = options.copyLimit ?? 2;
  const copySlots = { running: 0 };

  return {
    driver: 'postgres',
    db,
    location,
    async ping() {
      await breaker.run(() => client`select 1`);
    },
    async migrate() {
      // postgres.js migrations want a connection of their own (max: 1): the advisory lock and the
      // migration transaction must share it.
      const migrationClient = connect({ max: 1, onnotice });
      try {
        await migrate(drizzle(migrationClient), { migrationsFolder });
      } finally {
        await migrationClient.end();
      }
      return migrationStatus(db);
    },
    migrationStatus: () => migrationStatus(db),
    ...postgresNotifications(client, breaker, applicationName, options.logger),
    async notify(channel, payload) {
      await breaker.run(() => client.notify(channel, payload));
    },
    async copyInto(table, columns, csvChunks) {
      const writable = await client.unsafe(`copy ${table} (${columns.join(', ')}) from stdin (format csv)`).writable();
      await pipeline(Readable.from(csvChunks), writable);
    },
    copyOut(statement: string, idleMs = 30_000): AsyncIterable<Buffer> | undefined {
      if (copySlots.running >= copyLimit) return undefined;
      return copyRows(() => connect({ max: 1, onnotice, connection: { application_name: `${applicationName}-copy` } }), statement, idleMs, copySlots);
    },
    cursor<T>(query: SQL, batchSize: number): AsyncIterable<T[]> {
      const compiled = dialect.sqlToQuery(query);
      return client.unsafe(compiled.sql, compiled.params as never[]).cursor(batchSize) as unknown as AsyncIterable<T[]>;
    },
    async tryHold(key) {
      const reserved = await breaker.run(() => client.reserve());
      let held = false;
      try {
        const [row] = await reserved<{ held: boolean }[]>`select pg_try_advisory_lock(hashtext(${key})) as held`;
        held = row?.held === true;
      } finally {
        if (!held) reserved.release();
      }
      if (!held) return undefined;
      return async () => {
        await reserved`select pg_advisory_unlock(hashtext(${key}))`.catch(() => {});
        reserved.release();
      };
    },
    async poolStats() {
      const [row] = await client<{ open: number; busy: number }[]>`
        select count(*)::int as open, (count(*) filter (where state = 'active'))::int - 1 as busy
        from pg_stat_activity where application_name = ${applicationName}`;
      return { max, open: row?.open ?? 0, busy: Math.max(0, row?.busy ?? 0) };
    },
    async closing() {},
    async close() {
      breaker.shutdown();
      await client.end({ timeout: 5 });
    },
  };
}

/** LISTEN on PostgreSQL, and the echo that shows this process hears NOTIFY now. */
function postgresNotifications(
  client: import('postgres').Sql,
  breaker: DatabaseBreaker,
  applicationName: string,
  logger: OpenDatabaseOptions['logger'],
): Pick<Database, 'listen' | 'hearsNotifications'> {
  // This process's own channel, whose NOTIFY must come back: proof that LISTEN works now.
  const echoChannel = applicationName.replaceAll('-', '_');
  const echoes = new Map<string, () => void>();
  let echo: Promise<void> | undefined;
  let echoListening = false;
  return {
    async listen(channel, onPayload, onRelisten) {
      // postgres.js listens again by itself once a lost connection is back; what was announced
      // meanwhile is lost, so the caller is told to catch up. While the server is away it queues
      // one more LISTEN for every failed try, and all of them succeed together when it is back:
      // those are one relisten (one catch-up, one log line), not dozens.
      let listened = false;
      let relistening: NodeJS.Timeout | undefined;
      const subscription = await client.listen(channel, onPayload, () => {
        if (!listened) {
          listened = true;
          return;
        }
        if (relistening) return;
        relistening = setTimeout(() => {
          relistening = undefined;
          logger?.info({ channel }, 'listening again after the connection was lost');
          onRelisten?.();
        }, RELISTEN_COALESCE_MS);
        relistening.unref();
      });
      return async () => {
        clearTimeout(relistening);
        await subscription.unlisten();
      };
    },
    async hearsNotifications() {
      echo ??= client.listen(echoChannel, (token: string) => echoes.get(token)?.()).then(
        () => {
          echoListening = true;
        },
        (error: unknown) => {
          echo = undefined;
          throw error;
        },
      );
      // A first LISTEN made while the server is away waits for it (postgres.js queues it): the
      // answer is "not heard" within the second, not a readiness check that hangs.
      await settleWithin(echo, ECHO_WITHIN_MS);
      if (!echoListening) return false;
      const token = randomUUID();
      const heard = new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), ECHO_WITHIN_MS);
        timer.unref();
        echoes.set(token, () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      try {
        await breaker.run(() => client.notify(echoChannel, token));
        return await heard;
      } finally {
        echoes.delete(token);
      }
    },
  };
}

/** The LISTENs queued while the server was away come back within a few milliseconds of each other. */
const RELISTEN_COALESCE_MS = 100;
/** How long a process's own NOTIFY may take to come back before it counts as not heard. */
const ECHO_WITHIN_MS = 1000;

/** Seconds before the n-th attempt to reconnect: 0.1, 0.2, 0.4, then 0.5 at most, with jitter. */
function reconnectBackoff(retries: number): number {
  return (0.5 + Math.random() / 2) * Math.min(0.05 * 2 ** retries, 0.5);
}

/**
 * The client drizzle queries through: every query (and transaction) passes the database's
 * circuit breaker, and every query that has parameters is prepared: drizzle hands
 * postgres.js `prepare: false` unless a query is built with `.prepare(name)`, so each call would
 * be parsed and planned again by the server (Parse, Describe, Bind, Execute). Prepared, a
 * connection parses a statement once and then only binds it. postgres.js keeps the statements per
 * connection, by text; connections are recycled (max_lifetime), which bounds what they keep.
 * Statements without parameters (DDL, COPY) keep the simple protocol.
 */
function guarded(client: import('postgres').Sql, breaker: DatabaseBreaker): import('postgres').Sql {
  return new Proxy(client, {
    get(target, property, receiver) {
      if (property === 'begin') {
        return (...args: Parameters<typeof target.begin>) => breaker.run(() => target.begin(...args));
      }
      if (property !== 'unsafe') return Reflect.get(target, property, receiver);
      return (query: string, args: unknown[] = [], options: Record<string, unknown> = {}) => {
        const run = () => target.unsafe(query, args as never[], args.length > 0 ? { ...options, prepare: true } : options);
        // postgres.js queries run when awaited; drizzle awaits the query or its .values().
        return {
          values: () => breaker.run(() => run().values()),
          then: (onValue: (rows: unknown) => unknown, onError: (error: unknown) => unknown) => breaker.run(run).then(onValue, onError),
        };
      };
    },
  });
}

/**
 * The rows of one `COPY … TO STDOUT` on a connection of its own (see Database.copyOut); `slots`
 * counts the copies running, from the first read (a copy never read never opens a connection).
 */
async function* copyRows(
  open: () => import('postgres').Sql,
  statement: string,
  idleMs: number,
  slots: { running: number },
): AsyncGenerator<Buffer> {
  slots.running += 1;
  const connection = open();
  const query = connection.unsafe(statement);
  // The stream is read by its events, never destroyed: postgres.js pauses the socket when a
  // push is refused, and a destroyed stream refuses every push, so its connection would
  // never read again (not even the end of the connection).
  const queue: Buffer[] = [];
  let ended = false;
  let failed: Error | undefined;
  let dropping = false;
  let wake: (() => void) | undefined;
  let stream: Readable | undefined;
  let finished = false;
  try {
    stream = (await query.readable()) as unknown as Readable;
    const source = stream;
    // COPY sends a message a row: they are handed on together, up to 1 MiB at a time.
    let queued = 0;
    source.on('data', (chunk: Buffer) => {
      if (dropping) return;
      queue.push(chunk);
      queued += chunk.length;
      if (queued >= 1_048_576) source.pause();
      wake?.();
    });
    source.once('end', () => {
      ended = true;
      wake?.();
    });
    source.once('error', (error: Error) => {
      failed = error;
      wake?.();
    });
    for (;;) {
      if (queue.length) {
        const chunk = queue.length === 1 ? (queue[0] as Buffer) : Buffer.concat(queue, queued);
        queue.length = 0;
        queued = 0;
        if (source.isPaused()) source.resume();
        yield chunk;
        continue;
      }
      if (failed) throw failed;
      if (ended) break;
      // A server error arrives as the stream's error; a connection that hangs sends
      // nothing at all, so long silence is an error too.
      let timer: NodeJS.Timeout | undefined;
      const silent = await new Promise<boolean>((resolve) => {
        wake = () => {
          wake = undefined;
          resolve(false);
        };
        timer = setTimeout(() => resolve(true), idleMs);
      });
      clearTimeout(timer);
      wake = undefined;
      if (silent) throw new Error(`COPY sent nothing for ${idleMs} ms`);
    }
    finished = true;
  } finally {
    slots.running -= 1;
    if (!finished) {
      // Stopped half-way: the server is told to stop (a cancel request), and what it sent
      // meanwhile is read and dropped, until the connection is idle and can end.
      dropping = true;
      queue.length = 0;
      stream?.resume();
      query.cancel();
      query.catch(() => {});
    }
    await connection.end({ timeout: 2 }).catch(() => {});
  }
}

async function openPglite(url: string, options: OpenDatabaseOptions): Promise<Database> {
  const { PGlite } = await import('@electric-sql/pglite');
  const { pg_trgm } = await import('@electric-sql/pglite/contrib/pg_trgm');
  const { drizzle } = await import('drizzle-orm/pglite');
  const { migrate } = await import('drizzle-orm/pglite/migrator');

  const inMemory = url.startsWith('memory://');
  const directory = inMemory ? undefined : resolve(url);
  let lock: DirectoryLock | undefined;
  if (directory) {
    await mkdir(directory, { recursive: true });
    lock = await lockDirectory(directory, options.logger);
  }
  let client: InstanceType<typeof PGlite>;
  try {
    client = await PGlite.create(directory ?? 'memory://', { extensions: { pg_trgm } });
  } catch (error) {
    await lock?.release();
    throw error;
  }
  const db = drizzle(client, { schema }) as unknown as Db;
  const held = new Set<string>();

  return {
    driver: 'pglite',
    db,
    location: directory ?? 'memory://',
    async ping() {
      await client.query('select 1');
    },
    async migrate() {
      await migrate(drizzle(client), { migrationsFolder });
      return migrationStatus(db);
    },
    migrationStatus: () => migrationStatus(db),
    listen: (channel, onPayload) => client.listen(channel, onPayload),
    hearsNotifications: async () => true,
    async notify(channel, payload) {
      await client.query('select pg_notify($1, $2)', [channel, payload]);
    },
    async copyInto(table, columns, csvChunks) {
      // PGlite reads COPY input from a blob; each chunk is one COPY, so memory stays one chunk.
      for await (const chunk of csvChunks) {
        await client.query(`copy ${table} (${columns.join(', ')}) from '/dev/blob' (format csv)`, [], { blob: new Blob([chunk]) });
      }
    },
    async poolStats() {
      // PGlite is one connection inside this process.
      return { max: 1, open: client.closed ? 0 : 1, busy: 0 };
    },
    async tryHold(key) {
      if (held.has(key)) return undefined;
      held.add(key);
      return async () => void held.delete(key);
    },
    async closing(withinMs) {
      await lock?.closing(withinMs);
    },
    async close() {
      try {
        // Closing PGlite takes moments (a checkpoint); a close announced earlier keeps its deadline.
        await lock?.closing(10_000);
        if (!client.closed) await client.close();
      } finally {
        await lock?.release();
      }
    },
  };
}

async function migrationStatus(db: Db): Promise<MigrationStatus> {
  const journal = JSON.parse(await readFile(join(migrationsFolder, 'meta', '_journal.json'), 'utf8')) as {
    entries: unknown[];
  };
  const table = await db.execute(sql`select to_regclass('drizzle.__drizzle_migrations') is not null as present`);
  let applied = 0;
  if (rowsOf<{ present: boolean }>(table)[0]?.present) {
    const counted = await db.execute(sql`select count(*)::int as applied from drizzle.__drizzle_migrations`);
    applied = rowsOf<{ applied: number }>(counted)[0]?.applied ?? 0;
  }
  return { expected: journal.entries.length, applied };
}

/**
 * Wait for a clean-up step, but not forever and never with an error: removing a listener from a
 * connection that is already gone may neither resolve nor reject.
 */
export async function settleWithin(step: Promise<unknown> | undefined, ms: number): Promise<void> {
  if (!step) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([step.catch(() => {}), new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

/**
 * Keep an in-memory copy current: apply each NOTIFY on `channel` as it comes, load everything
 * once now, and again every `reloadMs` as a safety net for a missed notification. Resolves to the
 * function that stops it.
 */
export async function followChannel(
  database: Database,
  channel: string,
  onPayload: (payload: string) => void,
  reload: () => Promise<void>,
  reloadMs: number,
): Promise<() => Promise<void>> {
  const unlisten = await database.listen(channel, onPayload, () => void reload().catch(() => {}));
  await reload();
  const timer = setInterval(() => void reload().catch(() => {}), reloadMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    // A database that is already gone has no listener left to remove.
    await settleWithin(unlisten(), 2000);
  };
}

/** postgres.js answers an array of rows, PGlite an object with `rows`: read either. */
export function rowsOf<T>(result: unknown): T[] {
  return Array.isArray(result) ? (result as T[]) : ((result as { rows: T[] }).rows ?? []);
}

export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    // A libpq-style socket URL (`postgres://user:pw@/db?host=/dir`) has no host for URL to read.
    if (/^postgres(ql)?:\/\/[^/?#]*@\//.test(url) || /^postgres(ql)?:\/\/\//.test(url)) return url.replace(/^(postgres(?:ql)?:\/\/[^:@/]*):[^@/]*@/, '$1:***@');
    return '(unparsable database URL)';
  }
}
