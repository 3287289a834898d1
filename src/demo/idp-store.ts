import type { Adapter, AdapterPayload } from 'oidc-provider';

interface Stored {
  payload: AdapterPayload;
  /** Epoch milliseconds; Infinity for what does not expire. */
  expiresAt: number;
}

/** The models whose entries belong to a grant, and go when it is revoked. */
const GRANTABLE = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest', 'PreAuthorizedCode']);

/**
 * The demo identity provider's state (sessions, interactions, codes, tokens, grants), in this
 * process's memory: the embedded demo runs on PGlite, which one process holds, and a restart
 * signs everybody out. Lookups by uid, user code and grant scan the entries: a demo holds few.
 */
export class DemoIdpStore {
  private readonly entries = new Map<string, Stored>();

  constructor(private readonly clockToleranceSeconds = 15) {}

  private live(): Array<[string, Stored]> {
    const now = Date.now();
    for (const [key, entry] of this.entries) if (entry.expiresAt <= now) this.entries.delete(key);
    return [...this.entries];
  }

  private get(key: string): AdapterPayload | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt > Date.now()) return entry.payload;
    this.entries.delete(key);
    return undefined;
  }

  /** oidc-provider's adapter factory: one adapter per model, over the same entries. */
  adapterFor = (model: string): Adapter => {
    const key = (id: string) => `${model}:${id}`;
    const firstWhere = (test: (payload: AdapterPayload) => boolean) =>
      this.live().find(([stored, entry]) => stored.startsWith(`${model}:`) && test(entry.payload))?.[1].payload;
    return {
      upsert: async (id, payload, expiresIn) => {
        const expiresAt = typeof expiresIn === 'number' ? Date.now() + (expiresIn + this.clockToleranceSeconds) * 1000 : Infinity;
        this.entries.set(key(id), { payload, expiresAt });
      },
      find: async (id) => this.get(key(id)),
      findByUid: async (uid) => firstWhere((payload) => payload.uid === uid),
      findByUserCode: async (userCode) => firstWhere((payload) => payload.userCode === userCode),
      consume: async (id) => {
        const payload = this.get(key(id));
        if (payload) payload.consumed = Math.floor(Date.now() / 1000);
      },
      destroy: async (id) => {
        this.entries.delete(key(id));
      },
      revokeByGrantId: async (grantId) => {
        for (const [stored, entry] of this.live()) {
          if (GRANTABLE.has(stored.slice(0, stored.indexOf(':'))) && entry.payload.grantId === grantId) this.entries.delete(stored);
        }
      },
    };
  };
}
