/**
 * The audit trail under load: autocannon on a protected catalog route, audited for agency callers,
 * against the same route anonymously (not audited), in one run. Then: audit records = requests
 * answered, the chain verifies, and a row changed by hand in SQL is found.
 *
 *   npm run build && node dist/bench/audit.js [--connections 50] [--duration 10]
 */
import { join } from 'node:path';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import { sql } from 'drizzle-orm';
import pino from 'pino';
import { AuditWriter } from '../src/audit/writer.js';
import { openDatabase, rowsOf } from '../src/db/index.js';
import { KeyStore } from '../src/identity/keys.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { BENCH_SETTINGS, answeredByGateway, benchDatabase, cli, load, startGateway } from './lib.js';

const { values } = parseArgs({
  options: { connections: { type: 'string', default: '50' }, duration: { type: 'string', default: '10' } },
});
const connections = Number(values.connections);
const duration = Number(values.duration);

const database = await benchDatabase('audit');
const env = { ...BENCH_SETTINGS, DATABASE_URL: database.url, MAX_EVENT_LOOP_DELAY_MS: '0' };
const work = await mkdtemp(join(tmpdir(), 'gw-bench-audit-'));
try {
  const client = JSON.parse(await cli(['client', 'create', '--agency', 'zj-edu', '--scopes', 'catalog:read', '--json'], env));
  const gateway = await startGateway(env, join(work, 'gateway.log'));
  const token = await fetch(`${gateway.url}/oauth/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials',
  }).then((r) => r.json() as Promise<{ access_token: string }>);

  const url = `${gateway.url}/v1/catalog/resources/330000-AMR-00001`;
  const plain = await load({ url, connections, duration });
  const before = await answeredByGateway(gateway.url, '/v1/catalog/resources/:code');
  // A fixed number of requests (about as many as the plain run made), so that autocannon ends with
  // every request answered instead of dropping its connections mid-request at the deadline.
  const audited = await load({
    url,
    connections,
    amount: Math.max(connections * 20, Math.round(plain.rps * duration)),
    warmupAmount: connections * 20,
    headers: { authorization: `Bearer ${token.access_token}` },
  });
  await sleep(200);
  const answered = (await answeredByGateway(gateway.url, '/v1/catalog/resources/:code')) - before;
  const code = await gateway.stop();

  const db = await openDatabase(database.url);
  const [counted] = rowsOf<{ n: number; first: Date; last: Date }>(
    await db.db.execute(sql`select count(*)::int as n, min(occurred_at) as first, max(occurred_at) as last
      from audit_events where action = 'catalog.read' and client_id = ${client.client_id}`),
  );
  const verify = JSON.parse(await cli(['audit', 'verify', '--json'], env));
  await db.db.execute(sql`update audit_events set purpose = 'changed by hand'
    where seq = (select max(seq) / 2 from audit_events where action = 'catalog.read') and action = 'catalog.read'`);
  const tampered = await cli(['audit', 'verify', '--json'], env).then(
    () => ({ ok: true, problems: [] }),
    (error: { out: string }) => JSON.parse(error.out),
  );

  // The writer alone: records per second with 50 callers waiting on group commit.
  const keyStore = new KeyStore(db.db, Buffer.from(BENCH_SETTINGS.KEY_ENCRYPTION_KEY, 'base64url'), 'EdDSA', 900);
  await keyStore.start();
  const writer = new AuditWriter(db.db, keyStore, pino({ level: 'silent' }), { maxBatch: 500, checkpointEvery: 1000, checkpointSeconds: 60 });
  await writer.start('bench');
  const total = 20_000;
  const started = process.hrtime.bigint();
  let next = 0;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (next < total) {
        next += 1;
        await writer.record({ action: 'bench.write', outcome: 'allowed', agency: 'zj-edu', purpose: 'bench', latency_ms: 1 });
      }
    }),
  );
  const writerSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  await writer.close();
  await db.close();

  const seconds = (new Date(counted?.last as Date).getTime() - new Date(counted?.first as Date).getTime()) / 1000;
  const report = {
    date: new Date().toISOString(),
    driver: database.url.startsWith('postgres') ? 'postgres' : 'pglite',
    connections,
    duration,
    without_audit: plain,
    with_audit: audited,
    audit_cost: {
      throughput_ratio: Number((audited.rps / plain.rps).toFixed(3)),
      p99_added_ms: audited.p99 - plain.p99,
    },
    audit_records: counted?.n,
    requests_answered_by_gateway: answered,
    requests_answered_seen_by_autocannon: audited.answered,
    records_equal_requests: counted?.n === answered,
    records_per_second_under_load: Math.round((counted?.n ?? 0) / Math.max(seconds, 1e-3)),
    writer_alone: { records: total, seconds: Number(writerSeconds.toFixed(2)), records_per_second: Math.round(total / writerSeconds) },
    gateway_exit_code: code,
    chain_verifies: verify.ok,
    tampered_row_found: !tampered.ok && tampered.problems[0],
  };
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  if (!report.records_equal_requests || !report.chain_verifies || tampered.ok) process.exitCode = 1;
} finally {
  await database.drop();
}
