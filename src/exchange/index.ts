import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { exchangeRoutes } from './routes.js';
import { UpstreamClient } from './upstream.js';


/** Exchange: shared records, queries and verifications, decided by grants and audited. */
async function exchange(app: FastifyInstance) {
  const upstream = new UpstreamClient();
  app.addHook('onClose', () => upstream.close());
  await app.register(exchangeRoutes, { upstream });
}

export default fp(exchange, { name: 'exchange', fastify: '5.x', dependencies: ['auth', 'audit', 'catalog', 'sharing'] });
