import type { Command } from 'commander';
import type { JWK } from 'jose';
import { CliError, readJsonFile, type CliContext } from '../commands.js';
import { applyRetention } from './partitions.js';
import { exportMonth, verifyDatabase, verifyExportFile, type VerifyReport } from './verify.js';

/** `gateway audit`: verify the trail, export a month of it, drop the exported months past retention. */
export function auditCommands(program: Command, cli: CliContext): void {
  const audit = program.command('audit').description('the audit trail');

  audit
    .command('verify')
    .description('walk every audit chain: hashes, links and checkpoint signatures; exit 1 on the first altered, removed, inserted or reordered record')
    .option('--from <time>', 'verify from this time on (RFC 3339), taking the link before it as given')
    .option('--file <export>', 'verify an export file offline instead of the database')
    .option('--jwks <file>', 'with --file: public keys to trust instead of those in the file')
    .option('--json', 'print the report as JSON')
    .action(async (options: { from?: string; file?: string; jwks?: string; json?: boolean }) => {
      const from = options.from ? new Date(options.from) : undefined;
      if (from && Number.isNaN(from.getTime())) throw new CliError(`--from: not a time: ${options.from}`);
      const report = await verifyReport(cli, options.file, options.jwks, from);
      if (options.json) cli.json(report);
      else {
        for (const chain of report.chains) {
          const state = chain.problem ? `${chain.problem.kind} at ${chain.problem.seq}${chain.problem.record_id ? ` (record ${chain.problem.record_id})` : ''}: ${chain.problem.detail}` : 'ok';
          cli.line(`chain ${chain.chain_id}: ${chain.records} records, last ${chain.last_seq}: ${state}`);
        }
      }
      if (!report.ok) throw new CliError(`the audit trail does not verify: ${report.problems.length} chain(s) with a problem`);
      if (!options.json) cli.line(`verified ${report.chains.reduce((n, c) => n + c.records, 0)} records in ${report.chains.length} chain(s)`);
    });

  audit
    .command('export')
    .description('write one month of the trail, with its checkpoints and public keys, to a file that verifies offline')
    .requiredOption('--month <YYYY-MM>', 'the month (UTC)')
    .requiredOption('--out <file>', 'the file to write (must not exist)')
    .action(async (options: { month: string; out: string }) => {
      await cli.withDatabase(async (database) => {
        const exported = await exportMonth(database.db, options.month, options.out).catch((error: Error) => {
          throw new CliError(error.message);
        });
        cli.line(`exported ${exported.records} records of ${exported.month} in ${exported.chains} chain(s) to ${exported.file} (sha256 ${exported.sha256}); it verifies`);
      });
    });

  audit
    .command('retention')
    .description('drop audit months older than AUDIT_RETENTION_MONTHS that were exported (what the gateway does daily)')
    .action(async () => {
      const { AUDIT_RETENTION_MONTHS } = cli.config();
      await cli.withDatabase(async (database) => {
        const outcome = await applyRetention(database.db, AUDIT_RETENTION_MONTHS);
        cli.line(`dropped: ${outcome.dropped.join(' ') || 'none'}; kept unexported: ${outcome.kept.join(' ') || 'none'}`);
      });
    });
}

/** The verification of an export file (offline, against `jwks` when given) or of the database. */
async function verifyReport(cli: CliContext, file: string | undefined, jwks: string | undefined, from: Date | undefined): Promise<VerifyReport> {
  if (file) {
    const keys = jwks ? ((await readJsonFile(jwks)) as { keys: JWK[] }).keys : undefined;
    return verifyExportFile(file, keys).catch((error: Error) => {
      throw new CliError(error.message);
    });
  }
  return cli.withDatabase((database) => verifyDatabase(database.db, from ? { from } : {}));
}
