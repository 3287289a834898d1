import { isPostgresUrl } from './db/index.js';
import type { App } from './app.js';
import type { Config } from './config.js';
import { DEMO_SUPERVISOR_AGENCY, demoCredentialsFile, readDemoCredentials, seedDemoClients, writeDemoCredentials } from './demo/clients.js';
import { DIVISIONS, seedOpenDemo, seedVillages } from './demo/open.js';
import { recordCount, seedDemo } from './demo/seed.js';
import { allDatasets } from './open/index.js';
import { sharingSettings } from './sharing/index.js';

/** The embedded default with DEMO_DATA=auto: a PGlite database that gets the demo on its first start. */
export function demoWanted(config: Config): boolean {
  return config.DEMO_DATA === 'auto' && !isPostgresUrl(config.DATABASE_URL);
}

/**
 * The configuration the demo runs with: its supervisor agency (电子监察) is the supervisor when
 * SUPERVISOR_AGENCIES is unset, so that the demo's supervisor client sees every exchange.
 */
export function withDemoDefaults(config: Config): Config {
  if (!demoWanted(config) || config.SUPERVISOR_AGENCIES.trim() !== '') return config;
  return { ...config, SUPERVISOR_AGENCIES: DEMO_SUPERVISOR_AGENCY };
}

/**
 * What runs between building the app (migrations and the catalog sync ran in its plugins) and
 * listening, in order. On the embedded demo: the exchange records, the open data down to towns,
 * and the demo clients with their grants, each load one transaction, so that a start stopped by
 * `signal` half-way leaves whole resources or none, and the next start loads what is missing.
 * Then, in the background (stopped when the gateway closes): the villages, and the download
 * files of every open dataset.
 */
export async function prepareGateway(app: App, config: Config, signal: AbortSignal): Promise<void> {
  const demo = config.DEMO_DATA === 'auto' && app.database.driver === 'pglite';
  if (demo) {
    const loaded = [
      ...(await seedDemo(app.database, 'small', undefined, { signal, missingOnly: true })),
      ...(await seedOpenDemo(app.database, 'small', undefined, { signal, missingOnly: true })),
    ];
    if (loaded.length) app.log.info({ loaded: loaded.map((r) => ({ resource: r.resource, rows: r.rows })) }, 'demo data loaded (DEMO_DATA=auto)');
    const file = demoCredentialsFile(app.database);
    if (file) await demoClients(app, config, file, signal);
  }

  app.background.run('open data', async (stopping) => {
    if (demo && (await recordCount(app.database, DIVISIONS.villages.code)) === 0) {
      const report = await seedVillages(app.database, undefined, stopping);
      app.log.info({ resource: report.resource, rows: report.rows, seconds: report.seconds }, 'demo villages loaded in the background');
    }
    if (!config.OPEN_PREBUILD) return;
    for (const dataset of await allDatasets(app.db)) {
      if (stopping.aborted) return;
      if (dataset.resource.upstream || (await app.downloads.complete(dataset))) continue;
      await app.downloads.build(dataset);
      app.log.info({ dataset: dataset.resource.code, stamp: `${dataset.version}.${dataset.importId}` }, 'download files prebuilt');
    }
  });
}

/** The demo's clients and grants, made once; their secrets go to a file beside the data (never to the log). */
async function demoClients(app: App, config: Config, file: string, signal: AbortSignal): Promise<void> {
  if (!(await readDemoCredentials(app.database, file))) {
    signal.throwIfAborted();
    const credentials = await seedDemoClients(app.database, {
      record: (input) => app.audit.record(input),
      settings: sharingSettings(config),
      now: app.clock(),
    });
    await writeDemoCredentials(file, credentials);
    await app.grants.reload();
  }
  app.log.info({ file }, 'demo clients: ids and secrets are in this file (consumer, provider, supervisor, admin)');
}
