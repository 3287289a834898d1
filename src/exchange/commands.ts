import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { findResource } from '../catalog/index.js';
import { CliError, type CliContext } from '../commands.js';
import { importFile, ImportRejected, type ImportReport } from '../records/index.js';

/** `gateway import`: a provider's records for a resource the exchange shares, loaded from a file in one atomic swap. */
export function exchangeCommands(program: Command, cli: CliContext): void {
  program
    .command('import')
    .argument('<resource>', 'resource code, e.g. 330000-EDU-00001')
    .argument('<file>', 'CSV (RFC 4180, UTF-8, BOM or not), NDJSON, or a JSON array')
    .description("replace a resource's records atomically from a file; every row is checked first")
    .option('--format <format>', 'csv, ndjson or json (default: from the file name)')
    .option('--skip-invalid', 'load the valid rows and report the bad ones (default: load nothing when any row is bad)')
    .option('--json', 'print the report as JSON')
    .action(async (code: string, file: string, options: { format?: string; skipInvalid?: boolean; json?: boolean }) => {
      await cli.withDatabase(async (database) => {
        const stored = await findResource(database.db, code);
        if (!stored || stored.retiredAt) throw new CliError(`no resource ${code} in the catalog`);
        const size = (await stat(file).catch(() => undefined))?.size;
        if (size === undefined) throw new CliError(`${file}: no such file`);
        const bar = options.json ? undefined : cli.progressBar(`${code} [{bar}] {percentage}% | {rows} rows`);
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
            for (const bad of error.report.bad) cli.problem(`line ${bad.line}: ${bad.item || '(row)'} ${bad.reason}`);
            if (options.json) cli.json(error.report);
            throw new CliError(`${error.message} (use --skip-invalid to load the valid rows)`);
          }
          throw new CliError((error as Error).message);
        }
        bar?.stop();
        if (options.json) return cli.json(report);
        for (const bad of report.bad) cli.problem(`skipped line ${bad.line}: ${bad.item || '(row)'} ${bad.reason}`);
        cli.line(`${code}: ${report.rows} rows loaded${report.skipped ? `, ${report.skipped} skipped` : ''} in ${report.seconds} s (sha256 ${report.sha256})`);
        await cli.prebuild(database, [code]);
      }, { needsCatalog: true });
    });
}
