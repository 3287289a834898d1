import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { sql } from 'drizzle-orm';
import { rowsOf, type Db } from '../db/index.js';
import { auditExports } from '../db/schema.js';

/** `2026-11` → `audit_events_2026_11`: names built only from validated year and month digits. */
function partitionName(month: string): string {
  if (!/^\d{4}-\d{2}$/.test(month)) throw new Error(`not a month: ${month}`);
  return `audit_events_${month.replace('-', '_')}`;
}

function monthOf(date: Date): string {
  return date.toISOString().slice(0, 7);
}

function addMonths(date: Date, months: number): Date {
  return new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + months, 1));
}

/**
 * Make this month's and next month's partitions ahead of the writes that need them. A month
 * whose rows already sit in the default partition is left there (logged by the caller).
 */
export async function ensureMonthPartitions(db: Db, now = new Date()): Promise<string[]> {
  const made: string[] = [];
  for (const offset of [0, 1]) {
    const start = addMonths(now, offset);
    const end = addMonths(now, offset + 1);
    const name = partitionName(monthOf(start));
    await db.execute(
      sql.raw(
        `create table if not exists "${name}" partition of "audit_events" ` +
          `for values from ('${start.toISOString()}') to ('${end.toISOString()}')`,
      ),
    );
    made.push(name);
  }
  return made;
}

/** The months that have a partition of their own, oldest first. */
export async function monthPartitions(db: Db): Promise<string[]> {
  const result = await db.execute(sql`
    select c.relname as name from pg_inherits i
    join pg_class c on c.oid = i.inhrelid join pg_class p on p.oid = i.inhparent
    where p.relname = 'audit_events' and c.relname ~ '^audit_events_[0-9]{4}_[0-9]{2}$'
    order by c.relname`);
  return rowsOf<{ name: string }>(result).map((row) => row.name.slice('audit_events_'.length).replace('_', '-'));
}

export interface RetentionOutcome {
  dropped: string[];
  /** Months past retention that stay because no verified export of them exists. */
  kept: string[];
}

/**
 * Drop the partitions of months older than `months`, but only those written to an export file
 * that still exists with the checksum noted when it verified. Nothing unexported is ever lost.
 */
export async function applyRetention(db: Db, months: number, now = new Date()): Promise<RetentionOutcome> {
  const outcome: RetentionOutcome = { dropped: [], kept: [] };
  if (months <= 0) return outcome;
  const oldestKept = monthOf(addMonths(now, -months));
  const exports = new Map((await db.select().from(auditExports)).map((row) => [row.month, row]));
  for (const month of await monthPartitions(db)) {
    if (month >= oldestKept) continue;
    const exported = exports.get(month);
    const intact = exported
      ? await readFile(exported.file)
          .then((bytes) => createHash('sha256').update(bytes).digest('hex') === exported.sha256)
          .catch(() => false)
      : false;
    if (!intact) {
      outcome.kept.push(month);
      continue;
    }
    await db.execute(sql.raw(`drop table "${partitionName(month)}"`));
    outcome.dropped.push(month);
  }
  return outcome;
}
