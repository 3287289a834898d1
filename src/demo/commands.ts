import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { AuditInput } from '../audit/index.js';
import { CliError, type CliContext } from '../commands.js';
import type { Database } from '../db/index.js';
import { clientSecretsFor } from '../identity/index.js';
import { sharingSettings } from '../sharing/index.js';
import { DEMO_SUPERVISOR_AGENCY, demoCredentialsFile, seedDemoClients, writeDemoCredentials } from './clients.js';
import { seedOpenDemo, type OpenDemo } from './open.js';
import { seedDemo } from './seed.js';

interface SeedOptions {
  size: string;
  open?: string;
  exchange: boolean;
  clients?: boolean;
  credentials?: string;
}

/** `gateway demo seed`: the deterministic demo records, open data and clients. */
export function demoCommands(program: Command, cli: CliContext<AuditInput>): void {
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
    .action(async (options: SeedOptions) => {
      if (options.size !== 'small' && options.size !== 'bench') throw new CliError('--size is small or bench');
      if (options.open !== undefined && options.open !== 'small' && options.open !== 'full') throw new CliError('--open is small or full');
      if (!options.exchange && options.open === undefined && !options.clients) {
        throw new CliError('--no-exchange leaves nothing to load: add --open small|full or --clients');
      }
      await cli.withDatabase(async (database) => {
        const codes = await seedRecords(cli, database, options);
        if (options.clients) await seedClients(cli, database, options.credentials);
        await cli.prebuild(database, codes);
      }, { needsCatalog: true });
    });
}

/** The exchange's and the open data's demo records, with a line each; the codes of the resources loaded. */
async function seedRecords(cli: CliContext, database: Database, options: SeedOptions): Promise<string[]> {
  const started = Date.now();
  const progress = (resource: string, rows: number) => cli.progressLine(`${resource}: ${rows} rows`);
  const reports = options.exchange ? await seedDemo(database, options.size as 'small' | 'bench', progress) : [];
  if (options.open) reports.push(...(await seedOpenDemo(database, options.open as OpenDemo, progress)));
  if (reports.length) {
    cli.endProgressLine();
    const rows = reports.reduce((n, r) => n + r.rows, 0);
    const seconds = (Date.now() - started) / 1000;
    for (const r of reports) cli.line(`${r.resource}: ${r.rows} rows in ${r.seconds} s`);
    cli.line(`${rows} rows in ${seconds.toFixed(1)} s (${Math.round(rows / seconds)} rows/s)`);
  }
  return reports.map((r) => r.resource);
}

/** The demo's clients and grants (audited as the operator's acts), their secrets written to a file only. */
async function seedClients(cli: CliContext<AuditInput>, database: Database, file: string | undefined): Promise<void> {
  const target = resolve(file ?? demoCredentialsFile(database) ?? './data/demo-credentials.json');
  await cli.withAudit(database, async (record) => {
    const credentials = await seedDemoClients(database, {
      record,
      settings: sharingSettings(cli.config()),
      secrets: await clientSecretsFor(cli.config()),
      now: new Date(),
    });
    await writeDemoCredentials(target, credentials);
  });
  cli.line(`demo clients (consumer, provider, supervisor, admin): ids and secrets in ${target}`);
  if (!cli.servedConfig().SUPERVISOR_AGENCIES.split(',').includes(DEMO_SUPERVISOR_AGENCY)) {
    cli.line(`the supervisor sees every agency's exchanges once the gateway runs with SUPERVISOR_AGENCIES=${DEMO_SUPERVISOR_AGENCY}`);
  }
}
