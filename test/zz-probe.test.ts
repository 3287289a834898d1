import t from 'tap';
import { buildTestApp, freshDatabase } from './helpers/app.js';
import { seedDemo } from '../src/demo/seed.js';
t.test('probe', async (t) => {
  const driver = (process.env.DRIVER as 'pglite') ?? 'pglite';
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, { database });
  await seedDemo(database, 'small');
  for (const url of [
    `/v1/open/datasets/330000-AMR-00002/records?where[decided_on][gt]=0000-01-01`,
    `/v1/open/datasets/330000-AMR-00002/records?where[decided_on][gt]=9999-12-31`,
    `/v1/open/datasets/330000-AMR-00004/records?where[listed_on][gt]=0000-01-01`,
    `/v1/open/datasets/330000-ENV-00002/records?where[observed_at][gt]=0000-01-01T00:00:00Z`,
    `/v1/open/datasets/330000-ENV-00002/records?where[observed_at][gt]=%2B275760-09-13T00:00:00Z`,
    `/v1/open/datasets/330000-ENV-00002/download.csv?where[observed_at][gt]=0000-01-01T00:00:00Z`,
  ]) {
    const r = await app.inject({ url });
    console.log(r.statusCode, url.slice(0, 90), r.body.slice(0, 150));
  }
});
