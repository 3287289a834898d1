import closeWithGrace from 'close-with-grace';
import { buildApp } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { DatabaseInUseError } from './db/index.js';
import { KeyDecryptionError } from './identity/index.js';

/**
 * The only file that listens. Start-up problems an operator can fix (a bad variable, a data
 * directory held by another process) end the process with one line on stderr and exit code 1.
 */
export async function startServer(env: NodeJS.ProcessEnv = process.env) {
  let config: Config;
  try {
    config = loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return fail(`configuration error: ${error.message}`);
    throw error;
  }

  let app: Awaited<ReturnType<typeof buildApp>>;
  try {
    app = await buildApp(config);
    await app.ready();
  } catch (error) {
    if (error instanceof DatabaseInUseError || error instanceof KeyDecryptionError) return fail(error.message);
    if (error instanceof ConfigError) return fail(`configuration error: ${error.message}`);
    throw error;
  }

  // On SIGINT/SIGTERM: stop accepting, finish in-flight requests, flush and close what plugins
  // opened; past the grace period, or on a second signal, exit anyway.
  closeWithGrace({ delay: config.SHUTDOWN_GRACE_MS, logger: app.log }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'shutting down after an uncaught error');
    else app.log.info({ signal }, 'shutting down');
    await app.close();
  });

  await app.listen({ host: config.HOST, port: config.PORT });
  return app;
}

function fail(message: string): never {
  process.stderr.write(`gateway: ${message}\n`);
  process.exit(1);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await startServer();
}
