import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { TypedApp } from '../plugins/typed-app.js';
import Type from 'typebox';
import { findResource } from '../catalog/index.js';
import { applications, grants } from '../db/schema.js';
import { NotFound } from '../errors.js';
import { decodeCursor, isTimeKey, page } from '../pagination.js';
import { apply, decide, findApplication, NotProvider, type Application, type SharingSettings } from './applications.js';
import { findGrant, grantStatus, revokeGrant, type Grant, type GrantCache } from './grants.js';
import { isOverdue, listApplications, listGrants, mayDecide, maySee, sharingScope, type AgencyCaller } from './lists.js';

export interface SharingRouteOptions {
  settings: SharingSettings;
  supervisors: ReadonlySet<string>;
  cache: GrantCache;
}

const iso = (date: Date | null) => (date ? date.toISOString() : null);
const nullableString = Type.Union([Type.String(), Type.Null()]);
const nullableTime = Type.Union([Type.String({ format: 'date-time' }), Type.Null()]);
const modeSchema = Type.Unsafe<'read' | 'verify'>({ type: 'string', enum: ['read', 'verify'], description: 'read: read and query records; verify: only 核验' });

const ApplicationView = Type.Object(
  {
    id: Type.String(),
    agency: Type.String({ description: 'The consumer agency' }),
    client_id: nullableString,
    resource: Type.String(),
    provider: Type.String(),
    fields: Type.Array(Type.String()),
    mode: modeSchema,
    purpose: Type.String(),
    legal_basis: Type.String(),
    duration_days: Type.Integer(),
    status: Type.Unsafe<'pending' | 'approved' | 'rejected'>({ type: 'string', enum: ['pending', 'approved', 'rejected'] }),
    due_at: nullableTime,
    overdue: Type.Boolean({ description: 'Pending past its due date' }),
    created_at: Type.String({ format: 'date-time' }),
    decided_at: nullableTime,
    reason: nullableString,
    grant_id: Type.Optional(Type.String()),
  },
  { $id: 'Application' },
);

const GrantView = Type.Object(
  {
    id: Type.String(),
    agency: Type.String(),
    client_id: Type.Optional(Type.String()),
    resource: Type.String(),
    provider: Type.String(),
    fields: Type.Array(Type.String()),
    mode: modeSchema,
    purpose: Type.String(),
    legal_basis: Type.String(),
    application_id: Type.String(),
    valid_from: Type.String({ format: 'date-time' }),
    valid_until: Type.String({ format: 'date-time' }),
    status: Type.Unsafe<'active' | 'revoked' | 'expired'>({ type: 'string', enum: ['active', 'revoked', 'expired'] }),
    revoked_at: nullableTime,
  },
  { $id: 'Grant' },
);

function applicationView(application: Application, now: Date) {
  return {
    id: application.id,
    agency: application.agency,
    client_id: application.clientId,
    resource: application.resource,
    provider: application.provider,
    fields: application.fields,
    mode: application.mode as 'read' | 'verify',
    purpose: application.purpose,
    legal_basis: application.legalBasis,
    duration_days: application.durationDays,
    status: application.status as 'pending' | 'approved' | 'rejected',
    due_at: iso(application.dueAt),
    overdue: isOverdue(application, now),
    created_at: application.createdAt.toISOString(),
    decided_at: iso(application.decidedAt),
    reason: application.reason,
    ...(application.grantId ? { grant_id: application.grantId } : {}),
  };
}

export function grantView(grant: Grant, now: Date) {
  return {
    id: grant.id,
    agency: grant.agency,
    ...(grant.clientId ? { client_id: grant.clientId } : {}),
    resource: grant.resource,
    provider: grant.provider,
    fields: grant.fields,
    mode: grant.mode as 'read' | 'verify',
    purpose: grant.purpose,
    legal_basis: grant.legalBasis,
    application_id: grant.applicationId,
    valid_from: grant.validFrom.toISOString(),
    valid_until: grant.validUntil.toISOString(),
    status: grantStatus(grant, now),
    revoked_at: iso(grant.revokedAt),
  };
}

const problems = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, { $ref: 'Problem#' }]));
const RoleQuery = Type.Optional(
  Type.Unsafe<'consumer' | 'provider'>({ type: 'string', enum: ['consumer', 'provider'], description: 'Only as consumer, or only as provider' }),
);
const agencyOf = (request: FastifyRequest) => request.caller as AgencyCaller;
const IdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });

/** An application the caller may see, or 404 (never 403: its existence is not told). */
async function visibleApplication(app: TypedApp, supervisors: ReadonlySet<string>, request: FastifyRequest, id: string): Promise<Application> {
  const caller = agencyOf(request);
  const application = await findApplication(app.db, id);
  if (!application || !maySee(supervisors, caller, application)) {
    throw new NotFound(`No application ${id}.`);
  }
  return application;
}

/** POST /v1/applications: a consumer applies; unconditional resources are granted at once. */
function applyRoute(app: TypedApp, { settings, cache }: SharingRouteOptions) {
  app.post(
    '/v1/applications',
    {
      onRequest: app.requireScope('applications:write'),
      config: { audit: 'application.create' },
      schema: {
        tags: ['sharing'],
        summary: 'Apply to use a resource (共享申请)',
        description:
          '`unconditional` resources are granted at once (201); `conditional` ones wait for the provider (202, `due_at` 10 working days out); `none` is refused (403 sharing_not_allowed with the catalog\'s reason).',
        security: [{ bearer: ['applications:write'] }],
        body: Type.Object(
          {
            resource: Type.String({ pattern: '^[0-9]{6}-[A-Z]{2,8}-[0-9]{5}$' }),
            fields: Type.Array(Type.String({ pattern: '^[a-z][a-z0-9_]{0,62}$' }), { minItems: 1, maxItems: 200 }),
            mode: modeSchema,
            purpose: Type.String({ minLength: 1, maxLength: 500 }),
            legal_basis: Type.String({ minLength: 1, maxLength: 500 }),
            duration_days: Type.Integer({ minimum: 1 }),
          },
          { additionalProperties: false },
        ),
        response: { 201: { $ref: 'Application#' }, 202: { $ref: 'Application#' }, ...problems(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const caller = agencyOf(request);
      const stored = await findResource(app.db, request.body.resource);
      if (!stored || stored.retiredAt) throw new NotFound(`No resource ${request.body.resource} in the catalog.`);
      const resource = stored.document;
      request.auditDetails = { resource: resource.code, provider: resource.provider, fields: request.body.fields, legal_basis: request.body.legal_basis };
      const now = app.clock();
      const { application, grant } = await apply(app.db, resource, { agency: caller.agency, clientId: caller.clientId }, request.body, settings, now);
      if (grant) {
        await cache.changed(grant.id);
        request.auditDetails.grant_id = grant.id;
      }
      return reply.code(grant ? 201 : 202).send(applicationView(application, now));
    },
  );
}

/** GET /v1/applications and /v1/applications/{id}: what the caller may see. */
function applicationListRoutes(app: TypedApp, { supervisors }: SharingRouteOptions) {
  app.get(
    '/v1/applications',
    {
      onRequest: app.requireScope(['applications:write', 'grants:manage', 'audit:read', 'admin']),
      schema: {
        tags: ['sharing'],
        summary: 'Applications: mine as consumer, or to decide as provider',
        security: [{ bearer: ['applications:write'] }, { bearer: ['grants:manage'] }],
        querystring: Type.Object(
          {
            role: RoleQuery,
            status: Type.Optional(Type.Unsafe<'pending' | 'approved' | 'rejected'>({ type: 'string', enum: ['pending', 'approved', 'rejected'] })),
            overdue: Type.Optional(Type.Boolean({ description: 'Only pending applications past their due date' })),
            resource: Type.Optional(Type.String({ maxLength: 32 })),
            limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
            cursor: Type.Optional(Type.String({ maxLength: 300 })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ items: Type.Array(Type.Ref('Application')), next_cursor: Type.Union([Type.String(), Type.Null()]) }),
          ...problems(400, 401, 403),
        },
      },
    },
    async (request, reply) => {
      const { role, status, overdue, resource, limit, cursor } = request.query;
      const now = app.clock();
      const { items, next } = await listApplications(
        app.db,
        sharingScope(supervisors, agencyOf(request), applications, role),
        { status, overdue, resource, limit, ...(cursor ? { after: decodeCursor(cursor, isTimeKey) } : {}) },
        now,
      );
      return page(request, reply, { items: items.map((a) => applicationView(a, now)) }, next);
    },
  );

  app.get(
    '/v1/applications/:id',
    {
      onRequest: app.requireScope(['applications:write', 'grants:manage', 'audit:read', 'admin']),
      schema: {
        tags: ['sharing'],
        summary: 'One application',
        security: [{ bearer: ['applications:write'] }, { bearer: ['grants:manage'] }],
        params: IdParams,
        response: { 200: { $ref: 'Application#' }, ...problems(401, 403, 404) },
      },
    },
    async (request) => applicationView(await visibleApplication(app, supervisors, request, request.params.id), app.clock()),
  );
}

/** POST /v1/applications/{id}/decision: the provider approves (possibly narrowed) or rejects. */
function decisionRoute(app: TypedApp, { cache, supervisors }: SharingRouteOptions) {
  app.post(
    '/v1/applications/:id/decision',
    {
      onRequest: app.requireScope(['grants:manage', 'admin']),
      config: { audit: 'application.decide' },
      schema: {
        tags: ['sharing'],
        summary: 'Decide an application (审核): approve, possibly narrowed, or reject with a reason',
        description: 'Only the provider agency of the resource (or an administrator). A decision is final: a second one is 409.',
        security: [{ bearer: ['grants:manage'] }],
        params: IdParams,
        body: Type.Union([
          Type.Object(
            {
              decision: Type.Literal('approve'),
              fields: Type.Optional(Type.Array(Type.String({ pattern: '^[a-z][a-z0-9_]{0,62}$' }), { minItems: 1, maxItems: 200 })),
              duration_days: Type.Optional(Type.Integer({ minimum: 1 })),
            },
            { additionalProperties: false },
          ),
          Type.Object({ decision: Type.Literal('reject'), reason: Type.String({ minLength: 1, maxLength: 1000 }) }, { additionalProperties: false }),
        ]),
        response: { 200: { $ref: 'Application#' }, ...problems(400, 401, 403, 404, 409) },
      },
    },
    async (request) => {
      const caller = agencyOf(request);
      const application = await visibleApplication(app, supervisors, request, request.params.id);
      request.auditDetails = { resource: application.resource, provider: application.provider, fields: application.fields };
      if (!mayDecide(caller, application.provider)) throw new NotProvider(application.resource);
      const now = app.clock();
      const decided = await decide(app.db, application, request.body, caller.clientId, now);
      if (decided.grant) {
        await cache.changed(decided.grant.id);
        request.auditDetails = { ...request.auditDetails, grant_id: decided.grant.id, fields: decided.grant.fields };
      }
      return applicationView(decided.application, now);
    },
  );
}

/** GET /v1/grants and DELETE /v1/grants/{id}: grants seen and revoked. */
function grantRoutes(app: TypedApp, { supervisors, cache }: SharingRouteOptions) {
  app.get(
    '/v1/grants',
    {
      onRequest: app.requireScope(['applications:write', 'grants:manage', 'records:read', 'records:verify', 'audit:read', 'admin']),
      schema: {
        tags: ['sharing'],
        summary: 'Grants: mine as consumer, those on my resources as provider, all for supervisors',
        security: [{ bearer: ['records:read'] }, { bearer: ['grants:manage'] }],
        querystring: Type.Object(
          {
            role: RoleQuery,
            status: Type.Optional(Type.Unsafe<'active' | 'revoked' | 'expired'>({ type: 'string', enum: ['active', 'revoked', 'expired'] })),
            resource: Type.Optional(Type.String({ maxLength: 32 })),
            limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
            cursor: Type.Optional(Type.String({ maxLength: 300 })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ items: Type.Array(Type.Ref('Grant')), next_cursor: Type.Union([Type.String(), Type.Null()]) }),
          ...problems(400, 401, 403),
        },
      },
    },
    async (request, reply) => {
      const { role, status, resource, limit, cursor } = request.query;
      const now = app.clock();
      const { items, next } = await listGrants(
        app.db,
        sharingScope(supervisors, agencyOf(request), grants, role),
        { status, resource, limit, ...(cursor ? { after: decodeCursor(cursor, isTimeKey) } : {}) },
        now,
      );
      return page(request, reply, { items: items.map((g) => grantView(g, now)) }, next);
    },
  );

  app.delete(
    '/v1/grants/:id',
    {
      onRequest: app.requireScope(['grants:manage', 'admin']),
      config: { audit: 'grant.revoke' },
      schema: {
        tags: ['sharing'],
        summary: 'Revoke a grant: access stops at once on every instance',
        description: 'The provider agency of the resource or an administrator. Revoking a revoked grant changes nothing.',
        security: [{ bearer: ['grants:manage'] }],
        params: IdParams,
        response: { 200: { $ref: 'Grant#' }, ...problems(401, 403, 404) },
      },
    },
    async (request) => {
      const caller = agencyOf(request);
      const grant = await findGrant(app.db, request.params.id);
      if (!grant || !maySee(supervisors, caller, grant)) {
        throw new NotFound(`No grant ${request.params.id}.`);
      }
      request.auditDetails = { resource: grant.resource, provider: grant.provider, grant_id: grant.id, fields: grant.fields };
      if (!mayDecide(caller, grant.provider)) throw new NotProvider(grant.resource);
      const revoked = (await revokeGrant(app.db, grant.id, caller.clientId, app.clock())) as Grant;
      await cache.changed(grant.id);
      return grantView(revoked, app.clock());
    },
  );
}

/**
 * Applications (共享申请), decisions (审核) and grants (授权): consumers apply and see their own;
 * providers decide and revoke for their resources; supervisors see everything, overdue included.
 */
export async function sharingRoutes(parent: FastifyInstance, options: SharingRouteOptions) {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  app.addSchema(ApplicationView);
  app.addSchema(GrantView);
  applyRoute(app, options);
  applicationListRoutes(app, options);
  decisionRoute(app, options);
  grantRoutes(app, options);
}
