import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** One shell command of the README, as printed, with what the README says it answers. */
export interface ReadmeCommand {
  /** Line of the README where the command starts (1-based). */
  line: number;
  text: string;
  /** The status the comment after it shows (`# 200 …`), when it shows one. */
  status?: number;
  /** `"key":"value"` pairs the comment shows: the output must hold each of them. */
  shows: string[];
  calls: boolean;
}

/** What running a command did: the status of every curl transfer, curl's exit codes, its output. */
export interface CommandResult {
  command: ReadmeCommand;
  exit: number;
  statuses: number[];
  curlExits: number[];
  stdout: string;
}

const ASSIGNMENT = /^[A-Za-z_][A-Za-z0-9_]*=(\$\(|\S+$)/;

/**
 * The commands of the README's `sh` blocks that a reader runs against the gateway: curl calls and
 * the variables they need (`NAME=$(…)`). Installs, starts and benches are not run here. A command
 * continues over lines ending in `\` and over a `$(` left open; the comment line right after it
 * says what it answers.
 */
export function readmeCommands(file: string): ReadmeCommand[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  const commands: ReadmeCommand[] = [];
  let inBlock = false;
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index] as string;
    if (/^\s*```/.test(line)) {
      inBlock = !inBlock && /^\s*```sh\s*$/.test(line);
      continue;
    }
    if (!inBlock || line.trim() === '' || line.trim().startsWith('#')) continue;
    const start = index;
    let text = line.trim();
    while ((text.endsWith('\\') || opens(text)) && index + 1 < lines.length) {
      index += 1;
      text = `${text}\n${(lines[index] as string).trim()}`;
    }
    const first = text.split(/\s+/)[0] ?? '';
    const calls = /(^|\$\(|\|\s*)curl\s/.test(text);
    if (first !== 'curl' && !ASSIGNMENT.test(text)) continue;
    const comment = (lines[index + 1] ?? '').trim();
    const status = /^# (\d{3})\b/.exec(comment)?.[1];
    commands.push({
      line: start + 1,
      text,
      ...(status ? { status: Number(status) } : {}),
      shows: status ? [...comment.matchAll(/"[a-z_]+":"[^"…]*"/g)].map((m) => m[0]) : [],
      calls,
    });
  }
  return commands;
}

/** A `$(` still open at the end of the line: the command goes on. */
function opens(text: string): boolean {
  return (text.match(/\(/g) ?? []).length > (text.match(/\)/g) ?? []).length;
}

/**
 * Run the commands in one bash, in order, in `cwd`, with `127.0.0.1:3000` pointed at `port`.
 * curl is wrapped to report each transfer's status and its exit code on stderr.
 */
export async function runReadmeCommands(commands: ReadmeCommand[], cwd: string, port: number): Promise<CommandResult[]> {
  const script = [
    'set -o pipefail',
    `curl() { command curl -w '%{stderr}@@status %{http_code}\\n' "$@"; local rc=$?; echo "@@curl $rc" >&2; return $rc; }`,
    ...commands.flatMap((command, index) => [
      `echo "@@command ${index}"; echo "@@command ${index}" >&2`,
      command.text.replaceAll('127.0.0.1:3000', `127.0.0.1:${port}`),
      `echo "@@exit $?" >&2; echo`,
    ]),
  ].join('\n');
  const child = spawn('bash', ['-c', script], { cwd, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LANG: 'C.UTF-8' } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  await new Promise((resolve) => child.on('close', resolve));
  const outputs = stdout.split(/^@@command \d+\n/m).slice(1);
  return stderr
    .split(/^@@command \d+\n/m)
    .slice(1)
    .map((part, index) => ({
      command: commands[index] as ReadmeCommand,
      exit: Number(/^@@exit (\d+)$/m.exec(part)?.[1] ?? -1),
      statuses: [...part.matchAll(/@@status (\d+)/g)].map((m) => Number(m[1])),
      curlExits: [...part.matchAll(/^@@curl (\d+)$/gm)].map((m) => Number(m[1])),
      stdout: outputs[index] ?? '',
    }));
}
