import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Test } from 'tap';
import { projectRoot } from '../../src/paths.js';

/** A port free on loopback now: the bench's helper, one for both. */
export { freePort } from '../../bench/lib.js';

/** The compiled gateway in a process of its own, as `npm start` runs it. */
export interface GatewayProcess {
  child: ChildProcess;
  port: number;
  url: string;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** The JSON log lines it wrote so far. */
  logLines(): Array<Record<string, unknown>>;
  /** Resolves when the log has a line with this message (or rejects after `ms`). */
  logged(message: string | RegExp, ms?: number): Promise<Record<string, unknown>>;
  /** Wait until /readyz answers 200; false when it did not within `ms`. */
  ready(ms?: number): Promise<boolean>;
  /** Resolves to the exit code (or the signal) once it has exited. */
  exited: Promise<number | string>;
}

/**
 * Start `node dist/src/server.js` (npm test builds first) in `cwd` with the environment a
 * newcomer has: no DATABASE_URL or REDIS_URL unless `env` gives them, JSON logs at info.
 */
export function startGateway(t: Test, cwd: string, env: Record<string, string>, port: number): GatewayProcess {
  const inherited = { ...process.env };
  delete inherited.DATABASE_URL;
  delete inherited.REDIS_URL;
  const child = spawn(process.execPath, [join(projectRoot, 'dist/src/server.js')], {
    cwd,
    env: { ...inherited, PORT: String(port), LOG_PRETTY: 'false', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  const exited = once(child, 'exit').then(([code, signal]) => (code ?? signal) as number | string);
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  const url = `http://127.0.0.1:${port}`;
  const logLines = () =>
    output
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  return {
    child,
    port,
    url,
    output: () => output,
    logLines,
    async logged(message, ms = 180_000) {
      const until = Date.now() + ms;
      for (;;) {
        const line = logLines().find((entry) => (typeof message === 'string' ? entry.msg === message : message.test(String(entry.msg))));
        if (line) return line;
        if (Date.now() > until || child.exitCode !== null) throw new Error(`no log line ${String(message)} in:\n${output}`);
        await sleep(50);
      }
    },
    async ready(ms = 180_000) {
      const until = Date.now() + ms;
      while (Date.now() < until && child.exitCode === null) {
        if (await fetch(`${url}/readyz`).then((r) => r.status === 200, () => false)) return true;
        await sleep(200);
      }
      return false;
    },
    exited,
  };
}
