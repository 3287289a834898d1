import { readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import cliProgress from 'cli-progress';
import { Command, CommanderError } from 'commander';
import pino from 'pino';
import { auditCommands } from './audit/commands.js';
import type { AuditInput } from './audit/index.js';
import { AuditWriter } from './audit/writer.js';
import { catalogCommands } from './catalog/commands.js';
import { defaultCatalogDir, syncCatalogDir } from './catalog/index.js';
import { lastSync } from './catalog/repository.js';
import { CliError, type CliContext, type CliIo } from './commands.js';
import { ConfigError, ConfigSchema, loadConfig, type Config } from './config.js';
import { DatabaseInUseError, openDatabase, type Database } from './db/index.js';
import { demoCommands } from './demo/commands.js';
import { exchangeCommands } from './exchange/commands.js';
import { identityCommands } from './identity/commands.js';
import { KeyDecryptionError, keyEncryptionKey, KeyStore } from './identity/index.js';
import { openCommands } from './open/commands.js';
import { DownloadFiles, findDataset } from './open/index.js';
import { packageInfo as pkg } from './paths.js';
import { sharingCommands } from './sharing/commands.js';
import { openGateway, withDemoDefaults } from './startup.js';

export { CliError, type CliIo } from './commands.js';

const processIo: CliIo = {
  env: process.env,
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

/**
 * `gateway`: one CLI with subcommands, thin over src/. Each subcommand does what an operator
 * could also do over the gateway's admin routes; each domain's sit beside its routes
 * (`<domain>/commands.ts`), handed the plumbing here as a CliContext.
 */
export function buildCli(io: CliIo = processIo): Command {
  const cli = cliContext(io);
  const program = new Command('gateway')
    .description(pkg.description)
    .version(pkg.version)
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .exitOverride()
    .showHelpAfterError();

  program
    .command('serve')
    .description('run the gateway (same as npm start)')
    .option('--workers <n>', 'worker processes sharing the port (WORKERS; default: one per core on PostgreSQL, one on PGlite)')
    .action(async (options: { workers?: string }) => {
      const { startServer } = await import('./server.js');
      // Set in this process's environment too, so that the workers it forks read the same.
      if (options.workers !== undefined) io.env.WORKERS = options.workers;
      await startServer(io.env);
    });

  program
    .command('migrate')
    .description('apply the database migrations to DATABASE_URL and report what is applied')
    .action(async () => {
      const { DATABASE_URL, DATABASE_POOL_MAX } = cli.config();
      const database = await openDatabase(DATABASE_URL, { poolMax: DATABASE_POOL_MAX });
      try {
        const before = await database.migrationStatus();
        const after = await database.migrate();
        cli.line(
          `${database.location}: ${after.applied - before.applied} migration(s) applied now, ` +
            `${after.applied} of ${after.expected} in all`,
        );
      } finally {
        await database.close();
      }
    });

  catalogCommands(program, cli);
  identityCommands(program, cli);
  sharingCommands(program, cli);
  exchangeCommands(program, cli);
  demoCommands(program, cli);
  openCommands(program, cli);
  auditCommands(program, cli);

  program
    .command('openapi')
    .description('write the OpenAPI document generated from the routes')
    .option('--out <file>', 'file to write (default: standard output)')
    .option('--check', 'fail when the file differs from what the routes generate')
    .action(async (options: { out?: string; check?: boolean }) => {
      const document = await generateOpenapi();
      if (options.check) {
        if (!options.out) throw new CliError('--check needs --out <file>');
        const current = await readFile(options.out, 'utf8').catch(() => '');
        if (current !== document) throw new CliError(`${options.out} is stale: run npm run openapi`);
        cli.line(`${options.out} is up to date`);
      } else if (options.out) {
        await writeFile(options.out, document);
        cli.line(`wrote ${options.out}`);
      } else {
        io.stdout(document);
      }
    });

  program
    .command('config')
    .description('list the environment variables the gateway reads, with defaults')
    .action(() => {
      io.stdout(configTable());
    });

  return program;
}

/** The plumbing every domain's commands share, over `io`. */
function cliContext(io: CliIo): CliContext<AuditInput> {
  const config = (): Config => loadConfig(io.env);
  const line = (text: string) => io.stdout(`${text}\n`);
  const json = (value: unknown) => line(JSON.stringify(value, null, 2));
  return {
    config,
    servedConfig: () => withDemoDefaults(config()),
    withDatabase: (work, options = {}) => withDatabase(config(), work, options),
    withAudit: (database, work) => withAudit(config(), database, work),
    prebuild: (database, codes, asked = false) => prebuild(config(), database, codes, asked, line),
    line,
    json,
    list: (items, asJson, lineOf) => {
      if (asJson) json(items);
      else for (const item of items) line(lineOf(item));
    },
    problem: (text) => io.stderr(`${text}\n`),
    progressBar: (format) => (process.stderr.isTTY ? new cliProgress.SingleBar({ format }, cliProgress.Presets.shades_classic) : undefined),
    progressLine: (text) => {
      if (process.stderr.isTTY) process.stderr.write(`\r${text}`);
    },
    endProgressLine: () => {
      if (process.stderr.isTTY) process.stderr.write('\n');
    },
  };
}

/** DATABASE_URL opened (the lock taken on PGlite), migrated, the catalog synced once when `needsCatalog` and never synced; closed after `work`. */
async function withDatabase<T>(config: Config, work: (database: Database) => Promise<T>, options: { needsCatalog?: boolean }): Promise<T> {
  const { DATABASE_URL, DATABASE_POOL_MAX, CATALOG_DIR } = config;
  const database = await openDatabase(DATABASE_URL, { poolMax: DATABASE_POOL_MAX });
  try {
    await database.migrate();
    if (options.needsCatalog && !(await lastSync(database.db))) {
      await syncCatalogDir(database.db, CATALOG_DIR ?? defaultCatalogDir);
    }
    return await work(database);
  } finally {
    await database.close();
  }
}

/** The CLI records what it does like the gateway does: on an audit chain of its own. */
async function withAudit(config: Config, database: Database, work: (record: (act: AuditInput) => Promise<string>) => Promise<void>): Promise<void> {
  const keys = new KeyStore(database.db, await keyEncryptionKey(config), config.TOKEN_SIGNING_ALG, config.TOKEN_TTL_SECONDS);
  await keys.start();
  const writer = new AuditWriter(database.db, keys, pino({ level: 'silent' }), {
    maxBatch: config.AUDIT_BATCH_MAX,
    checkpointEvery: config.AUDIT_CHECKPOINT_EVERY,
    checkpointSeconds: config.AUDIT_CHECKPOINT_SECONDS,
  });
  await writer.start(`cli:${hostname()}:${process.pid}`);
  try {
    await work((act) => writer.record(act));
  } finally {
    await writer.close();
  }
}

/** The download files of the open datasets among `codes`, built after an import when OPEN_PREBUILD is on, or when asked. */
async function prebuild(config: Config, database: Database, codes: string[], asked: boolean, line: (text: string) => void): Promise<void> {
  const { OPEN_PREBUILD, OPEN_DATA_DIR, OPEN_FETCH_ROWS } = config;
  if (!OPEN_PREBUILD && !asked) return;
  const files = new DownloadFiles(OPEN_DATA_DIR, database, OPEN_FETCH_ROWS);
  for (const code of codes) {
    const dataset = await findDataset(database.db, code);
    if (!dataset || dataset.resource.upstream) continue;
    const started = Date.now();
    await files.build(dataset);
    line(`${code}: download files prebuilt in ${((Date.now() - started) / 1000).toFixed(1)} s (${OPEN_DATA_DIR})`);
  }
}

/** The OpenAPI document as YAML, from an app on a throw-away in-memory database. */
export async function generateOpenapi(): Promise<string> {
  const app = await openGateway(loadConfig({ DATABASE_URL: 'memory://', DEMO_DATA: 'off', OPEN_PREBUILD: 'false' }), { logger: pino({ level: 'silent' }) });
  try {
    return app.swagger({ yaml: true });
  } finally {
    await app.close();
  }
}

/** The configuration as a Markdown table, from the schema itself (the README shows this). */
export function configTable(): string {
  const rows = Object.entries(ConfigSchema.properties).map(([name, schema]) => {
    const s = schema as { default?: unknown; description?: string };
    const fallback = s.default === undefined ? '' : `\`${String(s.default)}\``;
    return `| \`${name}\` | ${fallback} | ${s.description ?? ''} |`;
  });
  return ['| variable | default | meaning |', '|---|---|---|', ...rows].join('\n') + '\n';
}

/** Run the CLI; resolves to the process exit code. */
export async function runCli(argv: string[], io: CliIo = processIo): Promise<number> {
  try {
    await buildCli(io).parseAsync(argv, { from: 'user' });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode;
    if (
      error instanceof CliError ||
      error instanceof ConfigError ||
      error instanceof DatabaseInUseError ||
      error instanceof KeyDecryptionError ||
      (error instanceof Error && /^GW_/.test(String((error as { code?: string }).code)))
    ) {
      io.stderr(`gateway: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}
