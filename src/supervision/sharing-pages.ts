import type { FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Type from 'typebox';
import { InvalidRequest, NotFound, ownProblemCode } from '../errors.js';
import { decodeCursor, encodeCursor, isTimeKey } from '../pagination.js';
import type { TypedApp } from '../plugins/typed-app.js';
import { wantsFragment } from '../portal/pages.js';
import { frameOf } from '../portal/frame.js';
import {
  decide,
  EXPIRING_WITHIN_DAYS,
  findApplication,
  findGrant,
  grantStatus,
  isDuePosition,
  isOverdue,
  listApplications,
  listGrants,
  mayDecide,
  maySee,
  revokeGrant,
  sharingScopes,
  type AgencyCaller,
  NotProvider,
  type Application,
  type DecisionInput,
  type Grant,
  type GrantListStatus,
} from '../sharing/index.js';
import { officialsOnly, sendPersonalPage, type PagesPlugin, type SupervisionContext } from './context.js';
import { namesFor } from './names.js';

/** Applications on one page of the list; grants in one section of theirs. */
const APPLICATIONS_PER_PAGE = 20;
const GRANTS_PER_SECTION = 20;
const DAY_MS = 86_400_000;
/** The grants page's sections, in the order they are shown when no status is chosen. */
const GRANT_SECTIONS: GrantListStatus[] = ['expiring', 'active', 'revoked', 'expired'];

const agencyOf = (request: FastifyRequest) => request.caller as AgencyCaller;
const IdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });
const optionalEnum = <T extends string>(values: T[]) => Type.Optional(Type.Unsafe<T | ''>({ type: 'string', enum: ['', ...values] }));
/** A form's CSRF token: optional in the schema, so that a form without one is the CSRF check's 403, not a 400. */
const CsrfField = Type.Optional(Type.String({ maxLength: 200 }));

/** The calendar day (YYYY-MM-DD) an instant falls on in China. */
const chinaDay = new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit', day: '2-digit' });
const dayInChina = (instant: Date) => chinaDay.format(instant);

/** How many days a pending application is past its due date (a day begun counts), 0 when it is not. */
function daysOverdue(application: Application, now: Date): number {
  if (!isOverdue(application, now) || !application.dueAt) return 0;
  return Math.max(1, Math.ceil((now.getTime() - application.dueAt.getTime()) / DAY_MS));
}

/** The names the pages show for codes: agencies' and resources' from the catalog, data items' titles. */
/** An application the official may see, or 404 (never 403: its existence is not told), as the API does. */
async function visibleApplication(app: TypedApp, context: SupervisionContext, request: FastifyRequest, id: string): Promise<Application> {
  const application = await findApplication(app.db, id);
  if (!application || !maySee(context.supervisors, agencyOf(request), application)) throw new NotFound(`No application ${id}.`);
  return application;
}

/** Put the code of a refusal on the trail before its error page is sent (the trail cannot read a page's code back). */
async function refusedWith<T>(request: FastifyRequest, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    const code = (error as { code?: string }).code;
    request.auditDetails = { ...request.auditDetails, reason: ownProblemCode(code) ?? code ?? 'error' };
    throw error;
  }
}

/** A link within the pages, keeping the language the person chose by `?lang=`. */
const hrefOf = (request: FastifyRequest, path: string, params = {}) => frameOf(request).href(path, params);

/** GET /supervision/applications: pending ones by due date, the overdue first and marked; then the decided ones. */
function applicationsPage(app: TypedApp, context: SupervisionContext) {
  app.get(
    '/supervision/applications',
    {
      schema: {
        hide: true,
        querystring: Type.Object({
          role: optionalEnum(['consumer', 'provider']),
          status: optionalEnum(['pending', 'approved', 'rejected']),
          cursor: Type.Optional(Type.String({ maxLength: 300 })),
        }),
      },
      preHandler: officialsOnly(),
    },
    async (request, reply) => {
      const { role, status, cursor } = request.query;
      const now = app.clock();
      const { items, next } = await listApplications(
        app.db,
        sharingScopes(context.supervisors, agencyOf(request), role || undefined).applications,
        { order: 'due', limit: APPLICATIONS_PER_PAGE, ...(status ? { status } : {}), ...(cursor ? { after: decodeCursor(cursor, isDuePosition) } : {}) },
        now,
      );
      const names = await namesFor(app, items.flatMap((a) => [a.agency, a.provider]), items.map((a) => a.resource));
      const fragment = wantsFragment(request, 'applications-list');
      const template = fragment ? 'supervision/templates/partials/applications-list.eta' : 'supervision/templates/applications.eta';
      return sendPersonalPage(request, reply, context, template, (frame) => ({
        title: frame.t('applications.title'),
        filters: { role: role ?? '', status: status ?? '' },
        applications: items.map((application) => ({ ...application, daysOverdue: daysOverdue(application, now) })),
        next: next ? frame.href('/supervision/applications', { role, status, cursor: encodeCursor(next) }) : null,
        first: cursor ? frame.href('/supervision/applications', { role, status }) : null,
        names: names(frame.locale),
      }));
    },
  );
}

/** GET /supervision/applications/:id: the application in full, and the decision forms for its provider while pending. */
function applicationPage(app: TypedApp, context: SupervisionContext) {
  app.get('/supervision/applications/:id', { schema: { hide: true, params: IdParams }, preHandler: officialsOnly() }, async (request, reply) => {
    const application = await visibleApplication(app, context, request, request.params.id);
    const now = app.clock();
    const grant = application.grantId ? await findGrant(app.db, application.grantId) : undefined;
    const names = await namesFor(app, [application.agency, application.provider], [application.resource]);
    const decidable = application.status === 'pending' && mayDecide(agencyOf(request), application.provider);
    return sendPersonalPage(request, reply, context, 'supervision/templates/application.eta', (frame) => ({
      title: frame.t('applications.detail.title', { resource: names(frame.locale).resource(application.resource) }),
      application: { ...application, daysOverdue: daysOverdue(application, now) },
      grant: grant ? { ...grant, status: grantStatus(grant, now) } : null,
      decidable,
      expiry: { min: dayInChina(new Date(now.getTime() + DAY_MS)), max: dayInChina(new Date(now.getTime() + application.durationDays * DAY_MS)) },
      action: frame.href(`/supervision/applications/${encodeURIComponent(application.id)}/decision`),
      names: names(frame.locale),
    }));
  });
}

const DecisionForm = Type.Object({
  _csrf: CsrfField,
  decision: Type.Unsafe<'approve' | 'reject'>({ type: 'string', enum: ['approve', 'reject'] }),
  fields: Type.Optional(Type.Array(Type.String({ maxLength: 63 }), { maxItems: 200 })),
  valid_until: Type.Optional(Type.String({ maxLength: 10, pattern: '^(\\d{4}-\\d{2}-\\d{2})?$' })),
  reason: Type.Optional(Type.String({ maxLength: 1000 })),
});
type DecisionFormBody = { decision: 'approve' | 'reject'; fields?: string[]; valid_until?: string; reason?: string };

/**
 * The form's decision as the API takes it: the fields kept (the unchecked ones removed), the
 * expiry date as the days from today (China time) the grant will run.
 */
function decisionOf(form: DecisionFormBody, application: Application, now: Date): DecisionInput {
  if (form.decision === 'reject') return { decision: 'reject', reason: form.reason ?? '' };
  const fields = form.fields ?? [];
  if (fields.length === 0) throw new InvalidRequest('Keep at least one data item to approve; to refuse them all, reject the application.');
  if (!form.valid_until) return { decision: 'approve', fields };
  const days = Math.round((Date.parse(form.valid_until) - Date.parse(dayInChina(now))) / DAY_MS);
  if (!Number.isInteger(days) || days < 1) throw new InvalidRequest('The expiry date must be after today.');
  if (days > application.durationDays) {
    const latest = dayInChina(new Date(now.getTime() + application.durationDays * DAY_MS));
    throw new InvalidRequest(`The expiry date may be ${latest} at the latest: the ${application.durationDays} days applied for.`);
  }
  return { decision: 'approve', fields, duration_days: days };
}

/** POST /supervision/applications/:id/decision: the provider's official decides, through the API's service and on its audit action. */
function decisionForm(app: TypedApp, context: SupervisionContext) {
  app.post(
    '/supervision/applications/:id/decision',
    {
      schema: { hide: true, params: IdParams, body: DecisionForm },
      config: { audit: 'application.decide' },
      preValidation: [officialsOnly(), app.csrfProtection],
    },
    async (request, reply) => {
      const id = await refusedWith(request, async () => {
        const caller = agencyOf(request);
        const application = await visibleApplication(app, context, request, request.params.id);
        request.auditDetails = { resource: application.resource, provider: application.provider, fields: application.fields };
        if (!mayDecide(caller, application.provider)) throw new NotProvider(application.resource);
        const now = app.clock();
        const decided = await decide(app.db, application, decisionOf(request.body as DecisionFormBody, application, now), caller.clientId, now);
        if (decided.grant) {
          await app.grants.changed(decided.grant.id);
          request.auditDetails = { ...request.auditDetails, grant_id: decided.grant.id, fields: decided.grant.fields };
        }
        return application.id;
      });
      return reply.redirect(hrefOf(request, `/supervision/applications/${encodeURIComponent(id)}`), 303);
    },
  );
}

/** GET /supervision/grants: expiring, active, revoked and expired grants in the official's scope, or one of these with paging. */
function grantsPage(app: TypedApp, context: SupervisionContext) {
  app.get(
    '/supervision/grants',
    {
      schema: {
        hide: true,
        querystring: Type.Object({ status: optionalEnum(GRANT_SECTIONS), cursor: Type.Optional(Type.String({ maxLength: 300 })) }),
      },
      preHandler: officialsOnly(),
    },
    async (request, reply) => {
      const { status, cursor } = request.query;
      const caller = agencyOf(request);
      const scope = sharingScopes(context.supervisors, caller).grants;
      const now = app.clock();
      const after = status && cursor ? decodeCursor(cursor, isTimeKey) : undefined;
      const sections = await Promise.all(
        (status ? [status] : GRANT_SECTIONS).map(async (section) => ({
          status: section,
          ...(await listGrants(app.db, scope, { status: section, limit: GRANTS_PER_SECTION, ...(after ? { after } : {}) }, now)),
        })),
      );
      const all = sections.flatMap((section) => section.items);
      const names = await namesFor(app, all.flatMap((g) => [g.agency, g.provider]), all.map((g) => g.resource));
      const view = (grant: Grant) => {
        const current = grantStatus(grant, now);
        const expiring = current === 'active' && grant.validUntil.getTime() - now.getTime() <= EXPIRING_WITHIN_DAYS * DAY_MS;
        return { ...grant, status: current, expiring, revocable: current === 'active' && mayDecide(caller, grant.provider) };
      };
      return sendPersonalPage(request, reply, context, 'supervision/templates/grants.eta', (frame) => ({
        title: frame.t('grants.title'),
        status: status ?? '',
        sections: sections.map((section) => ({
          status: section.status,
          grants: section.items.map(view),
          next: section.next ? frame.href('/supervision/grants', { status: section.status, cursor: encodeCursor(section.next) }) : null,
        })),
        withinDays: EXPIRING_WITHIN_DAYS,
        revokeAction: (grant: Grant) => frame.href(`/supervision/grants/${encodeURIComponent(grant.id)}/revoke`),
        names: names(frame.locale),
      }));
    },
  );
}

/** POST /supervision/grants/:id/revoke: the provider's official revokes, as the API does; access stops at once on every instance. */
function revokeForm(app: TypedApp, context: SupervisionContext) {
  app.post(
    '/supervision/grants/:id/revoke',
    {
      schema: { hide: true, params: IdParams, body: Type.Object({ _csrf: CsrfField, reason: Type.Optional(Type.String({ maxLength: 200 })) }) },
      config: { audit: 'grant.revoke' },
      preValidation: [officialsOnly(), app.csrfProtection],
    },
    async (request, reply) => {
      await refusedWith(request, async () => {
        const caller = agencyOf(request);
        const grant = await findGrant(app.db, request.params.id);
        if (!grant || !maySee(context.supervisors, caller, grant)) throw new NotFound(`No grant ${request.params.id}.`);
        request.auditDetails = { resource: grant.resource, provider: grant.provider, grant_id: grant.id, fields: grant.fields };
        if (!mayDecide(caller, grant.provider)) throw new NotProvider(grant.resource);
        const reason = (request.body.reason ?? '').trim();
        if (!reason) throw new InvalidRequest('Say why the grant is revoked.');
        await revokeGrant(app.db, grant.id, caller.clientId, app.clock());
        await app.grants.changed(grant.id);
        // The API's revocation has no reason to record; a person's is kept on the trail.
        request.auditDetails.reason = reason;
      });
      return reply.redirect(hrefOf(request, '/supervision/grants'), 303);
    },
  );
}

/** The sharing's pages for officials: applications and their decisions, grants and their revocation (scoped as the API scopes). */
export const sharingPages: PagesPlugin = (parent, context) => {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  applicationsPage(app, context);
  applicationPage(app, context);
  decisionForm(app, context);
  grantsPage(app, context);
  revokeForm(app, context);
};
