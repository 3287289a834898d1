import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { inArray, sql } from 'drizzle-orm';
import { openDatabase, rowsOf } from '../../src/db/index.js';
import { auditEvents } from '../../src/db/schema.js';
import { testDrivers } from '../helpers/app.js';
import { accessToken, cli, demoDatabase, driveLoad, verifyAt } from '../helpers/demo-gateways.js';
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
  let found = 0;
  for (let i = 0; i < ids.length; i += 1000) {
    found += rowsOf<{ n: number }>(await database.db.execute(sql`select count(*)::int as n from ${auditEvents} where ${inArray(auditEvents.id, ids.slice(i, i + 1000))}`))[0]?.n ?? 0;
  }
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
