import t from 'tap';
import { buildTestApp } from './helpers/app.js';
import { party } from './helpers/parties.js';
const c = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
t.test('probe', async (t) => {
  const app = await buildTestApp(t, (process.env.DRIVER as 'pglite') ?? 'pglite', { env: { SUPERVISOR_AGENCIES: 'zj-dsj' } });
  const sup = await party(app, 'zj-dsj', ['audit:read', 'admin', 'applications:write', 'records:read']);
  for (const url of [
    `/v1/audit/events?cursor=${c(['x', 'y'])}`,
    `/v1/audit/checkpoints?cursor=${c(['x', 'y'])}`,
    `/v1/audit/checkpoints?cursor=${c([{}, 1e300])}`,
    `/v1/applications?cursor=${c(['x', 'y'])}`,
    `/v1/grants?cursor=${c(['2020-13-45', 'y'])}`,
    `/v1/catalog/resources?cursor=${c([1e300, 'y'])}`,
    `/v1/catalog/resources?cursor=${c([2 ** 40, 'y'])}`,
    `/v1/catalog/agencies?cursor=${c('\u0000')}`,
    `/v1/admin/clients?cursor=${c('\u0000')}`,
    `/v1/open/datasets?cursor=${c('\u0000')}`,
    `/v1/me/access-log?cursor=${c(['x', 'y'])}`,
  ]) {
    const r = await app.inject({ url, headers: sup.headers });
    console.log(r.statusCode, url.slice(0, 60), r.body.slice(0, 120));
  }
});
