import t, { type Test } from 'tap';
import type { App } from '../../src/app.js';
import { findResource, type Resource } from '../../src/catalog/index.js';
import type { Driver } from '../../src/db/index.js';
import { applications, grants } from '../../src/db/schema.js';
import {
  apply,
  countsByStatus,
  decide,
  isDuePosition,
  listApplications,
  listGrants,
  mayDecide,
  revokeGrant,
  sharingScope,
  sharingScopes,
  sharingSettings,
  type AgencyCaller,
  type DuePosition,
  type ListedApplication,
} from '../../src/sharing/index.js';
import { buildTestApp, forEachDriver, freshDatabase, testConfig } from '../helpers/app.js';

const STUDENT = '330000-EDU-00001'; // zj-edu, conditional
const ENTERPRISE = '330000-AMR-00001'; // zj-amr, unconditional
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
const T0 = new Date('2026-03-02T09:00:00Z'); // a Monday

const caller = (agency: string, scopes: string[]): AgencyCaller => ({ kind: 'agency', clientId: `cl_${agency}`, agency, scopes: new Set(scopes) });
const SUPERVISORS = new Set(['zj-dsj']);
const supervisor = caller('zj-dsj', ['audit:read']);
const edu = caller('zj-edu', ['grants:manage']);
const amr = caller('zj-amr', ['grants:manage']);
const hrss = caller('zj-hrss', ['applications:write']);
const psb = caller('zj-psb', ['applications:write']);

const ids = (items: Array<{ id: string }>) => items.map((item) => item.id);

async function resource(app: App, code: string): Promise<Resource> {
  const stored = await findResource(app.db, code);
  if (!stored) throw new Error(`${code} is not in the catalog`);
  return stored.document;
}

/**
 * Who applied for what, when: two pending student-status applications (one past its due date
 * at NOW), one rejected, one approved for a year; enterprise registrations granted at once, one
 * of them revoked, one expired, one ending within the month.
 */
async function history(app: App) {
  const settings = sharingSettings(testConfig());
  const student = await resource(app, STUDENT);
  const enterprise = await resource(app, ENTERPRISE);
  const ask = (who: AgencyCaller, of: Resource, at: number, duration_days = 30) =>
    apply(
      app.db,
      of,
      { agency: who.agency, clientId: who.clientId },
      { resource: of.code, fields: [of.items[0]?.name as string], mode: 'read', purpose: '资格审核', legal_basis: '《条例》', duration_days },
      settings,
      new Date(T0.getTime() + at),
    );
  const caExpired = await ask(caller('zj-ca', []), enterprise, 0, 5);
  const hrssRevoked = await ask(hrss, enterprise, HOUR_MS);
  await revokeGrant(app.db, hrssRevoked.grant?.id as string, 'client:cl_zj-amr', new Date(T0.getTime() + 2 * HOUR_MS));
  const psbExpiring = await ask(psb, enterprise, 2 * HOUR_MS, 20);
  const overdue = await ask(hrss, student, 3 * HOUR_MS);
  const rejected = await ask(hrss, student, 2 * DAY_MS);
  await decide(app.db, rejected.application, { decision: 'reject', reason: '用途不明确' }, 'client:cl_zj-edu', new Date(T0.getTime() + 3 * DAY_MS));
  const approved = await ask(caller('zj-ca', []), student, 3 * DAY_MS, 365);
  const approvedGrant = await decide(app.db, approved.application, { decision: 'approve' }, 'client:cl_zj-edu', new Date(T0.getTime() + 3 * DAY_MS + HOUR_MS));
  const waiting = await ask(hrss, student, 4 * DAY_MS);
  return {
    applications: {
      caExpired: caExpired.application,
      hrssRevoked: hrssRevoked.application,
      psbExpiring: psbExpiring.application,
      overdue: overdue.application,
      rejected: rejected.application,
      approved: approved.application,
      waiting: waiting.application,
    },
    grants: {
      expired: caExpired.grant?.id as string,
      revoked: hrssRevoked.grant?.id as string,
      expiring: psbExpiring.grant?.id as string,
      year: approvedGrant.grant?.id as string,
    },
  };
}

forEachDriver(t, 'sharing lists for the supervision pages', async (t: Test, driver: Driver) => {
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, { database });
  const made = await history(app);
  const a = made.applications;
  const g = made.grants;
  // Between the two pending applications' due dates: one overdue, one not yet.
  const now = new Date((a.overdue.dueAt as Date).getTime() + HOUR_MS);
  t.ok((a.waiting.dueAt as Date) > now, 'the later pending application is not due yet');

  await t.test('due order: pending first by due date, overdue flagged, then the rest newest first', async (t) => {
    const scope = sharingScope(SUPERVISORS, supervisor, applications);
    const { items, next } = await listApplications(app.db, scope, { order: 'due', limit: 50 }, now);
    t.same(ids(items), ids([a.overdue, a.waiting, a.approved, a.rejected, a.psbExpiring, a.hrssRevoked, a.caExpired]));
    t.same(
      items.map((item) => [item.status, item.overdue]),
      [
        ['pending', true],
        ['pending', false],
        ['approved', false],
        ['rejected', false],
        ['approved', false],
        ['approved', false],
        ['approved', false],
      ],
    );
    t.equal(next, null, 'one page');

    // The same order page by page.
    const paged: ListedApplication[] = [];
    let after: DuePosition | undefined;
    for (let i = 0; i < 10; i++) {
      const got = await listApplications(app.db, scope, { order: 'due', limit: 2, ...(after ? { after } : {}) }, now);
      paged.push(...got.items);
      if (!got.next) break;
      t.ok(isDuePosition(got.next), 'a due position');
      after = got.next as DuePosition;
    }
    t.same(ids(paged), ids(items), 'pages of 2 give the same list');

    const overdueOnly = await listApplications(app.db, scope, { overdue: true, limit: 50 }, now);
    t.same(ids(overdueOnly.items), [a.overdue.id]);
    const newest = await listApplications(app.db, scope, { limit: 3 }, now);
    t.same(ids(newest.items), [a.waiting.id, a.approved.id, a.rejected.id], 'without order: newest first, as the API lists');
    t.same(newest.next, [a.rejected.createdAt.toISOString(), a.rejected.id], 'and its position as the API cursor holds it');
    t.notOk(isDuePosition(['pending', 'yesterday', 'ap_1']), 'a forged position is not one');
  });

  await t.test('grants by state; expiring within 30 days unless asked otherwise', async (t) => {
    const scope = sharingScope(SUPERVISORS, supervisor, grants);
    const list = async (options: Parameters<typeof listGrants>[2]) => ids((await listGrants(app.db, scope, options, now)).items);
    t.same(await list({ status: 'active', limit: 50 }), [g.year, g.expiring]);
    t.same(await list({ status: 'expiring', limit: 50 }), [g.expiring], 'ends 20 days after it began: within 30 days');
    t.same(await list({ status: 'expiring', withinDays: 1, limit: 50 }), [], 'not within a day');
    t.same(await list({ status: 'revoked', limit: 50 }), [g.revoked]);
    t.same(await list({ status: 'expired', limit: 50 }), [g.expired]);
    t.same(await list({ resource: STUDENT, limit: 50 }), [g.year]);
    const first = await listGrants(app.db, scope, { limit: 2 }, now);
    const rest = await listGrants(app.db, scope, { limit: 2, after: first.next as [string, string] }, now);
    t.same([...ids(first.items), ...ids(rest.items)], [g.year, g.expiring, g.revoked, g.expired], 'newest first, page by page');
  });

  await t.test('each agency sees its own: as consumer, as provider; the supervisor all', async (t) => {
    const visible = async (who: AgencyCaller, role?: 'consumer' | 'provider') => {
      const listed = await listApplications(app.db, sharingScope(SUPERVISORS, who, applications, role), { limit: 50 }, now);
      const granted = await listGrants(app.db, sharingScope(SUPERVISORS, who, grants, role), { limit: 50 }, now);
      return { applications: ids(listed.items).sort(), grants: ids(granted.items).sort() };
    };
    const sorted = (...items: string[]) => items.sort();
    t.same(await visible(hrss), { applications: sorted(a.hrssRevoked.id, a.overdue.id, a.rejected.id, a.waiting.id), grants: [g.revoked] });
    t.same(await visible(psb), { applications: [a.psbExpiring.id], grants: [g.expiring] });
    t.same(await visible(edu), { applications: sorted(a.overdue.id, a.rejected.id, a.approved.id, a.waiting.id), grants: [g.year] }, 'the provider: its resource’s');
    t.same(await visible(amr), { applications: sorted(a.caExpired.id, a.hrssRevoked.id, a.psbExpiring.id), grants: sorted(g.expired, g.revoked, g.expiring) });
    t.same((await visible(edu, 'consumer')).applications, [], 'zj-edu applied for nothing');
    t.same((await visible(supervisor)).applications.length, 7, 'the supervisor sees all');
    t.same((await visible(caller('zj-dsj', ['catalog:read']))).applications, [], 'a supervisor agency without audit:read sees only its own');
    t.ok(mayDecide(edu, 'zj-edu'));
    t.notOk(mayDecide(supervisor, 'zj-edu'), 'the supervisor sees, but does not decide');
    t.notOk(mayDecide(caller('zj-edu', ['audit:read']), 'zj-edu'), 'deciding takes grants:manage');
  });

  await t.test('counts by state, in the caller’s scope', async (t) => {
    t.same(await countsByStatus(app.db, sharingScopes(SUPERVISORS, supervisor), now), {
      applications: { pending: 2, overdue: 1, approved: 4, rejected: 1 },
      grants: { active: 2, expiring: 1, revoked: 1, expired: 1 },
    });
    t.same(await countsByStatus(app.db, sharingScopes(SUPERVISORS, edu), now), {
      applications: { pending: 2, overdue: 1, approved: 1, rejected: 1 },
      grants: { active: 1, expiring: 0, revoked: 0, expired: 0 },
    });
    t.same(await countsByStatus(app.db, sharingScopes(SUPERVISORS, psb), now), {
      applications: { pending: 0, overdue: 0, approved: 1, rejected: 0 },
      grants: { active: 1, expiring: 1, revoked: 0, expired: 0 },
    });
    t.same(await countsByStatus(app.db, sharingScopes(SUPERVISORS, caller('zj-env', ['audit:read'])), now), {
      applications: { pending: 0, overdue: 0, approved: 0, rejected: 0 },
      grants: { active: 0, expiring: 0, revoked: 0, expired: 0 },
    }, 'an agency with none: zeros');
    const later = new Date(now.getTime() + 400 * DAY_MS);
    t.match(await countsByStatus(app.db, sharingScopes(SUPERVISORS, supervisor), later), { grants: { active: 0, expiring: 0, expired: 3 } }, 'counted against the clock given');
  });
});
