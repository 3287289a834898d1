import t from 'tap';
import { and, eq } from 'drizzle-orm';
import { chainStatus, lastVerification, runVerification } from '../../src/audit/verifications.js';
import { auditEvents, auditVerifications } from '../../src/db/schema.js';
import { buildTestApp, forEachDriver, freshDatabase } from '../helpers/app.js';

forEachDriver(t, 'full verifications of the chains', async (t, driver) => {
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, { database });
  const db = app.db;
  const chain = app.audit.chainId;
  /** Records on the trail after the first subtest (the app records some of its own at start-up). */
  let total = 0;

  await t.test('the chain status before and after a checkpoint', async (t) => {
    t.equal(await lastVerification(db), null, 'none has run yet');
    t.equal(await app.auditVerification.last(), null);
    await app.audit.flush();
    const start = (await chainStatus(db)).find((status) => status.chain_id === chain)?.records ?? 0;
    for (let i = 0; i < 12; i++) await app.audit.record({ action: 'records.read', outcome: 'allowed', agency: 'zj-hrss', purpose: `case ${i}` });
    const before = (await chainStatus(db)).find((status) => status.chain_id === chain);
    t.ok(before, 'the running instance’s chain is listed');
    t.equal(before?.records, start + 12, 'its last seq');
    t.match(before?.instance, /:\d+$/, 'host:pid');
    t.type(before?.started_at, 'string');
    await app.audit.checkpoint();
    await app.audit.record({ action: 'records.read', outcome: 'denied', agency: 'zj-hrss' });
    const after = (await chainStatus(db)).find((status) => status.chain_id === chain);
    t.equal(after?.checkpoint?.seq, start + 12, 'the last signed checkpoint');
    t.type(after?.checkpoint?.kid, 'string');
    t.ok(after?.checkpoint && Date.parse(after.checkpoint.signed_at) > 0);
    t.equal(after?.records, start + 13);
    total = start + 13;
    t.equal(after?.since_checkpoint, 1, 'records since the checkpoint');
  });

  await t.test('a valid trail: N/N chains verify, the run is kept', async (t) => {
    const run = await runVerification(db, 'test-instance', 'demand');
    t.equal(run.error, null);
    t.ok(run.chains && run.chains >= 1);
    t.equal(run.chains_valid, run.chains, 'every chain verifies');
    t.equal(run.records, total);
    t.same(run.problems, []);
    t.ok(run.finished_at && run.finished_at >= run.started_at);
    const last = await lastVerification(db);
    t.match(last, { id: run.id, instance: 'test-instance', trigger: 'demand', chains: run.chains, chains_valid: run.chains, records: total, error: null });
    t.ok(last?.finished_at, 'finished');
  });

  await t.test('a tampered record: a problem, fewer valid chains than chains', async (t) => {
    const where = and(eq(auditEvents.chainId, chain), eq(auditEvents.seq, 5));
    const [original] = await db.select().from(auditEvents).where(where);
    await db.update(auditEvents).set({ purpose: 'nothing to see here' }).where(where);
    t.teardown(() => db.update(auditEvents).set({ purpose: original?.purpose ?? null }).where(where));
    const run = await app.auditVerification.runNow('demand');
    t.equal(run.error, null);
    t.ok((run.chains_valid ?? 0) < (run.chains ?? 0), `${run.chains_valid}/${run.chains}`);
    t.match(run.problems, [{ chain_id: chain, kind: 'altered', seq: 5, record_id: original?.id }]);
    const kept = await app.auditVerification.last();
    t.match(kept, { id: run.id, trigger: 'demand', problems: [{ chain_id: chain, kind: 'altered', seq: 5 }] }, 'the problem is kept');
  });

  await t.test('one run at a time per instance', async (t) => {
    const first = app.auditVerification.runNow('demand');
    const second = app.auditVerification.runNow('schedule');
    t.equal(first, second, 'a second call joins the running one');
    const run = await first;
    t.equal(run.trigger, 'demand');
    const rows = await db.select().from(auditVerifications);
    t.equal(rows.filter((row) => row.id === run.id).length, 1);
  });

  await t.test('a run that cannot finish keeps its error and does not throw', async (t) => {
    const broken = {
      insert: db.insert.bind(db),
      update: db.update.bind(db),
      select: () => {
        throw new Error('the database went away');
      },
      execute: () => Promise.reject(new Error('the database went away')),
    } as unknown as typeof db;
    const run = await runVerification(broken, 'test-instance', 'schedule');
    t.match(run.error, /went away/);
    t.equal(run.chains, null);
    const last = await lastVerification(db);
    t.match(last, { id: run.id, trigger: 'schedule', error: /went away/ });
    t.ok(last?.finished_at);
  });
});
