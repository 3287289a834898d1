import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { and, asc, gte, lt, sql } from 'drizzle-orm';
import type { JWK } from 'jose';
import { rowsOf, type Db } from '../db/index.js';
import { auditCheckpoints, auditEvents, auditExports, signingKeys } from '../db/schema.js';
import { ChainVerifier, type AuditRecord, type Checkpoint, type ChainStart } from './chain.js';
import { checkpointFromRow, fromRow } from './writer.js';

const PAGE = 5000;
export const EXPORT_FORMAT = 'govdata-gateway-audit-export';

export type VerifyReport = ReturnType<ChainVerifier['result']>;

/** Every public key the gateway ever signed with: checkpoints outlive the tokens of their key. */
export async function allPublicKeys(db: Db): Promise<JWK[]> {
  const rows = await db.select({ publicJwk: signingKeys.publicJwk }).from(signingKeys);
  return rows.map((row) => row.publicJwk as JWK);
}

async function allCheckpoints(db: Db): Promise<Checkpoint[]> {
  const rows = await db.select().from(auditCheckpoints).orderBy(asc(auditCheckpoints.chainId), asc(auditCheckpoints.seq));
  return rows.map(checkpointFromRow);
}

/** Records in (chain, seq) order, page by page: a table of any size in bounded memory. */
async function* recordsInOrder(db: Db, where?: ReturnType<typeof and>): AsyncGenerator<AuditRecord> {
  let after: { chainId: string; seq: number; occurredAt: Date; id: string } | undefined;
  for (;;) {
    const keyset = after
      ? sql`(${auditEvents.chainId}, ${auditEvents.seq}, ${auditEvents.occurredAt}, ${auditEvents.id}) > (${after.chainId}, ${after.seq}, ${after.occurredAt.toISOString()}::timestamptz, ${after.id})`
      : undefined;
    const rows = await db
      .select()
      .from(auditEvents)
      .where(and(where, keyset))
      .orderBy(asc(auditEvents.chainId), asc(auditEvents.seq), asc(auditEvents.occurredAt), asc(auditEvents.id))
      .limit(PAGE);
    for (const row of rows) yield fromRow(row);
    const last = rows.at(-1);
    if (!last || rows.length < PAGE) return;
    after = { chainId: last.chainId, seq: Number(last.seq), occurredAt: last.occurredAt, id: last.id };
  }
}

/**
 * Where each chain's verification starts. From the beginning (genesis) unless its first months
 * were exported and dropped: then from the head the export recorded. With `from`, from the first
 * record at or after that time, whose link to the past is taken as given.
 */
async function chainStarts(db: Db, from?: Date): Promise<Record<string, ChainStart>> {
  const firsts = await db.execute(sql`
    select distinct on (${auditEvents.chainId}) ${auditEvents.chainId} as chain_id, ${auditEvents.seq} as seq,
           ${auditEvents.prevHash} as prev_hash
    from ${auditEvents} ${from ? sql`where ${auditEvents.occurredAt} >= ${from.toISOString()}::timestamptz` : sql``}
    order by ${auditEvents.chainId}, ${auditEvents.seq}`);
  const firstSeq = new Map<string, { seq: number; prevHash: string }>();
  for (const row of rowsOf<{ chain_id: string; seq: number | string; prev_hash: string }>(firsts)) {
    firstSeq.set(row.chain_id, { seq: Number(row.seq), prevHash: row.prev_hash });
  }
  const starts: Record<string, ChainStart> = {};
  if (from) {
    for (const [chain, first] of firstSeq) if (first.seq > 1) starts[chain] = { seq: first.seq - 1, hash: first.prevHash };
    return starts;
  }
  // A chain whose first months were dropped picks up at the last head an export recorded before
  // what remains (or, when nothing remains, at its last exported head).
  for (const { chainHeads } of await db.select({ chainHeads: auditExports.chainHeads }).from(auditExports)) {
    for (const [chain, head] of Object.entries(chainHeads as Record<string, ChainStart>)) {
      const first = firstSeq.get(chain)?.seq ?? Number.POSITIVE_INFINITY;
      if (head.seq < first && head.seq > (starts[chain]?.seq ?? 0)) starts[chain] = head;
    }
  }
  return starts;
}

/** Walk every chain in the database, check every hash, link and checkpoint signature. */
export async function verifyDatabase(db: Db, options: { from?: Date } = {}): Promise<VerifyReport> {
  const starts = await chainStarts(db, options.from);
  const checkpoints = (await allCheckpoints(db)).filter((c) => !options.from || c.seq > (starts[c.chain_id]?.seq ?? 0));
  const verifier = new ChainVerifier(checkpoints, starts);
  for await (const record of recordsInOrder(db, options.from ? and(gte(auditEvents.occurredAt, options.from)) : undefined)) {
    verifier.push(record);
  }
  await verifier.checkCheckpoints(await allPublicKeys(db));
  return verifier.result();
}

export interface ExportHeader {
  type: 'header';
  format: typeof EXPORT_FORMAT;
  version: 1;
  month: string;
  exported_at: string;
  keys: JWK[];
  starts: Record<string, ChainStart>;
}

export function monthRange(month: string): { start: Date; end: Date } {
  const match = /^(\d{4})-(\d{2})$/.exec(month);
  if (!match || Number(match[2]) < 1 || Number(match[2]) > 12) throw new Error(`not a month: ${month} (want YYYY-MM)`);
  const start = new Date(Date.UTC(Number(match[1]), Number(match[2]) - 1, 1));
  const end = new Date(Date.UTC(Number(match[1]), Number(match[2]), 1));
  return { start, end };
}

/**
 * Write one month of the trail to an NDJSON file — a header with the public keys and where each
 * chain picks up, the checkpoints that fall inside, then the records in chain order — verify the
 * file as a stranger would, and only then note the export (which lets retention drop the month).
 */
export async function exportMonth(db: Db, month: string, file: string) {
  const { start, end } = monthRange(month);
  const inMonth = and(gte(auditEvents.occurredAt, start), lt(auditEvents.occurredAt, end));
  const bounds = await db.execute(sql`
    select ${auditEvents.chainId} as chain_id, min(${auditEvents.seq}) as first, max(${auditEvents.seq}) as last,
           (array_agg(${auditEvents.prevHash} order by ${auditEvents.seq}))[1] as prev_hash
    from ${auditEvents} where ${inMonth} group by ${auditEvents.chainId}`);
  const starts: Record<string, ChainStart> = {};
  const ranges = new Map<string, { first: number; last: number }>();
  for (const row of rowsOf<{ chain_id: string; first: number | string; last: number | string; prev_hash: string }>(bounds)) {
    ranges.set(row.chain_id, { first: Number(row.first), last: Number(row.last) });
    if (Number(row.first) > 1) starts[row.chain_id] = { seq: Number(row.first) - 1, hash: row.prev_hash };
  }

  // Opened before anything is read, so that an existing file is refused at once (never overwritten).
  const out = (await open(file, 'wx')).createWriteStream();
  const write = async (line: object) => {
    if (!out.write(`${JSON.stringify(line)}\n`)) await once(out, 'drain');
  };
  const header: ExportHeader = {
    type: 'header',
    format: EXPORT_FORMAT,
    version: 1,
    month,
    exported_at: new Date().toISOString(),
    keys: await allPublicKeys(db),
    starts,
  };
  await write(header);
  for (const checkpoint of await allCheckpoints(db)) {
    const range = ranges.get(checkpoint.chain_id);
    if (range && checkpoint.seq >= range.first && checkpoint.seq <= range.last) await write({ type: 'checkpoint', ...checkpoint });
  }
  const heads: Record<string, ChainStart> = {};
  let records = 0;
  for await (const record of recordsInOrder(db, inMonth)) {
    await write({ type: 'record', ...record });
    heads[record.chain_id] = { seq: record.seq, hash: record.hash };
    records += 1;
  }
  out.end();
  await once(out, 'finish');

  const report = await verifyExportFile(file);
  if (!report.ok) throw new Error(`the export ${file} does not verify: ${report.problems.map((p) => p.detail).join('; ')}`);
  const sha256 = createHash('sha256').update(await readFile(file)).digest('hex');
  await db
    .insert(auditExports)
    .values({ month, file, sha256, records, chainHeads: heads })
    .onConflictDoUpdate({ target: auditExports.month, set: { file, sha256, records, chainHeads: heads, exportedAt: new Date() } });
  return { month, file, sha256, records, chains: Object.keys(heads).length };
}

/**
 * Verify an export file with nothing but the file — or with public keys from elsewhere, for a
 * verifier who does not take the file's word for the keys. Streams: any size, bounded memory.
 */
export async function verifyExportFile(file: string, keys?: JWK[]): Promise<VerifyReport> {
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  let header: ExportHeader | undefined;
  const checkpoints: Checkpoint[] = [];
  let verifier: ChainVerifier | undefined;
  for await (const line of lines) {
    if (!line.trim()) continue;
    const { type, ...entry } = JSON.parse(line) as { type: string };
    if (type === 'header') header = { type, ...entry } as ExportHeader;
    else if (type === 'checkpoint') checkpoints.push(entry as Checkpoint);
    else if (type === 'record') {
      verifier ??= new ChainVerifier(checkpoints, header?.starts ?? {});
      verifier.push(entry as AuditRecord);
    }
  }
  if (header?.format !== EXPORT_FORMAT) throw new Error(`${file} is not an audit export`);
  verifier ??= new ChainVerifier(checkpoints, header.starts);
  await verifier.checkCheckpoints(keys ?? header.keys);
  return verifier.result();
}
