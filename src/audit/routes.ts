import type { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { TypedApp } from '../plugins/typed-app.js';
import { and, asc, eq, sql } from 'drizzle-orm';
import Type from 'typebox';
import { supervisorAgencies, type Config } from '../config.js';
import { rowsOf } from '../db/index.js';
import { auditCheckpoints, auditEvents } from '../db/schema.js';
import { defineProblem } from '../errors.js';
import { decodeCursor, isTimeKey, page } from '../pagination.js';
import { trailScopeOf } from './scope.js';
import { accessLog, eventPage, eventsCsv, instant, trailWhere } from './trail.js';
import { checkpointFromRow } from './writer.js';

export const CitizenOnly = defineProblem<[]>('citizen_only', 'This route answers a citizen about their own records.', 403);

export interface AuditRouteOptions {
  config: Config;
}

const EventQuery = Type.Object(
  {
    from: Type.Optional(Type.String({ format: 'date-time', description: 'From this time (inclusive)' })),
    to: Type.Optional(Type.String({ format: 'date-time', description: 'Until this time (exclusive)' })),
    agency: Type.Optional(Type.String({ maxLength: 100, description: 'The calling agency' })),
    resource: Type.Optional(Type.String({ maxLength: 32 })),
    action: Type.Optional(Type.String({ maxLength: 64 })),
    outcome: Type.Optional(Type.Unsafe<'allowed' | 'denied' | 'error'>({ type: 'string', enum: ['allowed', 'denied', 'error'] })),
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
    cursor: Type.Optional(Type.String({ maxLength: 300 })),
  },
  { additionalProperties: false },
);

const nullable = (schema: ReturnType<typeof Type.String>) => Type.Union([schema, Type.Null()]);
const AuditEventView = Type.Object(
  {
    id: Type.String(),
    chain_id: Type.String(),
    seq: Type.Integer(),
    prev_hash: Type.String(),
    hash: Type.String(),
    occurred_at: Type.String({ format: 'date-time' }),
    request_id: nullable(Type.String()),
    client_id: nullable(Type.String()),
    agency: nullable(Type.String()),
    on_behalf_of: nullable(Type.String()),
    action: Type.String(),
    resource: nullable(Type.String()),
    provider: nullable(Type.String()),
    purpose: nullable(Type.String()),
    legal_basis: nullable(Type.String()),
    grant_id: nullable(Type.String()),
    subject_refs: Type.Union([Type.Array(Type.String()), Type.Null()], { description: 'Keyed hashes of the persons concerned' }),
    fields: Type.Union([Type.Array(Type.String()), Type.Null()]),
    row_count: Type.Union([Type.Integer(), Type.Null()]),
    outcome: Type.Unsafe<'allowed' | 'denied' | 'error'>({ type: 'string', enum: ['allowed', 'denied', 'error'] }),
    status: Type.Union([Type.Integer(), Type.Null()]),
    reason: nullable(Type.String()),
    latency_ms: Type.Union([Type.Number(), Type.Null()]),
    bytes: Type.Union([Type.Integer(), Type.Null()]),
    client_address: nullable(Type.String()),
  },
  { $id: 'AuditEvent' },
);

const Stat = Type.Object({
  key: nullable(Type.String()),
  count: Type.Integer(),
  denied: Type.Integer(),
  errors: Type.Integer(),
  refusal_rate: Type.Number(),
  error_rate: Type.Number(),
  latency_ms: Type.Object({ p50: Type.Union([Type.Number(), Type.Null()]), p95: Type.Union([Type.Number(), Type.Null()]), p99: Type.Union([Type.Number(), Type.Null()]) }),
});

const problems = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, { $ref: 'Problem#' }]));

/** A CSV download (the typed reply knows only the JSON page's shape). */
function sendCsv(reply: FastifyReply, filename: string, csv: Readable) {
  reply.type('text/csv; charset=utf-8').header('content-disposition', `attachment; filename="${filename}"`);
  return reply.send(csv);
}

/** GET /v1/audit/events: the trail the caller may see, as JSON pages or one CSV. */
function eventsRoute(app: TypedApp, supervisors: ReadonlySet<string>) {
  app.get(
    '/v1/audit/events',
    {
      // Text/csv streams the whole trail, for as long as that takes.
      config: { streams: true },
      onRequest: app.requireScope('audit:read'),
      schema: {
        tags: ['audit'],
        summary: 'The audit trail, newest first',
        description:
          'Filters by time, agency, resource, action and outcome; keyset paging. Providers see uses of their resources, consumers their own calls, supervisors everything. `Accept: text/csv` streams every matching event as CSV.',
        security: [{ bearer: ['audit:read'] }],
        querystring: EventQuery,
        produces: ['application/json', 'text/csv'],
        response: {
          200: Type.Object({ items: Type.Array(Type.Ref('AuditEvent')), next_cursor: Type.Union([Type.String(), Type.Null()]) }),
          ...problems(400, 401, 403),
        },
      },
    },
    async (request, reply) => {
      const { limit, cursor, ...query } = request.query;
      const where = trailWhere(trailScopeOf(supervisors, request.caller), query);
      if (request.headers.accept?.includes('text/csv')) return sendCsv(reply, 'audit-events.csv', eventsCsv(app.db, where));
      const result = await eventPage(app.db, where, limit, cursor ? decodeCursor(cursor, isTimeKey) : undefined);
      return page(request, reply, { items: result.items }, result.next);
    },
  );
}

/** GET /v1/audit/stats: counts, refusal and error rates, latency percentiles. */
function statsRoute(app: TypedApp, supervisors: ReadonlySet<string>) {
  app.get(
    '/v1/audit/stats',
    {
      onRequest: app.requireScope('audit:read'),
      schema: {
        tags: ['audit'],
        summary: 'Counts, refusal and error rates, latency percentiles per resource and agency',
        security: [{ bearer: ['audit:read'] }],
        querystring: Type.Object(
          {
            from: Type.Optional(Type.String({ format: 'date-time', description: 'Default: 24 hours ago' })),
            to: Type.Optional(Type.String({ format: 'date-time', description: 'Default: now' })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            from: Type.String({ format: 'date-time' }),
            to: Type.String({ format: 'date-time' }),
            total: Stat,
            by_resource: Type.Array(Stat),
            by_agency: Type.Array(Stat),
          }),
          ...problems(400, 401, 403),
        },
      },
    },
    async (request) => {
      const to = request.query.to ? instant(request.query.to) : new Date();
      const from = request.query.from ? instant(request.query.from) : new Date(to.getTime() - 86_400_000);
      const where = trailWhere(trailScopeOf(supervisors, request.caller), { from: from.toISOString(), to: to.toISOString() });
      const result = await app.db.execute(sql`
        select ${auditEvents.resource} as resource, ${auditEvents.agency} as agency,
               grouping(${auditEvents.resource}) as g_resource, grouping(${auditEvents.agency}) as g_agency,
               count(*)::int as count,
               (count(*) filter (where ${auditEvents.outcome} = 'denied'))::int as denied,
               (count(*) filter (where ${auditEvents.outcome} = 'error'))::int as errors,
               percentile_cont(0.5) within group (order by ${auditEvents.latencyMs}) as p50,
               percentile_cont(0.95) within group (order by ${auditEvents.latencyMs}) as p95,
               percentile_cont(0.99) within group (order by ${auditEvents.latencyMs}) as p99
        from ${auditEvents} where ${where ?? sql`true`}
        group by grouping sets ((${auditEvents.resource}), (${auditEvents.agency}), ())`);
      type Row = { resource: string | null; agency: string | null; g_resource: number; g_agency: number; count: number; denied: number; errors: number; p50: number | null; p95: number | null; p99: number | null };
      const stat = (key: string | null, row: Row) => ({
        key,
        count: row.count,
        denied: row.denied,
        errors: row.errors,
        refusal_rate: row.count ? row.denied / row.count : 0,
        error_rate: row.count ? row.errors / row.count : 0,
        latency_ms: { p50: row.p50 === null ? null : Number(row.p50), p95: row.p95 === null ? null : Number(row.p95), p99: row.p99 === null ? null : Number(row.p99) },
      });
      const rows = rowsOf<Row>(result);
      const totalRow = rows.find((row) => row.g_resource && row.g_agency);
      const empty: Row = { resource: null, agency: null, g_resource: 1, g_agency: 1, count: 0, denied: 0, errors: 0, p50: null, p95: null, p99: null };
      const byCount = (a: { count: number }, b: { count: number }) => b.count - a.count;
      return {
        from: from.toISOString(),
        to: to.toISOString(),
        total: stat(null, totalRow ?? empty),
        by_resource: rows.filter((row) => !row.g_resource).map((row) => stat(row.resource, row)).sort(byCount),
        by_agency: rows.filter((row) => !row.g_agency).map((row) => stat(row.agency, row)).sort(byCount),
      };
    },
  );
}

/** GET /v1/audit/checkpoints: the signed chain heads. */
function checkpointsRoute(app: TypedApp) {
  app.get(
    '/v1/audit/checkpoints',
    {
      onRequest: app.requireScope('audit:read'),
      schema: {
        tags: ['audit'],
        summary: 'Signed heads of the audit chains',
        description: 'Each `signature` is a compact JWS over {chain_id, seq, head_hash, signed_at} by a key of /.well-known/jwks.json.',
        security: [{ bearer: ['audit:read'] }],
        querystring: Type.Object(
          {
            chain_id: Type.Optional(Type.String({ maxLength: 64 })),
            limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
            cursor: Type.Optional(Type.String({ maxLength: 300 })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            items: Type.Array(
              Type.Object({
                chain_id: Type.String(),
                seq: Type.Integer(),
                head_hash: Type.String(),
                signed_at: Type.String({ format: 'date-time' }),
                kid: Type.String(),
                signature: Type.String(),
              }),
            ),
            next_cursor: Type.Union([Type.String(), Type.Null()]),
          }),
          ...problems(400, 401, 403),
        },
      },
    },
    async (request, reply) => {
      const { chain_id, limit, cursor } = request.query;
      const after = cursor ? decodeCursor(cursor, (v): v is [string, number] => Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && Number.isSafeInteger(v[1])) : undefined;
      const rows = await app.db
        .select()
        .from(auditCheckpoints)
        .where(
          and(
            chain_id ? eq(auditCheckpoints.chainId, chain_id) : undefined,
            after ? sql`(${auditCheckpoints.chainId}, ${auditCheckpoints.seq}) > (${after[0]}, ${after[1]})` : undefined,
          ),
        )
        .orderBy(asc(auditCheckpoints.chainId), asc(auditCheckpoints.seq))
        .limit(limit + 1);
      const items = rows.slice(0, limit).map(checkpointFromRow);
      const last = items.at(-1);
      return page(request, reply, { items }, rows.length > limit && last ? [last.chain_id, last.seq] : null);
    },
  );
}

/** GET /v1/me/access-log: for a citizen, who used records about them, when and why. */
function accessLogRoute(app: TypedApp) {
  app.get(
    '/v1/me/access-log',
    {
      schema: {
        tags: ['audit'],
        summary: 'For a citizen: which agencies used records about me, when, and why',
        description: 'Needs a citizen token from a trusted identity provider. Newest first.',
        security: [{ bearer: [] }],
        querystring: Type.Object(
          { limit: Type.Integer({ minimum: 1, maximum: 100, default: 50 }), cursor: Type.Optional(Type.String({ maxLength: 300 })) },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            items: Type.Array(
              Type.Object({
                occurred_at: Type.String({ format: 'date-time' }),
                agency: nullable(Type.String()),
                agency_name: nullable(Type.String()),
                action: Type.String(),
                resource: nullable(Type.String()),
                resource_name: nullable(Type.String()),
                purpose: nullable(Type.String()),
                legal_basis: nullable(Type.String({ description: 'The law or grant the use rested on' })),
                fields: Type.Union([Type.Array(Type.String()), Type.Null()]),
              }),
            ),
            next_cursor: Type.Union([Type.String(), Type.Null()]),
          }),
          ...problems(400, 401, 403),
        },
      },
    },
    async (request, reply) => {
      const caller = request.caller;
      if (!caller) {
        reply.header('www-authenticate', 'Bearer realm="govdata-gateway"');
        return reply.problem(401, 'token_missing', 'This route needs a citizen token.');
      }
      if (caller.kind !== 'citizen') throw new CitizenOnly();
      const { limit, cursor } = request.query;
      const result = await accessLog(app.db, app.subjectRef(caller.person), limit, cursor ? decodeCursor(cursor, isTimeKey) : undefined);
      return page(request, reply, { items: result.items }, result.next);
    },
  );
}

/**
 * Reading the trail: events and their CSV export, statistics and checkpoints for those with
 * `audit:read` (providers see uses of their resources, consumers their own calls, supervisors
 * everything), and a citizen's own access log.
 */
export async function auditRoutes(parent: FastifyInstance, { config }: AuditRouteOptions) {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  const supervisors = supervisorAgencies(config);
  app.addSchema(AuditEventView);
  eventsRoute(app, supervisors);
  statsRoute(app, supervisors);
  checkpointsRoute(app);
  accessLogRoute(app);
}
