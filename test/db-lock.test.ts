import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import t, { type Test } from 'tap';
import { DatabaseInUseError, openDatabase, rowsOf } from '../src/db/index.js';
import { identity, lockDirectory, processStartTime, type LockHolder } from '../src/db/lock.js';
import { projectRoot } from '../src/paths.js';
import { freePort, startGateway } from './helpers/server.js';

// Three compiled servers start one after another at the end, a fresh PGlite directory first:
// on a busy two-core machine that takes minutes, past tap's default for a file.
t.setTimeout(420_000);

// The children run the compiled build, as `npm start` does (npm test builds first).
const compiledDb = pathToFileURL(join(projectRoot, 'dist', 'src', 'db', 'index.js')).href;

/** A logger that keeps what it was given, to assert what a start said. */
function captureLog() {
  const lines: { level: string; msg: string; obj: object }[] = [];
  const keep = (level: string) => (obj: object, msg = '') => void lines.push({ level, msg, obj });
  return { lines, logger: { debug: keep('debug'), info: keep('info'), warn: keep('warn') }, text: () => lines.map((l) => `${l.level}: ${l.msg}`).join('\n') };
}

/** Output of a child process, with a way to wait for a line of it. */
function watch(t: Test, child: ChildProcessByStdio<null, Readable, Readable>) {
  let output = '';
  const waiters: { pattern: RegExp; resolve: () => void }[] = [];
  const onData = (chunk: Buffer) => {
    output += chunk;
    for (const waiter of waiters.filter((w) => w.pattern.test(output))) waiter.resolve();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return {
    output: () => output,
    until(pattern: RegExp, ms = 60_000): Promise<void> {
      if (pattern.test(output)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${pattern} within ${ms} ms; output:\n${output}`)), ms);
        waiters.push({ pattern, resolve: () => (clearTimeout(timer), resolve()) });
      });
    },
  };
}

/**
 * A child process holding `directory` through openDatabase. `close-slowly`: it then says it is
 * closing, closes a second later, and stays alive for three more (so that whoever gets the
 * directory got it from the release, not from the child's death). `write`: it keeps writing until
 * it is killed.
 */
function holder(t: Test, directory: string, mode: 'hold' | 'close-slowly' | 'write') {
  const script = `
    const [moduleUrl, directory, mode] = process.argv.slice(1);
    const { openDatabase } = await import(moduleUrl);
    const database = await openDatabase(directory);
    await database.db.execute('create table if not exists crash_probe (n int)');
    console.log('held');
    if (mode === 'close-slowly') {
      await database.closing(5000);
      console.log('closing');
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await database.close();
      console.log('closed');
      await new Promise((resolve) => setTimeout(resolve, 3000));
    } else if (mode === 'write') {
      for (let n = 0; ; n++) await database.db.execute('insert into crash_probe values (' + n + ')');
    } else {
      setInterval(() => {}, 1000);
    }`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, compiledDb, directory, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
  return { child, ...watch(t, child) };
}

const lockPath = (directory: string) => join(directory, 'gateway.lock');

/** A lock file as another process would have left it. */
async function writeLock(directory: string, fields: Partial<LockHolder>, ageMs = 0) {
  await mkdir(directory, { recursive: true });
  const record: LockHolder = {
    ...(await identity(process.pid)),
    since: '2025-01-02T03:04:05.000Z',
    state: 'open',
    token: 'left-behind',
    ...fields,
  };
  await writeFile(lockPath(directory), JSON.stringify(record));
  if (ageMs) await age(lockPath(directory), ageMs);
}

async function age(path: string, ms: number) {
  const then = new Date(Date.now() - ms);
  await utimes(path, then, then);
}

async function lockRecord(directory: string): Promise<LockHolder> {
  return JSON.parse(await readFile(lockPath(directory), 'utf8')) as LockHolder;
}

async function exitedPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  await once(child, 'exit');
  return child.pid as number;
}

t.test('the lock names its holder: pid, start time, host, since when, open', async (t) => {
  const directory = t.testdir();
  const database = await openDatabase(directory);
  t.teardown(() => database.close());
  const record = await lockRecord(directory);
  t.match(record, { pid: process.pid, host: hostname(), state: 'open', since: /^\d{4}-\d\d-\d\dT/ });
  t.equal(record.startTime, await processStartTime(process.pid));
  if (process.platform === 'linux') t.match(record.startTime, /^\d+$/, 'clock ticks since boot, from /proc');

  await database.closing(2000);
  const closing = await lockRecord(directory);
  t.equal(closing.state, 'closing');
  t.ok(Math.abs(Date.parse(closing.closeBy as string) - (Date.now() + 2000)) < 1000, 'with the time it means to be closed by');
  await database.close();
  await t.rejects(stat(lockPath(directory)), { code: 'ENOENT' }, 'released: the lock file is gone');
});

t.test('a lock left by a killed process is taken over at once, and PGlite recovers the data', async (t) => {
  const directory = t.testdir();
  const killed = holder(t, directory, 'write');
  await killed.until(/held/);
  await sleep(300);
  killed.child.kill('SIGKILL');
  await once(killed.child, 'exit');
  t.equal((await lockRecord(directory)).pid, killed.child.pid, 'the dead process left its lock behind');

  const log = captureLog();
  const started = Date.now();
  const database = await openDatabase(directory, { logger: log.logger });
  const tookMs = Date.now() - started;
  t.teardown(() => database.close());
  t.ok(tookMs < 5000, `opened in ${tookMs} ms, not after the 15 s a heartbeat takes to go stale`);
  t.match(log.text(), new RegExp(`warn: taking over the PGlite data directory lock: its holder is gone \\(no process ${killed.child.pid}\\)`));
  t.equal((await lockRecord(directory)).pid, process.pid);
  const [row] = rowsOf<{ n: number }>(await database.db.execute('select count(*)::int as n from crash_probe'));
  t.ok((row?.n ?? 0) > 0, `the rows written before the kill are there (${row?.n})`);
});

t.test('a lock whose pid now belongs to another process (pid reuse) is taken over', async (t) => {
  const directory = t.testdir();
  // This process is alive, but it did not start at this time: the pid was reused.
  await writeLock(directory, { startTime: '1' });
  const log = captureLog();
  const lock = await lockDirectory(directory, log.logger);
  t.match(log.text(), `its holder is gone (pid ${process.pid} is now another process)`);
  t.equal((await lockRecord(directory)).token, lock.holder.token);
  await lock.release();
});

t.test('a lock from before the machine restarted is taken over', { skip: process.platform !== 'linux' && 'boot ids come from /proc' }, async (t) => {
  const directory = t.testdir();
  await writeLock(directory, { bootId: 'an-earlier-boot' });
  const log = captureLog();
  const lock = await lockDirectory(directory, log.logger);
  t.match(log.text(), 'its holder is gone (the machine has restarted since)');
  await lock.release();
});

t.test('a lock naming a pid that no longer exists is taken over', async (t) => {
  const directory = t.testdir();
  const pid = await exitedPid();
  await writeLock(directory, { pid, startTime: null });
  const log = captureLog();
  const lock = await lockDirectory(directory, log.logger);
  t.match(log.text(), `its holder is gone (no process ${pid})`);
  await lock.release();
});

t.test('a live holder is named in the error', async (t) => {
  const directory = t.testdir();
  const live = holder(t, directory, 'hold');
  await live.until(/held/);
  const error = await openDatabase(directory).then(
    () => t.fail('opened a directory that another process holds'),
    (error: unknown) => error,
  );
  t.type(error, DatabaseInUseError);
  const inUse = error as DatabaseInUseError;
  t.equal(inUse.code, 'database_in_use');
  t.equal(inUse.holder?.pid, live.child.pid);
  t.match(inUse.message, new RegExp(`^The PGlite data directory .* is in use by another process \\(pid ${live.child.pid} on ${hostname()}, holding it since \\d{4}-`));
});

t.test('a live holder that is closing is waited for, then the directory is taken', async (t) => {
  const directory = t.testdir();
  const closing = holder(t, directory, 'close-slowly');
  await closing.until(/closing/);
  const log = captureLog();
  const started = Date.now();
  const database = await openDatabase(directory, { logger: log.logger });
  const waitedMs = Date.now() - started;
  t.teardown(() => database.close());
  t.match(closing.output(), /closed/, 'taken once the holder had closed');
  t.equal(closing.child.exitCode, null, 'released by the holder itself, still alive');
  t.ok(waitedMs > 500 && waitedMs < 5000, `waited ${waitedMs} ms`);
  t.equal(log.lines.filter((line) => line.msg.startsWith('waiting for')).length, 1, 'one line while waiting');
  t.match(log.text(), `info: waiting for pid ${closing.child.pid} on ${hostname()} to close the PGlite data directory`);
});

t.test('a closing holder past its announced deadline is in use after all', async (t) => {
  const directory = t.testdir();
  await writeLock(directory, { state: 'closing', closeBy: new Date(Date.now() - 10_000).toISOString() });
  const started = Date.now();
  await t.rejects(lockDirectory(directory), { name: 'DatabaseInUseError', message: /pid \d+ on .*, closing, meant to be closed by \d{4}-/ });
  t.ok(Date.now() - started < 1000, 'without waiting');
});

t.test('a holder on another host is judged by its heartbeat', async (t) => {
  const directory = t.testdir();
  await writeLock(directory, { host: 'gateway-2.example', pid: 4242 });
  await t.rejects(lockDirectory(directory), { name: 'DatabaseInUseError', message: /\(pid 4242 on gateway-2\.example, holding it since 2025-01-02T03:04:05\.000Z: a running gateway\?\)/ });

  await age(lockPath(directory), 20_000);
  const log = captureLog();
  const lock = await lockDirectory(directory, log.logger);
  t.match(log.text(), 'its holder is gone (no heartbeat for 20 s)');
  await lock.release();
});

t.test('a lock that names nobody counts while it is fresh', async (t) => {
  const directory = t.testdir();
  await mkdir(directory, { recursive: true });
  await writeFile(lockPath(directory), 'not a lock record');
  await t.rejects(lockDirectory(directory), { name: 'DatabaseInUseError', message: /\(an unreadable lock, refreshed 0 s ago: a running gateway\?\)/ });

  // The lock directory of the proper-lockfile builds, left by a crash.
  await rm(lockPath(directory));
  await mkdir(lockPath(directory));
  await age(lockPath(directory), 16_000);
  const log = captureLog();
  const lock = await lockDirectory(directory, log.logger);
  t.match(log.text(), 'its holder is gone (no heartbeat for 16 s)');
  t.equal((await lockRecord(directory)).pid, process.pid);
  await lock.release();
});

t.test('starters racing for a stale lock: exactly one takes it', async (t) => {
  const directory = t.testdir();
  // Six starters, forty rounds: the take-over of an earlier build let two of them in about once in
  // ten rounds on a loaded machine.
  const dead = await exitedPid();
  for (let round = 0; round < 40; round++) {
    await writeLock(directory, { pid: dead });
    const results = await Promise.allSettled(Array.from({ length: 6 }, () => lockDirectory(directory)));
    const taken = results.filter((result) => result.status === 'fulfilled');
    t.equal(taken.length, 1, `round ${round}: one holder`);
    t.ok(
      results.every((result) => result.status === 'fulfilled' || result.reason instanceof DatabaseInUseError),
      'the others are told it is in use',
    );
    t.equal((await lockRecord(directory)).token, taken[0]?.status === 'fulfilled' ? taken[0].value.holder.token : undefined);
    await Promise.all(taken.map((result) => result.status === 'fulfilled' && result.value.release()));
  }
});

t.test('a take-over claim left by a starter that died mid-take-over does not block the directory', async (t) => {
  const directory = t.testdir();
  await writeLock(directory, { pid: await exitedPid() });
  const { ino, mtimeMs } = await stat(lockPath(directory));
  const claim = `${lockPath(directory)}.${ino}-${Math.round(mtimeMs)}-left-behind.1.takeover`;
  await writeFile(claim, '');
  await age(claim, 6_000);
  const lock = await lockDirectory(directory);
  t.equal((await lockRecord(directory)).token, lock.holder.token, 'the next generation of claim takes it over');
  await lock.release();
});

t.test('the holder keeps its heartbeat and lets go only of its own lock', async (t) => {
  const kept = join(t.testdir(), 'kept');
  const lost = join(t.testdir(), 'lost');
  await mkdir(kept, { recursive: true });
  await mkdir(lost, { recursive: true });
  const keptLock = await lockDirectory(kept);
  const log = captureLog();
  const lostLock = await lockDirectory(lost, log.logger);
  await age(lockPath(kept), 60_000);
  // Someone removed the lock under its holder (or took it over).
  await rm(lockPath(lost));

  await sleep(5500);
  t.ok(Date.now() - (await stat(lockPath(kept))).mtimeMs < 2000, 'the heartbeat refreshed the lock');
  t.match(log.text(), 'warn: could not refresh the heartbeat of the PGlite data directory lock');

  await writeLock(lost, { token: 'someone-else' });
  await lostLock.closing(1000);
  t.match(log.text(), 'warn: the PGlite data directory lock is no longer ours');
  await lostLock.release();
  t.match(log.text(), 'warn: the PGlite data directory lock was no longer ours when it was released');
  t.equal((await lockRecord(lost)).token, 'someone-else', "another's lock is left alone");
  await lostLock.release();
  await keptLock.release();
});

t.test('marking a lock closing that cannot be written is a warning, not a failure', async (t) => {
  const directory = t.testdir();
  const log = captureLog();
  const lock = await lockDirectory(directory, log.logger);
  await rm(directory, { recursive: true });
  await lock.closing(1000);
  t.match(log.text(), 'warn: could not mark the PGlite data directory lock as closing');
  await lock.release();
});

/** The compiled server, as `npm start` runs it, on `directory`. */
function server(t: Test, directory: string, port: number) {
  return startGateway(
    t,
    join(directory, '..'),
    {
      DATABASE_URL: directory,
      DEMO_DATA: 'off',
      OPEN_PREBUILD: 'false',
      OPEN_DATA_DIR: join(directory, '..', 'downloads'),
      // The slow request below holds a server in its close for as long as the test needs.
      REQUEST_TIMEOUT_MS: '300000',
      SHUTDOWN_GRACE_MS: '300000',
    },
    port,
  );
}

t.test('the compiled server: killed with SIGKILL, it starts again at once; a start while it is closing waits', async (t) => {
  const directory = join(t.testdir(), 'pglite');
  const first = server(t, directory, await freePort());
  t.ok(await first.ready(), 'the first server became ready');
  first.child.kill('SIGKILL');
  await first.exited;
  const killedAt = Date.now();

  const second = server(t, directory, await freePort());
  t.ok(await second.ready(), 'the second server became ready on the same directory');
  t.comment(`from SIGKILL to the next start's readiness: ${Date.now() - killedAt} ms`);
  const takeOver = second
    .output()
    .split('\n')
    .find((line) => line.includes(`taking over the PGlite data directory lock: its holder is gone (no process ${first.child.pid})`));
  t.ok(takeOver, 'the second start took the lock over, naming the killed process');
  t.comment(`from SIGKILL to the take-over: ${(JSON.parse(takeOver ?? '{}') as { time: number }).time - killedAt} ms`);

  // A request whose body is still arriving keeps the second server closing after SIGTERM.
  const slow = connect(second.port, '127.0.0.1');
  await once(slow, 'connect');
  const body = 'grant_type=client_credentials&client_id=nobody';
  slow.write(`POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 11)}`);
  await sleep(200);
  second.child.kill('SIGTERM');
  await second.logged('shutting down');
  for (let attempt = 0; attempt < 50 && (await lockRecord(directory)).state !== 'closing'; attempt++) await sleep(20);
  t.equal((await lockRecord(directory)).state, 'closing', 'the server marked its lock closing as its close began');

  const third = server(t, directory, await freePort());
  await third.logged(new RegExp(`waiting for pid ${second.child.pid} on .* to close the PGlite data directory`));
  t.equal(second.child.exitCode, null, 'the closing server is still closing');

  slow.end(body.slice(11));
  t.equal(await second.exited, 0, 'the closing server closed cleanly');
  t.ok(await third.ready(), 'the server that waited became ready');
  t.notMatch(third.output(), /taking over/, 'it took the lock as released, not as stale');
  third.child.kill('SIGTERM');
  t.equal(await third.exited, 0);
});
