import { desc, eq, sql } from 'drizzle-orm';
import { rowsOf, type Db } from '../db/index.js';
import { auditChains, auditCheckpoints, auditEvents, auditVerifications } from '../db/schema.js';
import type { ChainProblem } from './chain.js';
import { verifyDatabase } from './verify.js';

/** One chain (an instance's run of the gateway): how far it has come and its last signed head. */
export interface ChainStatus {
  instance: string;
  chain_id: string;
  started_at: string;
  /** Its last sequence number: how many records it has written. */
  records: number;
  checkpoint: { seq: number; signed_at: string; kid: string } | null;
  /** Records written after the last signed checkpoint (all of them when there is none). */
  since_checkpoint: number;
}

export type VerificationTrigger = 'schedule' | 'demand';

/** A full verification of every chain, as audit_verifications keeps it. */
export interface VerificationRun {
  /** null only when the run could not even be recorded. */
  id: number | null;
  instance: string;
  trigger: VerificationTrigger;
  started_at: string;
  finished_at: string | null;
  chains: number | null;
  chains_valid: number | null;
  records: number | null;
  problems: ChainProblem[] | null;
  error: string | null;
}

/** How many problems a run keeps: the first of each chain is what matters, and a page shows a few. */
const PROBLEMS_KEPT = 100;
/** How many chains the status shows, the newest first (every restart starts one). */
const CHAINS_SHOWN = 50;

/** The newest chains with their last record and last signed checkpoint, each read down an index. */
export async function chainStatus(db: Db, limit = CHAINS_SHOWN): Promise<ChainStatus[]> {
  const result = await db.execute(sql`
    select c.chain_id, c.instance, c.started_at,
           coalesce((select max(${auditEvents.seq}) from ${auditEvents} where ${auditEvents.chainId} = c.chain_id), 0) as records,
           k.seq as checkpoint_seq, k.signed_at as checkpoint_at, k.kid as checkpoint_kid
    from (select ${auditChains.chainId} as chain_id, ${auditChains.instance} as instance, ${auditChains.startedAt} as started_at
          from ${auditChains} order by ${auditChains.startedAt} desc, ${auditChains.chainId} limit ${limit}) c
    left join lateral (
      select ${auditCheckpoints.seq} as seq, ${auditCheckpoints.signedAt} as signed_at, ${auditCheckpoints.kid} as kid
      from ${auditCheckpoints} where ${auditCheckpoints.chainId} = c.chain_id order by ${auditCheckpoints.seq} desc limit 1
    ) k on true
    order by c.started_at desc, c.chain_id`);
  type Row = {
    chain_id: string;
    instance: string;
    started_at: Date | string;
    records: number | string;
    checkpoint_seq: number | string | null;
    checkpoint_at: Date | string | null;
    checkpoint_kid: string | null;
  };
  return rowsOf<Row>(result).map((row) => {
    const records = Number(row.records);
    const checkpoint =
      row.checkpoint_seq === null || row.checkpoint_at === null
        ? null
        : { seq: Number(row.checkpoint_seq), signed_at: new Date(row.checkpoint_at).toISOString(), kid: row.checkpoint_kid as string };
    return {
      instance: row.instance,
      chain_id: row.chain_id,
      started_at: new Date(row.started_at).toISOString(),
      records,
      checkpoint,
      since_checkpoint: records - (checkpoint?.seq ?? 0),
    };
  });
}

function runOf(row: typeof auditVerifications.$inferSelect): VerificationRun {
  return {
    id: row.id,
    instance: row.instance,
    trigger: row.trigger as VerificationTrigger,
    started_at: row.startedAt.toISOString(),
    finished_at: row.finishedAt?.toISOString() ?? null,
    chains: row.chains,
    chains_valid: row.chainsValid,
    records: row.records === null ? null : Number(row.records),
    problems: (row.problems as ChainProblem[] | null) ?? null,
    error: row.error,
  };
}

/** The newest verification (finished or still running), or null when none has run. */
export async function lastVerification(db: Db): Promise<VerificationRun | null> {
  const [row] = await db.select().from(auditVerifications).orderBy(desc(auditVerifications.startedAt), desc(auditVerifications.id)).limit(1);
  return row ? runOf(row) : null;
}

/**
 * Verify every chain in full (hashes, links, signed checkpoints) and keep the result: the row is
 * written when the run starts (so that a page can say one is running) and completed when it
 * ends. Never throws: a run that cannot finish is kept with its error.
 */
export async function runVerification(db: Db, instance: string, trigger: VerificationTrigger): Promise<VerificationRun> {
  const startedAt = new Date();
  let id: number | null = null;
  let outcome: Pick<VerificationRun, 'chains' | 'chains_valid' | 'records' | 'problems' | 'error'>;
  try {
    const [row] = await db.insert(auditVerifications).values({ instance, trigger, startedAt }).returning({ id: auditVerifications.id });
    id = row?.id ?? null;
    const report = await verifyDatabase(db);
    outcome = {
      chains: report.chains.length,
      chains_valid: report.chains.filter((chain) => !chain.problem).length,
      records: report.chains.reduce((sum, chain) => sum + chain.records, 0),
      problems: report.problems.slice(0, PROBLEMS_KEPT),
      error: null,
    };
  } catch (error) {
    outcome = { chains: null, chains_valid: null, records: null, problems: null, error: error instanceof Error ? error.message : String(error) };
  }
  const finishedAt = new Date();
  const run: VerificationRun = { id, instance, trigger, started_at: startedAt.toISOString(), finished_at: finishedAt.toISOString(), ...outcome };
  if (id === null) return run;
  try {
    await db
      .update(auditVerifications)
      .set({ finishedAt, chains: outcome.chains, chainsValid: outcome.chains_valid, records: outcome.records, problems: outcome.problems, error: outcome.error })
      .where(eq(auditVerifications.id, id));
  } catch (error) {
    return { ...run, error: run.error ?? `the result could not be kept: ${error instanceof Error ? error.message : String(error)}` };
  }
  return run;
}
