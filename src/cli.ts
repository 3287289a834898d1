import { writeFile, readFile } from 'node:fs/promises';
import { Command, CommanderError } from 'commander';
import type { JSONWebKeySet, JWK } from 'jose';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { hostname } from 'node:os';
import cliProgress from 'cli-progress';
import { findResource } from './catalog/index.js';
import { seedDemo } from './demo/seed.js';
import { DEMO_SUPERVISOR_AGENCY, demoCredentialsFile, seedDemoClients, writeDemoCredentials } from './demo/clients.js';
import { withDemoDefaults } from './startup.js';
import { seedOpenDemo, type OpenDemo } from './demo/open.js';
import { allDatasets, DownloadFiles, findDataset } from './open/index.js';
import { importFile, ImportRejected, type ImportReport } from './exchange/index.js';
import { and, desc, eq } from 'drizzle-orm';
import { applyRetention } from './audit/partitions.js';
import { AuditWriter } from './audit/writer.js';
import { applications, grants } from './db/schema.js';
import { calendarFrom, decide as decideApplication, findApplication, GRANTS_CHANNEL, grantView } from './sharing/index.js';
import type { DecisionInput } from './sharing/applications.js';
import { exportMonth, verifyDatabase, verifyExportFile, type VerifyReport } from './audit/verify.js';
import pino from 'pino';
import { buildApp } from './app.js';
import { ConfigError, ConfigSchema, loadConfig, type Config } from './config.js';
import { defaultCatalogDir, loadCatalog, syncCatalogDir } from './catalog/index.js';
import { lastSync } from './catalog/repository.js';
import {
  announce,
  clientView,
  createClient,
  disableClient,
  KeyDecryptionError,
  keyEncryptionKey,
  KeyStore,
  listClients,
  rotateClientSecret,
  scopeWords,
} from './identity/index.js';
import { formatCatalogError } from './catalog/files.js';
import { DatabaseInUseError, openDatabase, type Database } from './db/index.js';
import { packageInfo as pkg } from './paths.js';

export interface CliIo {
  env: NodeJS.ProcessEnv;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

const processIo: CliIo = {
  env: process.env,
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

const { SingleBar, Presets } = cliProgress;

/** A failure the operator can act on: printed as one line, exit code 1, no stack trace. */
export class CliError extends Error {
  override name = 'CliError';
}

/**
 * `gateway`: one CLI with subcommands, thin over src/. Each subcommand does what an operator
 * could also do over the gateway's admin routes.
 */
export function buildCli(io: CliIo = processIo): Command {
  const config = (): Config => loadConfig(io.env);
  const program = new Command('gateway')
    .description(pkg.description)
    .version(pkg.version)
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .exitOverride()
    .showHelpAfterError();

  program
    .command('serve')
    .description('run the gateway (same as npm start)')
    .action(async () => {
      const { startServer } = await import('./server.js');
      await startServer(io.env);
    });

  program
    .command('migrate')
    .description('apply the database migrations to DATABASE_URL and report what is applied')
    .action(async () => {
      const { DATABASE_URL, DATABASE_POOL_MAX } = config();
      const database = await openDatabase(DATABASE_URL, { poolMax: DATABASE_POOL_MAX });
      try {
        const before = await database.migrationStatus();
        const after = await database.migrate();
        io.stdout(
          `${database.location}: ${after.applied - before.applied} migration(s) applied now, ` +
            `${after.applied} of ${after.expected} in all\n`,
        );
      } finally {
        await database.close();
      }
    });

  const catalog = program.command('catalog').description('the resource catalog files');
  const catalogDir = (dir: string | undefined) => dir ?? config().CATALOG_DIR ?? defaultCatalogDir;

  catalog
    .command('validate')
    .argument('[dir]', 'catalog folder (default: CATALOG_DIR or the shipped catalog/)')
    .description('check every catalog file against the schemas and rules; lists every error')
    .action(async (dir: string | undefined) => {
      const folder = catalogDir(dir);
      const loaded = await loadCatalog(folder);
      if (!loaded.ok) {
        for (const error of loaded.errors) io.stderr(`${formatCatalogError(error)} [${error.code}]\n`);
        throw new CliError(`${folder}: ${loaded.errors.length} error(s)`);
      }
      const { agencies, resources } = loaded.catalog;
      io.stdout(`${folder}: valid, ${agencies.length} agencies, ${resources.length} resources\n`);
    });

  catalog
    .command('sync')
    .argument('[dir]', 'catalog folder (default: CATALOG_DIR or the shipped catalog/)')
    .description('validate the catalog files and sync them into DATABASE_URL in one transaction')
    .option('--json', 'print the sync report as JSON')
    .action(async (dir: string | undefined, options: { json?: boolean }) => {
      const folder = catalogDir(dir);
      await withDatabase(async (database) => {
        const outcome = await syncCatalogDir(database.db, folder);
        if (!outcome.ok) {
          for (const error of outcome.errors) io.stderr(`${formatCatalogError(error)} [${error.code}]\n`);
          throw new CliError(`${folder}: ${outcome.errors.length} error(s); nothing was synced`);
        }
        const { changes, ...counts } = outcome.report;
        if (options.json) {
          io.stdout(`${JSON.stringify(outcome.report, null, 2)}\n`);
          return;
        }
        for (const change of changes) {
          const fields = change.change === 'updated' ? ` (${change.fields.join(', ')})` : '';
          io.stdout(`${change.change} ${change.kind} ${change.code} v${change.version}${fields}\n`);
        }
        io.stdout(
          `sync ${counts.sync_id}: ${counts.created} created, ${counts.updated} updated, ` +
            `${counts.retired} retired, ${counts.unchanged} unchanged\n`,
        );
      });
    });

  /**
   * Open DATABASE_URL (migrated, with the catalog loaded once if it never was, since clients
   * belong to its agencies), run, close: the CLI's way to the data.
   */
  async function withDatabase(work: (database: Database) => Promise<void>, options: { needsCatalog?: boolean } = {}) {
    const { DATABASE_URL, DATABASE_POOL_MAX, CATALOG_DIR } = config();
    const database = await openDatabase(DATABASE_URL, { poolMax: DATABASE_POOL_MAX });
    try {
      await database.migrate();
      if (options.needsCatalog && !(await lastSync(database.db))) {
        await syncCatalogDir(database.db, CATALOG_DIR ?? defaultCatalogDir);
      }
      await work(database);
    } finally {
      await database.close();
    }
  }

  const client = program.command('client').description('OAuth clients: systems of an agency');
  const printClient = (view: object, json: boolean | undefined) =>
    io.stdout(json ? `${JSON.stringify(view, null, 2)}\n` : `${Object.entries(view).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(' ') : String(v)}`).join('\n')}\n`);

  client
    .command('create')
    .description('register a client; prints its id and, for secret clients, the secret (shown once)')
    .requiredOption('--agency <code>', 'the agency the client belongs to')
    .requiredOption('--scopes <words>', `space-separated scope words: ${scopeWords.join(' ')}`)
    .option('--name <name>', 'a name people recognise')
    .option('--jwks <file>', 'public JWK Set for private_key_jwt (no secret is made)')
    .option('--json', 'print JSON')
    .action(async (options: { agency: string; scopes: string; name?: string; jwks?: string; json?: boolean }) => {
      const jwks = options.jwks ? ((await readJson(options.jwks)) as JSONWebKeySet) : undefined;
      await withDatabase(async (database) => {
        const created = await createClient(database.db, {
          agency: options.agency,
          scopes: options.scopes.split(/[\s,]+/).filter(Boolean),
          ...(options.name ? { name: options.name } : {}),
          ...(jwks ? { jwks } : {}),
        });
        printClient({ ...clientView(created.client), ...(created.secret ? { client_secret: created.secret } : {}) }, options.json);
      }, { needsCatalog: true });
    });

  client
    .command('list')
    .description('list clients')
    .option('--agency <code>', 'only this agency\'s clients')
    .option('--json', 'print JSON')
    .action(async (options: { agency?: string; json?: boolean }) => {
      await withDatabase(async (database) => {
        const { items } = await listClients(database.db, { limit: 10_000, ...(options.agency ? { agency: options.agency } : {}) });
        const views = items.map(clientView);
        if (options.json) return void io.stdout(`${JSON.stringify(views, null, 2)}\n`);
        for (const view of views) {
          io.stdout(`${view.client_id}\t${view.agency}\t${view.status}\t${view.auth_method}\t${view.scopes.join(' ')}\n`);
        }
      });
    });

  client
    .command('disable')
    .argument('<client_id>')
    .description('disable a client; its tokens stop working on every instance within a second')
    .action(async (id: string) => {
      await withDatabase(async (database) => {
        await disableClient(database.db, id);
        await announce(database, { type: 'client_disabled', client_id: id });
        io.stdout(`disabled ${id}\n`);
      });
    });

  client
    .command('rotate-secret')
    .argument('<client_id>')
    .description('give a client a new secret (shown once); the old one stops working at once')
    .option('--json', 'print JSON')
    .action(async (id: string, options: { json?: boolean }) => {
      await withDatabase(async (database) => {
        const rotated = await rotateClientSecret(database.db, id);
        printClient({ client_id: rotated.client.id, client_secret: rotated.secret }, options.json);
      });
    });

  program
    .command('keys')
    .description('the gateway\'s token signing keys')
    .command('rotate')
    .description('sign with a new key from now on; the old one stays published until its tokens expire')
    .action(async () => {
      const settings = config();
      await withDatabase(async (database) => {
        const keys = new KeyStore(database.db, await keyEncryptionKey(settings), settings.TOKEN_SIGNING_ALG, settings.TOKEN_TTL_SECONDS);
        // Loading first proves KEY_ENCRYPTION_KEY opens the stored keys before anything is written.
        const madeFirstKey = await keys.start();
        const kid = madeFirstKey ? keys.signingKey().kid : await keys.rotate();
        await announce(database, { type: 'keys_rotated' });
        io.stdout(`signing with ${kid}\n`);
      });
    });

  /** The CLI records what it does like the gateway does: on an audit chain of its own. */
  async function withAudit(database: Database, work: (writer: AuditWriter) => Promise<void>) {
    const settings = config();
    const keys = new KeyStore(database.db, await keyEncryptionKey(settings), settings.TOKEN_SIGNING_ALG, settings.TOKEN_TTL_SECONDS);
    await keys.start();
    const writer = new AuditWriter(database.db, keys, pino({ level: 'silent' }), {
      maxBatch: settings.AUDIT_BATCH_MAX,
      checkpointEvery: settings.AUDIT_CHECKPOINT_EVERY,
      checkpointSeconds: settings.AUDIT_CHECKPOINT_SECONDS,
    });
    await writer.start(`cli:${hostname()}:${process.pid}`);
    try {
      await work(writer);
    } finally {
      await writer.close();
    }
  }

  const grantCommand = program.command('grant').description('grants (授权): who may use which fields of which resource');
  grantCommand
    .command('list')
    .description('list grants with their status')
    .option('--agency <code>', 'only grants to this agency')
    .option('--resource <code>', 'only grants on this resource')
    .option('--json', 'print JSON')
    .action(async (options: { agency?: string; resource?: string; json?: boolean }) => {
      await withDatabase(async (database) => {
        const rows = await database.db
          .select()
          .from(grants)
          .where(and(options.agency ? eq(grants.agency, options.agency) : undefined, options.resource ? eq(grants.resource, options.resource) : undefined))
          .orderBy(desc(grants.validFrom));
        const views = rows.map((grant) => grantView(grant, new Date()));
        if (options.json) return void io.stdout(`${JSON.stringify(views, null, 2)}\n`);
        for (const view of views) {
          io.stdout(`${view.id}\t${view.agency}\t${view.resource}\t${view.mode}\t${view.status}\t${view.valid_until}\t${view.fields.join(',')}\n`);
        }
      });
    });

  const applicationCommand = program.command('application').description('applications (共享申请) and their decisions');
  applicationCommand
    .command('list')
    .description('list applications, newest first')
    .option('--status <status>', 'pending, approved or rejected')
    .option('--provider <code>', 'only applications for this provider agency')
    .option('--json', 'print JSON')
    .action(async (options: { status?: string; provider?: string; json?: boolean }) => {
      await withDatabase(async (database) => {
        const rows = await database.db
          .select()
          .from(applications)
          .where(and(options.status ? eq(applications.status, options.status) : undefined, options.provider ? eq(applications.provider, options.provider) : undefined))
          .orderBy(desc(applications.createdAt));
        if (options.json) return void io.stdout(`${JSON.stringify(rows, null, 2)}\n`);
        for (const row of rows) {
          io.stdout(`${row.id}\t${row.agency}\t${row.resource}\t${row.mode}\t${row.status}\tdue ${row.dueAt?.toISOString() ?? '-'}\t${row.fields.join(',')}\n`);
        }
      });
    });

  const decideCommand = (decision: 'approve' | 'reject') =>
    async (id: string, options: { fields?: string; days?: string; reason?: string }) => {
      await withDatabase(async (database) => {
        const application = await findApplication(database.db, id);
        if (!application) throw new CliError(`no application ${id}`);
        const input: DecisionInput =
          decision === 'approve'
            ? {
                decision,
                ...(options.fields ? { fields: options.fields.split(',').map((f) => f.trim()).filter(Boolean) } : {}),
                ...(options.days ? { duration_days: Number(options.days) } : {}),
              }
            : { decision, reason: options.reason ?? '' };
        await withAudit(database, async (writer) => {
          const record = { action: 'application.decide', resource: application.resource, provider: application.provider, reason: 'operator (gateway CLI)' };
          try {
            const decided = await decideApplication(database.db, application, input, 'operator:cli', new Date());
            if (decided.grant) await database.notify(GRANTS_CHANNEL, decided.grant.id);
            await writer.record({ ...record, outcome: 'allowed', grant_id: decided.grant?.id ?? null, fields: decided.grant?.fields ?? application.fields });
            io.stdout(`${decided.application.status} ${id}${decided.grant ? ` → grant ${decided.grant.id} (${decided.grant.fields.join(',')}) until ${decided.grant.validUntil.toISOString()}` : ''}\n`);
          } catch (error) {
            await writer.record({ ...record, outcome: 'denied', reason: (error as Error).message.slice(0, 200) });
            throw new CliError((error as Error).message);
          }
        });
      });
    };

  applicationCommand
    .command('approve')
    .argument('<id>')
    .description('approve a pending application as the operator, optionally narrowed')
    .option('--fields <list>', 'comma-separated subset of the fields applied for')
    .option('--days <n>', 'a shorter duration than applied for')
    .action(decideCommand('approve'));

  applicationCommand
    .command('reject')
    .argument('<id>')
    .description('reject a pending application as the operator')
    .requiredOption('--reason <text>', 'why (shown to the applicant)')
    .action(decideCommand('reject'));

  program
    .command('import')
    .argument('<resource>', 'resource code, e.g. 330000-EDU-00001')
    .argument('<file>', 'CSV (RFC 4180, UTF-8, BOM or not), NDJSON, or a JSON array')
    .description("replace a resource's records atomically from a file; every row is checked first")
    .option('--format <format>', 'csv, ndjson or json (default: from the file name)')
    .option('--skip-invalid', 'load the valid rows and report the bad ones (default: load nothing when any row is bad)')
    .option('--json', 'print the report as JSON')
    .action(async (code: string, file: string, options: { format?: string; skipInvalid?: boolean; json?: boolean }) => {
      await withDatabase(async (database) => {
        const stored = await findResource(database.db, code);
        if (!stored || stored.retiredAt) throw new CliError(`no resource ${code} in the catalog`);
        const size = (await stat(file).catch(() => undefined))?.size;
        if (size === undefined) throw new CliError(`${file}: no such file`);
        const bar = process.stderr.isTTY && !options.json ? new SingleBar({ format: `${code} [{bar}] {percentage}% | {rows} rows` }, Presets.shades_classic) : undefined;
        bar?.start(size, 0, { rows: 0 });
        let read = 0;
        let report: ImportReport;
        try {
          report = await importFile(database, stored.document, file, {
            ...(options.format ? { format: options.format } : {}),
            skipInvalid: options.skipInvalid ?? false,
            onBytes: (n) => bar?.update((read += n)),
            onRows: (rows) => bar?.update(read, { rows }),
          });
        } catch (error) {
          bar?.stop();
          if (error instanceof ImportRejected) {
            for (const bad of error.report.bad) io.stderr(`line ${bad.line}: ${bad.item || '(row)'} ${bad.reason}\n`);
            if (options.json) io.stdout(`${JSON.stringify(error.report, null, 2)}\n`);
            throw new CliError(`${error.message} (use --skip-invalid to load the valid rows)`);
          }
          throw new CliError((error as Error).message);
        }
        bar?.stop();
        if (options.json) return void io.stdout(`${JSON.stringify(report, null, 2)}\n`);
        for (const bad of report.bad) io.stderr(`skipped line ${bad.line}: ${bad.item || '(row)'} ${bad.reason}\n`);
        io.stdout(`${code}: ${report.rows} rows loaded${report.skipped ? `, ${report.skipped} skipped` : ''} in ${report.seconds} s (sha256 ${report.sha256})\n`);
        await prebuild(database, [code]);
      }, { needsCatalog: true });
    });

  program
    .command('demo')
    .description('demo data')
    .command('seed')
    .description('load the deterministic demo records: residents, students and enterprises; with --open, the open datasets too')
    .option('--size <size>', 'small (thousands of rows) or bench (1,000,000 residents, 300,000 students)', 'small')
    .option('--open <open>', 'also the open data: small (divisions down to towns, stations) or full (and the 620,573 villages)')
    .option('--no-exchange', 'only the open data (with --open), or only the clients (with --clients)')
    .option('--clients', 'also the demo clients and their grants; ids and secrets go to the --credentials file')
    .option('--credentials <file>', 'where --clients writes the ids and secrets (mode 0600)')
    .action(async (options: { size: string; open?: string; exchange: boolean; clients?: boolean; credentials?: string }) => {
      if (options.size !== 'small' && options.size !== 'bench') throw new CliError('--size is small or bench');
      if (options.open !== undefined && options.open !== 'small' && options.open !== 'full') throw new CliError('--open is small or full');
      if (!options.exchange && options.open === undefined && !options.clients) {
        throw new CliError('--no-exchange leaves nothing to load: add --open small|full or --clients');
      }
      await withDatabase(async (database) => {
        const started = Date.now();
        const progress = (resource: string, rows: number) => {
          if (process.stderr.isTTY) process.stderr.write(`\r${resource}: ${rows} rows`);
        };
        const reports = options.exchange ? await seedDemo(database, options.size as 'small' | 'bench', progress) : [];
        if (options.open) reports.push(...(await seedOpenDemo(database, options.open as OpenDemo, progress)));
        if (process.stderr.isTTY && reports.length) process.stderr.write('\n');
        if (reports.length) {
          const rows = reports.reduce((n, r) => n + r.rows, 0);
          const seconds = (Date.now() - started) / 1000;
          for (const r of reports) io.stdout(`${r.resource}: ${r.rows} rows in ${r.seconds} s\n`);
          io.stdout(`${rows} rows in ${seconds.toFixed(1)} s (${Math.round(rows / seconds)} rows/s)\n`);
        }
        if (options.clients) await demoClientsCommand(database, options.credentials);
        await prebuild(database, reports.map((r) => r.resource));
      }, { needsCatalog: true });
    });

  /** The demo's clients and grants (audited as the operator's acts), their secrets written to a file only. */
  async function demoClientsCommand(database: Database, file?: string) {
    const settings = config();
    const target = resolve(file ?? (database.driver === 'pglite' && database.location !== 'memory://' ? demoCredentialsFile(database.location) : './data/demo-credentials.json'));
    await withAudit(database, async (writer) => {
      const credentials = await seedDemoClients(database, {
        record: (input) => writer.record(input),
        settings: {
          maxDurationDays: settings.SHARING_MAX_DURATION_DAYS,
          decisionWorkingDays: settings.SHARING_DECISION_WORKING_DAYS,
          calendar: calendarFrom(settings.PUBLIC_HOLIDAYS, settings.MAKEUP_WORKDAYS),
        },
        now: new Date(),
      });
      await writeDemoCredentials(target, credentials);
    });
    io.stdout(`demo clients (consumer, provider, supervisor, admin): ids and secrets in ${target}\n`);
    if (!withDemoDefaults(settings).SUPERVISOR_AGENCIES.split(',').includes(DEMO_SUPERVISOR_AGENCY)) {
      io.stdout(`the supervisor sees every agency's exchanges once the gateway runs with SUPERVISOR_AGENCIES=${DEMO_SUPERVISOR_AGENCY}\n`);
    }
  }

  /** Prebuild the download files of the open datasets among `codes`: after an import when enabled, or when asked. */
  async function prebuild(database: Database, codes: string[], asked = false) {
    const { OPEN_PREBUILD, OPEN_DATA_DIR, OPEN_FETCH_ROWS } = config();
    if (!OPEN_PREBUILD && !asked) return;
    const files = new DownloadFiles(OPEN_DATA_DIR, database, OPEN_FETCH_ROWS);
    for (const code of codes) {
      const dataset = await findDataset(database.db, code);
      if (!dataset || dataset.resource.upstream) continue;
      const started = Date.now();
      await files.build(dataset);
      io.stdout(`${code}: download files prebuilt in ${((Date.now() - started) / 1000).toFixed(1)} s (${OPEN_DATA_DIR})\n`);
    }
  }

  program
    .command('open')
    .description('open data')
    .command('prebuild')
    .argument('[codes...]', 'dataset codes (default: every open dataset)')
    .description("build the whole-dataset download files of open datasets for their current data (what the gateway does after an import)")
    .action(async (codes: string[]) => {
      await withDatabase(async (database) => {
        const wanted = codes.length ? codes : (await allDatasets(database.db)).map((dataset) => dataset.resource.code);
        for (const code of wanted) {
          if (!(await findDataset(database.db, code))) throw new CliError(`no open dataset ${code}`);
        }
        await prebuild(database, wanted, true);
      }, { needsCatalog: true });
    });

  const auditCommand = program.command('audit').description('the audit trail');

  auditCommand
    .command('verify')
    .description('walk every audit chain: hashes, links and checkpoint signatures; exit 1 on the first altered, removed, inserted or reordered record')
    .option('--from <time>', 'verify from this time on (RFC 3339), taking the link before it as given')
    .option('--file <export>', 'verify an export file offline instead of the database')
    .option('--jwks <file>', 'with --file: public keys to trust instead of those in the file')
    .option('--json', 'print the report as JSON')
    .action(async (options: { from?: string; file?: string; jwks?: string; json?: boolean }) => {
      const from = options.from ? new Date(options.from) : undefined;
      if (from && Number.isNaN(from.getTime())) throw new CliError(`--from: not a time: ${options.from}`);
      let report: VerifyReport | undefined;
      if (options.file) {
        const keys = options.jwks ? ((await readJson(options.jwks)) as { keys: JWK[] }).keys : undefined;
        report = await verifyExportFile(options.file, keys).catch((error: Error) => {
          throw new CliError(error.message);
        });
      } else {
        await withDatabase(async (database) => {
          report = await verifyDatabase(database.db, from ? { from } : {});
        });
      }
      const result = report as VerifyReport;
      if (options.json) io.stdout(`${JSON.stringify(result, null, 2)}\n`);
      else {
        for (const chain of result.chains) {
          const state = chain.problem ? `${chain.problem.kind} at ${chain.problem.seq}${chain.problem.record_id ? ` (record ${chain.problem.record_id})` : ''}: ${chain.problem.detail}` : 'ok';
          io.stdout(`chain ${chain.chain_id}: ${chain.records} records, last ${chain.last_seq}: ${state}\n`);
        }
      }
      if (!result.ok) throw new CliError(`the audit trail does not verify: ${result.problems.length} chain(s) with a problem`);
      if (!options.json) io.stdout(`verified ${result.chains.reduce((n, c) => n + c.records, 0)} records in ${result.chains.length} chain(s)\n`);
    });

  auditCommand
    .command('export')
    .description('write one month of the trail, with its checkpoints and public keys, to a file that verifies offline')
    .requiredOption('--month <YYYY-MM>', 'the month (UTC)')
    .requiredOption('--out <file>', 'the file to write (must not exist)')
    .action(async (options: { month: string; out: string }) => {
      await withDatabase(async (database) => {
        const exported = await exportMonth(database.db, options.month, options.out).catch((error: Error) => {
          throw new CliError(error.message);
        });
        io.stdout(`exported ${exported.records} records of ${exported.month} in ${exported.chains} chain(s) to ${exported.file} (sha256 ${exported.sha256}); it verifies\n`);
      });
    });

  auditCommand
    .command('retention')
    .description('drop audit months older than AUDIT_RETENTION_MONTHS that were exported (what the gateway does daily)')
    .action(async () => {
      const { AUDIT_RETENTION_MONTHS } = config();
      await withDatabase(async (database) => {
        const outcome = await applyRetention(database.db, AUDIT_RETENTION_MONTHS);
        io.stdout(`dropped: ${outcome.dropped.join(' ') || 'none'}; kept unexported: ${outcome.kept.join(' ') || 'none'}\n`);
      });
    });

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
        io.stdout(`${options.out} is up to date\n`);
      } else if (options.out) {
        await writeFile(options.out, document);
        io.stdout(`wrote ${options.out}\n`);
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

async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new CliError(`${file}: ${(error as Error).message}`);
  }
}

/** The OpenAPI document as YAML, from an app on a throw-away in-memory database. */
export async function generateOpenapi(): Promise<string> {
  const app = await buildApp(loadConfig({ DATABASE_URL: 'memory://', DEMO_DATA: 'off', OPEN_PREBUILD: 'false' }), { logger: pino({ level: 'silent' }) });
  try {
    await app.ready();
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
