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

async function redisPlugin(app: FastifyInstance, { url }: { url: string | undefined }) {
  const redis = url ? new Redis(url, { connectTimeout: 1000, maxRetriesPerRequest: 1, lazyConnect: false }) : undefined;
  // The limits are skipped while Redis is away (skipOnError), and that is logged, not thrown.
  redis?.on('error', (error) => app.log.warn({ err: { message: error.message } }, 'redis (rate-limit counts) unavailable'));
  app.addHook('onClose', async () => {
    await redis?.quit().catch(() => redis.disconnect());
  });
  app.decorate('redis', redis);
}

export default fp(redisPlugin, { name: 'redis', fastify: '5.x' });
