import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyBaseLogger } from 'fastify';
import { AggregatorRegistry } from 'prom-client';
import { ConfigError, type Config } from './config.js';
import { isPostgresUrl } from './db/index.js';
import { METRICS_REQUEST, METRICS_RESPONSE, type MetricsRequest } from './plugins/metrics.js';

/** Told to a worker by the primary: finish what is in flight and exit (what a signal does alone). */
export const SHUTDOWN_MESSAGE = 'gateway:shutdown';
/** Told to the primary by a worker once it listens. */
export const READY_MESSAGE = 'gateway:ready';
/** Which worker this is (1…N), in the worker's environment; worker 1 runs the start-up steps that change data. */
export const WORKER_SLOT = 'GATEWAY_WORKER_SLOT';

/** A worker that dies sooner than this after its start counts as failing again; its restart waits longer each time. */
const HEALTHY_AFTER_MS = 30_000;
const FIRST_BACKOFF_MS = 200;
const MAX_BACKOFF_MS = 30_000;

/**
 * How many workers `gateway serve` runs: WORKERS when set, else one per available core on
 * PostgreSQL and one on PGlite, whose data directory one process holds at a time.
 */
export function workerCount(config: Config): number {
  const embedded = !isPostgresUrl(config.DATABASE_URL);
  if (config.WORKERS === 0) return embedded ? 1 : availableParallelism();
  if (embedded && config.WORKERS > 1) {
    throw new ConfigError(`WORKERS: PGlite is held by one process, so it runs one worker (asked for ${config.WORKERS}); use PostgreSQL for more`);
  }
  return config.WORKERS;
}

interface Slot {
  slot: number;
  worker?: Worker;
  startedAt: number;
  failures: number;
}

/**
 * The primary of `gateway serve` with more than one worker: it forks worker 1, which runs the
 * start-up sequence (migrations, the catalog sync), then the others, which only serve; all listen
 * on one port (node:cluster hands out connections). A worker that dies is started again, after a
 * back-off that doubles while it keeps dying young. SIGTERM or SIGINT asks every worker to drain
 * (in-flight requests finish, background work stops) and waits up to SHUTDOWN_GRACE_MS for them.
 * GET /metrics on any worker answers for all of them, aggregated here.
 */
export async function runPrimary(config: Config, count: number, logger: FastifyBaseLogger): Promise<void> {
  const slots: Slot[] = Array.from({ length: count }, (_, index) => ({ slot: index + 1, startedAt: 0, failures: 0 }));
  let stopping = false;
  const aggregator = new AggregatorRegistry();
  cluster.on('message', (worker, message: MetricsRequest) => {
    if (message?.type !== METRICS_REQUEST) return;
    aggregator.clusterMetrics().then(
      (text) => worker.send({ type: METRICS_RESPONSE, id: message.id, text }),
      (error: Error) => worker.send({ type: METRICS_RESPONSE, id: message.id, error: error.message }),
    );
  });

  const fork = (slot: Slot): Promise<boolean> => {
    // Worker 1 runs the start-up steps that change data; the others find them done.
    const followers = slot.slot === 1 ? {} : { CATALOG_SYNC_ON_START: 'false', DEMO_DATA: 'off', OPEN_PREBUILD: 'false' };
    const worker = cluster.fork({ ...followers, [WORKER_SLOT]: String(slot.slot) });
    slot.worker = worker;
    slot.startedAt = Date.now();
    return new Promise((resolve) => {
      worker.on('message', (message: { type?: string }) => {
        if (message?.type === READY_MESSAGE) resolve(true);
      });
      worker.once('exit', (code, signal) => {
        resolve(false);
        if (slot.worker === worker) slot.worker = undefined;
        if (stopping) return;
        const young = Date.now() - slot.startedAt < HEALTHY_AFTER_MS;
        slot.failures = young ? slot.failures + 1 : 0;
        const wait = Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** Math.max(0, slot.failures - 1));
        logger.error({ worker: slot.slot, pid: worker.process.pid, code, signal, restart_in_ms: wait }, 'a worker died; starting it again');
        void sleep(wait).then(() => {
          if (!stopping && !slot.worker) void fork(slot);
        });
      });
    });
  };

  const drain = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, workers: slots.filter((s) => s.worker).length }, 'shutting down');
    const running = slots.flatMap((s) => (s.worker ? [s.worker] : []));
    const exited = running.map((worker) => new Promise<void>((resolve) => (worker.isDead() ? resolve() : worker.once('exit', () => resolve()))));
    for (const worker of running) if (worker.isConnected()) worker.send({ type: SHUTDOWN_MESSAGE });
    const deadline = sleep(config.SHUTDOWN_GRACE_MS + 1_000).then(() => 'late' as const);
    if ((await Promise.race([Promise.all(exited), deadline])) === 'late') {
      logger.error({ grace_ms: config.SHUTDOWN_GRACE_MS }, 'workers still running past the shutdown grace: killed');
      for (const worker of running) if (!worker.isDead()) worker.process.kill('SIGKILL');
    }
    process.exit(0);
  };
  // A terminal's Ctrl-C reaches the workers too; they take it as the primary's word, once.
  process.on('SIGTERM', () => void drain('SIGTERM'));
  process.on('SIGINT', () => void drain('SIGINT'));

  const [leader, ...followers] = slots as [Slot, ...Slot[]];
  if (!(await fork(leader))) {
    if (stopping) return;
    logger.error('worker 1 did not start (see its error above)');
    stopping = true;
    process.exit(1);
  }
  const started = await Promise.all(followers.map(fork));
  if (!stopping) logger.info({ workers: count, listening: started.filter(Boolean).length + 1 }, `gateway ready: ${count} workers`);
}
