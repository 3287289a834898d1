import t from 'tap';
import { count, eq, sql } from 'drizzle-orm';
import { catalogHistory, catalogSyncs, resources } from '../../src/db/schema.js';
import { loadCatalog, syncCatalogDir } from '../../src/catalog/index.js';
import { syncCatalog } from '../../src/catalog/sync.js';
import { copyCatalog, editCatalogFile, removeCatalogFile } from '../helpers/catalog.js';
import { forEachDriver, freshDatabase } from '../helpers/app.js';

forEachDriver(t, 'sync: create, idempotence, update, retire, restore, history', async (t, driver) => {
  const { db } = await freshDatabase(t, driver);
  const dir = copyCatalog(t);

  const first = await syncCatalogDir(db, dir);
  if (!first.ok) throw new Error('the shipped catalog must be valid');
  t.equal(first.report.created, 46, '9 agencies + 37 resources created');
  t.equal(first.report.unchanged, 0);
  const [{ n: resourceCount }] = (await db.select({ n: count() }).from(resources)) as [{ n: number }];
  t.equal(resourceCount, 37);

  const again = await syncCatalogDir(db, dir);
  t.match(again, { ok: true, report: { created: 0, updated: 0, retired: 0, unchanged: 46, changes: [] } });
  const historyRows = async () => ((await db.select({ n: count() }).from(catalogHistory)) as [{ n: number }])[0].n;
  t.equal(await historyRows(), 46, 'an unchanged sync adds no history');

  editCatalogFile(dir, 'zj-amr/330000-AMR-00002.yaml', /^summary: .*$/m, 'summary: 行政处罚信息（已更新）。');
  const updated = await syncCatalogDir(db, dir);
  t.match(updated, {
    ok: true,
    report: { updated: 1, changes: [{ kind: 'resource', code: '330000-AMR-00002', version: 2, change: 'updated', fields: ['summary'] }] },
  });
  const [amr] = await db.select().from(resources).where(eq(resources.code, '330000-AMR-00002'));
  t.equal(amr?.version, 2);
  t.match(amr?.searchText, /已更新/);

  removeCatalogFile(dir, 'zj-amr/330000-AMR-00002.yaml');
  const retired = await syncCatalogDir(db, dir);
  t.match(retired, { ok: true, report: { retired: 1, changes: [{ code: '330000-AMR-00002', change: 'retired', version: 3 }] } });
  const [gone] = await db.select().from(resources).where(eq(resources.code, '330000-AMR-00002'));
  t.ok(gone?.retiredAt, 'retired, not deleted');

  const restoredDir = copyCatalog(t);
  const restored = await syncCatalogDir(db, restoredDir);
  t.match(restored, { ok: true, report: { updated: 1, changes: [{ code: '330000-AMR-00002', change: 'restored', version: 4, fields: ['summary'] }] } });

  const history = await db
    .select({ version: catalogHistory.version, change: catalogHistory.change })
    .from(catalogHistory)
    .where(eq(catalogHistory.code, '330000-AMR-00002'))
    .orderBy(catalogHistory.id);
  t.same(history, [
    { version: 1, change: 'created' },
    { version: 2, change: 'updated' },
    { version: 3, change: 'retired' },
    { version: 4, change: 'restored' },
  ]);
});

forEachDriver(t, 'an invalid catalog never half-loads: the last good one stays', async (t, driver) => {
  const { db } = await freshDatabase(t, driver);
  const dir = copyCatalog(t);
  t.ok((await syncCatalogDir(db, dir)).ok);
  const syncs = async () => ((await db.select({ n: count() }).from(catalogSyncs)) as [{ n: number }])[0].n;
  const before = await syncs();

  editCatalogFile(dir, 'zj-amr/330000-AMR-00001.yaml', /^summary: .*$/m, 'summary: 这个改动不应生效。');
  editCatalogFile(dir, 'zj-edu/330000-EDU-00001.yaml', /^provider: zj-edu$/m, 'provider: zj-nobody');
  const outcome = await syncCatalogDir(db, dir);
  t.equal(outcome.ok, false);
  t.equal(await syncs(), before, 'no sync recorded');
  const [amr] = await db.select().from(resources).where(eq(resources.code, '330000-AMR-00001'));
  t.equal(amr?.version, 1, 'the valid edit in the same batch was not applied either');
});

forEachDriver(t, 'a sync that fails half-way leaves nothing behind (one transaction)', async (t, driver) => {
  const { db } = await freshDatabase(t, driver);
  const loaded = await loadCatalog(copyCatalog(t));
  if (!loaded.ok) throw new Error('the shipped catalog must be valid');

  // The database refuses one resource late in the batch, after agencies and others went in.
  await db.execute(sql`create function refuse_one() returns trigger language plpgsql as $$
    begin if new.code = '330000-STATS-00005' then raise exception 'refused for the test'; end if; return new; end $$`);
  await db.execute(sql`create trigger refuse_one before insert on resources for each row execute function refuse_one()`);

  await t.rejects(syncCatalog(db, loaded.catalog, 'test'), /refused for the test|Failed query/);
  const counts = await db.execute(sql`select (select count(*) from agencies)::int as a, (select count(*) from resources)::int as r,
    (select count(*) from catalog_syncs)::int as s, (select count(*) from catalog_history)::int as h`);
  const row = (Array.isArray(counts) ? counts[0] : (counts as { rows: unknown[] }).rows[0]) as Record<string, number>;
  t.same(row, { a: 0, r: 0, s: 0, h: 0 });
});
