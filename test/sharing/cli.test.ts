import { join } from 'node:path';
import t from 'tap';
import pino from 'pino';
import { eq } from 'drizzle-orm';
import type { App } from '../../src/app.js';
import { openGateway } from '../../src/startup.js';
import { runCli } from '../../src/cli.js';
import { auditEvents } from '../../src/db/schema.js';
import { createClient } from '../../src/identity/clients.js';
import { TEST_AUDIT_HASH_KEY, TEST_KEY_ENCRYPTION_KEY, testConfig } from '../helpers/app.js';

const directory = join(t.testdir(), 'pglite');
const env = { DATABASE_URL: directory, KEY_ENCRYPTION_KEY: TEST_KEY_ENCRYPTION_KEY, AUDIT_HASH_KEY: TEST_AUDIT_HASH_KEY, LOG_LEVEL: 'silent' };

function io() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { env, stdout: (s: string) => void out.push(s), stderr: (s: string) => void err.push(s) } };
}

async function gateway(): Promise<App> {
  // As every test gateway (no load shedding: a busy machine must not turn answers into 503s).
  const app = await openGateway(testConfig(env), { logger: pino({ level: 'silent' }) });
  return app;
}

async function bearer(app: App, scopes: string[], agency: string) {
  const { client, secret } = await createClient(app.db, app.clientSecrets, { agency, scopes });
  const response = await app.inject({
    method: 'POST',
    url: '/oauth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `grant_type=client_credentials&client_id=${client.id}&client_secret=${secret}`,
  });
  return { caller: { kind: 'agency' as const, clientId: client.id, agency, scopes: new Set(scopes) }, token: response.json().access_token as string };
}

t.test('the operator decides applications and lists grants with the CLI', async (t) => {
  // A consumer applies over HTTP while the gateway runs.
  let app = await gateway();
  const consumer = await bearer(app, ['applications:write', 'records:read'], 'zj-hrss');
  const applied = await app.inject({
    method: 'POST',
    url: '/v1/applications',
    headers: { authorization: `Bearer ${consumer.token}` },
    payload: {
      resource: '330000-EDU-00001',
      fields: ['student_id', 'name', 'school', 'status', 'id_number'],
      mode: 'read',
      purpose: '就业补贴审核',
      legal_basis: '《就业促进法》',
      duration_days: 90,
    },
  });
  t.equal(applied.statusCode, 202);
  const id = applied.json().id as string;
  await app.close();

  // The gateway is stopped (PGlite holds its directory); the operator uses the CLI.
  const list = io();
  t.equal(await runCli(['application', 'list', '--status', 'pending'], list.io), 0);
  t.match(list.out.join(''), new RegExp(`^${id}\\tzj-hrss\\t330000-EDU-00001\\tread\\tpending\\tdue \\d{4}-`));

  const approve = io();
  t.equal(await runCli(['application', 'approve', id, '--fields', 'student_id,school,status', '--days', '30'], approve.io), 0, approve.err.join(''));
  t.match(approve.out.join(''), new RegExp(`^approved ${id} → grant gr_\\S+ \\(student_id,school,status\\) until `));

  const again = io();
  t.equal(await runCli(['application', 'reject', id, '--reason', 'too late'], again.io), 1);
  t.match(again.err.join(''), /was already approved; a decision is final/);

  const widen = io();
  const grants = io();
  t.equal(await runCli(['grant', 'list', '--json'], grants.io), 0);
  const [grant] = JSON.parse(grants.out.join(''));
  t.match(grant, { agency: 'zj-hrss', resource: '330000-EDU-00001', fields: ['student_id', 'school', 'status'], mode: 'read', status: 'active', application_id: id });
  const days = (Date.parse(grant.valid_until) - Date.parse(grant.valid_from)) / 86_400_000;
  t.equal(days, 30, 'narrowed to 30 days');
  t.equal(await runCli(['application', 'approve', 'ap_missing'], widen.io), 1);

  // Back on line: the grant decides access, and the CLI's decisions are on the audit trail.
  app = await gateway();
  const resource = { code: '330000-EDU-00001', sharing: { type: 'conditional' } };
  t.match(app.decide({ caller: consumer.caller, resource, act: 'read', fields: ['school'] }), { allow: true, fields: ['school'] });
  t.match(app.decide({ caller: consumer.caller, resource, act: 'read', fields: ['id_number'] }), { allow: false, reason: 'field_not_granted' });
  const decisions = await app.db.select().from(auditEvents).where(eq(auditEvents.action, 'application.decide'));
  t.same(
    decisions.map((row) => row.outcome).sort(),
    ['allowed', 'denied'],
    'the approval and the refused second decision are both recorded',
  );
  t.ok(decisions.every((row) => row.resource === '330000-EDU-00001' && row.provider === 'zj-edu'));
  await app.close();

  const verify = io();
  t.equal(await runCli(['audit', 'verify'], verify.io), 0, 'the CLI wrote to a chain of its own that verifies');
});
