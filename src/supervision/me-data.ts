import { and, desc, eq, sql } from 'drizzle-orm';
import type { Db } from '../db/index.js';
import { agencies, auditEvents, resources } from '../db/schema.js';

// The citizen's access log as /v1/me/access-log reads it, with the legal basis: until the trail's
// own service (src/audit/trail.ts, accessLog) takes its place.

/** One use of records about a person: who, when, which resource, why, on what basis, which fields. */
export interface AccessLogEntry {
  id: string;
  occurred_at: Date;
  agency: string | null;
  agency_name: string | null;
  agency_name_en: string | null;
  action: string;
  resource: string | null;
  resource_name: string | null;
  resource_title: string | null;
  purpose: string | null;
  legal_basis: string | null;
  fields: string[] | null;
}

/** Where a newest-first page ended: [occurred_at as toISOString writes it, id]. */
export type AccessLogPosition = [string, string];

/**
 * The allowed uses of records about the person `subjectRef` (the keyed hash the trail holds),
 * newest first, a page of at most `limit` after `after`, and where the next page starts (null: none).
 */
export async function accessLogPage(
  db: Db,
  subjectRef: string,
  limit: number,
  after?: AccessLogPosition,
): Promise<{ items: AccessLogEntry[]; next: AccessLogPosition | null }> {
  const rows = await db
    .select({
      id: auditEvents.id,
      occurred_at: auditEvents.occurredAt,
      agency: auditEvents.agency,
      agency_name: agencies.name,
      agency_name_en: agencies.nameEn,
      action: auditEvents.action,
      resource: auditEvents.resource,
      resource_name: resources.name,
      resource_title: resources.title,
      purpose: auditEvents.purpose,
      legal_basis: auditEvents.legalBasis,
      fields: auditEvents.fields,
    })
    .from(auditEvents)
    .leftJoin(agencies, eq(agencies.code, auditEvents.agency))
    .leftJoin(resources, eq(resources.code, auditEvents.resource))
    .where(
      and(
        sql`${auditEvents.subjectRefs} @> array[${subjectRef}]::text[]`,
        eq(auditEvents.outcome, 'allowed'),
        after ? sql`(${auditEvents.occurredAt}, ${auditEvents.id}) < (${after[0]}::timestamptz, ${after[1]})` : undefined,
      ),
    )
    .orderBy(desc(auditEvents.occurredAt), desc(auditEvents.id))
    .limit(limit + 1);
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return { items, next: rows.length > limit && last ? [last.occurred_at.toISOString(), last.id] : null };
}

/** Every allowed use of records about the person, newest first, read a page at a time (constant memory). */
export async function* accessLogAll(db: Db, subjectRef: string, pageSize = 1000): AsyncGenerator<AccessLogEntry> {
  let after: AccessLogPosition | undefined;
  for (;;) {
    const { items, next } = await accessLogPage(db, subjectRef, pageSize, after);
    yield* items;
    if (!next) return;
    after = next;
  }
}
