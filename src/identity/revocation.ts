import { eq, gt, lt, sql } from 'drizzle-orm';
import { followChannel, type Database } from '../db/index.js';
import { clients, revokedTokens, usedClientAssertions } from '../db/schema.js';

/** The channel on which instances tell each other about revocations and key rotations. */
export const IDENTITY_CHANNEL = 'gateway_identity';

export type IdentityEvent =
  | { type: 'token_revoked'; jti: string; exp: number }
  | { type: 'client_disabled'; client_id: string }
  /** A client's secret or hash changed: instances forget the copy they hold. */
  | { type: 'client_changed'; client_id: string }
  | { type: 'keys_rotated' };

export async function announce(database: Database, event: IdentityEvent): Promise<void> {
  await database.notify(IDENTITY_CHANNEL, JSON.stringify(event));
}

/**
 * What every instance must know to refuse a token that still verifies: revoked token ids and
 * disabled clients. Kept in memory, told of changes by NOTIFY within milliseconds, and reloaded
 * in full every `reloadMs` as a safety net for a missed notification.
 */
export class RevocationState {
  private revoked = new Map<string, number>();
  private disabled = new Set<string>();
  private stopFollowing: (() => Promise<void>) | undefined;

  constructor(
    private readonly database: Database,
    private readonly onEvent: (event: IdentityEvent) => void = () => {},
    private readonly reloadMs = 30_000,
  ) {}

  async start(): Promise<void> {
    this.stopFollowing = await followChannel(
      this.database,
      IDENTITY_CHANNEL,
      (payload) => this.apply(JSON.parse(payload)),
      () => this.reload(),
      this.reloadMs,
    );
  }

  async stop(): Promise<void> {
    await this.stopFollowing?.();
  }

  async reload(): Promise<void> {
    const db = this.database.db;
    const now = new Date();
    const revoked = await db
      .select({ jti: revokedTokens.jti, expiresAt: revokedTokens.expiresAt })
      .from(revokedTokens)
      .where(gt(revokedTokens.expiresAt, now));
    const disabled = await db.select({ id: clients.id }).from(clients).where(eq(clients.status, 'disabled'));
    this.revoked = new Map(revoked.map((row) => [row.jti, row.expiresAt.getTime()]));
    this.disabled = new Set(disabled.map((row) => row.id));
    // Housekeeping that any instance may do: rows past their use.
    await db.delete(revokedTokens).where(lt(revokedTokens.expiresAt, now));
    await db.delete(usedClientAssertions).where(lt(usedClientAssertions.expiresAt, sql`now() - interval '1 hour'`));
  }

  private apply(event: IdentityEvent) {
    if (event.type === 'token_revoked') this.revoked.set(event.jti, event.exp * 1000);
    if (event.type === 'client_disabled') this.disabled.add(event.client_id);
    this.onEvent(event);
  }

  isRevoked(jti: string | undefined): boolean {
    return jti !== undefined && this.revoked.has(jti);
  }

  isDisabled(clientId: string): boolean {
    return this.disabled.has(clientId);
  }

  /** Revoke one access token everywhere: stored, then announced. */
  async revokeToken(jti: string, clientId: string, exp: number): Promise<void> {
    await this.database.db
      .insert(revokedTokens)
      .values({ jti, clientId, expiresAt: new Date(exp * 1000) })
      .onConflictDoNothing();
    this.revoked.set(jti, exp * 1000);
    await announce(this.database, { type: 'token_revoked', jti, exp });
  }

  async clientDisabled(clientId: string): Promise<void> {
    this.disabled.add(clientId);
    await announce(this.database, { type: 'client_disabled', client_id: clientId });
  }
}
