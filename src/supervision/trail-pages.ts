import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Type, { type Static } from 'typebox';
import type { ChainStatus, VerificationRun } from '../audit/index.js';
import { trailScopeOf, type TrailScope } from '../audit/scope.js';
import { EVENT_COLUMNS, eventPage, eventsCsv, filterChoices, findEvent, trailWhere, type Choice, type FilterChoices, type TrailFilters } from '../audit/trail.js';
import { chainStatus } from '../audit/verifications.js';
import type { AuditRecord } from '../audit/chain.js';
import { defineProblem, NotFound } from '../errors.js';
import { isTimeKey } from '../pagination.js';
import type { TypedApp } from '../plugins/typed-app.js';
import { frameOf, query, type Frame } from '../portal/frame.js';
import type { Locale } from '../portal/i18n.js';
import { wantsFragment } from '../portal/pages.js';
import { officialsOnly, personOf, sendPersonalPage, type PagesPlugin, type SupervisionContext } from './context.js';
import { callerOf } from './session.js';

export const InvalidFilter = defineProblem<[string]>('invalid_filter', '%s', 400);
export const SupervisorsOnly = defineProblem<[]>('supervisors_only', 'Only officials of a supervisor agency start a verification of the chains.', 403);

/** Events on one page of the trail. */
const EVENTS_PER_PAGE = 50;
/** How long "verify now" waits for the result before going back (a large trail takes longer; the card then says it is running). */
const VERIFY_WAIT_MS = 10_000;
const OUTCOMES = ['allowed', 'denied', 'error'] as const;
/** The element of the events page that htmx swaps: the table and its pager. */
const RESULTS = 'events-results';

/** What a datetime-local input sends: a date and a time of day, without a zone. */
const LocalTime = Type.Optional(Type.String({ pattern: '^(\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,3})?)?)?$' }));
const FilterFields = {
  from: LocalTime,
  to: LocalTime,
  agency: Type.Optional(Type.String({ maxLength: 100 })),
  resource: Type.Optional(Type.String({ maxLength: 32 })),
  action: Type.Optional(Type.String({ maxLength: 64 })),
  outcome: Type.Optional(Type.Union([Type.Literal(''), Type.Literal('allowed'), Type.Literal('denied'), Type.Literal('error')])),
  lang: Type.Optional(Type.String({ maxLength: 16 })),
};
const EventsQuery = Type.Object({ ...FilterFields, cursor: Type.Optional(Type.String({ maxLength: 400 })) }, { additionalProperties: false });
const CsvQuery = Type.Object(FilterFields, { additionalProperties: false });
type FilterForm = Static<typeof CsvQuery>;

/** What the chain status card shows (src/supervision/templates/partials/chain-status.eta). */
export interface ChainCard {
  chains: ChainStatus[];
  verification: VerificationRun | null;
}

/** The data of the chain status card, for any page that includes it (the dashboard, the trail). */
export async function chainCard(app: FastifyInstance): Promise<ChainCard> {
  const [chains, verification] = await Promise.all([chainStatus(app.db), app.auditVerification.last()]);
  return { chains, verification };
}

/**
 * A datetime-local value read as China Standard Time (UTC+8; China has kept no daylight saving
 * time since 1991), as RFC 3339. A date that does not exist (13th month, 30 February) is refused.
 */
function chinaTime(value: string, name: string): string {
  const [date = '', time = ''] = value.split('T');
  const [year, month, day] = date.split('-').map(Number) as [number, number, number];
  const [hour, minute] = time.split(':').map(Number) as [number, number];
  const check = new Date(Date.UTC(year, month - 1, day, hour, minute));
  if (check.getUTCMonth() !== month - 1 || check.getUTCDate() !== day || check.getUTCHours() !== hour || hour > 23 || minute > 59 || year < 1) {
    throw new InvalidFilter(`${name} is not a time: ${value}`);
  }
  const seconds = time.split(':')[2];
  if (seconds !== undefined && Number.parseFloat(seconds) >= 60) throw new InvalidFilter(`${name} is not a time: ${value}`);
  return `${value}${seconds === undefined ? ':00' : ''}+08:00`;
}

/** The trail's filters of a form: empty fields are no filter. */
function filtersOf(form: FilterForm): TrailFilters {
  return {
    ...(form.from ? { from: chinaTime(form.from, 'from') } : {}),
    ...(form.to ? { to: chinaTime(form.to, 'to') } : {}),
    ...(form.agency ? { agency: form.agency } : {}),
    ...(form.resource ? { resource: form.resource } : {}),
    ...(form.action ? { action: form.action } : {}),
    ...(form.outcome ? { outcome: form.outcome } : {}),
  };
}

/** The form's fields as given (without lang, which links carry by themselves). */
const formParams = ({ lang: _lang, ...form }: FilterForm) => form as Record<string, string | undefined>;

const scopeOf = (context: SupervisionContext, request: FastifyRequest): TrailScope => trailScopeOf(context.supervisors, callerOf(personOf(request)));

const timeFormats = new Map<Locale, Intl.DateTimeFormat>();
/** An event's time to the second, in China time (the trail's readers compare seconds). */
function eventTime(locale: Locale, iso: string): string {
  let format = timeFormats.get(locale);
  if (!format) {
    format = new Intl.DateTimeFormat(locale, { year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23', timeZone: 'Asia/Shanghai' });
    timeFormats.set(locale, format);
  }
  return format.format(new Date(iso));
}

/** A code with its name in the page's language, when the catalog has one. */
function labelOf(frame: Frame, choices: Choice[], code: string | null): string | null {
  if (code === null) return null;
  const choice = choices.find((c) => c.code === code);
  const name = frame.locale === 'en' ? (choice?.name_en ?? choice?.name) : choice?.name;
  return name ? `${name} (${code})` : code;
}

/** The selects' options: the choices, and the value asked for even when it is not among them (it then matches nothing). */
function withSelected(choices: Choice[], selected: string | undefined): Choice[] {
  return selected && !choices.some((c) => c.code === selected) ? [...choices, { code: selected, name: null, name_en: null }] : choices;
}

/** The events page's data (the results partial uses part of it): rows made for reading, the pager, the form's values. */
function eventsView(frame: Frame, form: FilterForm, page: Awaited<ReturnType<typeof eventPage>>, choices: FilterChoices, next: string | null, cursor?: string) {
  const params = formParams(form);
  return {
    form: params,
    choices: {
      agencies: withSelected(choices.agencies, form.agency).map((c) => ({ code: c.code, label: labelOf(frame, choices.agencies, c.code) })),
      resources: withSelected(choices.resources, form.resource).map((c) => ({ code: c.code, label: labelOf(frame, choices.resources, c.code) })),
      actions: withSelected(choices.actions.map((code) => ({ code, name: null, name_en: null })), form.action).map((c) => c.code),
    },
    outcomes: OUTCOMES,
    events: page.items.map((event) => ({
      ...event,
      href: frame.href(`/supervision/events/${encodeURIComponent(event.id)}`),
      time: eventTime(frame.locale, event.occurred_at),
      agency_label: labelOf(frame, choices.agencies, event.agency),
      resource_label: labelOf(frame, choices.resources, event.resource),
    })),
    next: next ? frame.href('/supervision/events', { ...params, cursor: next }) : null,
    first: cursor ? frame.href('/supervision/events', params) : null,
    csv: `/supervision/events.csv${query(params)}`,
    reset: frame.href('/supervision/events'),
  };
}

/** GET /supervision/events: the trail in the person's scope, filtered, 50 a page; the results alone for htmx. */
function eventsPage(app: TypedApp, context: SupervisionContext) {
  app.get('/supervision/events', { schema: { hide: true, querystring: EventsQuery }, preHandler: officialsOnly('audit:read') }, async (request, reply) => {
    const { cursor, ...form } = request.query;
    const scope = scopeOf(context, request);
    const after = cursor ? app.openCursor(cursor, isTimeKey) : undefined;
    const fragment = wantsFragment(request, RESULTS);
    const [page, choices, card] = await Promise.all([
      eventPage(app.db, trailWhere(scope, filtersOf(form)), EVENTS_PER_PAGE, after),
      filterChoices(app.db, scope),
      fragment ? undefined : chainCard(app),
    ]);
    const next = page.next ? app.sealCursor(page.next) : null;
    const template = fragment ? 'supervision/templates/partials/events-results.eta' : 'supervision/templates/events.eta';
    return sendPersonalPage(request, reply, context, template, (frame) => ({
      title: frame.t('events.title'),
      scopeLead: scope.kind === 'all' ? frame.t('events.scope.all') : frame.t('events.scope.agency', { agency: labelOf(frame, choices.agencies, personOf(request).agency as string) ?? '' }),
      ...eventsView(frame, form, page, choices, next, cursor),
      ...card,
    }));
  });
}

/** GET /supervision/events.csv: the same events, every one of them, as a CSV download; on the trail as `audit.export`. */
function eventsCsvRoute(app: TypedApp, context: SupervisionContext) {
  app.get(
    '/supervision/events.csv',
    { schema: { hide: true, querystring: CsvQuery }, config: { audit: 'audit.export', streams: true }, preHandler: officialsOnly('audit:read') },
    async (request, reply) => {
      const caller = callerOf(personOf(request));
      if (caller.kind === 'agency') request.auditDetails = { agency: caller.agency, client_id: caller.clientId };
      const where = trailWhere(scopeOf(context, request), filtersOf(request.query));
      reply.type('text/csv; charset=utf-8').header('content-disposition', 'attachment; filename="audit-events.csv"');
      return reply.send(eventsCsv(app.db, where, true));
    },
  );
}

/** GET /supervision/events/:id: one event in full (persons as their keyed hashes); 404 when it is not in the person's scope. */
function eventRoute(app: TypedApp, context: SupervisionContext) {
  app.get(
    '/supervision/events/:id',
    { schema: { hide: true, params: Type.Object({ id: Type.String({ maxLength: 64 }) }), querystring: Type.Object({ lang: FilterFields.lang }) }, preHandler: officialsOnly('audit:read') },
    async (request, reply) => {
      const event = await findEvent(app.db, scopeOf(context, request), request.params.id);
      if (!event) throw new NotFound(frameOf(request).t('events.event.not_found'));
      return sendPersonalPage(request, reply, context, 'supervision/templates/event.eta', (frame) => ({
        title: frame.t('events.event.title'),
        event,
        time: eventTime(frame.locale, event.occurred_at),
        columns: EVENT_COLUMNS as ReadonlyArray<keyof AuditRecord>,
        back: frame.href('/supervision/events'),
      }));
    },
  );
}

/** POST /supervision/verify: a supervisor's "verify now"; back to the dashboard, which shows the result (or that it is running). */
function verifyRoute(app: TypedApp, context: SupervisionContext) {
  app.post(
    '/supervision/verify',
    { schema: { hide: true }, config: { audit: 'audit.verify' }, preValidation: [officialsOnly('audit:read'), app.csrfProtection] },
    async (request, reply) => {
      const person = personOf(request);
      if (!context.supervisors.has(person.agency as string)) {
        request.auditDetails = { reason: 'supervisors_only' };
        throw new SupervisorsOnly();
      }
      const run = app.auditVerification.runNow('demand');
      await Promise.race([run, new Promise((resolve) => setTimeout(resolve, VERIFY_WAIT_MS).unref())]);
      return reply.redirect(frameOf(request).href('/supervision'), 303);
    },
  );
}

/** The trail's pages for officials: the events, their CSV, one event, and "verify now". */
export const trailPages: PagesPlugin = (parent, context) => {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  eventsPage(app, context);
  eventsCsvRoute(app, context);
  eventRoute(app, context);
  verifyRoute(app, context);
};
