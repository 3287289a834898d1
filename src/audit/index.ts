import { createHmac, createSecretKey } from 'node:crypto';
import { hostname } from 'node:os';
import { openCursor, sealCursor } from '../pagination.js';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import { auditHashKey } from '../identity/index.js';
import { PROBLEM_CONTENT_TYPE } from '../plugins/errors.js';
import { problemType } from '../errors.js';
import type { AuditRecord } from './chain.js';
import { applyRetention, ensureMonthPartitions } from './partitions.js';
import { auditRoutes } from './routes.js';
import { lastVerification, runVerification, type VerificationRun, type VerificationTrigger } from './verifications.js';
import { AuditUnavailable, AuditWriter, subjectRef, type AuditInput } from './writer.js';

export { AuditUnavailable, AuditWriter, subjectRef } from './writer.js';
export type { AuditInput } from './writer.js';
export type { ChainStatus, VerificationRun, VerificationTrigger } from './verifications.js';

/** Full verifications of the chains: run one now (or join the one running), read the newest. */
export interface AuditVerification {
  runNow(trigger: VerificationTrigger): Promise<VerificationRun>;
  last(): Promise<VerificationRun | null>;
}

/** What a handler adds to its request's audit record: the resource, fields, rows, persons, grant. */
export type AuditDetails = Partial<
  Pick<
    AuditRecord,
    'client_id' | 'agency' | 'resource' | 'provider' | 'legal_basis' | 'grant_id' | 'fields' | 'row_count' | 'reason'
  >
> & {
  /** Raw record keys or person ids: hashed (HMAC) before they reach the trail. */
  subjects?: string[];
};

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The audit action of this route (e.g. `records.verify`); its every answer is recorded first. */
    audit?: string;
    /** false: anonymous calls that succeed are not recorded (public browsing is no exchange). */
    auditAnonymous?: boolean;
  }
  interface FastifyRequest {
    auditDetails: AuditDetails | null;
  }
  interface FastifyInstance {
    audit: AuditWriter;
    /** The keyed hash that stands for a person in the trail. */
    subjectRef(value: string): string;
    /** An opaque, authenticated cursor (AES-256-GCM): for positions the caller may not read. */
    sealCursor(position: unknown): string;
    /** The position in a sealed cursor; 400 invalid_cursor when it is not one of ours. */
    openCursor<T>(cursor: string, isValid: (value: unknown) => value is T): T;
    auditVerification: AuditVerification;
  }
}

export interface AuditOptions {
  config: Config;
}

function outcomeOf(status: number): AuditRecord['outcome'] {
  if (status >= 500) return 'error';
  return status >= 400 ? 'denied' : 'allowed';
}

/** The code of a problem answer, read back from the payload the error handler made. */
function problemCode(reply: FastifyReply, payload: unknown): string | null {
  if (reply.statusCode < 400 || typeof payload !== 'string') return null;
  if (!String(reply.getHeader('content-type') ?? '').startsWith(PROBLEM_CONTENT_TYPE)) return null;
  try {
    return (JSON.parse(payload) as { code?: string }).code ?? null;
  } catch {
    return null;
  }
}

/** A header's text (decoded by the text-headers plugin), cut to 500 UTF-16 units, never inside a surrogate pair. */
function shortHeader(request: FastifyRequest, name: string): string | null {
  const value = request.headers[name];
  if (typeof value !== 'string' || value.length === 0) return null;
  const end = /[\uD800-\uDBFF]/.test(value.charAt(499)) ? 499 : 500;
  return value.slice(0, end);
}

/** Partitions for this month and the next, and retention of exported months. */
async function maintainPartitions(app: FastifyInstance, config: Config) {
  try {
    await ensureMonthPartitions(app.db);
    const retention = await applyRetention(app.db, config.AUDIT_RETENTION_MONTHS);
    if (retention.dropped.length) app.log.info({ months: retention.dropped }, 'audit months dropped after export');
    if (retention.kept.length) {
      app.log.warn({ months: retention.kept }, 'audit months past retention are kept: export them with `gateway audit export`');
    }
  } catch (error) {
    app.log.error({ err: error }, 'audit partition maintenance failed');
  }
}

/** How long closing waits for a verification that is running (its row then stays unfinished). */
const CLOSE_WAIT_MS = 5000;

/**
 * Full verifications, one at a time on this instance: on demand, and every AUDIT_VERIFY_HOURS
 * (0: never by itself). The schedule looks every hour (or period, if shorter) at the newest run of
 * any instance and starts one only when that is a period old, so that instances take turns.
 */
function verifications(app: FastifyInstance, config: Config, instance: string): AuditVerification {
  let running: Promise<VerificationRun> | undefined;
  const runNow = (trigger: VerificationTrigger) => {
    running ??= runVerification(app.db, instance, trigger).then((run) => {
      if (run.error) app.log.error({ verification: run.id, error: run.error }, 'audit verification failed');
      else if (run.chains_valid !== run.chains) app.log.warn({ verification: run.id, problems: run.problems?.slice(0, 10) }, 'audit chains do not verify');
      else app.log.info({ verification: run.id, chains: run.chains, records: run.records, trigger }, 'audit chains verify');
      return run;
    }).finally(() => {
      running = undefined;
    });
    return running;
  };
  const last = () => lastVerification(app.db);
  const period = config.AUDIT_VERIFY_HOURS * 3_600_000;
  if (period > 0) {
    // setInterval cannot wait past 2^31 ms (24.8 days): the schedule looks often and decides.
    const every = Math.min(period, 3_600_000);
    const tick = setInterval(async () => {
      try {
        const newest = await last();
        if (running || (newest && Date.now() - Date.parse(newest.started_at) < period - every / 2)) return;
        await runNow('schedule');
      } catch (error) {
        app.log.error({ err: error }, 'audit verification schedule failed');
      }
    }, every);
    tick.unref();
    app.addHook('onClose', async () => clearInterval(tick));
  }
  app.addHook('onClose', async () => {
    if (running) await Promise.race([running, new Promise((resolve) => setTimeout(resolve, CLOSE_WAIT_MS).unref())]);
  });
  return { runNow, last };
}

/**
 * The audit trail. Every answer of an audited route — allowed, refused or failed — and every
 * refused token anywhere is recorded, and the answer waits for the commit of its record
 * (`X-Audit-Id`). If the record cannot be written, the caller gets 503 `audit_unavailable` and
 * none of the data.
 */
async function audit(app: FastifyInstance, { config }: AuditOptions) {
  const hashKey = await auditHashKey(config);
  const writer = new AuditWriter(app.db, app.keys, app.log, {
    maxBatch: config.AUDIT_BATCH_MAX,
    checkpointEvery: config.AUDIT_CHECKPOINT_EVERY,
    checkpointSeconds: config.AUDIT_CHECKPOINT_SECONDS,
  });
  await maintainPartitions(app, config);
  const daily = setInterval(() => void maintainPartitions(app, config), 86_400_000);
  daily.unref();
  app.addHook('onClose', async () => clearInterval(daily));
  const instance = `${hostname()}:${process.pid}`;
  await writer.start(instance);
  app.decorate('audit', writer);
  app.decorate('auditVerification', verifications(app, config, instance));
  // Imported once: a raw key would be imported again for every person of every request.
  const refKey = createSecretKey(hashKey);
  app.decorate('subjectRef', (value: string) => subjectRef(refKey, value));
  const cursorKey = createHmac('sha256', hashKey).update('govdata-gateway cursor key').digest();
  app.decorate('sealCursor', (position: unknown) => sealCursor(cursorKey, position));
  app.decorate('openCursor', <T>(cursor: string, isValid: (value: unknown) => value is T) => openCursor(cursorKey, cursor, isValid));
  app.decorateRequest('auditDetails', null);
  app.addHook('onClose', () => writer.close());

  app.addHook('onSend', async (request, reply, payload) => {
    const action = request.routeOptions.config.audit;
    const status = reply.statusCode;
    const refusedToken = status === 401 || (status === 403 && request.caller !== null);
    if (!action && !refusedToken) return payload;
    if (action && !request.caller && status < 400 && request.routeOptions.config.auditAnonymous === false) return payload;

    const caller = request.caller;
    const details = request.auditDetails ?? {};
    const { subjects, ...recorded } = details;
    const input: AuditInput = {
      request_id: request.id,
      action: action ?? 'auth.refused',
      outcome: outcomeOf(status),
      status,
      reason: problemCode(reply, payload),
      client_id: caller?.kind === 'agency' ? caller.clientId : null,
      agency: caller?.kind === 'agency' ? caller.agency : null,
      on_behalf_of: shortHeader(request, 'x-on-behalf-of'),
      purpose: shortHeader(request, 'x-purpose'),
      latency_ms: Math.round(reply.elapsedTime * 1000) / 1000,
      bytes: typeof payload === 'string' || Buffer.isBuffer(payload) ? Buffer.byteLength(payload) : null,
      client_address: request.ip,
      ...(subjects?.length ? { subject_refs: [...new Set(subjects.map((s) => app.subjectRef(s)))] } : {}),
      ...recorded,
    };
    try {
      const id = await writer.record(input);
      reply.header('x-audit-id', id);
      return payload;
    } catch {
      // No answer without its record: the data (or refusal) is replaced by 503.
      reply.code(503).header('content-type', `${PROBLEM_CONTENT_TYPE}; charset=utf-8`).header('retry-after', '5');
      reply.removeHeader('x-audit-id');
      return JSON.stringify({
        type: problemType('audit_unavailable'),
        title: 'Service Unavailable',
        status: 503,
        detail: new AuditUnavailable().message,
        code: 'audit_unavailable',
        request_id: request.id,
      });
    }
  });

  await app.register(auditRoutes, { config });
}

export default fp(audit, { name: 'audit', fastify: '5.x', dependencies: ['database', 'auth', 'identity'] });
