import { readFile } from 'node:fs/promises';
import type { Config } from './config.js';
import type { Database } from './db/index.js';

/**
 * What every domain's commands (`<domain>/commands.ts`) are handed by src/cli.ts, which makes it:
 * the CLI's plumbing, written once there. This module sits in the lowest layer so that every
 * domain can name it; what it describes is built above them all.
 */

export interface CliIo {
  env: NodeJS.ProcessEnv;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

/** A failure the operator can act on: printed as one line, exit code 1, no stack trace. */
export class CliError extends Error {
  override name = 'CliError';
}

/** cli-progress's bar, as far as the commands drive it. */
export interface ProgressBar {
  start(total: number, value: number, payload?: Record<string, unknown>): void;
  update(value: number, payload?: Record<string, unknown>): void;
  stop(): void;
}

/**
 * `Act` is what the CLI's audit chain records: the audit domain's `AuditInput`, which this layer
 * cannot import. The commands that record name it (`CliContext<AuditInput>`); the others take a
 * plain `CliContext`, whose `record` takes nothing.
 */
export interface CliContext<Act = never> {
  /** The configuration from the environment, read when a command needs it (so that a bad one fails only those). */
  config(): Config;
  /** The configuration `gateway serve` runs with: config() and the embedded demo's defaults. */
  servedConfig(): Config;
  /**
   * Open DATABASE_URL (locked, migrated, with the catalog loaded once if it never was when
   * `needsCatalog`), run `work`, close: the CLI's way to the data.
   */
  withDatabase<T>(work: (database: Database) => Promise<T>, options?: { needsCatalog?: boolean }): Promise<T>;
  /** Run `work` with the CLI's own audit chain open; `record` resolves once the record is stored. */
  withAudit(database: Database, work: (record: (act: Act) => Promise<string>) => Promise<void>): Promise<void>;
  /** Prebuild the download files of the open datasets among `codes`: after an import when enabled, or when asked. */
  prebuild(database: Database, codes: string[], asked?: boolean): Promise<void>;
  /** One line on standard output. */
  line(text: string): void;
  /** `value` as indented JSON on standard output: what `--json` prints. */
  json(value: unknown): void;
  /** `items` as JSON with `--json`, else one line each: what the list commands print. */
  list<T>(items: T[], json: boolean | undefined, line: (item: T) => string): void;
  /** One line on standard error: what went wrong with a part of the input. */
  problem(text: string): void;
  /** A progress bar on standard error when it is a terminal; none in pipes, logs and tests. */
  progressBar(format: string): ProgressBar | undefined;
  /** Rewrite the progress line on standard error when it is a terminal. */
  progressLine(text: string): void;
  /** End the progress line (a newline) when standard error is a terminal. */
  endProgressLine(): void;
}

/** A JSON file the operator named; unreadable or not JSON is the operator's to fix. */
export async function readJsonFile(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new CliError(`${file}: ${(error as Error).message}`);
  }
}
