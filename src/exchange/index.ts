import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import { DEMO_RESOURCES, recordCount, seedDemo } from '../demo/seed.js';
import { exchangeRoutes } from './routes.js';
import { UpstreamClient } from './upstream.js';

export { importFile, ImportRejected, loadRecords } from './import.js';
export type { ImportReport } from './import.js';
export { recordTable } from './tables.js';

/** Exchange: shared records, queries and verifications, decided by grants and audited. */
async function exchange(app: FastifyInstance, { config }: { config: Config }) {
  if (config.DEMO_DATA === 'auto' && app.database.driver === 'pglite' && (await recordCount(app.database, DEMO_RESOURCES.residents)) === 0) {
    const reports = await seedDemo(app.database, 'small');
    app.log.info({ loaded: reports.map((r) => ({ resource: r.resource, rows: r.rows })) }, 'demo data loaded (DEMO_DATA=auto)');
  }
  const upstream = new UpstreamClient();
  app.addHook('onClose', () => upstream.close());
  await app.register(exchangeRoutes, { upstream });
}

export default fp(exchange, { name: 'exchange', fastify: '5.x', dependencies: ['auth', 'audit', 'catalog', 'sharing'] });
