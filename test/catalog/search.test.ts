import t from 'tap';
import type { ResourceCursor, ResourceSearch } from '../../src/catalog/repository.js';
import type { Resource } from '../../src/model/catalog.js';
import { syncCatalogDir } from '../../src/catalog/index.js';
import { buildTestApp, forEachDriver, freshDatabase } from '../helpers/app.js';
import { copyCatalog, editCatalogFile } from '../helpers/catalog.js';
import { searchResourcesInDatabase } from '../helpers/catalog-search.js';

type Query = Omit<ResourceSearch, 'limit' | 'after' | 'visibility'>;

/** Searches that cover every filter and the kinds of `q` people type. */
function queries(resources: Resource[]): Query[] {
  const out: Query[] = [{}];
  for (const resource of resources) {
    out.push({ q: resource.name.slice(0, 2) }, { q: resource.name.slice(-2) }, { q: resource.keywords[0] ?? '' });
    out.push({ q: `${resource.name.slice(0, 1)} ${resource.title.split(' ')[0] ?? ''}` });
  }
  out.push({ q: 'REGISTRY' }, { q: 'data' }, { q: '信息 浙江' }, { q: '%' }, { q: '_' }, { q: '没有这个词' }, { q: '学籍' }, { q: '区划' });
  for (const value of new Set(resources.map((r) => r.provider))) out.push({ provider: value }, { provider: value, q: '信息' });
  for (const value of new Set(resources.map((r) => r.theme))) out.push({ theme: value });
  for (const value of new Set(resources.map((r) => r.sharing.type))) out.push({ sharing: value });
  for (const value of new Set(resources.map((r) => r.open.type))) out.push({ open: value, q: '数据' });
  for (const value of [...new Set(resources.flatMap((r) => r.keywords))].slice(0, 10)) out.push({ keyword: value });
  for (const value of new Set(resources.map((r) => r.format))) out.push({ format: value });
  for (const value of new Set(resources.map((r) => r.update_cycle))) out.push({ update_cycle: value, q: '数据' });
  return out;
}

forEachDriver(t, 'the catalog search from memory answers as the database did: items, order, cursors, facets', async (t, driver) => {
  const app = await buildTestApp(t, driver);
  const everything = await app.catalogSearch.search({ limit: 1000, visibility: 'all' });
  const resources = everything.items.map((item) => item.document);
  t.ok(resources.length >= 30, `${resources.length} resources in the demo catalog`);

  let compared = 0;
  let nonEmpty = 0;
  for (const query of queries(resources)) {
    for (const visibility of ['open', 'all'] as const) {
      // Page through two at a time, following each side's own cursor.
      let after: ResourceCursor | undefined;
      for (let page = 0; page < 100; page++) {
        const search: ResourceSearch = { ...query, limit: 2, visibility, ...(after ? { after } : {}) };
        const fromMemory = await app.catalogSearch.search(search);
        const fromDatabase = await searchResourcesInDatabase(app.db, search);
        compared += 1;
        if (fromMemory.items.length) nonEmpty += 1;
        const label = `${JSON.stringify(query)} ${visibility} page ${page}`;
        if (!t.same(fromMemory.items, fromDatabase.items.map((item) => ({ ...item, rank: Number(item.rank) })), `${label}: items`)) break;
        t.same(fromMemory.facets, fromDatabase.facets, `${label}: facets`);
        t.same(fromMemory.next, fromDatabase.next, `${label}: cursor`);
        if (!fromMemory.next) break;
        after = fromMemory.next;
      }
    }
  }
  t.ok(compared > 300 && nonEmpty > 150, `${compared} pages compared, ${nonEmpty} with results`);
});

forEachDriver(t, 'a sync through one instance reaches the search of another within a second (NOTIFY)', async (t, driver) => {
  const database = await freshDatabase(t, driver);
  const dir = copyCatalog(t);
  const a = await buildTestApp(t, driver, { database, env: { CATALOG_DIR: dir } });
  const b = await buildTestApp(t, driver, { database, env: { CATALOG_DIR: dir, CATALOG_SYNC_ON_START: 'false' } });
  const find = async () => (await b.catalogSearch.search({ q: '登记台账新名', limit: 10, visibility: 'all' })).items.map((i) => i.document.code);
  t.same(await find(), [], 'not there before');
  editCatalogFile(dir, 'zj-amr/330000-AMR-00001.yaml', /^name: .*$/m, 'name: 企业登记台账新名');
  const outcome = await syncCatalogDir(a.db, dir);
  t.ok(outcome.ok);
  const started = Date.now();
  let found: string[] = [];
  while (Date.now() - started < 1000 && found.length === 0) {
    found = await find();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  t.same(found, ['330000-AMR-00001'], `found by the other instance ${Date.now() - started} ms after the sync`);
});
