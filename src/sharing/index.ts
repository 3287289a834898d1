import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { supervisorAgencies, type Config } from '../config.js';
import { GrantCache, type Decision, type DecisionRequest } from './grants.js';
import { sharingRoutes } from './routes.js';
import type { SharingSettings } from './applications.js';
import { calendarFrom } from './workdays.js';

export { apply, decide, findApplication, NotProvider } from './applications.js';
export type { Application, DecisionInput, SharingSettings } from './applications.js';
export { findGrant, GrantCache, GRANTS_CHANNEL, grantStatus, revokeGrant } from './grants.js';
export type { Act, Decision, DenialReason, Grant, Mode } from './grants.js';
export {
  countsByStatus,
  EXPIRING_WITHIN_DAYS,
  isDuePosition,
  isOverdue,
  listApplications,
  listGrants,
  mayDecide,
  maySee,
  seesAll,
  sharingScope,
  sharingScopes,
} from './lists.js';
export type {
  AgencyCaller,
  ApplicationListOptions,
  ApplicationStatus,
  DuePosition,
  GrantListOptions,
  GrantListStatus,
  ListedApplication,
  NewestPosition,
  SharingCounts,
  SharingScopes,
} from './lists.js';
export { grantView } from './routes.js';
export { addWorkingDays, calendarFrom } from './workdays.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The decision point: may this caller do this act on these fields of this resource? */
    decide(request: Omit<DecisionRequest, 'now'>): Decision;
    grants: GrantCache;
  }
}

/** The sharing rules the configuration sets: the longest grant, the decision deadline, the working calendar. */
export function sharingSettings(config: Config): SharingSettings {
  return {
    maxDurationDays: config.SHARING_MAX_DURATION_DAYS,
    decisionWorkingDays: config.SHARING_DECISION_WORKING_DAYS,
    calendar: calendarFrom(config.PUBLIC_HOLIDAYS, config.MAKEUP_WORKDAYS),
  };
}

export interface SharingOptions {
  config: Config;
}

/** Sharing: applications, decisions and grants, and the decision point every exchange asks. */
async function sharing(app: FastifyInstance, { config }: SharingOptions) {
  const cache = new GrantCache(app.database);
  await cache.start();
  app.addHook('onClose', () => cache.stop());
  app.decorate('grants', cache);
  app.decorate('decide', (request: Omit<DecisionRequest, 'now'>) => cache.decide({ ...request, now: app.clock() }));

  await app.register(sharingRoutes, {
    cache,
    supervisors: supervisorAgencies(config),
    settings: sharingSettings(config),
  });
}

export default fp(sharing, { name: 'sharing', fastify: '5.x', dependencies: ['database', 'auth', 'audit', 'catalog'] });
