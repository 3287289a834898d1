import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import postgres from 'postgres';
import { treeRssBytes } from '../../bench/lib.js';
import { openDatabase } from '../../src/db/index.js';
import { testDrivers } from '../helpers/app.js';
import { accessToken, cli, committedRecords, demoDatabase, driveLoad, revokeAt, stop, verifyAt, verifyOnNewConnectionAt, statusOnNewConnection, within, type Answer } from '../helpers/demo-gateways.js';
import { freePort, startGateway } from '../helpers/server.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

// PostgreSQL goes away under load and comes back: what callers get meanwhile, what the gateway
// costs while it waits, and how fast it serves again. The outage is a relay in front of the test
// server taken down (every connection dropped, new ones refused, as while a server restarts), so
// the server other tests share keeps running.
t.setTimeout(300_000);

const needsPostgres = testDrivers().includes('postgres') ? false : 'needs DATABASE_URL=postgres://… (PostgreSQL tests are off)';
const REQUEST_TIMEOUT_MS = 5000;
const OUTAGE_LOADED_MS = 6000;
const OUTAGE_IDLE_MS = 6000;

/** Clock ticks per second of /proc/<pid>/stat's utime and stime (USER_HZ: 100 on Linux). */
const USER_HZ = 100;

/**
 * CPU ticks (user + system) so far of process `root` and every process below it (the workers of a
 * cluster), from /proc, by process: its pid and start time, so that a reused pid is another process.
 */
async function treeCpuTicks(root: number): Promise<Map<string, number>> {
  const stats = new Map<number, { ppid: number; started: string; ticks: number }>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const text = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    if (!text) continue;
    // Fields after the command name (in parentheses, which may hold spaces): state is field 3,
    // utime and stime 14 and 15, starttime 22.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    stats.set(Number(name), { ppid: Number(fields[1]), started: fields[19] as string, ticks: Number(fields[11]) + Number(fields[12]) });
  }
  const below = (pid: number): boolean => pid === root || (pid > 1 && stats.has(pid) && below((stats.get(pid) as { ppid: number }).ppid));
  const tree = new Map<string, number>();
  for (const [pid, stat] of stats) if (below(pid)) tree.set(`${pid}@${stat.started}`, stat.ticks);
  return tree;
}

/**
 * CPU milliseconds spent between two samples by the processes in both. A process that started or
 * ended in between is left out: summing the tree would count its whole life, or take it away
 * (a worker replaced during the idle window once gave -33.2%, another time 37.7%).
 */
function cpuMsBetween(before: Map<string, number>, after: Map<string, number>): { ms: number; processes: number; changed: string[] } {
  let ticks = 0;
  let processes = 0;
  for (const [process, atEnd] of after) {
    const atStart = before.get(process);
    if (atStart === undefined) continue;
    ticks += atEnd - atStart;
    processes++;
  }
  const changed = [...[...before.keys()].filter((p) => !after.has(p)).map((p) => `${p} ended`), ...[...after.keys()].filter((p) => !before.has(p)).map((p) => `${p} started`)];
  return { ms: (ticks * 1000) / USER_HZ, processes, changed };
}

/** Problems a caller may get while the database is away: each says to retry. */
const OUTAGE_CODES = ['database_unavailable', 'audit_unavailable', 'timeout'];

// Once with the gateway in one process, once with a primary and two workers (each worker keeps
// its own connections, its own breaker and its own LISTEN).
for (const workers of [1, 2]) t.test(`PostgreSQL away for 12 s under load, then back (WORKERS=${workers})`, { skip: needsPostgres }, async (t) => {
  const { url, env, credentials } = await demoDatabase(t);
  const server = new URL(url);
  const proxy = await new TcpProxy(Number(server.port || 5432)).up();
  t.teardown(() => proxy.down());
  const viaProxy = new URL(url);
  viaProxy.port = String(proxy.port);

  // t.testdir() makes the folder anew on every call: once, for both.
  const dir = t.testdir();
  const a = startGateway(t, dir, { ...env, DATABASE_URL: viaProxy.toString(), REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS), WORKERS: String(workers) }, await freePort());
  const b = startGateway(t, dir, { ...env, WORKERS: '1' }, await freePort());
  t.ok(await a.ready(), 'A (through the relay) is ready', { output: a.output() });
  t.ok(await b.ready(), 'B (straight to the server) is ready', { output: b.output() });
  const pid = a.child.pid as number;

  const token = await accessToken(a, credentials.consumer);
  const load = driveLoad(a, () => token, { concurrency: 6, giveUpMs: 60_000, pauseAfter503Ms: 10 });
  await sleep(1000);

  // First the gateways' connections terminated on the server, three times over: a blip, which
  // callers see as 503s to retry at most, never as 500.
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  t.teardown(() => admin.end());
  let terminated = 0;
  for (let i = 0; i < 3; i++) {
    const rows = await admin`select pg_terminate_backend(pid) as done from pg_stat_activity
      where datname = current_database() and application_name like 'govdata-gateway-%' and pid <> pg_backend_pid()`;
    terminated += rows.length;
    await sleep(300);
  }
  t.ok(terminated > 0, `${terminated} backends of the gateways terminated`);
  await sleep(1000);
  // RSS of the whole process tree (the primary and its workers): 64 MiB a process at most.
  const rssBefore = await treeRssBytes(pid);
  let rssPeak = rssBefore;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      rssPeak = Math.max(rssPeak, await treeRssBytes(pid));
      await sleep(200);
    }
  })();

  // The outage: under load, then idle.
  const linesBefore = a.logLines().length;
  const outageStart = Date.now();
  await proxy.down();
  await sleep(OUTAGE_LOADED_MS / 2);
  const readyz = await fetch(`${a.url}/readyz`).catch((error) => {
    t.comment(`readyz failed: ${String(error.cause)} alive=${a.child.exitCode}; the gateway's last log lines:\n${a.output().slice(-4000)}`);
    throw error;
  });
  t.equal(readyz.status, 503, '/readyz is 503 while the database is away');
  t.match(readyz.headers.get('content-type'), /^application\/problem\+json/);
  t.match(await readyz.json(), { code: 'not_ready', checks: { database: 'unavailable' } });
  await sleep(OUTAGE_LOADED_MS / 2);
  const answers = await load.stop();
  const cpuIdleStart = await treeCpuTicks(pid);
  await sleep(OUTAGE_IDLE_MS);
  const idleCpu = cpuMsBetween(cpuIdleStart, await treeCpuTicks(pid));
  const idleCpuShare = idleCpu.ms / OUTAGE_IDLE_MS;
  const outageMs = Date.now() - outageStart;
  const outageLines = a.logLines().slice(linesBefore);
  sampling = false;
  await sampler;

  await proxy.up();
  const upAt = Date.now();
  // Ready means every process of A hears NOTIFY again (its own echo comes back): asked on new
  // connections, so that with workers each of them answers.
  const readyAfter = await within(5_000, async () => {
    for (let ask = 0; ask < 3 * workers; ask++) if ((await statusOnNewConnection(`${a.url}/readyz`)) !== 200) return false;
    return true;
  }, 50);
  t.ok(readyAfter !== undefined, `every process of A ready again ${readyAfter} ms after the database came back (within 5 s), without a restart`, {
    ...(readyAfter === undefined ? { log: a.logLines().filter((line) => line.msg !== 'request completed').slice(-15).map((line) => JSON.stringify(line).slice(0, 400)) } : {}),
  });
  // The LISTENs postgres.js queued during the outage are one relisten, not one per failed try.
  const relistens = a.logLines().filter((line) => line.msg === 'listening again after the connection was lost' && line.channel === 'gateway_identity' && Number(line.time) >= upAt - 1000);
  t.ok(relistens.length <= 2 * workers, `${relistens.length} relisten line(s) for the identity channel after the outage (≤ ${2 * workers})`);

  // A revocation made through B after the outage reaches A: its LISTEN is back.
  t.equal((await verifyAt(a, token)).status, 200, 'A answers the token again');
  const revoke = await revokeAt(b, credentials.consumer, token);
  t.equal(revoke.status, 200);
  // Asks on new connections, one after the other, so that with workers each of them answers some.
  const refusedAfter = await within(1_000, async () => {
    for (let ask = 0; ask < 3 * workers; ask++) if ((await verifyOnNewConnectionAt(a, token)) !== 401) return false;
    return true;
  });
  t.ok(refusedAfter !== undefined, `A refuses the token ${refusedAfter} ms after B revoked it (within 1 s)`);

  await stop(t, a, 'A');
  await stop(t, b, 'B');

  // What callers got.
  const during = answers.filter((answer) => answer.startedAt >= outageStart);
  const served = answers.filter((answer) => answer.status === 200);
  const summary = (list: Answer[]) => {
    const counts = new Map<string, number>();
    for (const answer of list) counts.set(`${answer.status} ${answer.code ?? ''}`.trim(), (counts.get(`${answer.status} ${answer.code ?? ''}`.trim()) ?? 0) + 1);
    return [...counts].map(([kind, n]) => `${kind}: ${n}`).join(', ');
  };
  t.comment(`answers before and during the outage: ${summary(answers)}; during: ${summary(during)}`);
  t.ok(during.length >= 20, `the load kept asking during the outage (${during.length} answers)`);
  t.same(answers.filter((answer) => answer.status === 0).map((answer) => answer.failure), [], 'every request was answered');
  t.same(answers.filter((answer) => answer.status >= 500 && answer.status !== 503).map((answer) => `${answer.status} ${answer.code}`), [], 'no answer was a 5xx other than 503');
  const unavailable = answers.filter((answer) => answer.status === 503);
  t.ok(unavailable.length > 0, 'the outage was answered with 503s');
  t.same(
    unavailable.filter((answer) => !answer.contentType.startsWith('application/problem+json') || !OUTAGE_CODES.includes(answer.code ?? '') || !answer.retryAfter),
    [],
    `every 503 is problem+json with Retry-After and one of ${OUTAGE_CODES.join(', ')}`,
  );
  t.same(unavailable.filter((answer) => answer.code === 'audit_unavailable' && answer.auditId !== null), [], 'no audit_unavailable claims an audit record');
  const slowest = Math.max(...during.map((answer) => answer.ms));
  t.ok(slowest <= REQUEST_TIMEOUT_MS + 1500, `the slowest answer during the outage took ${slowest} ms (REQUEST_TIMEOUT_MS ${REQUEST_TIMEOUT_MS})`);
  t.same(served.filter((answer) => !answer.auditId), [], 'every 200 carried X-Audit-Id');

  // What the gateway cost while it waited.
  const perSecond = (outageLines.filter((line) => line.msg !== 'request completed').length * 1000) / outageMs;
  t.comment(`during the outage: ${outageLines.length} log lines (${perSecond.toFixed(1)} a second besides request lines), RSS ${(rssBefore / 1048576).toFixed(0)} → peak ${(rssPeak / 1048576).toFixed(0)} MiB, idle CPU ${(idleCpuShare * 100).toFixed(1)}%`);
  t.ok(perSecond <= 3 * workers, `logging stays bounded: ${perSecond.toFixed(1)} lines a second besides one a request (≤ ${3 * workers})`);
  t.ok(rssPeak - rssBefore <= 64 * 1048576 * workers, `RSS stays within 64 MiB a process (grew ${((rssPeak - rssBefore) / 1048576).toFixed(1)} MiB over ${workers} worker(s))`);
  if (idleCpu.changed.length) {
    const restarts = a.logLines().filter((line) => line.msg === 'a worker died; starting it again').length;
    t.comment(`processes of A that started or ended while idle (left out of its CPU): ${idleCpu.changed.join(', ')}; worker restarts so far: ${restarts}`);
  }
  t.ok(idleCpu.processes >= 1, `idle CPU measured over ${idleCpu.processes} process(es) of A alive throughout`);
  t.ok(idleCpuShare >= 0, `the idle CPU share is not negative (${(idleCpuShare * 100).toFixed(1)}%)`);
  t.ok(idleCpuShare <= 0.03 * workers, `idle CPU while the database is away: ${(idleCpuShare * 100).toFixed(1)}% of a core (≤ ${3 * workers}%)`);

  // Every answer sent with data has its committed record; the chains verify.
  const database = await openDatabase(url);
  t.teardown(() => database.close());
  // Refusals recorded (a 503 during the blip, say) count too: whatever claims a record has it.
  const ids = answers.filter((answer) => answer.auditId).map((answer) => answer.auditId as string);
  const found = await committedRecords(database, ids);
  t.equal(found, ids.length, `all ${ids.length} answers with X-Audit-Id (${served.length} with data) have their committed record (records lost: ${ids.length - found})`);
  const report = await cli(['audit', 'verify'], { ...env, LOG_LEVEL: 'silent' });
  t.equal(report.code, 0, `gateway audit verify passes: ${report.out}${report.err}`);
});
