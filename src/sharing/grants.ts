import { randomBytes } from 'node:crypto';
import { and, eq, isNull } from 'drizzle-orm';
import { followChannel, type Database, type Db } from '../db/index.js';
import { grants } from '../db/schema.js';
import type { Caller } from '../plugins/auth.js';

export type Grant = typeof grants.$inferSelect;
export type Mode = 'read' | 'verify';
export type Act = 'read' | 'query' | 'verify';
export type DenialReason = 'grant_missing' | 'grant_expired' | 'field_not_granted' | 'mode_not_granted' | 'sharing_not_allowed';

export const GRANTS_CHANNEL = 'gateway_grants';

export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString('base64url')}`;
}

export function grantStatus(grant: Grant, now: Date): 'active' | 'revoked' | 'expired' {
  if (grant.revokedAt) return 'revoked';
  return grant.validUntil <= now ? 'expired' : 'active';
}

export interface Decision {
  allow: boolean;
  /** The fields the caller may see or compare (the grant's, cut to those asked for). */
  fields: string[];
  grant?: Grant;
  reason?: DenialReason;
}

export interface DecisionRequest {
  caller: Extract<Caller, { kind: 'agency' }>;
  resource: { code: string; sharing: { type: string } };
  act: Act;
  /** Fields asked for; undefined means "all that is granted". */
  fields?: string[];
  now: Date;
}

/** A read grant covers reading, querying and verifying; a verify grant only verification. */
function modeCovers(mode: string, act: Act): boolean {
  return mode === 'read' || (mode === 'verify' && act === 'verify');
}

/**
 * The decision point: who may do what on which fields, from the grants held in memory. Every
 * instance keeps its copy current by LISTEN/NOTIFY (changes reach it within milliseconds) and a
 * full reload every `reloadMs` as a safety net. Expiry is decided against the clock at each call,
 * so an expired grant stops access at the second it ends.
 */
export class GrantCache {
  /** Grants by agency and resource: a decision looks at one agency's grants on one resource. */
  private byHolding = new Map<string, Grant[]>();
  /** The latest refresh of each recently changed grant, numbered. */
  private tickets = new Map<string, number>();
  private ticket = 0;
  private stopFollowing: (() => Promise<void>) | undefined;

  constructor(
    private readonly database: Database,
    private readonly reloadMs = 30_000,
  ) {}

  async start(): Promise<void> {
    this.stopFollowing = await followChannel(
      this.database,
      GRANTS_CHANNEL,
      (grantId) => void this.refresh(grantId).catch(() => {}),
      () => this.reload(),
      this.reloadMs,
    );
  }

  async stop(): Promise<void> {
    await this.stopFollowing?.();
  }

  /**
   * Every grant not revoked (expired ones too: they explain a denial as grant_expired). A grant
   * that changed while the read was under way keeps the state its own refresh gave it: a reload
   * that began before a revocation must not bring the revoked grant back.
   */
  async reload(): Promise<void> {
    const startedAt = this.ticket;
    const rows = await this.database.db.select().from(grants).where(isNull(grants.revokedAt));
    const changedMeanwhile = new Set([...this.tickets].filter(([, ticket]) => ticket > startedAt).map(([id]) => id));
    const byHolding = new Map<string, Grant[]>();
    for (const grant of rows) if (!changedMeanwhile.has(grant.id)) file(byHolding, grant);
    for (const list of this.byHolding.values()) for (const grant of list) if (changedMeanwhile.has(grant.id)) file(byHolding, grant);
    this.byHolding = byHolding;
    // Tickets older than this reload have nothing left to protect.
    for (const [id, ticket] of this.tickets) if (ticket <= startedAt) this.tickets.delete(id);
  }

  /**
   * Take one grant's current state from the database (after a NOTIFY or a local change). Reads
   * may finish out of order: only the newest read of a grant is applied.
   */
  async refresh(grantId: string): Promise<void> {
    const ticket = ++this.ticket;
    this.tickets.set(grantId, ticket);
    const [row] = await this.database.db.select().from(grants).where(eq(grants.id, grantId));
    if (this.tickets.get(grantId) !== ticket) return;
    this.forget(grantId);
    if (row && !row.revokedAt) file(this.byHolding, row);
  }

  private forget(grantId: string) {
    for (const [holder, list] of this.byHolding) {
      const kept = list.filter((grant) => grant.id !== grantId);
      if (kept.length !== list.length) this.byHolding.set(holder, kept);
    }
  }

  /** Tell every instance (this one at once) that a grant changed. */
  async changed(grantId: string): Promise<void> {
    await this.refresh(grantId);
    await this.database.notify(GRANTS_CHANNEL, grantId);
  }

  decide({ caller, resource, act, fields, now }: DecisionRequest): Decision {
    if (resource.sharing.type === 'none') return { allow: false, fields: [], reason: 'sharing_not_allowed' };
    const candidates = (this.byHolding.get(holding(caller.agency, resource.code)) ?? []).filter(
      (grant) => grant.clientId === null || grant.clientId === caller.clientId,
    );
    const current = candidates.filter((grant) => grant.validFrom <= now && grant.validUntil > now);
    if (current.length === 0) {
      const expired = candidates.some((grant) => grant.validUntil <= now);
      return { allow: false, fields: [], reason: expired ? 'grant_expired' : 'grant_missing' };
    }
    const byMode = current.filter((grant) => modeCovers(grant.mode, act));
    if (byMode.length === 0) return { allow: false, fields: [], reason: 'mode_not_granted' };
    // The grant that covers every field asked for; when asked for none, the widest one.
    const wanted = fields ?? [];
    const covering = byMode
      .filter((grant) => wanted.every((field) => grant.fields.includes(field)))
      .sort((a, b) => b.fields.length - a.fields.length)[0];
    if (!covering) return { allow: false, fields: [], reason: 'field_not_granted' };
    return { allow: true, fields: fields ?? covering.fields, grant: covering };
  }
}

/** The key of an agency's grants on a resource (codes hold no spaces). */
function holding(agency: string, resource: string): string {
  return `${agency} ${resource}`;
}

/** Put a grant with the others of its agency on its resource. */
function file(byHolding: Map<string, Grant[]>, grant: Grant): void {
  const key = holding(grant.agency, grant.resource);
  const list = byHolding.get(key);
  if (list) list.push(grant);
  else byHolding.set(key, [grant]);
}

export async function findGrant(db: Db, id: string): Promise<Grant | undefined> {
  const [row] = await db.select().from(grants).where(eq(grants.id, id));
  return row;
}

/** Revoke a grant; revoking it again changes nothing. */
export async function revokeGrant(db: Db, id: string, by: string, now: Date): Promise<Grant | undefined> {
  const [row] = await db
    .update(grants)
    .set({ revokedAt: now, revokedBy: by })
    .where(and(eq(grants.id, id), isNull(grants.revokedAt)))
    .returning();
  return row ?? (await findGrant(db, id));
}
