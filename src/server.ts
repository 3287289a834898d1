import closeWithGrace from 'close-with-grace';
import type { App } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { DatabaseInUseError } from './db/index.js';
import { KeyDecryptionError } from './identity/index.js';
import { gatewayLogger } from './logger.js';
import { openGateway, withDemoDefaults } from './startup.js';

/**
 * The only file that listens. Start-up problems an operator can fix (a bad variable, a data
 * directory held by another process) end the process with one line on stderr and exit code 1.
 */
export async function startServer(env: NodeJS.ProcessEnv = process.env) {
  let config: Config;
  try {
    config = withDemoDefaults(loadConfig(env));
  } catch (error) {
    if (error instanceof ConfigError) return fail(`configuration error: ${error.message}`);
    throw error;
  }
  const logger = gatewayLogger(config);

  // On SIGINT/SIGTERM, at any moment of the start or after: the start-up step under way gives up
  // (a load rolls back), background work stops, in-flight requests finish, what plugins opened is
  // closed; past the grace period, or on a second signal, exit anyway.
  const stopping = new AbortController();
  let app: App | undefined;
  let step: Promise<unknown> = Promise.resolve();
  closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS, logger }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'shutting down after an uncaught error');
    else logger.info({ signal }, 'shutting down');
    stopping.abort();
    await step.catch(() => {});
    await app?.close();
  });

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
  return ready;
}

function fail(message: string): never {
  process.stderr.write(`gateway: ${message}\n`);
  process.exit(1);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await startServer();
}
