import t from 'tap';
import { syncCatalogDir } from '../../src/catalog/index.js';
import { buildTestApp, forEachDriver, freshDatabase } from '../helpers/app.js';
import { copyCatalog, editCatalogFile, removeCatalogFile } from '../helpers/catalog.js';

const SCHOOLS = '330000-EDU-00002';

forEachDriver(t, "the exchange's copy of the catalog follows a sync made anywhere", async (t, driver) => {
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, { database });
  const first = await app.catalogCache.find(SCHOOLS);
  t.equal(first?.version, 1);
  t.equal(await app.catalogCache.find(SCHOOLS), first, 'read once, then served from memory');

  // Another process (the CLI) syncs an edited catalog into the same database.
  const dir = copyCatalog(t);
  editCatalogFile(dir, `zj-edu/${SCHOOLS}.yaml`, /^summary: .*$/m, 'summary: 全省各级各类学校的基本信息，已更新。');
  const report = await syncCatalogDir(database.db, dir);
  t.ok(report.ok);
  let seen = first;
  for (let i = 0; i < 100 && seen?.version === 1; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    seen = await app.catalogCache.find(SCHOOLS);
  }
  t.equal(seen?.version, 2, 'the NOTIFY of the sync dropped the old copy');

  // A retirement (a resource no other one names as related).
  const complaints = '330000-ENV-00004';
  t.notOk((await app.catalogCache.find(complaints))?.retiredAt);
  removeCatalogFile(dir, `zj-env/${complaints}.yaml`);
  t.ok((await syncCatalogDir(database.db, dir)).ok);
  let retired = await app.catalogCache.find(complaints);
  for (let i = 0; i < 100 && !retired?.retiredAt; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    retired = await app.catalogCache.find(complaints);
  }
  t.ok(retired?.retiredAt, 'a retirement is seen too');
});
