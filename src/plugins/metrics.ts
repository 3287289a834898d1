import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import fp from 'fastify-plugin';
import fastifyMetrics, { type IMetricsPluginOptions } from 'fastify-metrics';
import { Gauge, Registry } from 'prom-client';

/**
 * GET /metrics in Prometheus text format: request counts and latency histograms per route and
 * status (fastify-metrics), Node's process metrics with event-loop lag (prom-client's defaults),
 * and the database pool. Each app has its own registry, so two apps in one process (tests) and
 * the bench's baselines never share counters.
 */
// fastify-metrics is CommonJS with `exports.default`; under NodeNext its default import is the module.
const metricsPlugin = (fastifyMetrics as unknown as { default: FastifyPluginAsync<Partial<IMetricsPluginOptions>> })
  .default;

async function gatewayMetrics(app: FastifyInstance) {
  const registry = new Registry();
  await app.register(metricsPlugin, {
    endpoint: {
      url: '/metrics',
      method: 'GET',
      logLevel: 'warn',
      schema: {
        tags: ['operations'],
        summary: 'Prometheus metrics',
        produces: ['text/plain'],
        response: { 200: { type: 'string', description: 'Prometheus text exposition format' } },
      },
      // Required by the type; fastify-metrics installs its own handler in its place.
      handler: async () => '',
    },
    defaultMetrics: { enabled: true, register: registry, prefix: 'gateway_' },
    routeMetrics: {
      enabled: { histogram: true, summary: false },
      overrides: {
        histogram: {
          registers: [registry],
          buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
        },
        // fastify-metrics creates the summary even when it is off; keep it out of the global registry.
        summary: { registers: [registry] },
      },
    },
  });

  const database = app.database;
  const pool = new Gauge({
    name: 'gateway_db_pool_connections',
    help: 'Database connections by state (max: pool size, open: connected, busy: running a query)',
    labelNames: ['driver', 'state'],
    registers: [registry],
    async collect() {
      const stats = await database.poolStats();
      for (const state of ['max', 'open', 'busy'] as const) {
        this.set({ driver: database.driver, state }, stats[state]);
      }
    },
  });
  app.addHook('onClose', () => {
    pool.reset();
    registry.clear();
  });
}

export default fp(gatewayMetrics, { name: 'metrics', fastify: '5.x', dependencies: ['database'] });
