import t from 'tap';
import { sql } from 'drizzle-orm';
import { findResource } from '../../src/catalog/index.js';
import { rowsOf } from '../../src/db/index.js';
import { migrateRecordTable } from '../../src/records/tables.js';
import { buildTestApp, forEachDriver, freshDatabase } from '../helpers/app.js';

const RESIDENTS = '330000-PSB-00001'; // record key id_number; region_code filterable

forEachDriver(t, 'record tables index each filterable item with the record key', async (t, driver) => {
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, { database });
  const indexes = async () =>
    new Map(
      rowsOf<{ indexname: string; indexdef: string }>(
        await app.db.execute(sql`select indexname, indexdef from pg_indexes where schemaname = 'records' and tablename = 'r_330000_psb_00001'`),
      ).map((row) => [row.indexname, row.indexdef]),
    );

  const made = await indexes();
  t.match(made.get('r_330000_psb_00001_region_code_k'), /\(region_code, id_number\)$/, 'a filter on region_code is answered in key order');
  t.notOk(made.has('r_330000_psb_00001_region_code'), 'no index on the item alone');

  // A table from the earlier layout (the item alone) is brought to the new one by the next migration.
  await app.db.execute(sql.raw('drop index records.r_330000_psb_00001_region_code_k'));
  await app.db.execute(sql.raw('create index r_330000_psb_00001_region_code on records.r_330000_psb_00001 (region_code)'));
  const stored = await findResource(app.db, RESIDENTS);
  const statements = await migrateRecordTable(app.db, stored?.document as NonNullable<typeof stored>['document'], 2);
  t.match(statements, [/^create index if not exists "r_330000_psb_00001_region_code_k" .*\("region_code", "id_number"\)$/, /^drop index if exists "records"\."r_330000_psb_00001_region_code"$/]);
  const migrated = await indexes();
  t.ok(migrated.has('r_330000_psb_00001_region_code_k'));
  t.notOk(migrated.has('r_330000_psb_00001_region_code'), 'the old index is dropped');
  t.same(await migrateRecordTable(app.db, stored?.document as NonNullable<typeof stored>['document'], 3), [], 'nothing more to do');
});
