import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { and, eq, inArray, isNull } from 'drizzle-orm';
import { runCli } from '../src/cli.js';
import { openDatabase } from '../src/db/index.js';
import { applications, auditEvents, clients, grants } from '../src/db/schema.js';
import type { DemoCredentials } from '../src/demo/clients.js';
import { buildTestApp, forEachDriver, freshDatabaseUrl, TEST_AUDIT_HASH_KEY, TEST_KEY_ENCRYPTION_KEY } from './helpers/app.js';

const ROLES = ['consumer', 'provider', 'supervisor', 'admin'] as const;

async function cli(argv: string[], env: Record<string, string>) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, { env, stdout: (s) => void out.push(s), stderr: (s) => void err.push(s) });
  return { code, out: out.join(''), err: err.join('') };
}

forEachDriver(t, 'gateway demo seed --clients: the demo clients, their grants, a credentials file', async (t, driver) => {
  const url = driver === 'pglite' ? join(t.testdir(), 'pglite') : await freshDatabaseUrl(driver);
  const file = join(t.testdir(), 'credentials', 'demo.json');
  const env = { DATABASE_URL: url, PUBLIC_URL: 'http://127.0.0.1:3000', KEY_ENCRYPTION_KEY: TEST_KEY_ENCRYPTION_KEY, AUDIT_HASH_KEY: TEST_AUDIT_HASH_KEY, OPEN_PREBUILD: 'false', LOG_LEVEL: 'silent' };

  const first = await cli(['demo', 'seed', '--clients', '--credentials', file], env);
  t.equal(first.code, 0, first.err);
  t.match(first.out, `ids and secrets in ${file}`);
  if (driver === 'postgres') t.match(first.out, 'SUPERVISOR_AGENCIES=zj-dsj', 'the operator is told to make zj-dsj a supervisor');
  else t.notMatch(first.out, 'SUPERVISOR_AGENCIES', 'on the embedded demo zj-dsj is a supervisor already');
  t.notMatch(first.out, /gws_/, 'no secret printed');
  t.equal(statSync(file).mode & 0o777, 0o600, 'mode 0600');
  const credentials = JSON.parse(readFileSync(file, 'utf8')) as DemoCredentials;
  t.same(ROLES.map((role) => credentials[role].agency), ['zj-hrss', 'zj-edu', 'zj-dsj', 'zj-dsj']);

  // Made again: the same clients with new secrets, and no second grant.
  const second = await cli(['demo', 'seed', '--no-exchange', '--clients', '--credentials', file], env);
  t.equal(second.code, 0, second.err);
  const again = JSON.parse(readFileSync(file, 'utf8')) as DemoCredentials;
  for (const role of ROLES) {
    t.equal(again[role].client_id, credentials[role].client_id, `${role}: the same client`);
    t.not(again[role].client_secret, credentials[role].client_secret, `${role}: a new secret`);
  }

  const database = await openDatabase(url);
  t.teardown(() => database.close());
  const ids = ROLES.map((role) => again[role].client_id);
  t.equal((await database.db.select().from(clients).where(inArray(clients.id, ids))).length, 4);
  const held = await database.db
    .select({ resource: grants.resource, mode: grants.mode, fields: grants.fields })
    .from(grants)
    .where(and(eq(grants.agency, 'zj-hrss'), isNull(grants.revokedAt)))
    .orderBy(grants.resource);
  t.same(held, [
    { resource: '330000-EDU-00001', mode: 'verify', fields: ['name', 'id_number', 'school', 'status'] },
    { resource: '330000-PSB-00001', mode: 'read', fields: ['id_number', 'name', 'gender', 'birth_date', 'region_code'] },
  ]);
  const trail = await database.db.select({ action: auditEvents.action, resource: auditEvents.resource, agency: auditEvents.agency }).from(auditEvents).orderBy(auditEvents.seq);
  t.same(
    trail.filter((r) => r.action.startsWith('application.')),
    [
      { action: 'application.create', resource: '330000-EDU-00001', agency: 'zj-hrss' },
      { action: 'application.decide', resource: '330000-EDU-00001', agency: 'zj-edu' },
      { action: 'application.create', resource: '330000-PSB-00001', agency: 'zj-hrss' },
      { action: 'application.decide', resource: '330000-PSB-00001', agency: 'zj-psb' },
      { action: 'application.create', resource: '330000-EDU-00003', agency: 'zj-hrss' },
      { action: 'application.create', resource: '330000-EDU-00001', agency: 'zj-hrss' },
    ],
    'each application and decision is on the audit trail, once',
  );
  const waiting = await database.db
    .select({ resource: applications.resource, mode: applications.mode, status: applications.status, dueAt: applications.dueAt })
    .from(applications)
    .where(eq(applications.status, 'pending'))
    .orderBy(applications.dueAt);
  t.same(
    waiting.map(({ resource, mode }) => ({ resource, mode })),
    [
      { resource: '330000-EDU-00003', mode: 'verify' },
      { resource: '330000-EDU-00001', mode: 'read' },
    ],
    'two applications wait for the provider, made once though the seed ran twice',
  );
  t.ok((waiting[0]?.dueAt as Date) < new Date(), 'the first is past its due date (overdue)');
  t.ok((waiting[1]?.dueAt as Date) > new Date(), 'the second is not');

  // The gateway takes the new secrets, and the consumer's grant decides its verify.
  const app = await buildTestApp(t, driver, { database });
  const token = await app.inject({
    method: 'POST',
    url: '/oauth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `grant_type=client_credentials&client_id=${again.consumer.client_id}&client_secret=${again.consumer.client_secret}`,
  });
  t.equal(token.statusCode, 200);
  t.equal(token.json().scope, 'applications:write catalog:read records:read records:verify');
  const old = await app.inject({
    method: 'POST',
    url: '/oauth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `grant_type=client_credentials&client_id=${credentials.consumer.client_id}&client_secret=${credentials.consumer.client_secret}`,
  });
  t.equal(old.statusCode, 401, 'the first secret no longer works');
  const verify = await app.inject({
    method: 'POST',
    url: '/v1/resources/330000-EDU-00001/verify',
    headers: { authorization: `Bearer ${token.json().access_token}`, 'x-purpose': '就业补贴资格审核' },
    payload: { subject: { name: '孙思远', id_number: '331022201110043439', school: '三门县第2初级中学' } },
  });
  t.equal(verify.statusCode, 200, verify.body);
  t.same(verify.json(), { verdict: 'match', fields: { name: 'match', id_number: 'match', school: 'match' } });
});
