import type { FastifyBaseLogger } from 'fastify';
import { sql } from 'drizzle-orm';
import { buildApp, type App } from './app.js';
import { formatCatalogError, syncCatalogDir, defaultCatalogDir } from './catalog/index.js';
import type { Config } from './config.js';
import { isPostgresUrl, openDatabase, type Database } from './db/index.js';
import { installation } from './db/schema.js';
import { dropStrayStaging } from './records/index.js';
import { DEMO_SUPERVISOR_AGENCY, demoCredentialsFile, readDemoCredentials, seedDemoClients, writeDemoCredentials } from './demo/clients.js';
import { DIVISIONS, seedOpenDemo, seedVillages } from './demo/open.js';
import { DEMO_IDP_PATH, type DemoPerson } from './demo/idp.js';
import { ensureDemoPeople } from './demo/people.js';
import { recordCount, seedDemo } from './demo/seed.js';
import { gatewayLogger } from './logger.js';
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

export interface OpenGatewayOptions {
  /** An already open database to use instead of opening DATABASE_URL (the caller closes it). */
  database?: Database;
  /** A logger instance to use instead of one made from the configuration. */
  logger?: FastifyBaseLogger;
  /** The clock grants expire by and deadlines count from (tests move it). */
  clock?: () => Date;
  /** Aborted on SIGINT/SIGTERM: the step under way gives up (a load rolls back), the app closes. */
  signal?: AbortSignal;
  /** Test-only routes, added before the app is ready. */
  extend?: (app: App) => void | Promise<void>;
  /** The demo identity provider with these people, on any database (the embedded demo has it on its own). */
  demoPeople?: DemoPerson[];
}

/**
 * Every start-up step of the gateway, in order; the server, the CLI and the tests all start it
 * through here, and the domain plugins only serve.
 *
 * 1. The database: opened (on PGlite, its directory lock taken) and migrated; the staging tables
 *    of imports killed half-way dropped.
 * 2. The app: every plugin registered; each loads what it keeps in memory (keys, grants, the
 *    catalog's resources, the audit chain's head).
 *    On the embedded demo on a PGlite directory, the demo's people first (their passwords in the
 *    demo credentials file) for its OpenID provider under /demo-idp.
 * 3. The catalog sync from the files (CATALOG_SYNC_ON_START), which makes and alters the record
 *    tables; invalid files leave the last good catalog served.
 * 4. On the embedded demo (DEMO_DATA=auto on PGlite): the exchange records, the open data down
 *    to towns, then the demo clients with their grants. Each load is one transaction, so that a
 *    start stopped half-way leaves whole resources or none, and the next start loads what is missing.
 * 5. In the background (stopped when the gateway closes): the demo's villages, then the download
 *    files of every open dataset (OPEN_PREBUILD).
 *
 * A step that fails, or a stop (`signal`) at any step, closes what was opened and throws.
 */
export async function openGateway(config: Config, options: OpenGatewayOptions = {}): Promise<App> {
  const signal = options.signal ?? new AbortController().signal;
  const logger = options.logger ?? gatewayLogger(config);
  const owned = !options.database;
  const database = options.database ?? (await openDatabase(config.DATABASE_URL, { poolMax: config.DATABASE_POOL_MAX, logger }));
  let app: App | undefined;
  try {
    await migrate(database, logger);
    signal.throwIfAborted();

    const demo = config.DEMO_DATA === 'auto' && database.driver === 'pglite';
    // The demo's people sign in at its OpenID provider; their passwords go beside the data directory.
    const credentialsFile = demo ? demoCredentialsFile(database) : undefined;
    const people = options.demoPeople ?? (credentialsFile ? await ensureDemoPeople(credentialsFile) : undefined);
    app = await buildApp(config, {
      database,
      ownsDatabase: owned,
      logger,
      ...(options.clock ? { clock: options.clock } : {}),
      ...(people ? { demoIdp: { people } } : {}),
    });
    if (config.CATALOG_SYNC_ON_START) await syncCatalog(app, config);
    await options.extend?.(app);
    await app.ready();
    signal.throwIfAborted();

    if (people) app.log.info({ file: credentialsFile, path: DEMO_IDP_PATH }, 'demo sign-in: the people and their passwords are in this file');
    if (demo) await loadDemo(app, config, signal);
    background(app, config, demo);
    return app;
  } catch (error) {
    if (app) await app.close();
    else if (owned) await database.close();
    throw error;
  }
}

/** Step 1: migrations, and the installation's id made on the first start. */
async function migrate(database: Database, logger: FastifyBaseLogger): Promise<void> {
  const status = await database.migrate();
  logger.info({ driver: database.driver, location: database.location, ...status }, 'database ready');
  await database.db.execute(sql`insert into ${installation} (key, value) values ('installation_id', ${crypto.randomUUID()}) on conflict do nothing`);
  // An import killed half-way left its staging table; one still running elsewhere holds its lock.
  const dropped = await dropStrayStaging(database);
  if (dropped.length) logger.warn({ tables: dropped }, 'dropped the staging tables of interrupted imports');
}

/** Step 3: the catalog files into the database; an audit record when something changed. */
async function syncCatalog(app: App, config: Config): Promise<void> {
  const dir = config.CATALOG_DIR ?? defaultCatalogDir;
  const outcome = await syncCatalogDir(app.db, dir);
  if (!outcome.ok) {
    for (const error of outcome.errors) app.log.error({ code: error.code }, formatCatalogError(error));
    app.log.error({ dir, errors: outcome.errors.length }, 'catalog files are invalid; the last good catalog stays served');
    return;
  }
  app.forgetCatalog();
  const { changes, ...counts } = outcome.report;
  app.log.info({ dir, ...counts }, 'catalog synced');
  if (changes.length > 0) {
    await app.audit.record({ action: 'catalog.sync', outcome: 'allowed', row_count: changes.length, reason: `sync ${counts.sync_id}` });
  }
}

/** Step 4: the demo's data and clients, whatever of them a previous start did not load. */
async function loadDemo(app: App, config: Config, signal: AbortSignal): Promise<void> {
  const loaded = [
    ...(await seedDemo(app.database, 'small', undefined, { signal, missingOnly: true })),
    ...(await seedOpenDemo(app.database, 'small', undefined, { signal, missingOnly: true })),
  ];
  if (loaded.length) app.log.info({ loaded: loaded.map((r) => ({ resource: r.resource, rows: r.rows })) }, 'demo data loaded (DEMO_DATA=auto)');
  const file = demoCredentialsFile(app.database);
  if (!file) return;
  if (!(await readDemoCredentials(app.database, file))) {
    signal.throwIfAborted();
    const credentials = await seedDemoClients(app.database, {
      record: (input) => app.audit.record(input),
      settings: sharingSettings(config),
      secrets: app.clientSecrets,
      now: app.clock(),
    });
    await writeDemoCredentials(file, credentials);
    await app.grants.reload();
  }
  // Their secrets go to a file beside the data, never to the log.
  app.log.info({ file }, 'demo clients: ids and secrets are in this file (consumer, provider, supervisor, admin)');
}

/** Step 5: the villages of the demo, then the download files, while the gateway serves. */
function background(app: App, config: Config, demo: boolean): void {
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
