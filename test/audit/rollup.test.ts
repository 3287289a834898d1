import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { and, asc, eq, gte, lt, sql } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import type { App } from '../../src/app.js';
import { GENESIS_HASH, type AuditRecord } from '../../src/audit/chain.js';
import { hourlyRollup, LATENCY_BUCKETS_MS, latencyBucket, percentile, trailOverview, type TrailStat } from '../../src/audit/rollup.js';
import { AuditUnavailable, AuditWriter, insertBatch, type AuditInput } from '../../src/audit/writer.js';
import { rowsOf, type Db } from '../../src/db/index.js';
import { auditEvents, auditHourly } from '../../src/db/schema.js';
import { migrationsFolder } from '../../src/paths.js';
import { buildTestApp, forEachDriver, freshDatabase } from '../helpers/app.js';

const HOUR = 3_600_000;
const at = (iso: string, minutes = 0) => new Date(Date.parse(iso) + minutes * 60_000).toISOString();

/** The backfill statement of the supervision migration, as the migrator runs it. */
function backfillStatement(): string {
  const file = readFileSync(join(migrationsFolder, '0007_supervision.sql'), 'utf8');
  const statement = file.split('--> statement-breakpoint').find((part) => /insert into audit_hourly/i.test(part));
  if (!statement) throw new Error('0007_supervision.sql has no backfill');
  return statement;
}

/** SQL text without its comments and with one space for any run of white space. */
const normalised = (text: string) =>
  text
    .split('\n')
    .filter((line) => !line.trim().startsWith('--'))
    .join(' ')
    .replace(/\s+/g, ' ')
    .replace(/\s*;\s*$/, '')
    .trim();

type HourlyRow = Omit<typeof auditHourly.$inferSelect, 'hour'> & { hour: string };

/** The rows of audit_hourly in a time range, in key order, with their hour as ISO text. */
async function hourlyRows(db: Db, from: string, to: string): Promise<HourlyRow[]> {
  const rows = await db
    .select()
    .from(auditHourly)
    .where(and(gte(auditHourly.hour, new Date(from)), lt(auditHourly.hour, new Date(to))))
    .orderBy(asc(auditHourly.hour), asc(auditHourly.agency), asc(auditHourly.resource), asc(auditHourly.action), asc(auditHourly.outcome), asc(auditHourly.reason), asc(auditHourly.bucket));
  return rows.map((row) => ({ ...row, hour: row.hour.toISOString(), count: Number(row.count) }));
}

async function recordAll(app: App, inputs: AuditInput[]) {
  await Promise.all(inputs.map((input) => app.audit.record(input)));
}

/** A stat with its percentiles to a millionth of a millisecond (they are interpolated). */
const rounded = (stat: TrailStat | undefined) => {
  const round = (value: number | null) => (value === null ? null : Math.round(value * 1e6) / 1e6);
  return stat && { ...stat, p50: round(stat.p50), p95: round(stat.p95), p99: round(stat.p99) };
};

const edu = { action: 'records.read', agency: 'zj-edu', provider: 'zj-amr', resource: '330000-AMR-00001' } as const;

t.test('the latency buckets', async (t) => {
  t.same(
    [null, -1, 0, 0.5, 1, 1.0001, 2, 7.5, 7.6, 30000, 30000.5, 1e9].map(latencyBucket),
    [-1, 0, 0, 0, 0, 1, 1, 4, 5, 21, 22, 22],
    'a bound belongs to the bucket it ends; above the last finite bound is the last bucket',
  );
  t.equal(LATENCY_BUCKETS_MS.at(-1), Infinity);
  t.same(
    [...LATENCY_BUCKETS_MS].sort((a, b) => a - b),
    LATENCY_BUCKETS_MS,
    'bounds ascend',
  );
  const histogram = LATENCY_BUCKETS_MS.map(() => 0);
  histogram[3] = 50; // (3, 5]
  histogram[9] = 45; // (30, 50]
  histogram[22] = 5; // above 30 s
  t.equal(percentile(histogram, 0.5), 5, 'the 50th of 100 ends bucket (3, 5]');
  t.equal(percentile(histogram, 0.25), 4, 'the 25th is half-way through it');
  t.equal(percentile(histogram, 0.95), 50, 'the 95th ends bucket (30, 50]');
  t.equal(percentile(histogram, 0.99), 30000, 'the last bucket answers its lower bound');
  t.equal(percentile([1], 0.5), 0.5, 'bucket 0 starts at 0 ms');
  t.equal(percentile(LATENCY_BUCKETS_MS.map(() => 0), 0.5), null, 'no latency, no percentile');
});

t.test('the migration backfills with the same statement as the code', async (t) => {
  t.equal(normalised(backfillStatement()), normalised(new PgDialect().sqlToQuery(hourlyRollup('audit_events', 'keep')).sql));
});

forEachDriver(t, 'the hourly rollup', async (t, driver) => {
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, { database });
  const db = app.db;

  t.test('records written land in audit_hourly, counted by key and latency bucket', async (t) => {
    const hour = '2031-01-01T10:00:00.000Z';
    const latencies = [null, 0.5, 1, 1.0001, 7.5, 7.5, 30000, 30000.5, 40];
    await recordAll(app, [
      ...latencies.map((latency_ms, i): AuditInput => ({ ...edu, outcome: 'allowed', latency_ms, occurred_at: at(hour, i) })),
      { ...edu, outcome: 'denied', reason: 'grant_missing', latency_ms: 3, occurred_at: at(hour, 30) },
      { ...edu, outcome: 'denied', reason: 'grant_missing', latency_ms: 2.5, occurred_at: at(hour, 59.99) },
      { action: 'catalog.sync', outcome: 'allowed', occurred_at: at(hour, 60) },
    ]);
    const key = { agency: 'zj-edu', provider: 'zj-amr', resource: '330000-AMR-00001', action: 'records.read' };
    t.same(await hourlyRows(db, hour, at(hour, 120)), [
      { hour, ...key, outcome: 'allowed', reason: '', bucket: -1, count: 1 },
      { hour, ...key, outcome: 'allowed', reason: '', bucket: 0, count: 2 },
      { hour, ...key, outcome: 'allowed', reason: '', bucket: 1, count: 1 },
      { hour, ...key, outcome: 'allowed', reason: '', bucket: 4, count: 2 },
      { hour, ...key, outcome: 'allowed', reason: '', bucket: 9, count: 1 },
      { hour, ...key, outcome: 'allowed', reason: '', bucket: 21, count: 1 },
      { hour, ...key, outcome: 'allowed', reason: '', bucket: 22, count: 1 },
      { hour, ...key, outcome: 'denied', reason: 'grant_missing', bucket: 2, count: 2 },
      { hour: at(hour, 60), agency: '', provider: '', resource: '', action: 'catalog.sync', outcome: 'allowed', reason: '', bucket: -1, count: 1 },
    ]);

    // A later batch adds to the rows there.
    await recordAll(app, [{ ...edu, outcome: 'allowed', latency_ms: 8, occurred_at: at(hour, 5) }, { ...edu, outcome: 'allowed', latency_ms: 0.1, occurred_at: at(hour, 6) }]);
    const rows = await hourlyRows(db, hour, at(hour, 60));
    t.same(rows.filter((row) => row.outcome === 'allowed' && [0, 5].includes(row.bucket)).map((row) => [row.bucket, row.count]), [[0, 3], [5, 1]]);
  });

  t.test('a real request is counted with its latency bucket', async (t) => {
    const response = await app.inject({ url: '/v1/catalog/agencies', headers: { authorization: 'Bearer garbage' } });
    t.equal(response.statusCode, 401);
    const [event] = await db.select().from(auditEvents).where(eq(auditEvents.id, response.headers['x-audit-id'] as string));
    if (!event) throw new Error('no audit record');
    const hour = new Date(Math.floor(event.occurredAt.getTime() / HOUR) * HOUR).toISOString();
    const rows = await hourlyRows(db, hour, at(hour, 60));
    t.match(
      rows.filter((row) => row.action === 'auth.refused'),
      [{ hour, agency: '', outcome: 'denied', reason: 'token_invalid', bucket: latencyBucket(event.latencyMs), count: 1 }],
    );
  });

  t.test('a failed batch or a rolled-back insert counts nothing', async (t) => {
    const hour = '2031-02-01T10:00:00.000Z';
    await t.rejects(app.audit.record({ ...edu, outcome: 'allowed', latency_ms: 1, occurred_at: 'not a time' }), AuditUnavailable);
    const record: AuditRecord = {
      id: randomUUID(), chain_id: `rollback-${randomUUID()}`, seq: 1, prev_hash: GENESIS_HASH, hash: 'h', occurred_at: hour,
      request_id: null, client_id: null, agency: 'zj-edu', on_behalf_of: null, action: 'records.read', resource: null, provider: null,
      purpose: null, legal_basis: null, grant_id: null, subject_refs: null, fields: null, row_count: null, outcome: 'allowed',
      status: 200, reason: null, latency_ms: 4, bytes: null, client_address: null,
    };
    const rolledBack = new Error('rolled back');
    await t.rejects(
      db.transaction(async (tx) => {
        await tx.execute(insertBatch([record]));
        throw rolledBack;
      }),
      rolledBack,
    );
    t.same(await hourlyRows(db, hour, at(hour, 60)), [], 'nothing counted');
    t.same(await db.select().from(auditEvents).where(eq(auditEvents.chainId, record.chain_id)), [], 'nor recorded');
    await db.execute(insertBatch([record]));
    t.match(await hourlyRows(db, hour, at(hour, 60)), [{ agency: 'zj-edu', bucket: 3, count: 1 }], 'the same insert committed counts');
    await recordAll(app, [{ ...edu, outcome: 'allowed', latency_ms: 4, occurred_at: at(hour, 1) }]);
    t.match(await hourlyRows(db, hour, at(hour, 60)), [{ agency: 'zj-edu', bucket: 3, count: 1 }, { agency: 'zj-edu', resource: edu.resource, bucket: 3, count: 1 }], 'the writer goes on after its failure');
  });

  t.test('writers on several instances add up the same rows', async (t) => {
    const hour = '2031-03-01T10:00:00.000Z';
    const writers = await Promise.all(
      [1, 2, 3].map(async (n) => {
        const writer = new AuditWriter(db, app.keys, app.log, { maxBatch: 7, checkpointEvery: 1000, checkpointSeconds: 3600 });
        await writer.start(`rollup-test-${n}`);
        return writer;
      }),
    );
    // Small batches in turn from three chains, keys in opposite orders: they meet on the same rows.
    await Promise.all(
      writers.map((writer, n) =>
        Promise.all(
          Array.from({ length: 100 }, (_, i) => {
            const resource = String((n % 2 === 0 ? i : 99 - i) % 5);
            return writer.record({ ...edu, resource, outcome: 'allowed', latency_ms: 12, occurred_at: at(hour, i % 60) });
          }),
        ),
      ),
    );
    await Promise.all(writers.map((writer) => writer.close()));
    const rows = await hourlyRows(db, hour, at(hour, 60));
    t.same(rows.map((row) => [row.resource, row.bucket, row.count]), ['0', '1', '2', '3', '4'].map((resource) => [resource, 6, 60]));
  });

  t.test('the overview: series, totals, refusals, per resource and agency, scopes', async (t) => {
    const base = '2032-03-10T10:00:00.000Z';
    const amr = { ...edu, agency: 'zj-amr', provider: 'zj-psb', resource: '330000-PSB-00001', action: 'records.verify' } as const;
    const ca = { action: 'records.read', agency: 'zj-ca', provider: 'zj-ca', resource: '330000-CA-00002' } as const;
    await recordAll(app, [
      ...Array.from({ length: 50 }, (_, i): AuditInput => ({ ...edu, outcome: 'allowed', latency_ms: 4, occurred_at: at(base, i) })),
      ...Array.from({ length: 45 }, (_, i): AuditInput => ({ ...amr, outcome: 'allowed', latency_ms: 40, occurred_at: at(base, 180 + i) })),
      ...Array.from({ length: 3 }, (_, i): AuditInput => ({ ...edu, outcome: 'denied', reason: 'grant_missing', latency_ms: 40000, occurred_at: at(base, 190 + i) })),
      { ...ca, outcome: 'denied', reason: 'purpose_missing', latency_ms: 40000, occurred_at: at(base, 200) },
      { ...ca, outcome: 'error', latency_ms: 40000, occurred_at: at(base, 210) },
      { action: 'catalog.sync', outcome: 'allowed', occurred_at: at(base, 220) },
    ]);
    const options = { from: new Date(at(base, -40)), to: new Date(at(base, 250)), granularity: 'hour' as const };
    const all = await trailOverview(db, { kind: 'all' }, options);
    t.equal(all.from, at(base, -60), 'from floored to its hour');
    t.equal(all.to, at(base, 300), 'to ceiled to its hour');
    t.same(all.series, [
      { at: at(base, -60), allowed: 0, denied: 0, errors: 0 },
      { at: base, allowed: 50, denied: 0, errors: 0 },
      { at: at(base, 60), allowed: 0, denied: 0, errors: 0 },
      { at: at(base, 120), allowed: 0, denied: 0, errors: 0 },
      { at: at(base, 180), allowed: 46, denied: 4, errors: 1 },
      { at: at(base, 240), allowed: 0, denied: 0, errors: 0 },
    ], 'every hour, the empty ones with zeros');
    const summed = all.series.reduce((sum, period) => sum + period.allowed + period.denied + period.errors, 0);
    t.equal(summed, all.total.count, 'the series sums to the total');
    t.same(all.total, { key: null, count: 101, allowed: 96, denied: 4, errors: 1, p50: 5, p95: 50, p99: 30000 }, 'percentiles from the 100 latencies');
    t.same(all.refusals, [{ reason: 'grant_missing', count: 3 }, { reason: 'purpose_missing', count: 1 }]);
    t.same(all.byResource.map((stat) => [stat.key, stat.count, stat.denied, stat.errors]), [
      ['330000-AMR-00001', 53, 3, 0],
      ['330000-PSB-00001', 45, 0, 0],
      ['330000-CA-00002', 2, 1, 1],
      [null, 1, 0, 0],
    ]);
    t.same(rounded(all.byAgency.find((stat) => stat.key === 'zj-amr')), { key: 'zj-amr', count: 45, allowed: 45, denied: 0, errors: 0, p50: 40, p95: 49, p99: 49.8 }, 'interpolated in (30, 50]');
    t.match(all.byResource.at(-1), { key: null, p50: null, p95: null }, 'no latency, no percentiles');

    const amrScope = await trailOverview(db, { kind: 'agency', agency: 'zj-amr' }, options);
    // Its 98 latencies: 50 in (3, 5], 45 in (30, 50], 3 above 30 s.
    const p95 = Math.round((30 + (20 * (0.95 * 98 - 50)) / 45) * 1e6) / 1e6;
    t.same(rounded(amrScope.total), { key: null, count: 98, allowed: 95, denied: 3, errors: 0, p50: 3 + (2 * 49) / 50, p95, p99: 30000 }, 'zj-amr: its calls and the uses of its resources');
    t.same(amrScope.byAgency.map((stat) => [stat.key, stat.count]), [['zj-edu', 53], ['zj-amr', 45]]);
    t.same(amrScope.refusals, [{ reason: 'grant_missing', count: 3 }]);
    const caScope = await trailOverview(db, { kind: 'agency', agency: 'zj-ca' }, options);
    t.same([caScope.total.count, caScope.byResource.map((stat) => stat.key)], [2, ['330000-CA-00002']], 'zj-ca as agency and provider: counted once');

    const none = await trailOverview(db, { kind: 'none' }, options);
    t.same(none.total, { key: null, count: 0, allowed: 0, denied: 0, errors: 0, p50: null, p95: null, p99: null });
    t.same([none.refusals, none.byResource, none.byAgency], [[], [], []]);
    t.same(none.series.map((period) => [period.at, period.allowed + period.denied + period.errors]), all.series.map((period) => [period.at, 0]), 'the same periods, all empty');
  });

  t.test('days are days in Shanghai: they begin at 16:00 UTC', async (t) => {
    const evening = '2033-05-10T15:30:00.000Z'; // 23:30 on 10 May in Shanghai
    await recordAll(app, [
      { ...edu, outcome: 'allowed', latency_ms: 3, occurred_at: at(evening, -15 * 60) }, // 08:30 on 10 May
      { ...edu, outcome: 'allowed', latency_ms: 3, occurred_at: evening },
      { ...edu, outcome: 'denied', reason: 'grant_missing', latency_ms: 3, occurred_at: at(evening, 60) }, // 00:30 on 11 May
      { ...edu, outcome: 'error', latency_ms: 3, occurred_at: at(evening, 48 * 60) }, // 23:30 on 12 May
    ]);
    const overview = await trailOverview(db, { kind: 'all' }, { from: new Date('2033-05-09T20:00:00Z'), to: new Date('2033-05-12T17:00:00Z'), granularity: 'day' });
    t.same(overview.series, [
      { at: '2033-05-09T16:00:00.000Z', allowed: 2, denied: 0, errors: 0 },
      { at: '2033-05-10T16:00:00.000Z', allowed: 0, denied: 1, errors: 0 },
      { at: '2033-05-11T16:00:00.000Z', allowed: 0, denied: 0, errors: 1 },
      { at: '2033-05-12T16:00:00.000Z', allowed: 0, denied: 0, errors: 0 },
    ]);
    t.equal(overview.total.count, 4);
    t.equal(overview.granularity, 'day');
    const empty = await trailOverview(db, { kind: 'all' }, { from: new Date('2033-05-11T10:00:00Z'), to: new Date('2033-05-11T10:00:00Z'), granularity: 'day' });
    t.same([empty.series, empty.total.count], [[], 0], 'an empty range has no periods');
  });

  t.test('the backfill counts records written before the rollup, as the writer counts them', async (t) => {
    const hour = '2030-06-01T00:00:00.000Z';
    const counted = await hourlyRows(db, '2000-01-01T00:00:00Z', '2100-01-01T00:00:00Z');
    // Records that reached audit_events without the rollup, as those before the migration did.
    const direct = [null, 1, 2.0001, 30000, 30001].map((latencyMs, seq) => ({
      id: randomUUID(), chainId: 'before-rollup', seq: seq + 1, prevHash: GENESIS_HASH, hash: 'h', occurredAt: new Date(at(hour, seq * 20)),
      agency: 'zj-hrss', action: 'records.query', outcome: 'allowed', latencyMs,
    }));
    await db.insert(auditEvents).values(direct);
    await db.delete(auditHourly);
    await db.execute(sql.raw(backfillStatement()));
    const backfilled = await hourlyRows(db, '2000-01-01T00:00:00Z', '2100-01-01T00:00:00Z');
    t.same(
      backfilled.filter((row) => row.agency === 'zj-hrss'),
      [
        { hour, agency: 'zj-hrss', provider: '', resource: '', action: 'records.query', outcome: 'allowed', reason: '', bucket: -1, count: 1 },
        { hour, agency: 'zj-hrss', provider: '', resource: '', action: 'records.query', outcome: 'allowed', reason: '', bucket: 0, count: 1 },
        { hour, agency: 'zj-hrss', provider: '', resource: '', action: 'records.query', outcome: 'allowed', reason: '', bucket: 2, count: 1 },
        { hour: at(hour, 60), agency: 'zj-hrss', provider: '', resource: '', action: 'records.query', outcome: 'allowed', reason: '', bucket: 21, count: 1 },
        { hour: at(hour, 60), agency: 'zj-hrss', provider: '', resource: '', action: 'records.query', outcome: 'allowed', reason: '', bucket: 22, count: 1 },
      ],
    );
    t.same(backfilled.filter((row) => row.agency !== 'zj-hrss'), counted, 'the writer had counted every other record as the backfill does');
    await db.execute(sql.raw(backfillStatement()));
    const [sum] = rowsOf<{ n: number }>(await db.execute(sql`select sum(count)::int as n from audit_hourly`));
    const [events] = rowsOf<{ n: number }>(await db.execute(sql`select count(*)::int as n from audit_events`));
    t.equal(sum?.n, events?.n, 'run again, it changes nothing: every record counted once');
  });
});
