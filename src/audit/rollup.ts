import { eq, or, sql, type SQL } from 'drizzle-orm';
import { rowsOf, type Db } from '../db/index.js';
import { auditHourly } from '../db/schema.js';
import type { TrailScope } from './scope.js';

/**
 * Upper bounds (ms) of the latency buckets of audit_hourly: bucket i holds a latency ≤ bound i
 * and > bound i-1 (bucket 0 everything ≤ 1 ms, the last everything above 30 s). Fine where
 * gateway answers fall (a few ms to a few hundred), coarse beyond. Changing a bound changes what
 * stored bucket numbers mean: it needs a migration that recounts audit_hourly.
 */
export const LATENCY_BUCKETS_MS: readonly number[] = [
  1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000, 10000, 30000, Infinity,
];

/** The bucket of a latency: the first bound it does not exceed; -1 when no latency was taken. */
export function latencyBucket(latencyMs: number | null): number {
  if (latencyMs === null) return -1;
  const bucket = LATENCY_BUCKETS_MS.findIndex((bound) => latencyMs <= bound);
  return bucket === -1 ? LATENCY_BUCKETS_MS.length - 1 : bucket;
}

/**
 * The same bucket in SQL, for an expression of the latency: a CASE over the finite bounds
 * (width_bucket counts a value equal to a bound into the bucket above it, these buckets hold
 * their upper bound). The bounds are constants of this module, written into the text.
 */
export function latencyBucketSql(latency: string): string {
  const finite = LATENCY_BUCKETS_MS.slice(0, -1);
  const whens = finite.map((bound, bucket) => `when ${latency} <= ${bound} then ${bucket}`).join(' ');
  return `case when ${latency} is null then -1 ${whens} else ${finite.length} end`;
}

const HOURLY_KEY = 'hour, agency, provider, resource, action, outcome, reason, bucket';

/**
 * The insert that counts the records of `source` (a table or CTE with audit_events' columns)
 * into audit_hourly. `add`: counts add to those already there (the writer, whose batches may run
 * at once on several instances); `keep`: rows already there win (the migration's backfill). Rows
 * go in key order, so that two batches that touch the same rows lock them in the same order and
 * cannot deadlock; the GROUP BY makes every row of one statement a different key.
 */
export function hourlyRollup(source: 'audit_events' | 'inserted', onConflict: 'add' | 'keep'): SQL {
  const conflict = onConflict === 'add' ? 'do update set count = audit_hourly.count + excluded.count' : 'do nothing';
  return sql.raw(
    `insert into audit_hourly (${HOURLY_KEY}, count) ` +
      `select date_trunc('hour', occurred_at, 'UTC'), coalesce(agency, ''), coalesce(provider, ''), coalesce(resource, ''), ` +
      `action, outcome, coalesce(reason, ''), ${latencyBucketSql('latency_ms')}, count(*) from ${source} ` +
      `group by 1, 2, 3, 4, 5, 6, 7, 8 order by 1, 2, 3, 4, 5, 6, 7, 8 ` +
      `on conflict (${HOURLY_KEY}) ${conflict}`,
  );
}

/** Counts and latency percentiles of a part of the trail (`key` null: the whole, or no resource / agency). */
export interface TrailStat {
  key: string | null;
  count: number;
  allowed: number;
  denied: number;
  errors: number;
  /** ms, estimated from the histogram (see `percentile`); null when no latency was recorded. */
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

/** The supervision dashboard's view of the trail over a time range. */
export interface TrailOverview {
  from: string;
  to: string;
  granularity: 'hour' | 'day';
  /**
   * Every hour (UTC) or day (Asia/Shanghai, `at` its local midnight) of the range, empty ones
   * too; a day cut by `from` or `to` counts the range's hours of it.
   */
  series: Array<{ at: string; allowed: number; denied: number; errors: number }>;
  total: TrailStat;
  /** Reasons of refusals, most frequent first. */
  refusals: Array<{ reason: string; count: number }>;
  byResource: TrailStat[];
  byAgency: TrailStat[];
}

export interface TrailOverviewOptions {
  from: Date;
  to: Date;
  granularity: 'hour' | 'day';
}

const HOUR_MS = 3_600_000;

/** How the series is cut: its unit, the time zone its days are in, its step. */
const SERIES = {
  hour: { unit: 'hour', zone: 'UTC', step: '1 hour' },
  // Days as the agencies live them: China Standard Time, midnight at 16:00 UTC.
  day: { unit: 'day', zone: 'Asia/Shanghai', step: '1 day' },
} as const;

/** The scope as a condition on audit_hourly: the same rule as trailScopeSql on audit_events. */
function hourlyScopeSql(scope: TrailScope): SQL {
  if (scope.kind === 'all') return sql`true`;
  if (scope.kind === 'none') return sql`false`;
  return or(eq(auditHourly.agency, scope.agency), eq(auditHourly.provider, scope.agency)) as SQL;
}

/**
 * The q-quantile of a histogram (counts per bucket of LATENCY_BUCKETS_MS), as Prometheus'
 * histogram_quantile estimates it: find the bucket where the cumulative count reaches q × n,
 * and interpolate linearly between its lower and upper bound (bucket 0 from 0 ms). In the last
 * bucket, which has no upper bound, its lower bound (30 s) is the answer.
 */
export function percentile(buckets: readonly number[], q: number): number | null {
  const n = buckets.reduce((sum, count) => sum + count, 0);
  if (n === 0) return null;
  // To a millionth: 0.95 × 100 must be 95, not the next bucket's 95.00000000000001.
  const rank = Math.round(q * n * 1e6) / 1e6;
  let below = 0;
  for (let bucket = 0; bucket < buckets.length; bucket++) {
    const count = buckets[bucket] ?? 0;
    if (count > 0 && below + count >= rank) {
      const lower = bucket === 0 ? 0 : (LATENCY_BUCKETS_MS[bucket - 1] as number);
      const upper = LATENCY_BUCKETS_MS[bucket] as number;
      if (upper === Infinity) return lower;
      return lower + ((upper - lower) * (rank - below)) / count;
    }
    below += count;
  }
  /* c8 ignore next -- rank ≤ n, so some bucket reaches it */
  return null;
}

/** Counts of a key (a resource, an agency, the whole) while the rows are read. */
class Tally {
  allowed = 0;
  denied = 0;
  errors = 0;
  readonly buckets: number[] = LATENCY_BUCKETS_MS.map(() => 0);

  /** Records without a latency (bucket -1) count in the totals, in no percentile. */
  add(bucket: number, allowed: number, denied: number, errors: number) {
    this.allowed += allowed;
    this.denied += denied;
    this.errors += errors;
    if (bucket >= 0 && bucket < this.buckets.length) this.buckets[bucket] = (this.buckets[bucket] as number) + allowed + denied + errors;
  }

  stat(key: string | null): TrailStat {
    const count = this.allowed + this.denied + this.errors;
    return {
      key,
      count,
      allowed: this.allowed,
      denied: this.denied,
      errors: this.errors,
      p50: percentile(this.buckets, 0.5),
      p95: percentile(this.buckets, 0.95),
      p99: percentile(this.buckets, 0.99),
    };
  }
}

/** Of audit_hourly: the range's hours and the caller's rows. */
function hourlyWhere(scope: TrailScope, from: Date, to: Date): SQL {
  return sql`${auditHourly.hour} >= ${from.toISOString()}::timestamptz and ${auditHourly.hour} < ${to.toISOString()}::timestamptz
    and ${hourlyScopeSql(scope)}`;
}

const outcomeSums = sql`sum(${auditHourly.count}) filter (where ${auditHourly.outcome} = 'allowed') as allowed,
  sum(${auditHourly.count}) filter (where ${auditHourly.outcome} = 'denied') as denied,
  sum(${auditHourly.count}) filter (where ${auditHourly.outcome} = 'error') as errors`;

type OutcomeRow = { allowed: number | string | null; denied: number | string | null; errors: number | string | null };

/**
 * Every hour or local day from `from` to `to` (whole hours), with the counts of its records:
 * the periods are made by generate_series in the zone's local time, so that a day is the day
 * its zone has (and a period without records is there with zeros). The rows are summed by hour
 * first, and only those (at most 24 a day) cut into the zone's days: a time zone conversion for
 * every row of audit_hourly would cost more than the sums.
 */
async function series(db: Db, scope: TrailScope, from: Date, to: Date, granularity: 'hour' | 'day'): Promise<TrailOverview['series']> {
  if (to <= from) return [];
  const { unit, zone, step } = SERIES[granularity];
  const last = new Date(to.getTime() - HOUR_MS).toISOString();
  const result = await db.execute(sql`
    select extract(epoch from period.local at time zone ${zone})::float8 * 1000 as at, counted.allowed, counted.denied, counted.errors
    from generate_series(date_trunc(${unit}, ${from.toISOString()}::timestamptz, ${zone}) at time zone ${zone},
                         date_trunc(${unit}, ${last}::timestamptz, ${zone}) at time zone ${zone}, ${step}::interval) as period(local)
    left join (
      select date_trunc(${unit}, hourly.hour, ${zone}) as at,
             sum(hourly.allowed)::float8 as allowed, sum(hourly.denied)::float8 as denied, sum(hourly.errors)::float8 as errors
      from (select ${auditHourly.hour} as hour, ${outcomeSums} from ${auditHourly} where ${hourlyWhere(scope, from, to)} group by 1) as hourly
      group by 1
    ) as counted on counted.at = period.local at time zone ${zone}
    order by period.local`);
  return rowsOf<OutcomeRow & { at: number | string }>(result).map((row) => ({
    at: new Date(Number(row.at)).toISOString(),
    allowed: Number(row.allowed ?? 0),
    denied: Number(row.denied ?? 0),
    errors: Number(row.errors ?? 0),
  }));
}

type StatRow = OutcomeRow & { resource: string | null; agency: string | null; reason: string | null; bucket: number | null; grouping: number };

/** grouping(resource, agency, reason) of each grouping set: which set a row is of. */
const BY_RESOURCE = 0b011;
const BY_AGENCY = 0b101;
const BY_REASON = 0b110;

/**
 * The range's totals, per resource and per calling agency (each with its latency histogram),
 * and its refusals per reason, in one pass over audit_hourly: its rows summed by the keys of
 * all four first (as many as the catalog has combinations, whatever the range), then grouping sets over those
 * (four hash tables over every row of the range cost three times as much). The percentiles are
 * read off the histograms here.
 */
async function stats(db: Db, scope: TrailScope, from: Date, to: Date): Promise<Pick<TrailOverview, 'total' | 'refusals' | 'byResource' | 'byAgency'>> {
  const result = await db.execute(sql`
    select resource, agency, reason, bucket, grouping(resource, agency, reason) as grouping,
           sum(allowed)::float8 as allowed, sum(denied)::float8 as denied, sum(errors)::float8 as errors
    from (
      select ${auditHourly.resource} as resource, ${auditHourly.agency} as agency, ${auditHourly.reason} as reason, ${auditHourly.bucket} as bucket, ${outcomeSums}
      from ${auditHourly} where ${hourlyWhere(scope, from, to)}
      group by 1, 2, 3, 4
    ) as counted
    group by grouping sets ((resource, bucket), (agency, bucket), (bucket), (reason))`);
  const total = new Tally();
  const byResource = new Map<string, Tally>();
  const byAgency = new Map<string, Tally>();
  const refusals: TrailOverview['refusals'] = [];
  const tallyOf = (tallies: Map<string, Tally>, key: string) => {
    let tally = tallies.get(key);
    if (!tally) tallies.set(key, (tally = new Tally()));
    return tally;
  };
  for (const row of rowsOf<StatRow>(result)) {
    const [allowed, denied, errors] = [Number(row.allowed ?? 0), Number(row.denied ?? 0), Number(row.errors ?? 0)];
    const grouping = Number(row.grouping);
    if (grouping === BY_REASON) {
      if (denied > 0) refusals.push({ reason: row.reason as string, count: denied });
      continue;
    }
    const tally = grouping === BY_RESOURCE ? tallyOf(byResource, row.resource as string) : grouping === BY_AGENCY ? tallyOf(byAgency, row.agency as string) : total;
    tally.add(Number(row.bucket), allowed, denied, errors);
  }
  const ranked = (tallies: Map<string, Tally>) =>
    [...tallies].map(([key, tally]) => tally.stat(key === '' ? null : key)).sort((a, b) => b.count - a.count || String(a.key).localeCompare(String(b.key)));
  return {
    total: total.stat(null),
    refusals: refusals.sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason)),
    byResource: ranked(byResource),
    byAgency: ranked(byAgency),
  };
}

/**
 * The dashboard's overview of the trail between `from` and `to` (widened to whole hours), as far
 * as `scope` lets its caller see: a series of counts per period, the totals with latency
 * percentiles, refusals per reason, and the same per resource and calling agency. Read from
 * audit_hourly alone, in two queries at once, whatever the number of records.
 */
export async function trailOverview(db: Db, scope: TrailScope, options: TrailOverviewOptions): Promise<TrailOverview> {
  const from = new Date(Math.floor(options.from.getTime() / HOUR_MS) * HOUR_MS);
  const to = new Date(Math.ceil(options.to.getTime() / HOUR_MS) * HOUR_MS);
  const [periods, counted] = await Promise.all([series(db, scope, from, to, options.granularity), stats(db, scope, from, to)]);
  return { from: from.toISOString(), to: to.toISOString(), granularity: options.granularity, series: periods, ...counted };
}
