import { and, desc, eq, gt, isNotNull, isNull, lt, lte, ne, or, sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/index.js';
import { applications, grants } from '../db/schema.js';
import type { Caller } from '../plugins/auth.js';
import type { Application } from './applications.js';
import type { Grant } from './grants.js';

export type AgencyCaller = Extract<Caller, { kind: 'agency' }>;

/** Administrators, and the supervisor agencies (SUPERVISOR_AGENCIES) reading the trail, see every agency's. */
export function seesAll(supervisors: ReadonlySet<string>, caller: AgencyCaller): boolean {
  return caller.scopes.has('admin') || (supervisors.has(caller.agency) && caller.scopes.has('audit:read'));
}

/** Whether the caller may see this application or grant: its consumer, its provider, or one who sees all. */
export function maySee(supervisors: ReadonlySet<string>, caller: AgencyCaller, row: { agency: string; provider: string }): boolean {
  return seesAll(supervisors, caller) || row.agency === caller.agency || row.provider === caller.agency;
}

/** Only the resource's provider agency (with grants:manage) or an administrator decides and revokes. */
export function mayDecide(caller: AgencyCaller, provider: string): boolean {
  return caller.scopes.has('admin') || (caller.agency === provider && caller.scopes.has('grants:manage'));
}

/**
 * The rows of `table` a caller may see: its own as consumer, its resources' as provider, all for
 * those who see all (undefined: no condition). `role` narrows to one side, for everybody.
 */
export function sharingScope(
  supervisors: ReadonlySet<string>,
  caller: AgencyCaller,
  table: typeof applications | typeof grants,
  role?: 'consumer' | 'provider',
): SQL | undefined {
  if (role === 'consumer') return eq(table.agency, caller.agency);
  if (role === 'provider') return eq(table.provider, caller.agency);
  if (seesAll(supervisors, caller)) return undefined;
  return or(eq(table.agency, caller.agency), eq(table.provider, caller.agency));
}

/** The caller's scope on both tables, for counts that look at both. */
export interface SharingScopes {
  applications: SQL | undefined;
  grants: SQL | undefined;
}

export function sharingScopes(supervisors: ReadonlySet<string>, caller: AgencyCaller, role?: 'consumer' | 'provider'): SharingScopes {
  return { applications: sharingScope(supervisors, caller, applications, role), grants: sharingScope(supervisors, caller, grants, role) };
}

/** Pending past its due date: the provider has not decided in the working days it had. */
export function isOverdue(application: Application, now: Date): boolean {
  return application.status === 'pending' && application.dueAt !== null && application.dueAt < now;
}

/** Where a newest-first page ended: [created_at (grants: valid_from) as toISOString writes it, id]. */
export type NewestPosition = [string, string];
/** Where a page in due order ended: among the pending [due_at or null, id], or among the rest [created_at, id]. */
export type DuePosition = ['pending', string | null, string] | ['decided', string, string];

const isIsoTime = (value: unknown): value is string => {
  if (typeof value !== 'string') return false;
  const time = new Date(value);
  return !Number.isNaN(time.getTime()) && time.toISOString() === value;
};

/** A due-order position as listApplications gives it (for cursors that carry one). */
export function isDuePosition(value: unknown): value is DuePosition {
  if (!Array.isArray(value) || value.length !== 3 || typeof value[2] !== 'string') return false;
  if (value[0] === 'pending') return value[1] === null || isIsoTime(value[1]);
  return value[0] === 'decided' && isIsoTime(value[1]);
}

export type ApplicationStatus = 'pending' | 'approved' | 'rejected';

interface ApplicationFilters {
  status?: ApplicationStatus;
  /** Only pending applications past their due date. */
  overdue?: boolean;
  resource?: string;
  limit: number;
}

/** Newest first (the API's order), or `due`: pending first by due date (the overdue ones first), then the rest newest first. */
export type ApplicationListOptions = ApplicationFilters & ({ order?: 'newest'; after?: NewestPosition } | { order: 'due'; after?: DuePosition });

/** An application as a list shows it, flagged when it is overdue. */
export type ListedApplication = Application & { overdue: boolean };

const pending = eq(applications.status, 'pending');
const dueOrInfinity = sql`coalesce(${applications.dueAt}, 'infinity'::timestamptz)`;

function dueAfter(after: DuePosition): SQL | undefined {
  if (after[0] === 'decided') return and(ne(applications.status, 'pending'), sql`(${applications.createdAt}, ${applications.id}) < (${after[1]}::timestamptz, ${after[2]})`);
  return or(and(pending, sql`(${dueOrInfinity}, ${applications.id}) > (coalesce(${after[1]}::timestamptz, 'infinity'::timestamptz), ${after[2]})`), ne(applications.status, 'pending'));
}

/**
 * The applications in `scope` (sharingScope), a page of at most `limit`, and the position to
 * continue after (null on the last page).
 */
export async function listApplications(
  db: Db,
  scope: SQL | undefined,
  options: ApplicationListOptions,
  now: Date,
): Promise<{ items: ListedApplication[]; next: NewestPosition | DuePosition | null }> {
  const { status, overdue, resource, limit } = options;
  const filters = and(
    scope,
    status ? eq(applications.status, status) : undefined,
    overdue ? and(pending, lt(applications.dueAt, now)) : undefined,
    resource ? eq(applications.resource, resource) : undefined,
  );
  const query = db.select().from(applications);
  const rows =
    options.order === 'due'
      ? await query
          .where(and(filters, options.after ? dueAfter(options.after) : undefined))
          .orderBy(
            sql`(${applications.status} <> 'pending')`,
            sql`case when ${pending} then ${dueOrInfinity} end`,
            sql`case when ${pending} then ${applications.id} end`,
            desc(applications.createdAt),
            desc(applications.id),
          )
          .limit(limit + 1)
      : await query
          .where(and(filters, options.after ? sql`(${applications.createdAt}, ${applications.id}) < (${options.after[0]}::timestamptz, ${options.after[1]})` : undefined))
          .orderBy(desc(applications.createdAt), desc(applications.id))
          .limit(limit + 1);
  const items = rows.slice(0, limit).map((application) => ({ ...application, overdue: isOverdue(application, now) }));
  const last = items.at(-1);
  if (rows.length <= limit || !last) return { items, next: null };
  if (options.order !== 'due') return { items, next: [last.createdAt.toISOString(), last.id] };
  return { items, next: last.status === 'pending' ? ['pending', last.dueAt?.toISOString() ?? null, last.id] : ['decided', last.createdAt.toISOString(), last.id] };
}

export type GrantListStatus = 'active' | 'expiring' | 'revoked' | 'expired';

export interface GrantListOptions {
  /** `expiring`: active, and ending within `withinDays` days. */
  status?: GrantListStatus;
  withinDays?: number;
  resource?: string;
  limit: number;
  after?: NewestPosition;
}

/** How far ahead a grant counts as expiring, unless asked otherwise. */
export const EXPIRING_WITHIN_DAYS = 30;

function grantsWith(status: GrantListStatus, now: Date, withinDays = EXPIRING_WITHIN_DAYS): SQL | undefined {
  switch (status) {
    case 'active':
      return and(isNull(grants.revokedAt), gt(grants.validUntil, now));
    case 'expiring':
      return and(isNull(grants.revokedAt), gt(grants.validUntil, now), lte(grants.validUntil, new Date(now.getTime() + withinDays * 86_400_000)));
    case 'revoked':
      return isNotNull(grants.revokedAt);
    case 'expired':
      return and(isNull(grants.revokedAt), lte(grants.validUntil, now));
  }
}

/** The grants in `scope`, newest (valid_from) first, a page of at most `limit`, and where to continue. */
export async function listGrants(db: Db, scope: SQL | undefined, options: GrantListOptions, now: Date): Promise<{ items: Grant[]; next: NewestPosition | null }> {
  const { status, withinDays, resource, limit, after } = options;
  const rows = await db
    .select()
    .from(grants)
    .where(
      and(
        scope,
        status ? grantsWith(status, now, withinDays) : undefined,
        resource ? eq(grants.resource, resource) : undefined,
        after ? sql`(${grants.validFrom}, ${grants.id}) < (${after[0]}::timestamptz, ${after[1]})` : undefined,
      ),
    )
    .orderBy(desc(grants.validFrom), desc(grants.id))
    .limit(limit + 1);
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return { items, next: rows.length > limit && last ? [last.validFrom.toISOString(), last.id] : null };
}

export interface SharingCounts {
  /** `overdue` is part of `pending`. */
  applications: { pending: number; overdue: number; approved: number; rejected: number };
  /** `expiring` (within EXPIRING_WITHIN_DAYS, or `withinDays`) is part of `active`. */
  grants: { active: number; expiring: number; revoked: number; expired: number };
}

const countWhere = (condition: SQL | undefined) => sql<number>`(count(*) filter (where ${condition}))::int`;

/** How many applications and grants in the caller's scopes are in each state, now. */
export async function countsByStatus(db: Db, scopes: SharingScopes, now: Date, withinDays = EXPIRING_WITHIN_DAYS): Promise<SharingCounts> {
  const [applied] = await db
    .select({
      pending: countWhere(pending),
      overdue: countWhere(and(pending, lt(applications.dueAt, now))),
      approved: countWhere(eq(applications.status, 'approved')),
      rejected: countWhere(eq(applications.status, 'rejected')),
    })
    .from(applications)
    .where(scopes.applications);
  const [granted] = await db
    .select({
      active: countWhere(grantsWith('active', now)),
      expiring: countWhere(grantsWith('expiring', now, withinDays)),
      revoked: countWhere(grantsWith('revoked', now)),
      expired: countWhere(grantsWith('expired', now)),
    })
    .from(grants)
    .where(scopes.grants);
  // An aggregate without GROUP BY gives one row, also over no rows.
  return { applications: applied as SharingCounts['applications'], grants: granted as SharingCounts['grants'] };
}
