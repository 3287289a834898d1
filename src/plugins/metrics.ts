import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import fastifyMetrics, { type IMetricsPluginOptions } from 'fastify-metrics';
import cluster from 'node:cluster';
import { randomUUID } from 'node:crypto';
import { AggregatorRegistry, Gauge, Registry } from 'prom-client';

/** A worker asks the primary for every worker's metrics, aggregated (src/cluster.ts answers). */
export const METRICS_REQUEST = 'gateway:metrics?';
export const METRICS_RESPONSE = 'gateway:metrics';
export interface MetricsRequest {
  type: typeof METRICS_REQUEST;
  id: string;
}
interface MetricsResponse {
  type: typeof METRICS_RESPONSE;
  id: string;
  text?: string;
  error?: string;
}

/**
 * GET /metrics in Prometheus text format: request counts and latency histograms per route and
 * status (fastify-metrics), Node's process metrics with event-loop lag (prom-client's defaults),
 * and the database pool. Each app has its own registry, so two apps in one process (tests) and
 * the bench's baselines never share counters. In a worker of `gateway serve --workers N`, the
 * answer is the whole gateway's: the primary collects every worker's registry and aggregates it
 * (prom-client's AggregatorRegistry: counters and histograms summed, the event-loop lag averaged),
 * so that a scrape of any worker counts every request.
 */
// fastify-metrics is CommonJS with `exports.default`; under NodeNext its default import is the module.
const metricsPlugin = (fastifyMetrics as unknown as { default: FastifyPluginAsync<Partial<IMetricsPluginOptions>> })
  .default;

async function gatewayMetrics(app: FastifyInstance) {
  const registry = new Registry();
  const endpoint = {
    url: '/metrics',
    method: 'GET' as const,
    logLevel: 'warn' as const,
    schema: {
      tags: ['operations'],
      summary: 'Prometheus metrics',
      description: 'With several workers, every worker answers for all of them (aggregated by the primary).',
      produces: ['text/plain'],
      response: { 200: { type: 'string', description: 'Prometheus text exposition format' } },
    },
  };
  // A worker answers with the whole gateway's metrics, from the primary; a lone process with its own.
  if (cluster.isWorker) app.route({ ...endpoint, handler: clusterMetrics });
  await app.register(metricsPlugin, {
    // fastify-metrics installs its own handler on the route it is given.
    endpoint: cluster.isWorker ? null : { ...endpoint, handler: async () => '' },
    defaultMetrics: { enabled: true, register: registry, prefix: 'gateway_' },
    routeMetrics: {
      enabled: { histogram: true, summary: false },
      // The scrapes themselves are not counted (fastify-metrics leaves out its own route; a worker's is ours).
      routeBlacklist: ['/metrics'],
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
  if (cluster.isWorker) {
    // Answer the primary's collection with this app's registry (prom-client's worker side).
    new AggregatorRegistry();
    AggregatorRegistry.setRegistries([registry]);
  }
  app.addHook('onClose', () => {
    pool.reset();
    registry.clear();
  });
}

/** The whole gateway's metrics, from the primary. */
async function clusterMetrics(_request: FastifyRequest, reply: FastifyReply): Promise<string> {
  const id = randomUUID();
  const text = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => settle(new Error('the primary did not answer for the metrics within 10 s')), 10_000);
    const onMessage = (message: MetricsResponse) => {
      if (message?.type === METRICS_RESPONSE && message.id === id) settle(message.error ? new Error(message.error) : undefined, message.text ?? '');
    };
    function settle(error?: Error, value = '') {
      clearTimeout(timer);
      process.off('message', onMessage);
      if (error) reject(error);
      else resolve(value);
    }
    process.on('message', onMessage);
    process.send?.({ type: METRICS_REQUEST, id } satisfies MetricsRequest);
  });
  reply.type(Registry.PROMETHEUS_CONTENT_TYPE);
  return text;
}

export default fp(gatewayMetrics, { name: 'metrics', fastify: '5.x', dependencies: ['database'] });
