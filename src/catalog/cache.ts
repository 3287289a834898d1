import { followChannel, type Database } from '../db/index.js';
import { findResource, type StoredResource } from './repository.js';
import { CATALOG_CHANNEL } from './sync.js';

/**
 * The catalog's resources as the exchange reads them on every call, kept in memory: read once from
 * the database, dropped when a sync anywhere NOTIFYs a change, and re-read at most `maxAgeMs` after
 * (a safety net for a missed notification). Saves a database round trip on every exchange call.
 */
export class ResourceCache {
  private readonly entries = new Map<string, { value: StoredResource | undefined; at: number; generation: number }>();
  private generation = 0;
  private stop: (() => Promise<void>) | undefined;

  constructor(
    private readonly database: Database,
    private readonly maxAgeMs = 30_000,
    private readonly maxEntries = 10_000,
  ) {}

  async start(): Promise<void> {
    this.stop = await followChannel(this.database, CATALOG_CHANNEL, () => this.clear(), async () => this.clear(), this.maxAgeMs);
  }

  /** Forget everything: the next read of each resource goes to the database. */
  clear(): void {
    this.generation += 1;
    this.entries.clear();
  }

  async find(code: string): Promise<StoredResource | undefined> {
    const entry = this.entries.get(code);
    if (entry && Date.now() - entry.at < this.maxAgeMs) return entry.value;
    const generation = this.generation;
    const value = await findResource(this.database.db, code);
    // A change announced while this read was under way must not be overwritten by what it read.
    if (generation === this.generation) {
      if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
      this.entries.set(code, { value, at: Date.now(), generation });
    }
    return value;
  }

  async close(): Promise<void> {
    await this.stop?.();
  }
}
