import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Redis } from 'ioredis';

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Redis (REDIS_URL) for the rate-limit counts every instance and worker shares: token
     * issuance per client, open data per address or client. Unset: each process counts alone.
     */
    redis: Redis | undefined;
  }
}

/** Longest a rate-limit count may take before the limit is skipped for that request (ms). */
const COMMAND_TIMEOUT_MS = 500;

async function redisPlugin(app: FastifyInstance, { url }: { url: string | undefined }) {
  const redis = url
    ? new Redis(url, {
        connectTimeout: 1000,
        // While Redis is away a count fails at once (no queue waiting for the reconnect), and one
        // that hangs gives up after COMMAND_TIMEOUT_MS: the limits are skipped meanwhile
        // (skipOnError), so no request waits on a dead Redis.
        enableOfflineQueue: false,
        commandTimeout: COMMAND_TIMEOUT_MS,
        maxRetriesPerRequest: 0,
        // Tried again every second at most, so that the counts are shared again soon after it is back.
        retryStrategy: (times: number) => Math.min(times * 100, 1000),
        lazyConnect: false,
      })
    : undefined;
  // One warning when Redis goes away and one line when it is back, not one per reconnect attempt.
  let awaySince = 0;
  redis?.on('error', (error) => {
    if (awaySince !== 0) return;
    awaySince = Date.now();
    app.log.warn({ err: { message: error.message } }, 'redis (rate-limit counts) unavailable: limits are skipped until it is back');
  });
  redis?.on('ready', () => {
    if (awaySince === 0) return;
    app.log.info({ unavailable_ms: Date.now() - awaySince }, 'redis (rate-limit counts) available again');
    awaySince = 0;
  });
  // The first requests count in Redis too: wait for it briefly at start (a Redis that is away
  // is warned about above, and the limits are skipped until it answers).
  if (redis && redis.status !== 'ready') {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2000);
      redis.once('ready', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
  app.addHook('onClose', async () => {
    await redis?.quit().catch(() => redis.disconnect());
  });
  app.decorate('redis', redis);
}

export default fp(redisPlugin, { name: 'redis', fastify: '5.x' });
