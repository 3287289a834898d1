import type { Command } from 'commander';
import { CliError, type CliContext } from '../commands.js';
import { allDatasets, findDataset } from './datasets.js';

/** `gateway open`: the open datasets' download files. */
export function openCommands(program: Command, cli: CliContext): void {
  program
    .command('open')
    .description('open data')
    .command('prebuild')
    .argument('[codes...]', 'dataset codes (default: every open dataset)')
    .description("build the whole-dataset download files of open datasets for their current data (what the gateway does after an import)")
    .action(async (codes: string[]) => {
      await cli.withDatabase(async (database) => {
        const wanted = codes.length ? codes : (await allDatasets(database.db)).map((dataset) => dataset.resource.code);
        for (const code of wanted) {
          if (!(await findDataset(database.db, code))) throw new CliError(`no open dataset ${code}`);
        }
        await cli.prebuild(database, wanted, true);
      }, { needsCatalog: true });
    });
}
