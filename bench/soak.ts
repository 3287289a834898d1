import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import { mib, rssOf, treeRssBytes } from './lib.js';

/** What the soak samples every second. */
export interface SoakSample {
  second: number;
  rss_mib: number;
  heap_used_mib: number;
  loop_delay_p99_ms: number;
  handles: number;
}

export interface SoakReport {
  samples: SoakSample[];
  /** Medians of each quarter of the run after its first fifth (the warm-up), oldest first. */
  quarters: Array<{ rss_mib: number; heap_used_mib: number; loop_delay_p99_ms: number; handles: number }>;
  requests: number;
  non2xx: number;
  rps: number;
  /** Whether memory kept growing: every quarter above the one before, and the last > 32 MiB above the first. */
  grows: boolean;
  verdict: string;
}

/** Memory growth over the measured three quarters of a soak that counts as without bound. */
const GROWTH_LIMIT_MIB = 32;

function gauge(metrics: string, name: string): number {
  const match = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, 'm').exec(metrics);
  return match ? Number(match[1]) : Number.NaN;
}

const median = (values: number[]) => {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  return sorted.length ? (sorted[Math.floor(sorted.length / 2)] as number) : Number.NaN;
};

async function sample(url: string, pid: number, second: number): Promise<SoakSample> {
  const metrics = await fetch(`${url}/metrics`).then((response) => response.text(), () => '');
  return {
    second,
    rss_mib: mib(await treeRssBytes(pid).catch(() => rssOf(pid))),
    heap_used_mib: mib(gauge(metrics, 'gateway_nodejs_heap_size_used_bytes')),
    loop_delay_p99_ms: Math.round(gauge(metrics, 'gateway_nodejs_eventloop_lag_p99_seconds') * 10_000) / 10,
    handles: gauge(metrics, 'gateway_nodejs_active_handles_total'),
  };
}

/**
 * A mixed load for `seconds`, with the gateway's RSS (its processes together), heap, event-loop
 * delay and open handles sampled every second; the verdict says whether memory grows without bound.
 */
export async function soak(url: string, pid: number, options: { seconds: number; connections: number; requests: autocannon.Request[] }): Promise<SoakReport> {
  const samples: SoakSample[] = [];
  const running = autocannon({ url, connections: options.connections, duration: options.seconds, requests: options.requests });
  let done = false;
  const result = (running as unknown as Promise<autocannon.Result>).then((value) => {
    done = true;
    return value;
  });
  const started = Date.now();
  while (!done) {
    samples.push(await sample(url, pid, Math.round((Date.now() - started) / 1000)));
    await sleep(1000);
  }
  const final = await result;
  const measured = samples.slice(Math.floor(samples.length / 5));
  const size = Math.max(1, Math.floor(measured.length / 4));
  const quarters = [0, 1, 2, 3].map((q) => {
    const part = measured.slice(q * size, q === 3 ? undefined : (q + 1) * size);
    return {
      rss_mib: median(part.map((s) => s.rss_mib)),
      heap_used_mib: median(part.map((s) => s.heap_used_mib)),
      loop_delay_p99_ms: median(part.map((s) => s.loop_delay_p99_ms)),
      handles: median(part.map((s) => s.handles)),
    };
  });
  const growing = (key: 'rss_mib' | 'heap_used_mib') =>
    quarters.every((q, i) => i === 0 || q[key] > (quarters[i - 1] as (typeof quarters)[number])[key]) &&
    (quarters[3] as (typeof quarters)[number])[key] - (quarters[0] as (typeof quarters)[number])[key] > GROWTH_LIMIT_MIB;
  const grows = growing('rss_mib') || growing('heap_used_mib');
  const trend = (key: 'rss_mib' | 'heap_used_mib' | 'loop_delay_p99_ms' | 'handles') => quarters.map((q) => q[key]).join(' → ');
  return {
    samples,
    quarters,
    requests: final.requests.total,
    non2xx: final.non2xx,
    rps: final.requests.average,
    grows,
    verdict: `RSS ${trend('rss_mib')} MiB, heap ${trend('heap_used_mib')} MiB, event-loop p99 ${trend('loop_delay_p99_ms')} ms, handles ${trend('handles')} (medians by quarter after the warm-up): ${grows ? `memory grows without bound (> ${GROWTH_LIMIT_MIB} MiB and rising every quarter)` : 'memory is flat'}`,
  };
}
