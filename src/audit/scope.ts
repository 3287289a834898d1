import { eq, or, sql, type SQL } from 'drizzle-orm';
import { auditEvents } from '../db/schema.js';
import type { Caller } from '../plugins/auth.js';

/**
 * What part of the trail a caller may read, as `audit:read` decides it: a supervisor agency
 * everything; any other agency its own calls and the uses of its resources; anyone else nothing.
 */
export type TrailScope = { kind: 'all' } | { kind: 'agency'; agency: string } | { kind: 'none' };

export function trailScopeOf(supervisors: ReadonlySet<string>, caller: Caller | null): TrailScope {
  if (caller?.kind !== 'agency') return { kind: 'none' };
  if (supervisors.has(caller.agency)) return { kind: 'all' };
  return { kind: 'agency', agency: caller.agency };
}

/** The scope as a condition on audit_events (undefined: every row). */
export function trailScopeSql(scope: TrailScope): SQL | undefined {
  if (scope.kind === 'all') return undefined;
  if (scope.kind === 'none') return sql`false`;
  return or(eq(auditEvents.agency, scope.agency), eq(auditEvents.provider, scope.agency));
}
