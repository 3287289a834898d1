import { join } from 'node:path';
import t from 'tap';
import { sql } from 'drizzle-orm';
import { openDatabase, rowsOf } from '../src/db/index.js';
import { testDrivers } from './helpers/app.js';
import { basic, cli, demoDatabase, revokeAt, stop, tokenAt, verifyAt, within } from './helpers/demo-gateways.js';
import { freePort, startGateway } from './helpers/server.js';

// Gateways in processes of their own on one PostgreSQL and one Redis: two instances, then
// workers. PGlite allows one process, which the last test shows.
t.setTimeout(300_000);

const onPostgres = testDrivers().includes('postgres');
const needsPostgres = onPostgres ? false : 'needs DATABASE_URL=postgres://… (PostgreSQL tests are off)';

t.test('two instances on one PostgreSQL and Redis act as one gateway', { skip: needsPostgres }, async (t) => {
  const { url, env, credentials } = await demoDatabase(t, { TOKEN_RATE_LIMIT_PER_MINUTE: '6' });
  const a = startGateway(t, t.testdir(), env, await freePort());
  t.ok(await a.ready(), 'instance A is ready');
  const b = startGateway(t, t.testdir(), env, await freePort());
  t.ok(await b.ready(), 'instance B is ready');

  // A token one issues, the other accepts.
  const issued = await tokenAt(a, credentials.consumer);
  t.equal(issued.status, 200);
  const token = ((await issued.json()) as { access_token: string }).access_token;
  const verified = await verifyAt(b, token);
  t.equal(verified.status, 200, 'B accepts the token A signed');
  t.same(await verified.json(), { verdict: 'match', fields: { name: 'match', id_number: 'match', school: 'match' } });

  // A revocation made through A is refused by B within a second.
  const revoke = await revokeAt(a, credentials.consumer, token);
  t.equal(revoke.status, 200);
  const refusedAfter = await within(1_000, async () => (await verifyAt(b, token)).status === 401);
  t.ok(refusedAfter !== undefined, `B refuses the revoked token ${refusedAfter} ms after A revoked it (within 1 s)`);
  const refused = await verifyAt(b, token);
  t.equal(refused.status, 401);
  t.match(await refused.json(), { code: 'token_revoked' });

  // A grant revoked through A: B's next verify is refused within a second.
  const fresh = ((await (await tokenAt(b, credentials.consumer)).json()) as { access_token: string }).access_token;
  t.equal((await verifyAt(a, fresh)).status, 200);
  const provider = ((await (await tokenAt(a, credentials.provider)).json()) as { access_token: string }).access_token;
  const held = (await (await fetch(`${a.url}/v1/grants?resource=330000-EDU-00001&status=active`, { headers: { authorization: `Bearer ${provider}` } })).json()) as {
    items: Array<{ id: string; resource: string; status: string; agency: string; mode: string }>;
  };
  const grant = held.items.find((g) => g.agency === 'zj-hrss' && g.mode === 'verify');
  t.ok(grant, 'the consumer holds an active verify grant');
  const revoked = await fetch(`${a.url}/v1/grants/${grant?.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${provider}` } });
  t.equal(revoked.status, 200, 'the provider revokes it through A');
  const deniedAfter = await within(1_000, async () => (await verifyAt(b, fresh)).status === 403);
  t.ok(deniedAfter !== undefined, `B refuses the verify ${deniedAfter} ms after the grant was revoked through A (within 1 s)`);

  // One token limit for both: six a minute per client, counted in Redis.
  const statuses: number[] = [];
  for (let i = 0; i < 8; i++) statuses.push((await tokenAt(i % 2 ? b : a, credentials.supervisor)).status);
  t.same(statuses, [200, 200, 200, 200, 200, 200, 429, 429], 'the seventh token of the minute is refused, whichever instance is asked');

  await stop(t, a, 'A');
  await stop(t, b, 'B');

  // Both chains verify, each with its own records.
  const report = await cli(['audit', 'verify', '--json'], { ...env, LOG_LEVEL: 'silent' });
  t.equal(report.code, 0, report.err);
  const chains = (JSON.parse(report.out) as { chains: Array<{ chain_id: string; records: number }> }).chains;
  const database = await openDatabase(url);
  t.teardown(() => database.close());
  const writers = rowsOf<{ chain_id: string; n: number }>(
    await database.db.execute(sql`select chain_id::text, count(*)::int as n from audit_events where action = 'token.issue' group by chain_id`),
  );
  t.equal(writers.length, 2, 'tokens were recorded on two chains, one per instance');
  for (const writer of writers) t.ok(chains.some((chain) => chain.chain_id === writer.chain_id), `chain ${writer.chain_id} verified`);
});

t.test('gateway serve with two workers: one port, every worker serves, one dies and is replaced, SIGTERM drains them', { skip: needsPostgres }, async (t) => {
  const { url, env, credentials } = await demoDatabase(t, { WORKERS: '2' });
  const gateway = startGateway(t, t.testdir(), env, await freePort());
  await gateway.logged('gateway ready: 2 workers', 120_000);
  t.ok(await gateway.ready(), 'ready on the one port');
  const workerPids = () => [...new Set(gateway.logLines().filter((line) => line.worker !== undefined).map((line) => line.pid as number))];

  // New connections are handed to both workers: each records on a chain of its own.
  for (let i = 0; i < 40; i++) {
    const response = await fetch(`${gateway.url}/oauth/token`, {
      method: 'POST',
      headers: { authorization: basic(credentials.consumer), 'content-type': 'application/x-www-form-urlencoded', connection: 'close' },
      body: 'grant_type=client_credentials',
    });
    t.equal(response.status, 200);
  }
  const database = await openDatabase(url);
  t.teardown(() => database.close());
  const chainsOfTokens = async () =>
    rowsOf<{ n: number }>(await database.db.execute(sql`select count(distinct chain_id)::int as n from audit_events where action = 'token.issue'`))[0]?.n;
  t.equal(await chainsOfTokens(), 2, 'tokens were issued by both workers');

  // Any worker's /metrics counts every worker's requests.
  const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
  const issued = [...metrics.matchAll(/^http_request_duration_seconds_count\{[^}]*route="\/oauth\/token"[^}]*status_code="200"[^}]*\} (\d+)/gm)].reduce(
    (sum, match) => sum + Number(match[1]),
    0,
  );
  t.equal(issued, 40, '/metrics (aggregated by the primary) counts the 40 tokens of both workers');

  // A worker killed is started again; the gateway keeps answering meanwhile.
  const before = workerPids();
  t.equal(before.length, 2, 'two worker processes');
  process.kill(before[0] as number, 'SIGKILL');
  await gateway.logged('a worker died; starting it again', 10_000);
  const replaced = await within(30_000, async () => workerPids().length === 3 && (await fetch(`${gateway.url}/readyz`)).status === 200);
  t.ok(replaced !== undefined, `a new worker serves ${replaced} ms after the kill`);

  // SIGTERM drains every worker within the grace period.
  const stopping = Date.now();
  gateway.child.kill('SIGTERM');
  t.equal(await gateway.exited, 0, 'the primary exits 0');
  t.ok(Date.now() - stopping < 10_000, `stopped in ${Date.now() - stopping} ms, within SHUTDOWN_GRACE_MS`);
  const alive = workerPids().filter((pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  });
  t.same(alive, [], 'no worker is left running');
  t.equal(gateway.logLines().filter((line) => line.msg === 'shutting down' && line.worker !== undefined).length, 2, 'each running worker shut down');
});

t.test('PGlite with more than one worker is a clear start-up error', async (t) => {
  const gateway = startGateway(t, t.testdir(), { DATABASE_URL: join(t.testdir(), 'pglite'), WORKERS: '2' }, await freePort());
  t.equal(await gateway.exited, 1);
  t.equal(
    gateway.output().trim(),
    'gateway: configuration error: WORKERS: PGlite is held by one process, so it runs one worker (asked for 2); use PostgreSQL for more',
  );
});
