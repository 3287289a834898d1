/**
 * Where a CPU profile's time went (`node --cpu-prof`, as `npm run bench -- --profile` writes it):
 * idle, garbage collection and program time, then the functions with the most self time and the
 * packages and files they belong to. Open the .cpuprofile itself in Chrome DevTools or speedscope
 * for the flame graph.
 *
 *   node dist/bench/profile.js FILE.cpuprofile [--top 25]
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  total_ms: number;
  idle: number;
  gc: number;
  program: number;
  functions: Array<{ name: string; where: string; self: number }>;
  packages: Array<{ name: string; self: number }>;
}

/** Who owns a script: the npm package (node_modules/…), node's own code, or the gateway's file. */
function owner(url: string): string {
  if (!url) return '(native)';
  if (url.startsWith('node:')) return 'node';
  const path = url.startsWith('file:') ? fileURLToPath(url) : url;
  const module = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
  if (module) return module[1] as string;
  const own = /\/dist\/(.+)$/.exec(path);
  return own ? `gateway ${own[1]}` : path;
}

export function summarise(profile: CpuProfile, top = 25): ProfileSummary {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<number, number>();
  let total = 0;
  profile.samples.forEach((id, index) => {
    const dt = profile.timeDeltas[index] ?? 0;
    total += dt;
    self.set(id, (self.get(id) ?? 0) + dt);
  });
  const share = (us: number) => Math.round((us / Math.max(total, 1)) * 1000) / 10;
  const functions = new Map<string, { name: string; where: string; self: number }>();
  const packages = new Map<string, number>();
  let idle = 0;
  let gc = 0;
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = (byId.get(id) as ProfileNode).callFrame;
    if (functionName === '(idle)') idle += us;
    else if (functionName === '(garbage collector)') gc += us;
    if (functionName === '(idle)' || functionName === '(garbage collector)' || functionName === '(root)') continue;
    const name = functionName || '(anonymous)';
    const where = url ? `${owner(url)}:${lineNumber + 1}` : '(native)';
    const key = `${name} ${where}`;
    const entry = functions.get(key) ?? { name, where, self: 0 };
    entry.self += us;
    functions.set(key, entry);
    const pkg = owner(url);
    packages.set(pkg, (packages.get(pkg) ?? 0) + us);
  }
  return {
    total_ms: Math.round(total / 1000),
    idle: share(idle),
    gc: share(gc),
    program: share(total - idle - gc),
    functions: [...functions.values()].sort((a, b) => b.self - a.self).slice(0, top).map((f) => ({ ...f, self: share(f.self) })),
    packages: [...packages].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, us]) => ({ name, self: share(us) })),
  };
}

export function summaryText(summary: ProfileSummary): string {
  return [
    `${summary.total_ms} ms sampled: idle ${summary.idle}%, GC ${summary.gc}%, program ${summary.program}%`,
    'self time by package or file:',
    ...summary.packages.map((p) => `  ${String(p.self).padStart(5)}%  ${p.name}`),
    'self time by function:',
    ...summary.functions.map((f) => `  ${String(f.self).padStart(5)}%  ${f.name}  ${f.where}`),
  ].join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [file, flag, n] = process.argv.slice(2);
  if (!file) throw new Error('usage: profile.js FILE.cpuprofile [--top N]');
  const summary = summarise(JSON.parse(await readFile(file, 'utf8')) as CpuProfile, flag === '--top' ? Number(n) : 25);
  process.stdout.write(`${summaryText(summary)}\n`);
}
