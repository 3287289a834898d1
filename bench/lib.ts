import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import postgres from 'postgres';
import { projectRoot } from '../src/paths.js';

export async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

/** A database for one bench run: a fresh PostgreSQL database when DATABASE_URL is set, else a PGlite directory. */
export async function benchDatabase(name: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const server = process.env.DATABASE_URL;
  if (!server?.startsWith('postgres')) {
    return { url: join(await mkdtemp(join(tmpdir(), `gw-bench-${name}-`)), 'pglite'), drop: async () => {} };
  }
  const database = `bench_${name}_${Date.now()}`;
  const admin = postgres(server, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database "${database}"`);
  await admin.end();
  const url = new URL(server);
  url.pathname = `/${database}`;
  return {
    url: url.toString(),
    drop: async () => {
      const sql = postgres(server, { max: 1, onnotice: () => {} });
      await sql.unsafe(`drop database if exists "${database}" with (force)`);
      await sql.end();
    },
  };
}

/** Run the compiled CLI (as an operator would) and return its standard output. */
export async function cli(args: string[], env: Record<string, string>): Promise<string> {
  const child = spawn(process.execPath, [join(projectRoot, 'dist/scripts/gateway.js'), ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk) => (out += chunk));
  child.stderr.on('data', (chunk) => (err += chunk));
  const [code] = await once(child, 'exit');
  if (code !== 0) throw Object.assign(new Error(`gateway ${args.join(' ')} exited ${code}: ${err}`), { out, err, code });
  return out;
}

export interface Gateway {
  url: string;
  process: ChildProcess;
  stop(): Promise<number | null>;
}

/** Start the compiled gateway as its own process, logging at info to a file, and wait until ready. */
export async function startGateway(env: Record<string, string>, logFile: string, nodeArgs: string[] = []): Promise<Gateway> {
  const port = await freePort();
  // The gateway writes its log to the file itself: through a pipe, a busy load generator would
  // hold up the gateway's synchronous log writes and the bench would measure its own reader.
  const log = openSync(logFile, 'a');
  const child = spawn(process.execPath, [...nodeArgs, join(projectRoot, 'dist/src/server.js')], {
    env: { ...process.env, LOG_LEVEL: 'info', LOG_PRETTY: 'false', ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', log, log],
  });
  child.once('exit', () => closeSync(log));
  const url = `http://127.0.0.1:${port}`;
  for (let attempt = 0; attempt < 600; attempt++) {
    if (child.exitCode !== null) throw new Error(`the gateway exited with ${child.exitCode}; see ${logFile}`);
    const ready = await fetch(`${url}/readyz`).then((r) => r.ok, () => false);
    if (ready) break;
    await sleep(100);
  }
  return {
    url,
    process: child,
    async stop() {
      child.kill('SIGTERM');
      const [code] = await once(child, 'exit');
      return code as number | null;
    },
  };
}

/** Responses the gateway itself counted (its /metrics), per route and status: what it answered. */
export async function answeredByGateway(url: string, route: string): Promise<number> {
  const text = await fetch(`${url}/metrics`).then((r) => r.text());
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('http_request_duration_seconds_count{') && line.includes(`route="${route}"`)) {
      total += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return total;
}

export interface LoadResult {
  /** Responses received in the measured run and the warm-up: what the audit trail must hold. */
  answered: number;
  requests: number;
  non2xx: number;
  rps: number;
  p50: number;
  p97_5: number;
  p99: number;
  errors: number;
  /** CPU time the server's processes (a cluster's primary and workers) spent per request of the measured run, µs. */
  cpu_us_per_request?: number;
}

/** Clock ticks per second of /proc/<pid>/stat's utime and stime (USER_HZ: 100 on Linux). */
const USER_HZ = 100;

/** Process `root` and every process below it (the workers of a cluster), from /proc: ticks of CPU each. */
async function processTree(root: number): Promise<Map<number, number>> {
  const { readdir, readFile } = await import('node:fs/promises');
  const stats = new Map<number, { ppid: number; ticks: number }>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const text = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    if (!text) continue;
    // Fields after the command name (in parentheses, which may hold spaces): state is field 3.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    stats.set(Number(name), { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) });
  }
  const below = (pid: number): boolean => pid === root || (stats.has(pid) && pid > 1 && below((stats.get(pid) as { ppid: number }).ppid));
  const tree = new Map<number, number>();
  for (const [pid, stat] of stats) if (below(pid)) tree.set(pid, stat.ticks);
  return tree;
}

/**
 * CPU milliseconds (user + system) used so far by process `root` and every process below it (the
 * workers of a cluster), from /proc. Ticks are 10 ms: over a run of seconds that is well under 1%.
 */
export async function treeCpuMs(root: number): Promise<number> {
  let ticks = 0;
  for (const processTicks of (await processTree(root)).values()) ticks += processTicks;
  return (ticks * 1000) / USER_HZ;
}

/** Resident memory of process `root` and every process below it, in bytes. */
export async function treeRssBytes(root: number): Promise<number> {
  let bytes = 0;
  for (const pid of (await processTree(root)).keys()) bytes += await rssOf(pid).catch(() => 0);
  return bytes;
}

function withoutDuration(run: autocannon.Options): autocannon.Options {
  const { duration: _duration, ...rest } = run;
  return rest;
}

/** One autocannon run: warm-up first (not measured), then the measured run. */
export async function load(options: autocannon.Options & { warmupSeconds?: number; warmupAmount?: number; cpuOf?: number }): Promise<LoadResult> {
  const { warmupSeconds = 2, warmupAmount, cpuOf, ...run } = options;
  const warmup =
    warmupAmount !== undefined
      ? await autocannon({ ...withoutDuration(run), amount: warmupAmount })
      : warmupSeconds > 0
        ? await autocannon({ ...run, duration: warmupSeconds })
        : undefined;
  const cpuBefore = cpuOf ? await treeCpuMs(cpuOf) : 0;
  const result = await autocannon(run);
  const cpuMs = cpuOf ? (await treeCpuMs(cpuOf)) - cpuBefore : undefined;
  const responses = (r: autocannon.Result) => r['1xx'] + r['2xx'] + r['3xx'] + r['4xx'] + r['5xx'];
  return {
    answered: responses(result) + (warmup ? responses(warmup) : 0),
    requests: result.requests.total,
    non2xx: result.non2xx,
    rps: result.requests.average,
    p50: result.latency.p50,
    p97_5: result.latency.p97_5,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts,
    ...(cpuMs !== undefined && result.requests.total > 0 ? { cpu_us_per_request: (cpuMs * 1000) / result.requests.total } : {}),
  };
}

/** Start a baseline server (bench/baseline.ts) as its own process and wait until it listens. */
export async function startBaseline(mode: 'hello' | 'naive', env: Record<string, string>): Promise<Gateway> {
  const port = await freePort();
  const child = spawn(process.execPath, [join(projectRoot, 'dist/bench/baseline.js'), mode, String(port)], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [chunk] = (await once(child.stdout, 'data')) as [Buffer];
  if (!String(chunk).includes('ready')) throw new Error(`baseline ${mode} did not start: ${String(chunk)}`);
  return {
    url: `http://127.0.0.1:${port}`,
    process: child,
    async stop() {
      child.kill('SIGTERM');
      const [code] = await once(child, 'exit');
      return code as number | null;
    },
  };
}

/** A process's resident memory now, in bytes (VmRSS from /proc). */
export async function rssOf(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(text)?.[1] ?? 0) * 1024;
}

/** Sample a process's resident memory every 50 ms while `work` runs: its baseline and its peak. */
export async function sampledRss<T>(pid: number, work: () => Promise<T>): Promise<{ result: T; baseline: number; peak: number }> {
  const baseline = await rssOf(pid);
  let peak = baseline;
  let running = true;
  const sampler = (async () => {
    while (running) {
      peak = Math.max(peak, await rssOf(pid).catch(() => 0));
      await sleep(50);
    }
  })();
  try {
    const result = await work();
    return { result, baseline, peak };
  } finally {
    running = false;
    await sampler;
  }
}

/**
 * What every gateway a bench starts is configured with: fixed keys, and one token issuer, which
 * PostgreSQL requires so that all instances and workers accept each other's tokens.
 */
export const BENCH_SETTINGS = {
  KEY_ENCRYPTION_KEY: Buffer.alloc(32, 1).toString('base64url'),
  AUDIT_HASH_KEY: Buffer.alloc(32, 2).toString('base64url'),
  TOKEN_ISSUER: 'http://gateway.bench.invalid',
};

export const mib = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10;
