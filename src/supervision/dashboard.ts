import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Type from 'typebox';
import { trailOverview } from '../audit/rollup.js';
import { trailScopeOf } from '../audit/scope.js';
import { countsByStatus, listApplications, sharingScopes, type AgencyCaller } from '../sharing/index.js';
import { officialsOnly, personOf, sendPersonalPage, type PagesPlugin } from './context.js';
import { namesFor } from './names.js';
import { callerOf } from './session.js';
import { chainCard } from './trail-pages.js';

/** The periods the dashboard shows, each with the size of its steps. */
export const PERIODS = {
  '24h': { hours: 24, granularity: 'hour' },
  '7d': { hours: 7 * 24, granularity: 'day' },
  '30d': { hours: 30 * 24, granularity: 'day' },
} as const;
export type Period = keyof typeof PERIODS;

/** How many rows the per-resource and per-agency tables show (the rest is in the trail's filters). */
const TOP = 20;
/** How many of the pending applications the dashboard lists (the overdue ones first). */
const PENDING_SHOWN = 5;

const DashboardQuery = Type.Object(
  {
    period: Type.Union(
      Object.keys(PERIODS).map((key) => Type.Literal(key)),
      { default: '24h' },
    ),
    lang: Type.Optional(Type.String({ maxLength: 16 })),
  },
  { additionalProperties: false },
);

/**
 * GET /supervision: the exchanges of a period as the person's `audit:read` scope allows
 * (allowed, refused, failed over time; refusal reasons; latency; per resource and agency), their
 * applications waiting for a decision with the overdue ones first, and the chains' status.
 */
export const dashboardPages: PagesPlugin = (parent, context) => {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  app.get('/supervision', { schema: { hide: true, querystring: DashboardQuery }, preHandler: officialsOnly('audit:read') }, async (request, reply) => {
    const caller = callerOf(personOf(request)) as AgencyCaller;
    const period = request.query.period as Period;
    const now = app.clock();
    const { hours, granularity } = PERIODS[period];
    const scopes = sharingScopes(context.supervisors, caller);
    const [overview, counts, pending, chains] = await Promise.all([
      trailOverview(app.db, trailScopeOf(context.supervisors, caller), { from: new Date(now.getTime() - hours * 3_600_000), to: now, granularity }),
      countsByStatus(app.db, scopes, now),
      listApplications(app.db, scopes.applications, { order: 'due', status: 'pending', limit: PENDING_SHOWN }, now),
      chainCard(app),
    ]);
    overview.byResource = overview.byResource.slice(0, TOP);
    overview.byAgency = overview.byAgency.slice(0, TOP);
    const names = await namesFor(
      app,
      overview.byAgency.flatMap((stat) => (stat.key === null ? [] : [stat.key])),
      overview.byResource.flatMap((stat) => (stat.key === null ? [] : [stat.key])),
    );
    return sendPersonalPage(request, reply, context, 'supervision/templates/dashboard.eta', (frame) => ({
      title: frame.t('dashboard.title'),
      period,
      periods: Object.keys(PERIODS),
      overview,
      names: names(frame.locale),
      counts,
      pending: pending.items,
      now,
      ...chains,
    }));
  });
};
