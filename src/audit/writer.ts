import { createHmac, randomUUID, type KeyObject } from 'node:crypto';
import { CompactSign } from 'jose';
import type { FastifyBaseLogger } from 'fastify';
import { desc, eq, sql, type SQL } from 'drizzle-orm';
import { isDatabaseUnavailable, type Db } from '../db/index.js';
import { auditChains, auditCheckpoints, auditEvents } from '../db/schema.js';
import { defineProblem } from '../errors.js';
import type { KeyStore } from '../identity/index.js';
import { AUDIT_COLUMNS, checkpointPayload, GENESIS_HASH, recordHash, type AuditRecord, type Checkpoint } from './chain.js';
import { hourlyRollup } from './rollup.js';

export const AuditUnavailable = defineProblem<[]>(
  'audit_unavailable',
  'The audit trail cannot take the record of this request, so it is not answered; retry shortly.',
  503,
);

/** What a caller hands the writer; the writer adds id, chain, sequence, time and hashes. */
export type AuditInput = Partial<Omit<AuditRecord, 'id' | 'chain_id' | 'seq' | 'prev_hash' | 'hash' | 'action' | 'outcome'>> &
  Pick<AuditRecord, 'action' | 'outcome'> & { occurred_at?: string };

export interface AuditWriterOptions {
  maxBatch: number;
  checkpointEvery: number;
  checkpointSeconds: number;
}

interface Pending {
  /** Chained (chain_id, seq, prev_hash, hash) when its batch is written. */
  record: AuditRecord;
  resolve: (id: string) => void;
  reject: (error: Error) => void;
}


/**
 * The audit trail's writer: one hash chain per instance, group commit. `record()` queues a record
 * and resolves when the insert holding it has committed; records that arrive while an insert is
 * running go into the next one, so that a busy gateway writes hundreds per insert and an idle one
 * writes at once. If an insert fails, every record in it is refused (the caller answers 503 and
 * no data) and the chain does not advance. Every `checkpointEvery` records or `checkpointSeconds`
 * the head is signed with the gateway's key.
 */
export class AuditWriter {
  readonly chainId = randomUUID();
  private seq = 0;
  private head = GENESIS_HASH;
  /**
   * An insert failed: whether it committed is not known (a connection lost after the server
   * committed looks like any other failure), so the chain's head is read back before the next.
   */
  private headUncertain = false;
  private queue: Pending[] = [];
  private flushing: Promise<void> | undefined;
  private scheduled = false;
  private closed = false;
  private sinceCheckpoint = 0;
  private checkpointedSeq = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Records committed since start (for metrics and the bench). */
  written = 0;
  /** Records refused while the database is away, since that was last logged. */
  private refusedUnlogged = 0;
  private refusalLoggedAt = 0;

  constructor(
    private readonly db: Db,
    private readonly keys: KeyStore,
    private readonly log: FastifyBaseLogger,
    private readonly options: AuditWriterOptions,
  ) {}

  async start(instance: string): Promise<void> {
    await this.db.insert(auditChains).values({ chainId: this.chainId, instance });
    this.timer = setInterval(() => void this.checkpoint().catch((err) => this.log.error({ err }, 'audit checkpoint failed')), this.options.checkpointSeconds * 1000);
    this.timer.unref();
  }

  record(input: AuditInput): Promise<string> {
    if (this.closed) return Promise.reject(new AuditUnavailable());
    // Every field written out, in one shape: each request makes one of these, and the chain
    // fields are filled in place when its batch is written (no copies on the way).
    const record: AuditRecord = {
      id: randomUUID(),
      chain_id: this.chainId,
      seq: 0,
      prev_hash: '',
      hash: '',
      occurred_at: input.occurred_at ?? new Date().toISOString(),
      request_id: input.request_id ?? null,
      client_id: input.client_id ?? null,
      agency: input.agency ?? null,
      on_behalf_of: input.on_behalf_of ?? null,
      action: input.action,
      resource: input.resource ?? null,
      provider: input.provider ?? null,
      purpose: input.purpose ?? null,
      legal_basis: input.legal_basis ?? null,
      grant_id: input.grant_id ?? null,
      subject_refs: input.subject_refs ?? null,
      fields: input.fields ?? null,
      row_count: input.row_count ?? null,
      outcome: input.outcome,
      status: input.status ?? null,
      reason: input.reason ?? null,
      latency_ms: input.latency_ms ?? null,
      bytes: input.bytes ?? null,
      client_address: input.client_address ?? null,
    };
    return new Promise((resolve, reject) => {
      this.queue.push({ record, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.flush().catch((err) => this.log.error({ err }, 'audit flush failed'));
        });
      }
    });
  }

  /** Write everything queued; resolves when the queue is empty. */
  flush(): Promise<void> {
    this.flushing ??= this.drain().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const queued = this.queue.splice(0, this.options.maxBatch);
      if (this.headUncertain) {
        try {
          await this.readHead();
        } catch (error) {
          this.logFailure(error, queued.length);
          for (const pending of queued) pending.reject(new AuditUnavailable());
          continue;
        }
      }
      const { batch, seq, head } = this.chained(queued);
      if (batch.length === 0) continue;
      try {
        await this.db.execute(insertBatch(batch.map(({ record }) => record)));
      } catch (error) {
        this.headUncertain = true;
        this.logFailure(error, batch.length);
        for (const pending of batch) pending.reject(new AuditUnavailable());
        continue;
      }
      this.seq = seq;
      this.head = head;
      this.written += batch.length;
      this.sinceCheckpoint += batch.length;
      for (const { record, resolve } of batch) resolve(record.id);
      if (this.sinceCheckpoint >= this.options.checkpointEvery) {
        // The records are committed; a failed signature is retried after the next batch.
        await this.checkpoint().catch((err) => this.log.error({ err }, 'audit checkpoint failed'));
      }
    }
  }

  /**
   * Give each queued record its place in the chain after the head. A record that cannot be hashed
   * (text canonical JSON refuses, such as a lone surrogate) is refused alone, and the rest chain
   * on without it, instead of failing every request of its batch.
   */
  private chained(queued: Pending[]): { batch: Pending[]; seq: number; head: string } {
    let seq = this.seq;
    let head = this.head;
    const batch: Pending[] = [];
    for (const pending of queued) {
      const record = pending.record;
      record.seq = seq + 1;
      record.prev_hash = head;
      try {
        record.hash = recordHash(record);
      } catch (error) {
        this.log.error({ err: error, request_id: record.request_id }, 'an audit record could not be hashed; its request is answered 503');
        pending.reject(new AuditUnavailable());
        continue;
      }
      seq = record.seq;
      head = record.hash;
      batch.push(pending);
    }
    return { batch, seq, head };
  }

  /**
   * The chain's head as committed: after a failed insert, the batch may have committed all the
   * same (its acknowledgement lost with the connection), and then the chain goes on from its last
   * record instead of writing a second record with the same sequence number.
   */
  private async readHead(): Promise<void> {
    const [last] = await this.db
      .select({ seq: auditEvents.seq, hash: auditEvents.hash })
      .from(auditEvents)
      .where(eq(auditEvents.chainId, this.chainId))
      .orderBy(desc(auditEvents.seq))
      .limit(1);
    const seq = last ? Number(last.seq) : 0;
    if (seq !== this.seq) {
      this.log.warn({ chain_id: this.chainId, seq, expected: this.seq }, 'an audit insert that seemed to fail had committed: the chain goes on from its last record');
      this.written += seq - this.seq;
      this.sinceCheckpoint += seq - this.seq;
    }
    this.seq = seq;
    this.head = last?.hash ?? GENESIS_HASH;
    this.headUncertain = false;
  }

  /**
   * A failed insert is an error to log, except while the database is away: then every batch
   * fails, so the count is logged once every ten seconds instead of a line per batch.
   */
  private logFailure(error: unknown, records: number) {
    if (!isDatabaseUnavailable(error)) {
      this.log.error({ err: error, records }, 'audit records could not be written');
      return;
    }
    this.refusedUnlogged += records;
    if (Date.now() - this.refusalLoggedAt < 10_000) return;
    this.log.warn({ records: this.refusedUnlogged }, 'audit records refused: the database is unavailable (their requests were answered 503)');
    this.refusedUnlogged = 0;
    this.refusalLoggedAt = Date.now();
  }

  /** Sign the chain head, when it moved since the last checkpoint. */
  async checkpoint(): Promise<void> {
    if (this.seq === this.checkpointedSeq) return;
    const seq = this.seq;
    const head = this.head;
    const signedAt = new Date().toISOString();
    const { kid, alg, privateKey } = this.keys.signingKey();
    const payload = checkpointPayload({ chain_id: this.chainId, seq, head_hash: head, signed_at: signedAt });
    const signature = await new CompactSign(new TextEncoder().encode(payload))
      .setProtectedHeader({ alg, kid, typ: 'audit-checkpoint' })
      .sign(privateKey);
    await this.db
      .insert(auditCheckpoints)
      .values({ chainId: this.chainId, seq, headHash: head, signedAt: new Date(signedAt), kid, signature })
      .onConflictDoNothing();
    this.checkpointedSeq = seq;
    this.sinceCheckpoint = 0;
  }

  /** Graceful shutdown: refuse new records, write the queued ones, sign the head. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.flush();
    try {
      await this.checkpoint();
    } catch (error) {
      // The records are written; only the final signature is missing, and verification says so.
      this.log.error({ err: error }, 'the closing audit checkpoint could not be written');
    }
  }
}

/** The keyed hash that stands for a person (or any record key) in the trail: never the key itself. */
export function subjectRef(key: Buffer | KeyObject, value: string): string {
  return createHmac('sha256', key).update(value.trim().toUpperCase()).digest('hex');
}

const names = AUDIT_COLUMNS.map(([name]) => name).join(', ');
const INSERT_HEAD = sql.raw(`with inserted as (insert into audit_events (${names}) select ${names} from jsonb_to_recordset(`);
const INSERT_TAIL = sql.raw(
  `::text::jsonb) as batch(${AUDIT_COLUMNS.map(([name, type]) => `${name} ${type}`).join(', ')}) ` +
    'returning occurred_at, agency, provider, resource, action, outcome, reason, latency_ms) ',
);
const COUNT_INSERTED = hourlyRollup('inserted', 'add');

/**
 * One insert for a whole batch, its rows as one JSON parameter: the statement is the same for
 * every batch size (prepared once per connection), and building it costs one JSON.stringify
 * instead of a query builder's walk over every value. The same statement adds the batch's
 * counts to audit_hourly (a data-modifying CTE): the rollup commits with its records or not at all.
 */
export function insertBatch(records: AuditRecord[]): SQL {
  // A record's keys are the columns: jsonb_to_recordset takes each by its name.
  return sql`${INSERT_HEAD}${JSON.stringify(records)}${INSERT_TAIL}${COUNT_INSERTED}`;
}

/** A stored row back in the record's wire form (what the hash covers). */
export function fromRow(row: typeof auditEvents.$inferSelect): AuditRecord {
  return {
    id: row.id,
    chain_id: row.chainId,
    seq: Number(row.seq),
    prev_hash: row.prevHash,
    hash: row.hash,
    occurred_at: row.occurredAt.toISOString(),
    request_id: row.requestId,
    client_id: row.clientId,
    agency: row.agency,
    on_behalf_of: row.onBehalfOf,
    action: row.action,
    resource: row.resource,
    provider: row.provider,
    purpose: row.purpose,
    legal_basis: row.legalBasis,
    grant_id: row.grantId,
    subject_refs: row.subjectRefs,
    fields: row.fields,
    row_count: row.rowCount,
    outcome: row.outcome as AuditRecord['outcome'],
    status: row.status,
    reason: row.reason,
    latency_ms: row.latencyMs,
    bytes: row.bytes === null ? null : Number(row.bytes),
    client_address: row.clientAddress,
  };
}

/** A stored checkpoint in its wire form (what the signature covers, and the signature). */
export function checkpointFromRow(row: typeof auditCheckpoints.$inferSelect): Checkpoint {
  return {
    chain_id: row.chainId,
    seq: Number(row.seq),
    head_hash: row.headHash,
    signed_at: row.signedAt.toISOString(),
    kid: row.kid,
    signature: row.signature,
  };
}
