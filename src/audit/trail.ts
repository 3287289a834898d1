import { Readable } from 'node:stream';
import { stringify } from 'csv-stringify';
import { spreadsheetText } from '../spreadsheet.js';
import { and, desc, eq, gte, lt, sql, type SQL } from 'drizzle-orm';
import { rowsOf, type Db } from '../db/index.js';
import { agencies, auditEvents, auditHourly, resources } from '../db/schema.js';
import type { AuditRecord } from './chain.js';
import { trailScopeSql, type TrailScope } from './scope.js';
import { fromRow } from './writer.js';

/**
 * Reading the trail: the services the API (src/audit/routes.ts) and the people's pages
 * (src/supervision) share, so that both show the same records to the same caller.
 */

/** A keyset position in a newest-first list: (occurred_at as toISOString writes it, id). */
export type TimeKey = [string, string];

/** What a reader of the trail narrows it by (RFC 3339 date-times; `to` is exclusive). */
export interface TrailFilters {
  from?: string;
  to?: string;
  agency?: string;
  resource?: string;
  action?: string;
  outcome?: string;
}

/** The columns of an event, in the order the API's AuditEvent and the CSV export have them. */
export const EVENT_COLUMNS: ReadonlyArray<keyof AuditRecord> = [
  'id',
  'chain_id',
  'seq',
  'prev_hash',
  'hash',
  'occurred_at',
  'request_id',
  'client_id',
  'agency',
  'on_behalf_of',
  'action',
  'resource',
  'provider',
  'purpose',
  'legal_basis',
  'grant_id',
  'subject_refs',
  'fields',
  'row_count',
  'outcome',
  'status',
  'reason',
  'latency_ms',
  'bytes',
  'client_address',
];

/** The instants PostgreSQL reads from ISO text (it has no year 0), and no record lies outside. */
const EARLIEST = Date.parse('0001-01-01T00:00:00Z');
const LATEST = Date.parse('9999-12-31T23:59:59.999Z');

/**
 * The instant an RFC 3339 date-time names, within the years the trail can hold: a leap second
 * (`23:59:60`, which the date-time format allows and JavaScript's Date does not read) is taken as
 * POSIX time takes it, the next second; a time before year 1 or after 9999 as the first or last
 * instant there is, which selects the same records. Text that names no instant gives an invalid Date.
 */
export function instant(text: string): Date {
  const leap = /^(.*T\d{2}:\d{2}:)60(.*)$/i.exec(text);
  const time = leap ? Date.parse(`${leap[1]}59${leap[2]}`) + 1000 : Date.parse(text);
  if (Number.isNaN(time)) return new Date(Number.NaN);
  return new Date(Math.min(Math.max(time, EARLIEST), LATEST));
}

/** The events of `scope` that pass the filters, as one condition (undefined: every event). */
export function trailWhere(scope: TrailScope, filters: TrailFilters): SQL | undefined {
  return and(
    trailScopeSql(scope),
    filters.from ? gte(auditEvents.occurredAt, instant(filters.from)) : undefined,
    filters.to ? lt(auditEvents.occurredAt, instant(filters.to)) : undefined,
    filters.agency ? eq(auditEvents.agency, filters.agency) : undefined,
    filters.resource ? eq(auditEvents.resource, filters.resource) : undefined,
    filters.action ? eq(auditEvents.action, filters.action) : undefined,
    filters.outcome ? eq(auditEvents.outcome, filters.outcome) : undefined,
  );
}

const olderThan = (after: TimeKey | undefined) =>
  after ? sql`(${auditEvents.occurredAt}, ${auditEvents.id}) < (${after[0]}::timestamptz, ${after[1]})` : undefined;

/** One page of events, newest first, and the position after its last (null on the last page). */
export async function eventPage(db: Db, where: SQL | undefined, limit: number, after?: TimeKey): Promise<{ items: AuditRecord[]; next: TimeKey | null }> {
  const rows = await db
    .select()
    .from(auditEvents)
    .where(and(where, olderThan(after)))
    .orderBy(desc(auditEvents.occurredAt), desc(auditEvents.id))
    .limit(limit + 1);
  const items = rows.slice(0, limit).map(fromRow);
  const last = items.at(-1);
  return { items, next: rows.length > limit && last ? [last.occurred_at, last.id] : null };
}

/** CSV text of every item the pages yield, read a page at a time: constant memory, any size. */
function pagedCsv<T>(
  columns: readonly string[],
  pageAfter: (after?: TimeKey) => Promise<{ items: T[]; next: TimeKey | null }>,
  line: (item: T) => object,
  spreadsheet = false,
): Readable {
  let after: TimeKey | undefined;
  let done = false;
  const rows = new Readable({
    objectMode: true,
    read: async function () {
      if (done) return void this.push(null);
      try {
        const batch = await pageAfter(after);
        for (const item of batch.items) this.push(line(item));
        if (batch.next) after = batch.next;
        else done = true;
        if (batch.items.length === 0) this.push(null);
      } catch (error) {
        this.destroy(error as Error);
      }
    },
  });
  return rows.pipe(stringify({ header: true, columns: [...columns], ...(spreadsheet ? { bom: true, cast: { string: spreadsheetText } } : {}) }));
}

const CSV_PAGE = 1000;
const spaced = (values: string[] | null) => values?.join(' ');

/**
 * Every event `where` selects, newest first, as CSV with a header line (lists space-separated);
 * for a spreadsheet (the supervision page's download) with a byte order mark and no text a
 * spreadsheet would run as a formula (spreadsheetText), else every value exact (the API's).
 */
export function eventsCsv(db: Db, where: SQL | undefined, spreadsheet = false): Readable {
  const line = (item: AuditRecord) => ({ ...item, subject_refs: spaced(item.subject_refs), fields: spaced(item.fields) });
  return pagedCsv(EVENT_COLUMNS, (after) => eventPage(db, where, CSV_PAGE, after), line, spreadsheet);
}

/** One event by id, or undefined when there is none the scope lets its reader see. */
export async function findEvent(db: Db, scope: TrailScope, id: string): Promise<AuditRecord | undefined> {
  const [row] = await db.select().from(auditEvents).where(and(trailScopeSql(scope), eq(auditEvents.id, id))).limit(1);
  return row ? fromRow(row) : undefined;
}

/** A value of a filter's select: a code and, when the catalog knows it, its names. */
export interface Choice {
  code: string;
  name: string | null;
  name_en: string | null;
}

export interface FilterChoices {
  agencies: Choice[];
  resources: Choice[];
  actions: string[];
}

/** How many values a select offers at most, how far back the hourly counts are read, how many recent events are looked at besides. */
const CHOICES_MAX = 200;
const CHOICES_DAYS = 90;
const CHOICES_RECENT = 2000;

/** The latest events of a scope, each part read down an index in time order (an agency's: its calls, and the uses of its resources). */
function recentEvents(scope: TrailScope): SQL {
  const latest = (where: SQL | undefined) => sql`(select ${auditEvents.agency} as agency, ${auditEvents.resource} as resource, ${auditEvents.action} as action
    from ${auditEvents} where ${where ?? sql`true`} order by ${auditEvents.occurredAt} desc limit ${CHOICES_RECENT})`;
  if (scope.kind !== 'agency') return latest(trailScopeSql(scope));
  return sql`${latest(eq(auditEvents.agency, scope.agency))} union all ${latest(eq(auditEvents.provider, scope.agency))}`;
}

/**
 * The agencies, resources and actions a reader of `scope` may filter by: those of the hourly
 * counts of the last 90 days and of the latest events (which the counts may not hold yet). Both
 * reads follow an index (the hour, or agency/provider and time): cheap at any size of the trail.
 */
export async function filterChoices(db: Db, scope: TrailScope): Promise<FilterChoices> {
  const since = new Date(Date.now() - CHOICES_DAYS * 86_400_000).toISOString();
  const hourlyScope =
    scope.kind === 'all' ? sql`true` : scope.kind === 'none' ? sql`false` : sql`(${auditHourly.agency} = ${scope.agency} or ${auditHourly.provider} = ${scope.agency})`;
  const result = await db.execute(sql`
    with seen as (
      select ${auditHourly.agency} as agency, ${auditHourly.resource} as resource, ${auditHourly.action} as action
      from ${auditHourly} where ${auditHourly.hour} >= ${since}::timestamptz and ${hourlyScope}
      union
      select coalesce(recent.agency, ''), coalesce(recent.resource, ''), recent.action from (${recentEvents(scope)}) recent
    )
    select 'agency' as kind, v.code, ${agencies.name} as name, ${agencies.nameEn} as name_en
      from (select distinct agency as code from seen where agency <> '' order by 1 limit ${CHOICES_MAX}) v
      left join ${agencies} on ${agencies.code} = v.code
    union all
    select 'resource', v.code, ${resources.name}, null
      from (select distinct resource as code from seen where resource <> '' order by 1 limit ${CHOICES_MAX}) v
      left join ${resources} on ${resources.code} = v.code
    union all
    select 'action', v.code, null, null from (select distinct action as code from seen order by 1 limit ${CHOICES_MAX}) v`);
  const rows = rowsOf<{ kind: string; code: string; name: string | null; name_en: string | null }>(result);
  const byCode = (a: { code: string }, b: { code: string }) => (a.code < b.code ? -1 : a.code > b.code ? 1 : 0);
  const of = (kind: string) => rows.filter((row) => row.kind === kind).map(({ code, name, name_en }) => ({ code, name, name_en })).sort(byCode);
  return { agencies: of('agency'), resources: of('resource'), actions: of('action').map((choice) => choice.code) };
}

/** One use of records about a citizen, as their access log shows it. */
export interface AccessLogEntry {
  occurred_at: string;
  agency: string | null;
  agency_name: string | null;
  /** The agency's and the resource's names in English (the citizen's page in English; the API leaves them out). */
  agency_name_en: string | null;
  action: string;
  resource: string | null;
  resource_name: string | null;
  resource_title: string | null;
  purpose: string | null;
  legal_basis: string | null;
  fields: string[] | null;
}

/** The allowed uses of records about the person `subjectRef` stands for, newest first. */
export async function accessLog(db: Db, subjectRef: string, limit: number, after?: TimeKey): Promise<{ items: AccessLogEntry[]; next: TimeKey | null }> {
  const rows = await db
    .select({
      id: auditEvents.id,
      occurredAt: auditEvents.occurredAt,
      agency: auditEvents.agency,
      agencyName: agencies.name,
      agencyNameEn: agencies.nameEn,
      action: auditEvents.action,
      resource: auditEvents.resource,
      resourceName: resources.name,
      resourceTitle: resources.title,
      purpose: auditEvents.purpose,
      legalBasis: auditEvents.legalBasis,
      fields: auditEvents.fields,
    })
    .from(auditEvents)
    .leftJoin(agencies, eq(agencies.code, auditEvents.agency))
    .leftJoin(resources, eq(resources.code, auditEvents.resource))
    .where(and(sql`${auditEvents.subjectRefs} @> array[${subjectRef}]::text[]`, eq(auditEvents.outcome, 'allowed'), olderThan(after)))
    .orderBy(desc(auditEvents.occurredAt), desc(auditEvents.id))
    .limit(limit + 1);
  const shown = rows.slice(0, limit);
  const items = shown.map((row) => ({
    occurred_at: row.occurredAt.toISOString(),
    agency: row.agency,
    agency_name: row.agencyName,
    agency_name_en: row.agencyNameEn,
    action: row.action,
    resource: row.resource,
    resource_name: row.resourceName,
    resource_title: row.resourceTitle,
    purpose: row.purpose,
    legal_basis: row.legalBasis,
    fields: row.fields,
  }));
  const last = shown.at(-1);
  return { items, next: rows.length > limit && last ? [last.occurredAt.toISOString(), last.id] : null };
}

/** A citizen's whole access log, newest first, read a page at a time (constant memory, any length). */
export async function* accessLogAll(db: Db, subjectRef: string): AsyncGenerator<AccessLogEntry> {
  let after: TimeKey | undefined;
  for (;;) {
    const { items, next } = await accessLog(db, subjectRef, CSV_PAGE, after);
    yield* items;
    if (!next) return;
    after = next;
  }
}
