import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

/** Work that goes on beside the requests: demo loads after start-up, download files after imports. */
export interface Background {
  /** Aborted as soon as the gateway begins to close: work in progress gives up and cleans up. */
  readonly signal: AbortSignal;
  /** Run `work` now; a failure is logged (unless the gateway is stopping), never thrown. */
  run(name: string, work: (signal: AbortSignal) => Promise<unknown>): void;
}

declare module 'fastify' {
  interface FastifyInstance {
    background: Background;
  }
}

/**
 * Background work, stopped with the gateway: the signal is aborted when closing begins, and
 * closing waits for the work to end before the plugins registered earlier (the database) close,
 * so that nothing is left half-written.
 */
async function backgroundPlugin(app: FastifyInstance) {
  const controller = new AbortController();
  const tasks = new Set<Promise<unknown>>();
  app.decorate('background', {
    signal: controller.signal,
    run(name: string, work: (signal: AbortSignal) => Promise<unknown>) {
      const task = work(controller.signal)
        .catch((error: Error) => {
          if (!controller.signal.aborted) app.log.error({ err: error, task: name }, 'background task failed');
        })
        .finally(() => tasks.delete(task));
      tasks.add(task);
    },
  } satisfies Background);
  app.addHook('preClose', async () => controller.abort());
  app.addHook('onClose', async () => {
    await Promise.allSettled([...tasks]);
  });
}

export default fp(backgroundPlugin, { name: 'background', fastify: '5.x', dependencies: ['database'] });
