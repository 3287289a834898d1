/**
 * The supervision dashboard on a month of audit records (issue 19, item 6: a million records,
 * every dashboard query answered within 300 ms at p95). The records are made in SQL, spread over
 * the 30 days before today's midnight (UTC), most in office hours, from a mix of agencies calling
 * each other's resources: about 5 % refused (for a handful of reasons), 1 % failed, latencies
 * log-normal. They are counted into audit_hourly by the migration's backfill, the same statement
 * the writer's rollup is. Then trailOverview (audit_hourly) is timed for the last day by hour,
 * the last week and month by day, for a supervisor and for one agency, against the statistics
 * query of GET /v1/audit/stats on audit_events (count and percentile_cont) over the same range,
 * its baseline in the same run.
 *
 *   npm run bench:supervision [-- --records 1000000 --runs 50 --raw-runs 10]
 *
 * On the PostgreSQL server in DATABASE_URL a database of its own (bench_supervision_<time>,
 * dropped at the end); without it, a PGlite directory.
 */
import { parseArgs } from 'node:util';
import { sql } from 'drizzle-orm';
import { ensureMonthPartitions } from '../src/audit/partitions.js';
import { hourlyRollup, trailOverview } from '../src/audit/rollup.js';
import { trailScopeSql, type TrailScope } from '../src/audit/scope.js';
import { openDatabase, rowsOf, type Db } from '../src/db/index.js';
import { benchDatabase } from './lib.js';

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '1000000' },
    runs: { type: 'string', default: '50' },
    'raw-runs': { type: 'string', default: '10' },
  },
});
const records = Number(values.records);
const runs = Number(values.runs);
const rawRuns = Number(values['raw-runs']);
const TARGET_P95_MS = 300;
const DAY = 86_400_000;

/**
 * Who calls what: an agency, a resource with its provider, the action, and the median latency
 * (ms) of its answers. Drawn with a skew: the first calls are the most frequent.
 */
const CALLS = [
  ['zj-psb', '330000-AMR-00001', 'zj-amr', 'records.verify', 6],
  ['zj-hrss', '330000-AMR-00001', 'zj-amr', 'records.verify', 6],
  ['zj-edu', '330000-PSB-00001', 'zj-psb', 'records.verify', 9],
  ['zj-amr', '330000-PSB-00001', 'zj-psb', 'records.verify', 9],
  ['zj-ca', '330000-PSB-00002', 'zj-psb', 'records.read', 18],
  ['zj-psb', '330000-CA-00001', 'zj-ca', 'records.read', 14],
  ['zj-hrss', '330000-EDU-00001', 'zj-edu', 'records.query', 35],
  ['zj-edu', '330000-HRSS-00001', 'zj-hrss', 'records.query', 40],
  ['zj-amr', '330000-HRSS-00002', 'zj-hrss', 'records.read', 22],
  ['zj-nr', '330000-AMR-00002', 'zj-amr', 'records.query', 60],
  ['zj-env', '330000-NR-00001', 'zj-nr', 'records.read', 25],
  ['zj-nr', '330000-ENV-00001', 'zj-env', 'records.export', 180],
  ['zj-stats', '330000-AMR-00003', 'zj-amr', 'records.export', 450],
  ['zj-stats', '330000-HRSS-00001', 'zj-hrss', 'records.export', 380],
  ['zj-psb', '330000-EDU-00002', 'zj-edu', 'records.read', 16],
  ['zj-ca', '330000-ENV-00002', 'zj-env', 'records.query', 45],
].map(([agency, resource, provider, action, median], n) => ({ n, agency, resource, provider, action, median }));

/** A million records in one statement: each row's random draws first, then the record they make. */
async function generate(db: Db, start: Date, count: number) {
  await db.execute(sql`
    with draw as materialized (
      select g, floor(random() * 30) as day, random() as office, random() as clock, random() as call,
             random() as outcome, random() as reason, 1 - random() as u1, random() as u2, random() as unmeasured
      from generate_series(1, ${count}::int) as g
    ), made as (
      select draw.*, calls.*,
             case when draw.outcome < 0.05 then 'denied' when draw.outcome < 0.06 then 'error' else 'allowed' end as result
      from draw join jsonb_to_recordset(${JSON.stringify(CALLS)}::jsonb) as calls(n int, agency text, resource text, provider text, action text, median float8)
        on calls.n = floor(power(draw.call, 2) * ${CALLS.length}::int)
    )
    insert into audit_events (id, chain_id, seq, prev_hash, hash, occurred_at, request_id, client_id, agency, action, resource,
                              provider, purpose, outcome, status, reason, latency_ms, bytes, client_address)
    select md5('id' || g), 'bench-chain-' || (g % 4), g, md5('prev' || g), md5('hash' || g),
           -- Office hours in Shanghai (08:00–18:00, 00:00–10:00 UTC) take four records in five.
           ${start.toISOString()}::timestamptz + day * interval '1 day'
             + case when office < 0.8 then clock * 10 else clock * 24 end * interval '1 hour',
           md5('request' || g), 'client-' || agency, agency, action, resource, provider, '业务核验 bench',
           result, case result when 'denied' then 403 when 'error' then 500 else 200 end,
           case when result = 'denied' then case when reason < 0.4 then 'grant_missing' when reason < 0.6 then 'insufficient_scope'
                when reason < 0.8 then 'purpose_missing' when reason < 0.95 then 'token_invalid' else 'rate_limited' end end,
           -- Log-normal (Box–Muller): refusals are answered before any data is read.
           case when unmeasured < 0.002 then null
                else round((exp(ln(case when result = 'denied' then 1.5 else median end) + 0.7 * sqrt(-2 * ln(u1)) * cos(2 * pi() * u2)))::numeric, 3)::float8 end,
           case when result = 'allowed' then 200 + floor(u2 * 4000) end, '10.0.' || (g % 250) || '.' || (g % 7)
    from made`);
}

/** GET /v1/audit/stats' query: counts and percentile_cont per resource and agency, on audit_events. */
async function rawStats(db: Db, scope: TrailScope, from: Date, to: Date) {
  const result = await db.execute(sql`
    select resource, agency, grouping(resource) as g_resource, grouping(agency) as g_agency, count(*)::int as count,
           (count(*) filter (where outcome = 'denied'))::int as denied, (count(*) filter (where outcome = 'error'))::int as errors,
           percentile_cont(0.5) within group (order by latency_ms) as p50,
           percentile_cont(0.95) within group (order by latency_ms) as p95,
           percentile_cont(0.99) within group (order by latency_ms) as p99
    from audit_events
    where occurred_at >= ${from.toISOString()}::timestamptz and occurred_at < ${to.toISOString()}::timestamptz and ${trailScopeSql(scope) ?? sql`true`}
    group by grouping sets ((resource), (agency), ())`);
  return rowsOf<{ g_resource: number; g_agency: number; count: number; p50: number; p95: number }>(result).find((row) => row.g_resource && row.g_agency);
}

/** p50 and p95 (nearest rank) of `times` runs of `run`, in ms, after two warm-up runs. */
async function timed(times: number, run: () => Promise<unknown>): Promise<{ p50: number; p95: number }> {
  for (let i = 0; i < 2; i++) await run();
  const samples: number[] = [];
  for (let i = 0; i < times; i++) {
    const started = process.hrtime.bigint();
    await run();
    samples.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  samples.sort((a, b) => a - b);
  const rank = (q: number) => samples[Math.min(samples.length - 1, Math.ceil(q * samples.length) - 1)] as number;
  return { p50: rank(0.5), p95: rank(0.95) };
}

const ms = (value: number) => value.toFixed(1);

const database = await benchDatabase('supervision');
try {
  const opened = await openDatabase(database.url);
  const db = opened.db;
  await opened.migrate();
  const end = new Date(Math.floor(Date.now() / DAY) * DAY);
  const start = new Date(end.getTime() - 30 * DAY);
  await ensureMonthPartitions(db, start);
  await ensureMonthPartitions(db, end);

  let started = Date.now();
  await generate(db, start, records);
  const generatedSeconds = (Date.now() - started) / 1000;
  started = Date.now();
  await db.execute(hourlyRollup('audit_events', 'keep'));
  const rollupSeconds = (Date.now() - started) / 1000;
  await db.execute(sql`vacuum (analyze) audit_events, audit_hourly`);
  const [sizes] = rowsOf<{ events: number; hourly: number }>(
    await db.execute(sql`select (select count(*) from audit_events)::int as events, (select count(*) from audit_hourly)::int as hourly`),
  );

  const scopes: Array<[string, TrailScope]> = [
    ['all', { kind: 'all' }],
    ['zj-amr', { kind: 'agency', agency: 'zj-amr' }],
  ];
  const windows = [
    { name: '24 h by hour', days: 1, granularity: 'hour' as const },
    { name: '7 d by day', days: 7, granularity: 'day' as const },
    { name: '30 d by day', days: 30, granularity: 'day' as const },
  ];
  const lines = ['| query | p50 ms | p95 ms | raw p50 ms | raw p95 ms | ratio vs raw (p95) | target p95 | met |', '|---|---:|---:|---:|---:|---:|---:|---|'];
  let allMet = true;
  const checks: string[] = [];
  for (const [scopeName, scope] of scopes) {
    for (const window of windows) {
      const from = new Date(end.getTime() - window.days * DAY);
      const overview = () => trailOverview(db, scope, { from, to: end, granularity: window.granularity });
      const rollup = await timed(runs, overview);
      const raw = await timed(rawRuns, () => rawStats(db, scope, from, end));
      const met = rollup.p95 <= TARGET_P95_MS;
      allMet &&= met;
      lines.push(
        `| trailOverview ${window.name}, scope ${scopeName} | ${ms(rollup.p50)} | ${ms(rollup.p95)} | ${ms(raw.p50)} | ${ms(raw.p95)} | ` +
          `${(rollup.p95 / raw.p95).toFixed(3)} | ≤ ${TARGET_P95_MS} ms | ${met ? 'yes' : 'no'} |`,
      );
      const [answer, baseline] = await Promise.all([overview(), rawStats(db, scope, from, end)]);
      checks.push(
        `${window.name}, ${scopeName}: ${answer.total.count} records (raw ${baseline?.count ?? 0}), ` +
          `p50 ${ms(answer.total.p50 ?? NaN)} / ${ms(Number(baseline?.p50))} ms, p95 ${ms(answer.total.p95 ?? NaN)} / ${ms(Number(baseline?.p95))} ms (histogram / exact)`,
      );
      if (answer.total.count !== (baseline?.count ?? 0)) allMet = false;
    }
  }
  process.stdout.write(
    [
      `# Supervision dashboard: ${sizes?.events} audit records over 30 days (${database.url.startsWith('postgres') ? 'PostgreSQL' : 'PGlite'})`,
      '',
      `Generated in ${generatedSeconds.toFixed(1)} s; rolled up in ${rollupSeconds.toFixed(1)} s into ${sizes?.hourly} audit_hourly rows.`,
      `${runs} runs of each overview, ${rawRuns} of each raw query (GET /v1/audit/stats' query on audit_events), after two warm-up runs each.`,
      '',
      ...lines,
      '',
      'Totals and percentiles, overview against the raw query (they must count the same records):',
      '',
      ...checks.map((check) => `- ${check}`),
      '',
    ].join('\n'),
  );
  await opened.close();
  if (!allMet) process.exitCode = 1;
} finally {
  await database.drop();
}
