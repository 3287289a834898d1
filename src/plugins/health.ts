import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import Type from 'typebox';

/** A readiness check answers undefined when fine, or says what is not ready yet. */
export type ReadinessCheck = () => Promise<string | undefined>;

declare module 'fastify' {
  interface FastifyInstance {
    /** Domains add what must hold before the gateway takes traffic (catalog loaded, …). */
    addReadinessCheck(name: string, check: ReadinessCheck): void;
  }
}

const CheckResults = Type.Record(Type.String(), Type.String(), {
  description: '"ok", or what is not ready yet, per check',
});

/** GET /healthz (the process is alive) and GET /readyz (it can serve: database, migrations, …). */
async function healthPlugin(app: FastifyInstance) {
  const checks = new Map<string, ReadinessCheck>();
  app.decorate('addReadinessCheck', (name: string, check: ReadinessCheck) => {
    checks.set(name, check);
  });

  app.addReadinessCheck('database', async () => {
    await app.database.ping();
    return undefined;
  });
  // A process that does not hear NOTIFY would accept revoked tokens and serve a stale catalog.
  app.addReadinessCheck('notifications', async () => ((await app.database.hearsNotifications()) ? undefined : 'not listening'));
  app.addReadinessCheck('migrations', async () => {
    const { expected, applied } = await app.database.migrationStatus();
    return applied >= expected ? undefined : `${applied} of ${expected} migrations applied`;
  });

  app.get(
    '/healthz',
    {
      logLevel: 'warn',
      schema: {
        tags: ['operations'],
        summary: 'Liveness: the process answers',
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      logLevel: 'warn',
      schema: {
        tags: ['operations'],
        summary: 'Readiness: database reachable, migrations applied, catalog loaded',
        response: {
          200: Type.Object({ status: Type.Literal('ready'), installation_id: Type.String(), checks: CheckResults }),
          503: { $ref: 'Problem#' },
        },
      },
    },
    async (request, reply) => {
      const results: Record<string, string> = {};
      let ready = true;
      for (const [name, check] of checks) {
        try {
          const problem = await check();
          results[name] = problem ?? 'ok';
          if (problem) ready = false;
        } catch (error) {
          request.log.warn({ err: error, check: name }, 'readiness check failed');
          results[name] = 'unavailable';
          ready = false;
        }
      }
      if (!ready) {
        const failing = Object.entries(results).filter(([, result]) => result !== 'ok');
        reply.header('retry-after', '5');
        return reply.problem(503, 'not_ready', `Not ready: ${failing.map(([n, r]) => `${n} ${r}`).join(', ')}.`, {
          checks: results,
        });
      }
      return { status: 'ready' as const, installation_id: app.installationId, checks: results };
    },
  );
}

export default fp(healthPlugin, { name: 'health', fastify: '5.x', dependencies: ['database', 'errors'] });
