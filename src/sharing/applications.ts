import { and, eq } from 'drizzle-orm';
import type { Db } from '../db/index.js';
import { applications, grants } from '../db/schema.js';
import { defineProblem } from '../errors.js';
import type { Resource } from '../catalog/index.js';
import { newId, type Grant, type Mode } from './grants.js';
import { addWorkingDays, type WorkingCalendar } from './workdays.js';

export type Application = typeof applications.$inferSelect;

export const SharingNotAllowed = defineProblem<[string]>('sharing_not_allowed', '%s', 403);
export const AlreadyDecided = defineProblem<[string, string]>('already_decided', 'Application %s was already %s; a decision is final.', 409);
export const NotProvider = defineProblem<[string]>('not_provider', 'Only the provider agency of %s (or an administrator) may do this.', 403);
export const ModeNotOffered = defineProblem<[string, string]>('mode_not_offered', 'Resource %s is not shared for %s.', 400);

/** A 400 that names the failing field, like schema validation does. */
export class FieldProblem extends Error {
  readonly statusCode = 400;
  readonly code = 'invalid_request';
  readonly extensions: Record<string, unknown>;
  constructor(pointer: string, message: string) {
    super(`body${pointer} ${message}`);
    this.extensions = { errors: [{ in: 'body', pointer, message }] };
  }
}

export interface ApplicationInput {
  resource: string;
  fields: string[];
  mode: Mode;
  purpose: string;
  legal_basis: string;
  duration_days: number;
}

export interface SharingSettings {
  maxDurationDays: number;
  decisionWorkingDays: number;
  calendar: WorkingCalendar;
}

function checkFields(resource: Resource, fields: string[]) {
  const known = new Set(resource.items.map((item) => item.name));
  fields.forEach((field, index) => {
    if (!known.has(field)) throw new FieldProblem(`/fields/${index}`, `is not a data item of ${resource.code}: ${field}`);
  });
}

function grantFor(application: Application, fields: string[], durationDays: number, now: Date) {
  return {
    id: newId('gr'),
    agency: application.agency,
    clientId: null,
    resource: application.resource,
    provider: application.provider,
    fields,
    mode: application.mode,
    purpose: application.purpose,
    legalBasis: application.legalBasis,
    applicationId: application.id,
    validFrom: now,
    validUntil: new Date(now.getTime() + durationDays * 86_400_000),
  };
}

/**
 * An agency applies to use a resource. By the resource's sharing attribute: `unconditional` is
 * granted at once (still recorded, still bounded in time), `conditional` waits for the provider
 * until a due date `decisionWorkingDays` working days out, `none` is refused with the catalog's reason.
 */
export async function apply(
  db: Db,
  resource: Resource,
  consumer: { agency: string; clientId: string },
  input: ApplicationInput,
  settings: SharingSettings,
  now: Date,
): Promise<{ application: Application; grant?: Grant }> {
  if (resource.sharing.type === 'none') {
    const reason = [resource.sharing.conditions, resource.sharing.legal_basis].filter(Boolean).join(' ');
    throw new SharingNotAllowed(`${resource.code} is not shared (不予共享): ${reason}`);
  }
  checkFields(resource, input.fields);
  if (input.purpose.trim().length === 0) throw new FieldProblem('/purpose', 'must not be blank');
  if (input.legal_basis.trim().length === 0) throw new FieldProblem('/legal_basis', 'must not be blank');
  if (input.duration_days > settings.maxDurationDays) {
    throw new FieldProblem('/duration_days', `must be <= ${settings.maxDurationDays}`);
  }
  const offered = resource.sharing.methods as string[];
  if (input.mode === 'verify' ? !offered.includes('verify') : !offered.some((m) => m === 'read' || m === 'query')) {
    throw new ModeNotOffered(resource.code, input.mode);
  }
  const unconditional = resource.sharing.type === 'unconditional';
  return db.transaction(async (tx) => {
    const [application] = await tx
      .insert(applications)
      .values({
        id: newId('ap'),
        agency: consumer.agency,
        clientId: consumer.clientId,
        resource: resource.code,
        provider: resource.provider,
        fields: [...new Set(input.fields)],
        mode: input.mode,
        purpose: input.purpose.trim(),
        legalBasis: input.legal_basis.trim(),
        durationDays: input.duration_days,
        status: unconditional ? 'approved' : 'pending',
        dueAt: unconditional ? null : addWorkingDays(now, settings.decisionWorkingDays, settings.calendar),
        createdAt: now,
        ...(unconditional ? { decidedAt: now, decidedBy: 'catalog:unconditional' } : {}),
      })
      .returning();
    if (!unconditional) return { application: application as Application };
    const [grant] = await tx
      .insert(grants)
      .values(grantFor(application as Application, (application as Application).fields, input.duration_days, now))
      .returning();
    const [linked] = await tx
      .update(applications)
      .set({ grantId: grant?.id })
      .where(eq(applications.id, (application as Application).id))
      .returning();
    return { application: linked as Application, grant: grant as Grant };
  });
}

export type DecisionInput =
  | { decision: 'approve'; fields?: string[]; duration_days?: number }
  | { decision: 'reject'; reason: string };

/**
 * The provider decides: approve (possibly narrowing fields and duration, never widening) or
 * reject with a reason. A decision is final: a second one is 409, also when two race.
 */
export async function decide(
  db: Db,
  application: Application,
  input: DecisionInput,
  decidedBy: string,
  now: Date,
): Promise<{ application: Application; grant?: Grant }> {
  if (input.decision === 'approve') {
    const fields = input.fields ?? application.fields;
    fields.forEach((field, index) => {
      if (!application.fields.includes(field)) throw new FieldProblem(`/fields/${index}`, `was not applied for: ${field}`);
    });
    if (input.duration_days !== undefined && input.duration_days > application.durationDays) {
      throw new FieldProblem('/duration_days', `must be <= ${application.durationDays} (what was applied for)`);
    }
  } else if (input.reason.trim().length === 0) {
    throw new FieldProblem('/reason', 'must not be blank');
  }
  return db.transaction(async (tx) => {
    // Only a pending application changes: a racing second decision waits on the row lock, then misses.
    const [decided] = await tx
      .update(applications)
      .set({
        status: input.decision === 'approve' ? 'approved' : 'rejected',
        decidedAt: now,
        decidedBy,
        reason: input.decision === 'reject' ? input.reason.trim() : null,
      })
      .where(and(eq(applications.id, application.id), eq(applications.status, 'pending')))
      .returning();
    if (!decided) {
      const [current] = await tx.select({ status: applications.status }).from(applications).where(eq(applications.id, application.id));
      throw new AlreadyDecided(application.id, current?.status ?? application.status);
    }
    if (input.decision === 'reject') return { application: decided };
    const fields = input.fields ? [...new Set(input.fields)] : application.fields;
    const [grant] = await tx
      .insert(grants)
      .values(grantFor(application, fields, input.duration_days ?? application.durationDays, now))
      .returning();
    const [linked] = await tx.update(applications).set({ grantId: grant?.id }).where(eq(applications.id, application.id)).returning();
    return { application: linked as Application, grant: grant as Grant };
  });
}

export async function findApplication(db: Db, id: string): Promise<Application | undefined> {
  const [row] = await db.select().from(applications).where(eq(applications.id, id));
  return row;
}
