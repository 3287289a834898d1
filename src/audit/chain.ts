import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import { compactVerify, importJWK, type JWK } from 'jose';

/** An audit record as it is hashed, stored, exported and verified (snake_case, wire names). */
export interface AuditRecord {
  id: string;
  chain_id: string;
  seq: number;
  prev_hash: string;
  hash: string;
  occurred_at: string;
  request_id: string | null;
  client_id: string | null;
  agency: string | null;
  on_behalf_of: string | null;
  action: string;
  resource: string | null;
  provider: string | null;
  purpose: string | null;
  legal_basis: string | null;
  grant_id: string | null;
  subject_refs: string[] | null;
  fields: string[] | null;
  row_count: number | null;
  outcome: 'allowed' | 'denied' | 'error';
  status: number | null;
  reason: string | null;
  latency_ms: number | null;
  bytes: number | null;
  client_address: string | null;
}

export interface Checkpoint {
  chain_id: string;
  seq: number;
  head_hash: string;
  signed_at: string;
  kid: string;
  /** Compact JWS over the canonical {chain_id, seq, head_hash, signed_at}. */
  signature: string;
}

/** The `prev_hash` of a chain's first record. */
export const GENESIS_HASH = '0'.repeat(64);

/** The stored columns of a record, in its wire names, with their SQL types. */
export const AUDIT_COLUMNS: ReadonlyArray<readonly [keyof AuditRecord, string]> = [
  ['id', 'text'],
  ['chain_id', 'text'],
  ['seq', 'bigint'],
  ['prev_hash', 'text'],
  ['hash', 'text'],
  ['occurred_at', 'timestamptz'],
  ['request_id', 'text'],
  ['client_id', 'text'],
  ['agency', 'text'],
  ['on_behalf_of', 'text'],
  ['action', 'text'],
  ['resource', 'text'],
  ['provider', 'text'],
  ['purpose', 'text'],
  ['legal_basis', 'text'],
  ['grant_id', 'text'],
  ['subject_refs', 'text[]'],
  ['fields', 'text[]'],
  ['row_count', 'integer'],
  ['outcome', 'text'],
  ['status', 'integer'],
  ['reason', 'text'],
  ['latency_ms', 'double precision'],
  ['bytes', 'bigint'],
  ['client_address', 'text'],
];

/** The keys a record's hash covers (all but `hash`), in RFC 8785 order (by UTF-16 code units, as sort() compares). */
const HASHED_KEYS = AUDIT_COLUMNS.map(([name]) => name)
  .filter((name) => name !== 'hash')
  .sort();
const SURROGATE = /[\uD800-\uDFFF]/;

/** One value of a record as RFC 8785 writes it, or undefined when it needs the general algorithm. */
function canonicalValue(value: unknown): string | undefined {
  if (value === null) return 'null';
  if (typeof value === 'string') return SURROGATE.test(value) ? undefined : JSON.stringify(value);
  if (typeof value === 'number') return Number.isFinite(value) ? JSON.stringify(value) : undefined;
  if (Array.isArray(value)) {
    const items: string[] = [];
    for (const element of value) {
      if (typeof element !== 'string' || SURROGATE.test(element)) return undefined;
      items.push(JSON.stringify(element));
    }
    return `[${items.join(',')}]`;
  }
  return undefined;
}

/**
 * The RFC 8785 canonical form of a record. Records have a fixed shape of flat values (strings,
 * finite numbers, null, arrays of strings), for which the canonical form is the keys in their
 * fixed order and each value as ECMAScript's JSON.stringify writes it (RFC 8785 §3.2.2 defines it
 * so); anything else (another shape, a surrogate) goes through the general algorithm. The same
 * bytes either way (test/audit/chain.test.ts), at a fraction of the cost on every request.
 */
export function canonicalRecord(content: Omit<AuditRecord, 'hash'> | AuditRecord): string {
  const values = content as unknown as Record<string, unknown>;
  // The record's own hash is never part of what it hashes.
  const keys = Object.keys(values).length - ('hash' in values ? 1 : 0);
  if (keys === HASHED_KEYS.length) {
    let out = '{';
    for (const key of HASHED_KEYS) {
      const value = canonicalValue(values[key]);
      if (value === undefined) return general(content);
      out += `${out.length > 1 ? ',' : ''}"${key}":${value}`;
    }
    return `${out}}`;
  }
  return general(content);
}

function general(record: Omit<AuditRecord, 'hash'> | AuditRecord): string {
  const { hash: _ignored, ...content } = record as AuditRecord;
  return canonicalize(content) as string;
}

/** SHA-256 over the RFC 8785 canonical form of the record, its own hash left out. */
export function recordHash(record: Omit<AuditRecord, 'hash'> | AuditRecord): string {
  return createHash('sha256').update(canonicalRecord(record)).digest('hex');
}

/** What a checkpoint's signature covers, canonical. */
export function checkpointPayload(checkpoint: Pick<Checkpoint, 'chain_id' | 'seq' | 'head_hash' | 'signed_at'>): string {
  const { chain_id, seq, head_hash, signed_at } = checkpoint;
  return canonicalize({ chain_id, seq, head_hash, signed_at }) as string;
}

export type ChainProblemKind = 'altered' | 'removed' | 'inserted' | 'reordered' | 'checkpoint_forged' | 'checkpoint_mismatch';

export interface ChainProblem {
  chain_id: string;
  kind: ChainProblemKind;
  /** The sequence number the problem is at (for `removed`, the first missing one). */
  seq: number;
  /** The record named, when it exists. */
  record_id?: string;
  detail: string;
}

/** Where a chain's verification starts when its beginning was exported and dropped. */
export interface ChainStart {
  seq: number;
  hash: string;
}

interface ChainState {
  expectedSeq: number;
  prev: string;
  last?: AuditRecord;
  count: number;
  problem?: ChainProblem;
  /** The hashes at the sequence numbers that checkpoints sign. */
  hashAt: Map<number, string>;
}

/** How far a record may have moved and still be recognised as moved (and not just altered). */
const MOVE_WINDOW = 64;

/**
 * Walks audit records in (chain, seq) order, one at a time, so that a table or a file of any size
 * is checked in constant memory per chain, and names the first record of each chain that was altered,
 * removed, inserted or moved; then checks the signed checkpoints against what it saw.
 */
export class ChainVerifier {
  private readonly chains = new Map<string, ChainState>();
  private readonly signedSeqs = new Map<string, Set<number>>();

  constructor(
    private readonly checkpointList: Checkpoint[],
    private readonly starts: Record<string, ChainStart> = {},
  ) {
    for (const checkpoint of checkpointList) {
      const seqs = this.signedSeqs.get(checkpoint.chain_id) ?? new Set<number>();
      seqs.add(checkpoint.seq);
      this.signedSeqs.set(checkpoint.chain_id, seqs);
    }
  }

  private state(chainId: string): ChainState {
    let state = this.chains.get(chainId);
    if (!state) {
      const start = this.starts[chainId] ?? { seq: 0, hash: GENESIS_HASH };
      state = { expectedSeq: start.seq + 1, prev: start.hash, count: 0, hashAt: new Map() };
      this.chains.set(chainId, state);
    }
    return state;
  }

  push(record: AuditRecord): void {
    const state = this.state(record.chain_id);
    state.count += 1;
    if (state.problem) return;
    const fail = (kind: ChainProblemKind, seq: number, detail: string, recordId?: string) => {
      state.problem = { chain_id: record.chain_id, kind, seq, detail, ...(recordId ? { record_id: recordId } : {}) };
    };

    if (record.seq < state.expectedSeq) {
      return fail('inserted', record.seq, `a second record claims sequence number ${record.seq}`, record.id);
    }
    if (record.seq > state.expectedSeq) {
      const missing = record.seq - state.expectedSeq;
      return fail('removed', state.expectedSeq, `${missing} record(s) missing before ${record.id}`, record.id);
    }
    if (recordHash(record) !== record.hash) {
      // Does the record hash right at a nearby position? Then it was moved, not edited.
      for (let distance = 1; distance <= MOVE_WINDOW; distance++) {
        for (const home of [record.seq - distance, record.seq + distance]) {
          if (home > 0 && recordHash({ ...record, seq: home }) === record.hash) {
            return fail('reordered', record.seq, `this record was written as number ${home}`, record.id);
          }
        }
      }
      return fail('altered', record.seq, 'its content does not match its hash', record.id);
    }
    if (record.prev_hash !== state.prev) {
      // The record before was rewritten, hash and all: name that one.
      const previous = state.last;
      return fail('altered', previous?.seq ?? record.seq, 'the next record does not link to it', previous?.id ?? record.id);
    }
    if (this.signedSeqs.get(record.chain_id)?.has(record.seq)) state.hashAt.set(record.seq, record.hash);
    state.prev = record.hash;
    state.expectedSeq += 1;
    state.last = record;
  }

  /** Check the signed checkpoints against the records seen; call after every record was pushed. */
  async checkCheckpoints(keys: JWK[]): Promise<void> {
    const byKid = new Map(keys.filter((key) => key.kid).map((key) => [key.kid as string, key]));
    for (const checkpoint of this.checkpointList) {
      const state = this.state(checkpoint.chain_id);
      if (state.problem) continue;
      const fail = (kind: ChainProblemKind, detail: string) => {
        state.problem = { chain_id: checkpoint.chain_id, kind, seq: checkpoint.seq, detail };
      };
      const jwk = byKid.get(checkpoint.kid);
      let signed: string | undefined;
      try {
        if (!jwk) throw new Error('unknown key');
        const { payload } = await compactVerify(checkpoint.signature, await importJWK(jwk, jwk.alg), {
          algorithms: ['EdDSA', 'ES256'],
        });
        signed = new TextDecoder().decode(payload);
      } catch {
        fail('checkpoint_forged', `the checkpoint at ${checkpoint.seq} is not signed by a gateway key`);
        continue;
      }
      if (signed !== checkpointPayload(checkpoint)) {
        fail('checkpoint_forged', `the checkpoint at ${checkpoint.seq} differs from what was signed`);
        continue;
      }
      const start = this.starts[checkpoint.chain_id]?.seq ?? 0;
      if (checkpoint.seq <= start) continue;
      const hash = state.hashAt.get(checkpoint.seq);
      if (hash === undefined) {
        fail('removed', `records up to the signed head ${checkpoint.seq} are missing (the chain ends at ${state.expectedSeq - 1})`);
      } else if (hash !== checkpoint.head_hash) {
        fail('checkpoint_mismatch', `record ${checkpoint.seq} is not the one the checkpoint signed`);
      }
    }
  }

  result() {
    const chains = [...this.chains].map(([chain_id, state]) => ({
      chain_id,
      records: state.count,
      last_seq: state.expectedSeq - 1,
      last_hash: state.prev,
      ...(state.problem ? { problem: state.problem } : {}),
    }));
    const problems = chains.flatMap((chain) => (chain.problem ? [chain.problem] : []));
    return { ok: problems.length === 0, chains, problems };
  }
}
