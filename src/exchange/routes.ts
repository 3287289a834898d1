import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Type from 'typebox';
import type { Resource } from '../catalog/index.js';
import { defineProblem, NotFound } from '../errors.js';
import type { Caller } from '../plugins/auth.js';
import { howToSendText } from '../plugins/text-headers.js';
import type { Act, Decision } from '../sharing/index.js';
import type { TypedApp } from '../plugins/typed-app.js';
import type { UpstreamClient } from './upstream.js';
import { filterSql, type Filter } from '../records/index.js';
import { checkIdentifier, lookupItem, queryRecords, readRecord, verifySubjects } from './records.js';

export const PurposeRequired = defineProblem<[]>('purpose_required', 'Every exchange call names its purpose in the X-Purpose header.', 400);
export const RecordNotFound = defineProblem<[string, string]>('record_not_found', 'No record %s in %s.', 404);
export const SubjectNotIdentifying = defineProblem<[string]>('subject_not_identifying', '%s', 400);
export const Denied = (reason: string, detail: string) => Object.assign(new Error(detail), { statusCode: 403, code: reason });

const MAX_SUBJECTS = 100;
const MAX_PAGE = 1000;

type AgencyCaller = Extract<Caller, { kind: 'agency' }>;

const denialText: Record<string, string> = {
  grant_missing: 'No grant lets your agency use this resource.',
  grant_expired: 'Your grant on this resource has expired.',
  field_not_granted: 'A field asked for is not in your grant.',
  mode_not_granted: 'Your grant does not allow this kind of use.',
  sharing_not_allowed: 'This resource is not shared (不予共享).',
};

const CodeParams = Type.Object({ code: Type.String({ pattern: '^[0-9]{6}-[A-Z]{2,8}-[0-9]{5}$' }) });
const ExchangeHeaders = Type.Object({
  'x-purpose': Type.Optional(Type.String({ maxLength: 500, description: `Why this data is needed (logged). Required. ${howToSendText('X-Purpose', '就业补贴资格审核')}` })),
  'x-on-behalf-of': Type.Optional(Type.String({ maxLength: 200, description: `The official or case this call serves (logged). ${howToSendText('X-On-Behalf-Of', '人社局 王小明')}` })),
});
const RecordObject = Type.Record(Type.String(), Type.Unknown(), { description: 'The granted fields of one record' });
const FieldResults = Type.Record(Type.String(), Type.Unsafe<'match' | 'mismatch' | 'unknown'>({ type: 'string', enum: ['match', 'mismatch', 'unknown'] }));
const VerifyResult = Type.Object({
  verdict: Type.Unsafe<'match' | 'mismatch' | 'not_found'>({ type: 'string', enum: ['match', 'mismatch', 'not_found'] }),
  fields: FieldResults,
});
const problems = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, { $ref: 'Problem#' }]));
const isKeyCursor = (value: unknown): value is unknown[] => Array.isArray(value);

/** The items that name a person (resident ID numbers): read for the audit trail, granted or not. */
function personItems(resource: Resource): string[] {
  return resource.items.filter((item) => item.format === 'cn-resident-id').map((item) => item.name);
}

/** Values of the person identifiers in records or subjects: hashed for the trail. */
function personsIn(resource: Resource, rows: Array<Record<string, unknown>>): string[] {
  const items = personItems(resource);
  return rows.flatMap((row) => items.map((name) => row[name]).filter((value): value is string => typeof value === 'string' && value.length > 0));
}

/** Shared records leave with the caller's granted fields only. */
const cut = (record: Record<string, unknown>, fields: string[]) => Object.fromEntries(fields.map((field) => [field, record[field] ?? null]));

/** Purpose, resource and grant: what every exchange call must clear before any lookup. */
async function admit(
  app: TypedApp,
  request: FastifyRequest,
  code: string,
  act: Act,
  fields?: string[],
  precheck?: (resource: Resource) => void,
): Promise<{ resource: Resource; decision: Decision }> {
  const purpose = request.headers['x-purpose'];
  const stored = await app.catalogCache.find(code);
  if (stored) request.auditDetails = { resource: code, provider: stored.document.provider };
  if (typeof purpose !== 'string' || purpose.trim().length === 0) throw new PurposeRequired();
  if (!stored || stored.retiredAt) throw new NotFound(`No resource ${code} in the catalog.`);
  const resource = stored.document;
  const decision = app.decide({ caller: request.caller as AgencyCaller, resource: { code, sharing: resource.sharing }, act, ...(fields ? { fields } : {}) });
  if (decision.grant) {
    request.auditDetails = { ...request.auditDetails, grant_id: decision.grant.id, legal_basis: decision.grant.legalBasis };
  }
  // What is malformed is a 400 whatever the grant says (the grant is still on the record).
  precheck?.(resource);
  if (!decision.allow) throw Denied(decision.reason as string, denialText[decision.reason as string] as string);
  return { resource, decision };
}

/** A record from the provider's own system; the key is checked here first, like a hosted one. */
async function readUpstream(upstream: UpstreamClient, resource: Resource, key: string) {
  const parts = resource.record_key.length === 1 ? [key] : key.split('~');
  resource.record_key.forEach((name, index) => checkIdentifier(resource, name, parts[index] ?? ''));
  const answer = await upstream.call(resource, { method: 'GET', path: `/records/${encodeURIComponent(key)}` });
  return answer && typeof answer === 'object' && !Array.isArray(answer) ? (answer as Record<string, unknown>) : undefined;
}

/** Verdicts from the provider, kept to the shape we promise: nothing else passes through. */
async function verifyUpstream(upstream: UpstreamClient, resource: Resource, subjects: Array<Record<string, unknown>>) {
  const answer = (await upstream.call(resource, { method: 'POST', path: '/verify', body: { subjects } })) as { results?: unknown[] } | undefined;
  const results = Array.isArray(answer?.results) ? answer.results : [];
  return subjects.map((subject, index) => {
    const result = (results[index] ?? {}) as { verdict?: unknown; fields?: Record<string, unknown> };
    const verdict = ['match', 'mismatch', 'not_found'].includes(String(result.verdict)) ? (result.verdict as 'match' | 'mismatch' | 'not_found') : 'not_found';
    const fields = Object.fromEntries(
      Object.keys(subject).map((name) => {
        const value = result.fields?.[name];
        return [name, value === 'match' || value === 'mismatch' ? value : ('unknown' as const)];
      }),
    ) as Record<string, 'match' | 'mismatch' | 'unknown'>;
    return { verdict, fields };
  });
}

/** GET …/records/{key}: one record, cut down to the grant. */
function readRoute(app: TypedApp, upstream: UpstreamClient) {
  app.get(
    '/v1/resources/:code/records/:key',
    {
      onRequest: app.requireScope('records:read'),
      config: { audit: 'records.read' },
      schema: {
        tags: ['exchange'],
        summary: 'One shared record, cut down to the granted fields',
        description: 'A composite record key is joined with `~`. The key is checked against its item\'s format (400 invalid_identifier) before any lookup.',
        security: [{ bearer: ['records:read'] }],
        params: Type.Object({ code: CodeParams.properties.code, key: Type.String({ minLength: 1, maxLength: 200 }) }),
        headers: ExchangeHeaders,
        response: {
          200: Type.Object({ resource: Type.String(), record: RecordObject, grant_id: Type.String() }),
          ...problems(400, 401, 403, 404, 503),
        },
      },
    },
    async (request) => {
      const { resource, decision } = await admit(app, request, request.params.code, 'read');
      const stored = resource.upstream
        ? await readUpstream(upstream, resource, request.params.key)
        : await readRecord(app.db, resource, request.params.key, decision.fields, personItems(resource));
      request.auditDetails = { ...request.auditDetails, row_count: stored ? 1 : 0, fields: decision.fields };
      if (!stored) throw new RecordNotFound(request.params.key.length > 4 ? `${request.params.key.slice(0, 4)}…` : request.params.key, resource.code);
      request.auditDetails.subjects = personsIn(resource, [stored]);
      return { resource: resource.code, record: cut(stored, decision.fields), grant_id: decision.grant?.id as string };
    },
  );
}

/** POST …/query: a typed filter over granted items, keyset pages. */
function queryRoute(app: TypedApp, upstream: UpstreamClient) {
  app.post(
    '/v1/resources/:code/query',
    {
      onRequest: app.requireScope('records:read'),
      config: { audit: 'records.query' },
      schema: {
        tags: ['exchange'],
        summary: 'Query shared records: a typed filter, the granted fields, keyset paging',
        description: 'filter: `{item: {eq|in|lt|lte|gt|gte|prefix: value}}` on indexed items that are in your grant. `fields` must be a subset of the grant.',
        security: [{ bearer: ['records:read'] }],
        params: CodeParams,
        headers: ExchangeHeaders,
        body: Type.Object(
          {
            filter: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
            fields: Type.Optional(Type.Array(Type.String({ pattern: '^[a-z][a-z0-9_]{0,62}$' }), { minItems: 1, maxItems: 200 })),
            limit: Type.Integer({ minimum: 1, maximum: MAX_PAGE, default: 100 }),
            cursor: Type.Optional(Type.String({ maxLength: 2000 })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ items: Type.Array(RecordObject), next_cursor: Type.Union([Type.String(), Type.Null()]), grant_id: Type.String() }),
          ...problems(400, 401, 403, 404, 503),
        },
      },
    },
    async (request) => {
      const filter = (request.body.filter ?? {}) as Filter;
      let filtered: ReturnType<typeof filterSql> | undefined;
      const { resource, decision } = await admit(app, request, request.params.code, 'query', request.body.fields, (resource) => {
        filtered = filterSql(resource, filter);
      });
      const fields = request.body.fields ?? decision.fields;
      // The filter's items must be granted too: filtering on a field reveals it.
      const { where, items: filterItems } = filtered as ReturnType<typeof filterSql>;
      const outside = filterItems.filter((name) => !decision.grant?.fields.includes(name));
      if (outside.length) throw Denied('field_not_granted', `Filtering on ${outside.join(', ')} is outside your grant.`);
      if (resource.upstream) {
        const answer = (await upstream.call(resource, {
          method: 'POST',
          path: '/query',
          body: { filter, fields, limit: request.body.limit, ...(request.body.cursor ? { cursor: request.body.cursor } : {}) },
        })) as { items?: Array<Record<string, unknown>>; next_cursor?: string | null } | undefined;
        const rows = Array.isArray(answer?.items) ? answer.items.slice(0, request.body.limit) : [];
        request.auditDetails = { ...request.auditDetails, row_count: rows.length, fields, subjects: personsIn(resource, rows) };
        const next = typeof answer?.next_cursor === 'string' ? answer.next_cursor : null;
        return { items: rows.map((row) => cut(row, fields)), next_cursor: next, grant_id: decision.grant?.id as string };
      }
      // Cursors are sealed: they hold record keys the caller may not be granted to see.
      const after = request.body.cursor ? app.openCursor(request.body.cursor, isKeyCursor) : undefined;
      const result = await queryRecords(app.db, resource, where, fields, request.body.limit, after, personItems(resource));
      request.auditDetails = { ...request.auditDetails, row_count: result.items.length, fields, subjects: personsIn(resource, result.extras) };
      return { items: result.items, next_cursor: result.next ? app.sealCursor(result.next) : null, grant_id: decision.grant?.id as string };
    },
  );
}

/** POST …/verify (核验): match or mismatch, never a stored value. */
function verifyRoute(app: TypedApp, upstream: UpstreamClient) {
  app.post(
    '/v1/resources/:code/verify',
    {
      onRequest: app.requireScope('records:verify'),
      config: { audit: 'records.verify' },
      schema: {
        tags: ['exchange'],
        summary: 'Verify (核验): does what you hold match the record? Never returns a stored value.',
        description: `One \`subject\` or up to ${MAX_SUBJECTS} \`subjects\`, each \`{item: value}\` including the record key or an indexed identifier (e.g. a resident ID number). Needs a verify or read grant covering the compared fields.`,
        security: [{ bearer: ['records:verify'] }],
        params: CodeParams,
        headers: ExchangeHeaders,
        body: Type.Union([
          Type.Object({ subject: Type.Record(Type.String({ pattern: '^[a-z][a-z0-9_]{0,62}$' }), Type.Union([Type.String({ maxLength: 500 }), Type.Number(), Type.Boolean()]), { minProperties: 1, maxProperties: 50 }) }, { additionalProperties: false }),
          Type.Object(
            {
              subjects: Type.Array(
                Type.Record(Type.String({ pattern: '^[a-z][a-z0-9_]{0,62}$' }), Type.Union([Type.String({ maxLength: 500 }), Type.Number(), Type.Boolean()]), { minProperties: 1, maxProperties: 50 }),
                { minItems: 1, maxItems: MAX_SUBJECTS },
              ),
            },
            { additionalProperties: false },
          ),
        ]),
        response: {
          200: Type.Union([VerifyResult, Type.Object({ results: Type.Array(VerifyResult) })]),
          ...problems(400, 401, 403, 404, 503),
        },
      },
    },
    async (request) => {
      const body = request.body as { subject?: Record<string, unknown>; subjects?: Array<Record<string, unknown>> };
      const subjects = body.subjects ?? [body.subject as Record<string, unknown>];
      const compared = [...new Set(subjects.flatMap((subject) => Object.keys(subject)))];
      let lookups: string[] = [];
      const { resource } = await admit(app, request, request.params.code, 'verify', compared, (resource) => {
        const known = new Set(resource.items.map((item) => item.name));
        lookups = subjects.map((subject, index) => {
          const unknown = Object.keys(subject).find((name) => !known.has(name));
          if (unknown) throw new SubjectNotIdentifying(`subjects/${index}/${unknown}: is not a data item of ${resource.code}`);
          const lookup = lookupItem(resource, subject);
          if (!lookup) throw new SubjectNotIdentifying(`subjects/${index}: name the record key (${resource.record_key.join(', ')}) or an indexed identifier to verify against`);
          // Identifiers are checked before any lookup (GB 11643, GB 32100, division codes, …).
          for (const [name, value] of Object.entries(subject)) {
            if (resource.items.find((item) => item.name === name)?.format) checkIdentifier(resource, name, value);
          }
          return lookup;
        });
      });
      request.auditDetails = { ...request.auditDetails, fields: compared, subjects: personsIn(resource, subjects) };
      const results = resource.upstream ? await verifyUpstream(upstream, resource, subjects) : await verifySubjects(app.db, resource, subjects, lookups);
      request.auditDetails.row_count = results.filter((result) => result.verdict !== 'not_found').length;
      return body.subjects ? { results } : (results[0] as (typeof results)[number]);
    },
  );
}

/**
 * Exchange (共享交换): read one record, query records, verify subjects (核验), always cut to the
 * caller's grant, with X-Purpose required and every answer on the audit trail.
 */
export async function exchangeRoutes(parent: FastifyInstance, { upstream }: { upstream: UpstreamClient }) {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  // Shared records are personal data: no cache, shared or private, may keep an answer.
  app.addHook('onRequest', (_request, reply, done) => {
    reply.header('cache-control', 'no-store');
    done();
  });
  readRoute(app, upstream);
  queryRoute(app, upstream);
  verifyRoute(app, upstream);
}
