import { eq, lt } from 'drizzle-orm';
import type { Db } from '../db/index.js';
import { endedSessions } from '../db/schema.js';

/**
 * Sessions ended by sign-out, shared by every instance through the database: a sealed cookie
 * cannot be taken back from wherever a copy of it went, so its session id is refused instead,
 * until the session's absolute timeout would refuse the cookie anyway.
 */
export class EndedSessions {
  constructor(
    private readonly db: Db,
    private readonly clock: () => Date,
  ) {}

  async has(sid: string): Promise<boolean> {
    const [row] = await this.db.select({ sid: endedSessions.sid }).from(endedSessions).where(eq(endedSessions.sid, sid));
    return row !== undefined;
  }

  /** End `sid` until `expiresAt`; the ids past their own expiry are cleared on the way. */
  async end(sid: string, expiresAt: Date): Promise<void> {
    const now = this.clock();
    await this.db.delete(endedSessions).where(lt(endedSessions.expiresAt, now));
    await this.db.insert(endedSessions).values({ sid, endedAt: now, expiresAt }).onConflictDoNothing();
  }
}
