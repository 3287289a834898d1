import type { Command } from 'commander';
import { CliError, type CliContext } from '../commands.js';
import type { CatalogError } from '../model/catalog.js';
import { defaultCatalogDir, formatCatalogError, loadCatalog, syncCatalogDir } from './service.js';

/** `gateway catalog`: check the catalog files, and sync them into the database. */
export function catalogCommands(program: Command, cli: CliContext): void {
  const catalog = program.command('catalog').description('the resource catalog files');
  const catalogDir = (dir: string | undefined) => dir ?? cli.config().CATALOG_DIR ?? defaultCatalogDir;
  const printErrors = (errors: CatalogError[]) => {
    for (const error of errors) cli.problem(`${formatCatalogError(error)} [${error.code}]`);
  };

  catalog
    .command('validate')
    .argument('[dir]', 'catalog folder (default: CATALOG_DIR or the shipped catalog/)')
    .description('check every catalog file against the schemas and rules; lists every error')
    .action(async (dir: string | undefined) => {
      const folder = catalogDir(dir);
      const loaded = await loadCatalog(folder);
      if (!loaded.ok) {
        printErrors(loaded.errors);
        throw new CliError(`${folder}: ${loaded.errors.length} error(s)`);
      }
      const { agencies, resources } = loaded.catalog;
      cli.line(`${folder}: valid, ${agencies.length} agencies, ${resources.length} resources`);
    });

  catalog
    .command('sync')
    .argument('[dir]', 'catalog folder (default: CATALOG_DIR or the shipped catalog/)')
    .description('validate the catalog files and sync them into DATABASE_URL in one transaction')
    .option('--json', 'print the sync report as JSON')
    .action(async (dir: string | undefined, options: { json?: boolean }) => {
      const folder = catalogDir(dir);
      await cli.withDatabase(async (database) => {
        const outcome = await syncCatalogDir(database.db, folder);
        if (!outcome.ok) {
          printErrors(outcome.errors);
          throw new CliError(`${folder}: ${outcome.errors.length} error(s); nothing was synced`);
        }
        if (options.json) return cli.json(outcome.report);
        const { changes, ...counts } = outcome.report;
        for (const change of changes) {
          const fields = change.change === 'updated' ? ` (${change.fields.join(', ')})` : '';
          cli.line(`${change.change} ${change.kind} ${change.code} v${change.version}${fields}`);
        }
        cli.line(
          `sync ${counts.sync_id}: ${counts.created} created, ${counts.updated} updated, ` +
            `${counts.retired} retired, ${counts.unchanged} unchanged`,
        );
      });
    });
}
