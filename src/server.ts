import cluster from 'node:cluster';
import closeWithGrace from 'close-with-grace';
import type { App } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { DatabaseInUseError } from './db/index.js';
import { KeyDecryptionError } from './identity/index.js';
import { gatewayLogger } from './logger.js';
import { openGateway, withDemoDefaults } from './startup.js';
import { READY_MESSAGE, runPrimary, SHUTDOWN_MESSAGE, WORKER_SLOT, workerCount } from './cluster.js';

/**
 * The only file that listens. Start-up problems an operator can fix (a bad variable, a data
 * directory held by another process) end the process with one line on stderr and exit code 1.
 * With more than one worker (WORKERS, src/cluster.ts) this process is the primary and each
 * worker runs the rest of this function.
 */
export async function startServer(env: NodeJS.ProcessEnv = process.env) {
  let config: Config;
  let workers: number;
  try {
    config = withDemoDefaults(loadConfig(env));
    workers = cluster.isWorker ? 1 : workerCount(config);
  } catch (error) {
    if (error instanceof ConfigError) return fail(`configuration error: ${error.message}`);
    throw error;
  }
  const worker = cluster.isWorker ? Number(process.env[WORKER_SLOT]) || cluster.worker?.id : undefined;
  const logger = gatewayLogger(config).child(worker ? { worker } : {});
  if (workers > 1) return void (await runPrimary(config, workers, logger));

  // On SIGINT/SIGTERM, at any moment of the start or after: the start-up step under way gives up
  // (a load rolls back), background work stops, in-flight requests finish, what plugins opened is
  // closed; past the grace period, or on a second signal, exit anyway.
  const stopping = new AbortController();
  let app: App | undefined;
  let step: Promise<unknown> = Promise.resolve();
  const shutdown = closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS, logger }, async ({ signal, err, manual }) => {
    if (err) logger.error({ err }, 'shutting down after an uncaught error');
    else logger.info({ signal: signal ?? (manual ? 'primary' : undefined) }, 'shutting down');
    stopping.abort();
    await step.catch(() => {});
    await app?.close();
  });
  if (cluster.isWorker) {
    // The primary's word to drain, or the primary gone: close as on a signal (once).
    const close = () => {
      if (!stopping.signal.aborted) void shutdown.close();
    };
    process.on('message', (message: { type?: string }) => {
      if (message?.type === SHUTDOWN_MESSAGE) close();
    });
    process.on('disconnect', close);
  }

  try {
    step = openGateway(config, { logger, signal: stopping.signal }).then((opened) => {
      app = opened;
    });
    await step;
  } catch (error) {
    if (stopping.signal.aborted) return undefined;
    if (error instanceof DatabaseInUseError || error instanceof KeyDecryptionError) return fail(error.message);
    if (error instanceof ConfigError) return fail(`configuration error: ${error.message}`);
    throw error;
  }
  if (stopping.signal.aborted) return undefined;

  const ready = app as unknown as App;
  step = ready.listen({ host: config.HOST, port: config.PORT });
  await step;
  process.send?.({ type: READY_MESSAGE });
  return ready;
}

function fail(message: string): never {
  process.stderr.write(`gateway: ${message}\n`);
  process.exit(1);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await startServer();
}
