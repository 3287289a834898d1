import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import pino from 'pino';
import { and, eq, sql } from 'drizzle-orm';
import type { App } from '../../src/app.js';
import { applyRetention, ensureMonthPartitions, monthPartitions } from '../../src/audit/partitions.js';
import { exportMonth, verifyDatabase, verifyExportFile } from '../../src/audit/verify.js';
import { AuditWriter } from '../../src/audit/writer.js';
import { runCli } from '../../src/cli.js';
import type { Driver } from '../../src/db/index.js';
import { auditCheckpoints, auditEvents } from '../../src/db/schema.js';
import { buildTestApp, forEachDriver, freshDatabase, freshDatabaseUrl, TEST_AUDIT_HASH_KEY, TEST_KEY_ENCRYPTION_KEY, testConfig } from '../helpers/app.js';

/** An app on a database of its own, with `count` audited events written and a checkpoint signed. */
async function trail(t: Test, driver: Driver, count = 30) {
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, { database });
  for (let i = 0; i < count; i++) {
    await app.audit.record({ action: 'records.read', outcome: i % 5 ? 'allowed' : 'denied', agency: 'zj-edu', purpose: `case ${i}`, latency_ms: i });
  }
  await app.audit.checkpoint();
  return { app, db: app.db, chain: app.audit.chainId };
}

async function row(app: App, chain: string, seq: number) {
  const [found] = await app.db.select().from(auditEvents).where(and(eq(auditEvents.chainId, chain), eq(auditEvents.seq, seq)));
  if (!found) throw new Error(`no record ${seq}`);
  return found;
}

forEachDriver(t, 'audit verify finds what was changed by hand', async (t, driver) => {
  const { app, db, chain } = await trail(t, driver);
  const clean = await verifyDatabase(db);
  t.ok(clean.ok, 'an untouched trail verifies');
  t.match(clean.chains.find((c) => c.chain_id === chain), { records: 31, last_seq: 31 });

  t.test('a tampered field', async (t) => {
    const original = await row(app, chain, 5);
    await db.update(auditEvents).set({ purpose: 'nothing to see' }).where(and(eq(auditEvents.chainId, chain), eq(auditEvents.seq, 5)));
    const report = await verifyDatabase(db);
    t.notOk(report.ok);
    t.match(report.problems, [{ chain_id: chain, kind: 'altered', seq: 5, record_id: original.id }]);
    await db.update(auditEvents).set({ purpose: original.purpose }).where(and(eq(auditEvents.chainId, chain), eq(auditEvents.seq, 5)));
    t.ok((await verifyDatabase(db)).ok, 'restored');
  });

  t.test('a tampered field with its hash recomputed', async (t) => {
    const { recordHash } = await import('../../src/audit/chain.js');
    const { fromRow } = await import('../../src/audit/writer.js');
    const original = await row(app, chain, 8);
    const forged = { ...fromRow(original), purpose: 'rewritten' };
    await db.update(auditEvents).set({ purpose: 'rewritten', hash: recordHash(forged) }).where(and(eq(auditEvents.chainId, chain), eq(auditEvents.seq, 8)));
    const report = await verifyDatabase(db);
    t.match(report.problems, [{ kind: 'altered', seq: 8, record_id: original.id }], 'the next record no longer links to it');
    await db.update(auditEvents).set({ purpose: original.purpose, hash: original.hash }).where(and(eq(auditEvents.chainId, chain), eq(auditEvents.seq, 8)));
  });

  t.test('a deleted row', async (t) => {
    const original = await row(app, chain, 7);
    await db.delete(auditEvents).where(and(eq(auditEvents.chainId, chain), eq(auditEvents.seq, 7)));
    const report = await verifyDatabase(db);
    t.match(report.problems, [{ kind: 'removed', seq: 7 }]);
    await db.insert(auditEvents).values(original);
    t.ok((await verifyDatabase(db)).ok, 'restored');
  });

  t.test('an inserted row', async (t) => {
    const original = await row(app, chain, 10);
    const forged = { ...original, id: 'forged-record', occurredAt: new Date(original.occurredAt.getTime() + 1), purpose: 'cover story' };
    await db.insert(auditEvents).values(forged);
    const report = await verifyDatabase(db);
    t.match(report.problems, [{ kind: 'inserted', seq: 10, record_id: 'forged-record' }]);
    await db.delete(auditEvents).where(eq(auditEvents.id, 'forged-record'));
  });

  t.test('a swapped pair', async (t) => {
    const twelve = await row(app, chain, 12);
    const thirteen = await row(app, chain, 13);
    const setSeq = (id: string, seq: number) => db.update(auditEvents).set({ seq }).where(eq(auditEvents.id, id));
    await setSeq(twelve.id, -1);
    await setSeq(thirteen.id, 12);
    await setSeq(twelve.id, 13);
    const report = await verifyDatabase(db);
    t.match(report.problems, [{ kind: 'reordered', seq: 12, record_id: thirteen.id }]);
    await setSeq(thirteen.id, -1);
    await setSeq(twelve.id, 12);
    await setSeq(thirteen.id, 13);
    t.ok((await verifyDatabase(db)).ok, 'restored');
  });

  t.test('a forged checkpoint', async (t) => {
    const [checkpoint] = await db.select().from(auditCheckpoints).where(eq(auditCheckpoints.chainId, chain));
    if (!checkpoint) throw new Error('no checkpoint');
    await db.update(auditCheckpoints).set({ headHash: 'f'.repeat(64) }).where(and(eq(auditCheckpoints.chainId, chain), eq(auditCheckpoints.seq, checkpoint.seq)));
    t.match((await verifyDatabase(db)).problems, [{ kind: 'checkpoint_forged', seq: Number(checkpoint.seq) }]);
    await db.update(auditCheckpoints).set({ headHash: checkpoint.headHash }).where(and(eq(auditCheckpoints.chainId, chain), eq(auditCheckpoints.seq, checkpoint.seq)));
    t.ok((await verifyDatabase(db)).ok, 'restored');
  });

  t.test('the newest records cut off behind a signed checkpoint', async (t) => {
    const last = await row(app, chain, 31);
    await db.delete(auditEvents).where(eq(auditEvents.id, last.id));
    t.match((await verifyDatabase(db)).problems, [{ kind: 'removed', seq: 31 }]);
    await db.insert(auditEvents).values(last);
  });

  t.test('--from verifies the recent part, taking the link before it as given', async (t) => {
    const original = await row(app, chain, 3);
    await db.update(auditEvents).set({ purpose: 'old tamper' }).where(eq(auditEvents.id, original.id));
    const recent = await row(app, chain, 20);
    t.ok((await verifyDatabase(db, { from: recent.occurredAt })).ok);
    t.notOk((await verifyDatabase(db)).ok);
    await db.update(auditEvents).set({ purpose: original.purpose }).where(eq(auditEvents.id, original.id));
  });
});

forEachDriver(t, 'gateway audit verify and export', async (t, driver) => {
  const url = driver === 'pglite' ? join(t.testdir(), 'pglite') : await freshDatabaseUrl(driver);
  const env = { DATABASE_URL: url, PUBLIC_URL: 'http://127.0.0.1:3000', KEY_ENCRYPTION_KEY: TEST_KEY_ENCRYPTION_KEY, AUDIT_HASH_KEY: TEST_AUDIT_HASH_KEY, LOG_LEVEL: 'silent', DEMO_DATA: 'off', OPEN_PREBUILD: 'false' };
  const out: string[] = [];
  const err: string[] = [];
  const io = { env, stdout: (s: string) => void out.push(s), stderr: (s: string) => void err.push(s) };
  const dir = driver === 'pglite' ? join(url, '..') : t.testdir();

  // A gateway ran, answered, and stopped (its closing checkpoint signs the head).
  const { openGateway } = await import('../../src/startup.js');
  const app = await openGateway(testConfig(env), { logger: pino({ level: 'silent' }) });
  for (let i = 0; i < 12; i++) await app.inject({ url: '/v1/catalog/resources', headers: { authorization: 'Bearer nonsense' } });
  const month = new Date().toISOString().slice(0, 7);
  await app.close();

  t.equal(await runCli(['audit', 'verify'], io), 0, err.join(''));
  t.match(out.join(''), /verified \d+ records in 1 chain\(s\)\n$/);

  const file = join(dir, `audit-${month}.ndjson`);
  t.equal(await runCli(['audit', 'export', '--month', month, '--out', file], io), 0, err.join(''));
  t.match(out.at(-1), new RegExp(`^exported \\d+ records of ${month} in 1 chain\\(s\\) to .* it verifies\\n$`));
  out.length = 0;
  t.equal(await runCli(['audit', 'verify', '--file', file], io), 0, 'the export verifies offline');
  t.equal(await runCli(['audit', 'export', '--month', month, '--out', file], io), 1, 'an export never overwrites a file');

  // Offline, with public keys from elsewhere: none of the file's keys are trusted.
  const header = JSON.parse(readFileSync(file, 'utf8').split('\n')[0] as string);
  const jwksFile = join(dir, 'jwks.json');
  writeFileSync(jwksFile, JSON.stringify({ keys: header.keys }));
  t.equal(await runCli(['audit', 'verify', '--file', file, '--jwks', jwksFile], io), 0);
  writeFileSync(jwksFile, JSON.stringify({ keys: [] }));
  t.equal(await runCli(['audit', 'verify', '--file', file, '--jwks', jwksFile], io), 1, 'unknown keys: the checkpoints are not trusted');

  const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
  const index = lines.findIndex((line) => line.includes('"type":"record"') && line.includes('"seq":4,'));
  lines[index] = (lines[index] as string).replace('"outcome":"denied"', '"outcome":"allowed"');
  const tampered = join(dir, 'tampered.ndjson');
  writeFileSync(tampered, `${lines.join('\n')}\n`);
  err.length = 0;
  out.length = 0;
  t.equal(await runCli(['audit', 'verify', '--file', tampered], io), 1);
  t.match(out.join(''), /altered at 4 \(record [0-9a-f-]{36}\)/);
  t.match(err.join(''), /^gateway: the audit trail does not verify/);

  // The database itself, changed by hand.
  const database = await (await import('../../src/db/index.js')).openDatabase(url);
  await database.db.execute(sql`update audit_events set purpose = 'edited' where seq = 6`);
  await database.close();
  out.length = 0;
  t.equal(await runCli(['audit', 'verify'], io), 1);
  t.match(out.join(''), /altered at 6/);
  t.equal(await runCli(['audit', 'verify', '--from', 'yesterday-ish'], io), 1);
});

forEachDriver(t, 'partitions by month, and retention only after a verified export', async (t, driver) => {
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, { database });
  const db = app.db;
  const thisMonth = new Date().toISOString().slice(0, 7);
  t.ok((await monthPartitions(db)).includes(thisMonth), 'this month has its partition from start-up');

  // An old month with a chain of its own, as an instance that ran back then would have left.
  await ensureMonthPartitions(db, new Date('2020-01-10T00:00:00Z'));
  const old = new AuditWriter(db, app.keys, app.log, { maxBatch: 100, checkpointEvery: 1000, checkpointSeconds: 3600 });
  await old.start('old-instance');
  for (let day = 1; day <= 5; day++) {
    await old.record({ action: 'records.read', outcome: 'allowed', occurred_at: `2020-01-0${day}T08:00:00.000Z` });
  }
  await old.close();
  t.ok((await verifyDatabase(db)).ok);

  const notYet = await applyRetention(db, 12);
  t.same(notYet.dropped, [], 'nothing unexported is dropped');
  t.ok(notYet.kept.includes('2020-01'));

  const file = join(t.testdir(), '2020-01.ndjson');
  const exported = await exportMonth(db, '2020-01', file);
  t.match(exported, { month: '2020-01', records: 5, chains: 1 });
  t.ok((await verifyExportFile(file)).ok);

  const done = await applyRetention(db, 12);
  t.ok(done.dropped.includes('2020-01'), 'dropped after export');
  t.notOk((await monthPartitions(db)).includes('2020-01'));
  const remaining = await db.select().from(auditEvents).where(eq(auditEvents.chainId, old.chainId));
  t.equal(remaining.length, 0, "the month's records are gone from the database");
  t.ok((await verifyDatabase(db)).ok, 'the trail still verifies: the dropped chain ends at its exported head');

  writeFileSync(file, 'tampered\n');
  await ensureMonthPartitions(db, new Date('2020-02-10T00:00:00Z'));
  await exportMonth(db, '2020-02', join(t.testdir(), '2020-02.ndjson'));
  writeFileSync(join(t.testdir(), '2020-02.ndjson'), 'changed after export\n');
  const tamperedExport = await applyRetention(db, 12);
  t.ok(tamperedExport.kept.includes('2020-02'), 'an export that no longer matches its checksum does not count');
});

forEachDriver(t, 'an insert whose acknowledgement was lost: the chain goes on from what committed, with no second record of a sequence number', async (t, driver) => {
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, { database });
  // A database whose next audit insert commits and then reports a lost connection, as when the
  // server commits and the connection drops before its answer arrives.
  let loseNext = false;
  const db = new Proxy(app.db, {
    get(target, property, receiver) {
      if (property !== 'execute') return Reflect.get(target, property, receiver);
      return async (query: Parameters<typeof target.execute>[0]) => {
        const result = await target.execute(query);
        if (loseNext) {
          loseNext = false;
          throw Object.assign(new Error('write CONNECTION_CLOSED'), { code: 'CONNECTION_CLOSED' });
        }
        return result;
      };
    },
  });
  const writer = new AuditWriter(db, app.keys, app.log, { maxBatch: 100, checkpointEvery: 1000, checkpointSeconds: 3600 });
  await writer.start('lost-ack');
  await writer.record({ action: 'records.read', outcome: 'allowed' });
  loseNext = true;
  const lost = await Promise.allSettled([writer.record({ action: 'records.read', outcome: 'allowed' }), writer.record({ action: 'records.read', outcome: 'allowed' })]);
  t.same(lost.map((result) => result.status), ['rejected', 'rejected'], 'the batch whose answer was lost is refused (its requests get 503)');
  await writer.record({ action: 'records.verify', outcome: 'allowed' });
  await writer.close();

  const rows = await app.db.select({ seq: auditEvents.seq, action: auditEvents.action }).from(auditEvents).where(eq(auditEvents.chainId, writer.chainId)).orderBy(auditEvents.seq);
  t.same(rows.map((row) => Number(row.seq)), [1, 2, 3, 4], 'the committed batch holds 2 and 3; the next record is 4, not a second 2');
  t.equal(rows.at(-1)?.action, 'records.verify');
  const report = await verifyDatabase(app.db);
  t.ok(report.ok, 'the chain verifies');
});

forEachDriver(t, 'a record that cannot be hashed is refused alone; the others of its batch are written', async (t, driver) => {
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, { database });
  const writer = new AuditWriter(app.db, app.keys, app.log, { maxBatch: 100, checkpointEvery: 1000, checkpointSeconds: 3600 });
  await writer.start('unhashable');
  // One batch: queued in the same tick. A lone surrogate is text canonical JSON refuses.
  const results = await Promise.allSettled([
    writer.record({ action: 'records.read', outcome: 'allowed', purpose: 'a' }),
    writer.record({ action: 'records.read', outcome: 'allowed', purpose: 'b\ud800' }),
    writer.record({ action: 'records.read', outcome: 'allowed', purpose: 'c' }),
  ]);
  t.same(results.map((result) => result.status), ['fulfilled', 'rejected', 'fulfilled']);
  await writer.close();
  const rows = await app.db.select({ seq: auditEvents.seq, purpose: auditEvents.purpose }).from(auditEvents).where(eq(auditEvents.chainId, writer.chainId)).orderBy(auditEvents.seq);
  t.same(rows.map((row) => [Number(row.seq), row.purpose]), [[1, 'a'], [2, 'c']], 'the others chained on without it');
  t.ok((await verifyDatabase(app.db)).ok, 'the chain verifies');
});
