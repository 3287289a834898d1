import CircuitBreaker from 'opossum';
import { defineProblem } from '../errors.js';

export const DatabaseUnavailable = defineProblem<[]>(
  'database_unavailable',
  'The database cannot be reached just now, so this request is not answered; retry shortly.',
  503,
);

/** Node's codes for a connection that cannot be made or was lost. */
const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
/** postgres.js's own codes for the same. */
const DRIVER_CODES = new Set(['CONNECTION_CLOSED', 'CONNECTION_DESTROYED', 'CONNECTION_ENDED', 'CONNECT_TIMEOUT']);

/**
 * Whether an error (or one it was caused by: drizzle wraps the driver's) says the database is
 * away rather than that a query was wrong: a socket or driver connection error, SQLSTATE class 08
 * (connection exception), 57P01–57P03 (the server shut down or is starting), 53300 (no connection
 * slot left), or 3D000 (the database itself is gone).
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (let current = error, depth = 0; current && typeof current === 'object' && depth < 5; current = (current as { cause?: unknown }).cause, depth++) {
    if (current instanceof DatabaseUnavailable) return true;
    const code = (current as { code?: unknown }).code;
    if (typeof code !== 'string') continue;
    if (SOCKET_CODES.has(code) || DRIVER_CODES.has(code)) return true;
    if (/^08[0-9A-Z]{3}$/.test(code) || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300' || code === '3D000') return true;
  }
  return false;
}

/** Where the breaker says that the database went away and came back. */
export interface BreakerLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

/** Longest the try after an outage may take before it counts as failed. */
const PROBE_TIMEOUT_MS = 2000;

async function withinProbeTime<T>(work: () => PromiseLike<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      Promise.resolve(work()),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new DatabaseUnavailable()), PROBE_TIMEOUT_MS);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export interface BreakerOptions {
  /** How long calls are refused at once after the database was found away, before one is let through to try (ms). */
  retryMs?: number;
  logger?: BreakerLogger;
}

/**
 * The database's circuit breaker (opossum): when queries fail because the database is away, further
 * ones are refused at once with DatabaseUnavailable instead of queueing in the driver behind its
 * reconnect back-off, so that callers get a 503 to retry in milliseconds and the gateway holds no
 * growing queue. Every `retryMs` one call is let through; its success closes the breaker. Errors
 * of a query itself (a constraint, a syntax error) never count. The state changes are logged,
 * once each, and never a line per refused call.
 */
export class DatabaseBreaker {
  private readonly breaker: CircuitBreaker<[() => PromiseLike<unknown>], unknown>;
  private openedAt = 0;

  constructor(options: BreakerOptions = {}) {
    this.breaker = new CircuitBreaker((run: () => PromiseLike<unknown>) => Promise.resolve(run()), {
      timeout: false,
      // A short window: an outage opens the breaker within a second even after hours of traffic.
      rollingCountTimeout: 1000,
      rollingCountBuckets: 4,
      errorThresholdPercentage: 25,
      volumeThreshold: 2,
      resetTimeout: options.retryMs ?? 500,
      errorFilter: (error: unknown) => !isDatabaseUnavailable(error),
    });
    this.breaker.on('open', () => {
      if (this.openedAt !== 0) return;
      this.openedAt = Date.now();
      options.logger?.warn({}, 'database unavailable: answering 503 database_unavailable until it is back');
    });
    this.breaker.on('close', () => {
      if (this.openedAt === 0) return;
      options.logger?.info({ unavailable_ms: Date.now() - this.openedAt }, 'database available again');
      this.openedAt = 0;
    });
  }

  /** Whether calls are being refused now. */
  get open(): boolean {
    return !this.breaker.closed;
  }

  /**
   * Run `work` unless the breaker is open; its outcome counts towards the breaker's state. The
   * call that tries the database after an outage (the breaker half-open) fails after
   * `PROBE_TIMEOUT_MS` if it has no answer by then, so that a try stuck on a dead connection
   * does not keep the breaker from trying again.
   */
  async run<T>(work: () => PromiseLike<T>): Promise<T> {
    try {
      if (this.breaker.halfOpen) return (await this.breaker.fire(() => withinProbeTime(work))) as T;
      return (await this.breaker.fire(work)) as T;
    } catch (error) {
      if ((error as { code?: string }).code === 'EOPENBREAKER') throw new DatabaseUnavailable();
      throw error;
    }
  }

  shutdown(): void {
    this.breaker.shutdown();
  }
}
