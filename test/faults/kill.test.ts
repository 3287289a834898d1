import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { sql } from 'drizzle-orm';
import { openDatabase, rowsOf } from '../../src/db/index.js';
import { auditEvents } from '../../src/db/schema.js';
import { residents } from '../../src/demo/seed.js';
import { projectRoot } from '../../src/paths.js';
import { testDrivers } from '../helpers/app.js';
import { accessToken, cli, committedRecords, demoDatabase, driveLoad, readAt, verifyAt, within } from '../helpers/demo-gateways.js';
import { freePort, startGateway } from '../helpers/server.js';

// kill -9 under load: the process gets no chance to flush or sign anything. What a client was
// answered with an audit id must be committed; the chain the killed process wrote ends at its
// last committed record and still verifies; the next start writes a chain of its own.
t.setTimeout(300_000);

const needsPostgres = testDrivers().includes('postgres') ? false : 'needs DATABASE_URL=postgres://… (PostgreSQL tests are off)';
const CONCURRENCY = 6;

t.test('SIGKILL under load: every answer with X-Audit-Id has its record, the chains verify', { skip: needsPostgres }, async (t) => {
  const { url, env, credentials } = await demoDatabase(t);
  const dir = t.testdir();
  const port = await freePort();
  const first = startGateway(t, dir, { ...env, WORKERS: '1' }, port);
  t.ok(await first.ready(), 'the gateway is ready');
  const token = await accessToken(first, credentials.consumer);

  const load = driveLoad(first, () => token, { concurrency: CONCURRENCY, giveUpMs: 10_000 });
  await sleep(2500);
  first.child.kill('SIGKILL');
  t.equal(await first.exited, 'SIGKILL', 'killed, with no chance to flush');
  await sleep(300);
  const answers = await load.stop();

  const second = startGateway(t, dir, { ...env, WORKERS: '1' }, port);
  t.ok(await second.ready(), 'it starts again on the same database');
  t.equal((await verifyAt(second, token)).status, 200, 'and answers the token issued before the kill');

  const withId = answers.filter((answer) => answer.auditId);
  const unanswered = answers.filter((answer) => answer.status === 0);
  t.ok(withId.length > 50, `${withId.length} answers with X-Audit-Id before the kill`);
  t.ok(unanswered.length > 0, `${unanswered.length} requests got no answer (in flight at the kill, or sent while it was down)`);
  t.same(answers.filter((answer) => answer.status >= 500), [], 'no answer was a 5xx');

  const database = await openDatabase(url);
  t.teardown(() => database.close());
  const ids = withId.map((answer) => answer.auditId as string);
  const found = await committedRecords(database, ids);
  t.equal(found, ids.length, `every answer with X-Audit-Id has its committed record (records lost: ${ids.length - found})`);

  // Records without an answer: a record commits before its answer is written, so a kill in
  // between leaves at most one such record per request in flight.
  const answeredIds = new Set(ids);
  const [killedChain] = rowsOf<{ chain_id: string; n: number }>(
    await database.db.execute(sql`select chain_id::text, count(*)::int as n from ${auditEvents}
      where action in ('records.verify', 'records.read') group by chain_id order by min(occurred_at) limit 1`),
  );
  const recorded = rowsOf<{ id: string }>(await database.db.execute(sql`select id::text from ${auditEvents} where chain_id = ${killedChain?.chain_id} and action in ('records.verify', 'records.read')`));
  const orphans = recorded.filter((row) => !answeredIds.has(row.id)).length;
  t.ok(orphans <= CONCURRENCY, `${orphans} records of the killed chain have no answer the client received (≤ ${CONCURRENCY} in flight)`);

  second.child.kill('SIGTERM');
  t.equal(await second.exited, 0);
  const report = await cli(['audit', 'verify', '--json'], { ...env, LOG_LEVEL: 'silent' });
  t.equal(report.code, 0, `gateway audit verify passes: ${report.err}`);
  const chains = (JSON.parse(report.out) as { chains: Array<{ chain_id: string; records: number }> }).chains;
  const killed = chains.find((chain) => chain.chain_id === killedChain?.chain_id);
  t.ok(killed, 'the killed chain is verified');
  t.ok((killed?.records ?? 0) >= found, `the killed chain ends at its last committed record (${killed?.records} records)`);
  // The demo seed's chain, the killed gateway's, and the one the restart opened.
  t.ok(chains.length >= 3, `the next start wrote a chain of its own (${chains.length} chains)`);
});

/** `gateway import` of a file in a process of its own, as an operator runs it. */
function importProcess(t: Test, env: Record<string, string>, file: string) {
  const child = spawn(process.execPath, [join(projectRoot, 'dist/scripts/gateway.js'), 'import', '330000-PSB-00001', file, '--json'], {
    env: { ...process.env, ...env, LOG_LEVEL: 'silent' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const exited = once(child, 'exit').then(([code, signal]) => (code ?? signal) as number | string);
  t.teardown(() => void (child.exitCode === null && child.kill('SIGKILL')));
  return { child, exited, output: () => output };
}

t.test('an import killed half-way: the old data stays served, its staging table is dropped at the next start, a running one is left alone', { skip: needsPostgres }, async (t) => {
  const { url, env, credentials } = await demoDatabase(t);
  const dir = t.testdir();
  const file = join(dir, 'residents.ndjson');
  const out = createWriteStream(file);
  for (const resident of residents(150_000, 7)) out.write(`${JSON.stringify(resident)}\n`);
  await new Promise((resolve) => out.end(resolve));
  const database = await openDatabase(url);
  t.teardown(() => database.close());
  const count = async () => rowsOf<{ n: number }>(await database.db.execute(sql`select count(*)::int as n from records.r_330000_psb_00001`))[0]?.n;
  const staging = async () =>
    rowsOf<{ tablename: string }>(await database.db.execute(sql`select tablename from pg_tables where schemaname = 'records' and tablename like 'r\\_330000\\_psb\\_00001\\_i%'`)).map((row) => row.tablename);
  const before = await count();

  // Killed while it copies: its staging table is left behind, the old table untouched.
  const killed = importProcess(t, env, file);
  t.not(await within(60_000, async () => (await staging()).length === 1, 50), undefined, 'the import made its staging table');
  await sleep(300);
  killed.child.kill('SIGKILL');
  t.equal(await killed.exited, 'SIGKILL', `killed half-way ${killed.output()}`);
  const [stray] = await staging();
  t.ok(stray, `its staging table ${stray} is left behind`);
  t.equal(await count(), before, 'the old records are untouched');

  // The next start drops it, and serves the old data.
  const gateway = startGateway(t, dir, { ...env, WORKERS: '1' }, await freePort());
  t.ok(await gateway.ready(), 'the gateway starts');
  t.same(await staging(), [], 'the stray staging table was dropped at start-up');
  t.ok(gateway.logLines().some((line) => line.msg === 'dropped the staging tables of interrupted imports' && JSON.stringify(line.tables) === JSON.stringify([stray])), 'and the log says which');
  const token = await accessToken(gateway, credentials.consumer);
  t.equal((await readAt(gateway, token)).status, 200, 'the old data is served');

  // An import running while another gateway starts keeps its staging table and finishes.
  const running = importProcess(t, env, file);
  t.not(await within(60_000, async () => (await staging()).length === 1, 50), undefined, 'a second import is copying');
  const second = startGateway(t, dir, { ...env, WORKERS: '1' }, await freePort());
  t.ok(await second.ready(), 'a second gateway starts meanwhile');
  t.equal(await running.exited, 0, `the running import was left alone and finished: ${running.output()}`);
  t.equal(await count(), 150_000, 'its records are served');
  t.same(await staging(), [], 'and no staging table is left');
  gateway.child.kill('SIGTERM');
  second.child.kill('SIGTERM');
  t.equal(await gateway.exited, 0);
  t.equal(await second.exited, 0);
});

t.test('a worker SIGKILLed under load: the others answer, it is replaced, every answer with X-Audit-Id has its record', { skip: needsPostgres }, async (t) => {
  const { url, env, credentials } = await demoDatabase(t);
  const gateway = startGateway(t, t.testdir(), { ...env, WORKERS: '2' }, await freePort());
  await gateway.logged('gateway ready: 2 workers', 120_000);
  t.ok(await gateway.ready(), 'two workers on one port');
  const workerPids = () => [...new Set(gateway.logLines().filter((line) => line.worker !== undefined && line.pid !== gateway.child.pid).map((line) => line.pid as number))];
  const token = await accessToken(gateway, credentials.consumer);

  const load = driveLoad(gateway, () => token, { concurrency: CONCURRENCY, giveUpMs: 10_000 });
  await sleep(2000);
  const [victim] = workerPids();
  process.kill(victim as number, 'SIGKILL');
  await gateway.logged('a worker died; starting it again', 10_000);
  const replaced = await within(30_000, async () => workerPids().length === 3);
  t.not(replaced, undefined, `a new worker started ${replaced} ms after the kill`);
  await sleep(1500);
  const answers = await load.stop();
  const afterKill = answers.filter((answer) => answer.status === 200 && answer.startedAt > Date.now() - 1500);
  t.ok(afterKill.length > 0, `the gateway kept answering after the kill (${afterKill.length} answers in the last 1.5 s)`);
  t.same(answers.filter((answer) => answer.status >= 500), [], 'no answer was a 5xx');

  const database = await openDatabase(url);
  t.teardown(() => database.close());
  const ids = answers.filter((answer) => answer.auditId).map((answer) => answer.auditId as string);
  const found = await committedRecords(database, ids);
  t.equal(found, ids.length, `all ${ids.length} answers with X-Audit-Id have their record (records lost: ${ids.length - found})`);
  gateway.child.kill('SIGTERM');
  t.equal(await gateway.exited, 0);
  const report = await cli(['audit', 'verify'], { ...env, LOG_LEVEL: 'silent' });
  t.equal(report.code, 0, `gateway audit verify passes, the killed worker's chain included: ${report.out}${report.err}`);
});
