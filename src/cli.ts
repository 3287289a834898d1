import { writeFile, readFile } from 'node:fs/promises';
import { Command, CommanderError } from 'commander';
import pino from 'pino';
import { buildApp } from './app.js';
import { ConfigError, ConfigSchema, loadConfig, type Config } from './config.js';
import { DatabaseInUseError, openDatabase } from './db/index.js';
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

/** The OpenAPI document as YAML, from an app on a throw-away in-memory database. */
export async function generateOpenapi(): Promise<string> {
  const app = await buildApp(loadConfig({ DATABASE_URL: 'memory://' }), { logger: pino({ level: 'silent' }) });
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
    if (error instanceof CliError || error instanceof ConfigError || error instanceof DatabaseInUseError) {
      io.stderr(`gateway: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}
