import t, { type Test } from 'tap';
import pino from 'pino';
import { and, asc, count, eq, inArray, sql } from 'drizzle-orm';
import type { App } from '../../src/app.js';
import { openGateway } from '../../src/startup.js';
import { GENESIS_HASH, recordHash } from '../../src/audit/chain.js';
import { fromRow } from '../../src/audit/writer.js';
import type { Driver } from '../../src/db/index.js';
import { auditCheckpoints, auditEvents } from '../../src/db/schema.js';
import { createClient } from '../../src/identity/clients.js';
import { buildTestApp, forEachDriver, freshDatabase, testConfig } from '../helpers/app.js';
import { assertProblem } from '../helpers/problem.js';

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

function basic(id: string, secret: string) {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

function requestToken(app: App, id: string, secret: string) {
  return app.inject({
    method: 'POST',
    url: '/oauth/token',
    headers: { ...FORM, authorization: basic(id, secret) },
    payload: new URLSearchParams({ grant_type: 'client_credentials' }).toString(),
  });
}

/** A client made directly in the database and a token for it from the token endpoint. */
async function clientWithToken(app: App, agency: string, scopes: string[]) {
  const { client, secret } = await createClient(app.db, app.clientSecrets, { agency, scopes });
  const response = await requestToken(app, client.id, secret as string);
  if (response.statusCode !== 200) throw new Error(`token for ${client.id}: ${response.statusCode} ${response.body}`);
  return { id: client.id, secret: secret as string, token: response.json().access_token as string };
}

async function storedEvent(app: App, id: string) {
  const rows = await app.db.select().from(auditEvents).where(eq(auditEvents.id, id));
  return rows[0];
}

async function chainRows(app: App) {
  return app.db.select().from(auditEvents).where(eq(auditEvents.chainId, app.audit.chainId)).orderBy(asc(auditEvents.seq));
}

async function eventCount(app: App): Promise<number> {
  const [row] = await app.db.select({ n: count() }).from(auditEvents);
  return Number(row?.n);
}

/** Every row of the app's chain: seq 1..n without gaps, each linked to the one before and hashing right. */
async function assertChainVerifies(t: Test, app: App) {
  const rows = await chainRows(app);
  t.ok(rows.length > 0, 'the chain has records');
  let prev = GENESIS_HASH;
  let problems = 0;
  rows.forEach((row, index) => {
    if (Number(row.seq) !== index + 1) problems += 1, t.fail(`record ${row.id} has seq ${row.seq}, expected ${index + 1}`);
    if (row.prevHash !== prev) problems += 1, t.fail(`record ${row.seq} does not link to the one before`);
    if (recordHash(fromRow(row)) !== row.hash) problems += 1, t.fail(`record ${row.seq} does not match its hash`);
    prev = row.hash;
  });
  t.equal(problems, 0, `${rows.length} records: contiguous, linked, each matching its hash`);
  return rows;
}

async function setup(t: Test, driver: Driver, env: Record<string, string> = {}) {
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, { database, env });
  return { database, app };
}

forEachDriver(t, 'what the trail records', async (t, driver) => {
  const { app } = await setup(t, driver);

  t.test('the catalog sync at start-up is the first record of the chain', async (t) => {
    const [first] = await chainRows(app);
    t.match(first, { seq: 1, prevHash: GENESIS_HASH, action: 'catalog.sync', outcome: 'allowed', requestId: null, clientId: null });
    t.ok(Number(first?.rowCount) > 0, 'a fresh database: the sync created entries');
    t.match(first?.reason, /^sync \S+/);
  });

  t.test('a token issued and a token refused; neither the secret nor the token is stored', async (t) => {
    const { client, secret } = await createClient(app.db, app.clientSecrets, { agency: 'zj-edu', scopes: ['catalog:read'] });
    const issued = await requestToken(app, client.id, secret as string);
    t.equal(issued.statusCode, 200);
    const token = issued.json().access_token as string;
    const issuedId = issued.headers['x-audit-id'] as string;
    t.type(issuedId, 'string', 'the answer names its audit record');
    const issuedRow = await storedEvent(app, issuedId);
    t.match(issuedRow, {
      id: issuedId,
      chainId: app.audit.chainId,
      action: 'token.issue',
      outcome: 'allowed',
      status: 200,
      reason: null,
      clientId: client.id,
      agency: 'zj-edu',
      requestId: issued.headers['x-request-id'],
    });

    const wrongSecret = 'gws_this-is-not-the-secret-0123456789';
    const refused = await requestToken(app, client.id, wrongSecret);
    assertProblem(t, refused, 401, 'invalid_client');
    const refusedId = refused.headers['x-audit-id'] as string;
    t.type(refusedId, 'string');
    t.not(refusedId, issuedId);
    t.match(await storedEvent(app, refusedId), { action: 'token.issue', outcome: 'denied', status: 401, reason: 'invalid_client' });

    const everything = JSON.stringify(await app.db.select().from(auditEvents));
    t.notOk(everything.includes(secret as string), 'the client secret is nowhere in the trail');
    t.notOk(everything.includes(wrongSecret), 'nor the wrong secret tried');
    t.notOk(everything.includes(token), 'nor the access token');
    t.notOk(everything.includes(token.split('.')[2] as string), 'nor its signature');
  });

  t.test('a bad bearer token is recorded as a refusal, on audited and unaudited routes', async (t) => {
    // An unaudited public route: the refusal is recorded as such.
    const agencies = await app.inject({ url: '/v1/catalog/agencies', headers: bearer('garbage') });
    assertProblem(t, agencies, 401, 'token_invalid');
    const agenciesRow = await storedEvent(app, agencies.headers['x-audit-id'] as string);
    t.match(agenciesRow, { action: 'auth.refused', outcome: 'denied', status: 401, reason: 'token_invalid', clientId: null, agency: null });

    // The catalog search is audited (for agencies): the refusal is recorded under its action.
    const search = await app.inject({ url: '/v1/catalog/resources', headers: bearer('garbage') });
    assertProblem(t, search, 401, 'token_invalid');
    const searchRow = await storedEvent(app, search.headers['x-audit-id'] as string);
    t.match(searchRow, { action: 'catalog.search', outcome: 'denied', status: 401, reason: 'token_invalid', clientId: null });
  });

  t.test('a missing scope is recorded with the client that tried', async (t) => {
    const reader = await clientWithToken(app, 'zj-edu', ['catalog:read']);
    const response = await app.inject({ method: 'POST', url: '/v1/admin/catalog/sync', headers: bearer(reader.token) });
    assertProblem(t, response, 403, 'insufficient_scope');
    t.match(await storedEvent(app, response.headers['x-audit-id'] as string), {
      action: 'catalog.sync',
      outcome: 'denied',
      status: 403,
      reason: 'insufficient_scope',
      clientId: reader.id,
      agency: 'zj-edu',
    });
  });

  t.test('admin actions are recorded', async (t) => {
    const admin = await clientWithToken(app, 'zj-stats', ['admin']);
    const byAdmin = { clientId: admin.id, agency: 'zj-stats', outcome: 'allowed' };

    const created = await app.inject({
      method: 'POST',
      url: '/v1/admin/clients',
      headers: bearer(admin.token),
      payload: { agency: 'zj-psb', scopes: ['records:read'] },
    });
    t.equal(created.statusCode, 201);
    const newClient = created.json();
    t.match(await storedEvent(app, created.headers['x-audit-id'] as string), { ...byAdmin, action: 'client.create', status: 201 });

    const disabled = await app.inject({ method: 'POST', url: `/v1/admin/clients/${newClient.client_id}/disable`, headers: bearer(admin.token) });
    t.equal(disabled.statusCode, 200);
    t.match(await storedEvent(app, disabled.headers['x-audit-id'] as string), { ...byAdmin, action: 'client.disable', status: 200 });

    const rotated = await app.inject({ method: 'POST', url: '/v1/admin/keys/rotate', headers: bearer(admin.token) });
    t.equal(rotated.statusCode, 200);
    t.match(await storedEvent(app, rotated.headers['x-audit-id'] as string), { ...byAdmin, action: 'keys.rotate', status: 200 });

    const synced = await app.inject({ method: 'POST', url: '/v1/admin/catalog/sync', headers: bearer(admin.token) });
    t.equal(synced.statusCode, 200);
    t.match(await storedEvent(app, synced.headers['x-audit-id'] as string), {
      ...byAdmin,
      action: 'catalog.sync',
      status: 200,
      rowCount: synced.json().changes.length,
    });

    const everything = JSON.stringify(await app.db.select().from(auditEvents));
    t.notOk(everything.includes(newClient.client_secret), "the new client's secret is not in the trail");
  });

  t.test('agency catalog reads are recorded, anonymous browsing is not', async (t) => {
    const reader = await clientWithToken(app, 'zj-edu', ['catalog:read']);
    const read = await app.inject({ url: '/v1/catalog/resources/330000-PSB-00001', headers: bearer(reader.token) });
    t.equal(read.statusCode, 200);
    t.match(await storedEvent(app, read.headers['x-audit-id'] as string), {
      action: 'catalog.read',
      outcome: 'allowed',
      status: 200,
      clientId: reader.id,
      agency: 'zj-edu',
      resource: '330000-PSB-00001',
      provider: 'zj-psb',
    });
    const search = await app.inject({ url: '/v1/catalog/resources?provider=zj-amr', headers: bearer(reader.token) });
    t.equal(search.statusCode, 200);
    t.match(await storedEvent(app, search.headers['x-audit-id'] as string), { action: 'catalog.search', outcome: 'allowed', clientId: reader.id });

    const before = await eventCount(app);
    const browse = await app.inject({ url: '/v1/catalog/resources' });
    t.equal(browse.statusCode, 200);
    const open = browse.json().items[0]?.code as string;
    t.ok(open, 'anonymous callers see open resources');
    const detail = await app.inject({ url: `/v1/catalog/resources/${open}` });
    t.equal(detail.statusCode, 200);
    t.notOk(browse.headers['x-audit-id'], 'no audit record for anonymous browsing');
    t.notOk(detail.headers['x-audit-id']);
    t.equal(await eventCount(app), before, 'no rows were added');

    // An anonymous refusal is still recorded.
    const missing = await app.inject({ url: '/v1/catalog/resources/330000-XXX-99999' });
    t.equal(missing.statusCode, 404);
    t.equal(await eventCount(app), before + 1, 'an anonymous call that is refused is recorded');
    t.match(await storedEvent(app, missing.headers['x-audit-id'] as string), { action: 'catalog.read', outcome: 'denied', status: 404, clientId: null });
  });

  t.test('a conditional GET answered 304 is recorded as 304, without the body it did not send', async (t) => {
    const reader = await clientWithToken(app, 'zj-edu', ['catalog:read']);
    const first = await app.inject({ url: '/v1/catalog/resources/330000-PSB-00002', headers: bearer(reader.token) });
    t.equal(first.statusCode, 200);
    const again = await app.inject({
      url: '/v1/catalog/resources/330000-PSB-00002',
      headers: { ...bearer(reader.token), 'if-none-match': first.headers.etag as string },
    });
    t.equal(again.statusCode, 304);
    t.equal(again.body, '');
    const row = await storedEvent(app, again.headers['x-audit-id'] as string);
    t.equal(row?.status, 304, 'the record holds the status the caller got');
    t.not(row?.bytes, Buffer.byteLength(first.body), 'nor does it claim the resource was sent again');
  });

  t.test('purpose and on-behalf-of are recorded', async (t) => {
    const reader = await clientWithToken(app, 'zj-hrss', ['catalog:read']);
    const response = await app.inject({
      url: '/v1/catalog/resources/330000-EDU-00001',
      headers: { ...bearer(reader.token), 'x-purpose': '社保资格审核 case review', 'x-on-behalf-of': 'officer:zhang-san/case:2024-0001' },
    });
    t.equal(response.statusCode, 200);
    t.match(await storedEvent(app, response.headers['x-audit-id'] as string), {
      purpose: '社保资格审核 case review',
      onBehalfOf: 'officer:zhang-san/case:2024-0001',
      resource: '330000-EDU-00001',
      provider: 'zj-edu',
    });
  });

  t.test('the rows written by this app form a verifiable hash chain', async (t) => {
    const rows = await assertChainVerifies(t, app);
    t.ok(rows.length >= 15, `every test above wrote into it (${rows.length} records)`);
  });
});

forEachDriver(t, 'group commit under concurrency', async (t, driver) => {
  const { app } = await setup(t, driver);
  const before = await chainRows(app);
  const lastSeq = Number(before.at(-1)?.seq ?? 0);

  const responses = await Promise.all(
    Array.from({ length: 200 }, (_, i) => app.inject({ url: '/v1/catalog/agencies', headers: { ...bearer(`garbage-${i}`), 'x-request-id': `burst-${i}` } })),
  );
  t.ok(
    responses.every((response) => response.statusCode === 401),
    'every request is refused',
  );
  const ids = responses.map((response) => response.headers['x-audit-id'] as string);
  t.ok(
    ids.every((id) => typeof id === 'string' && id.length > 0),
    'every answer names its record',
  );
  t.equal(new Set(ids).size, 200, 'all 200 ids are distinct');

  const rows = await app.db.select().from(auditEvents).where(inArray(auditEvents.id, ids)).orderBy(asc(auditEvents.seq));
  t.equal(rows.length, 200, 'exactly one row per answer');
  t.same(
    rows.map((row) => Number(row.seq)),
    Array.from({ length: 200 }, (_, i) => lastSeq + 1 + i),
    'their sequence numbers follow on without gaps',
  );
  const byId = new Map(rows.map((row) => [row.id, row]));
  t.ok(
    responses.every((response, i) => byId.get(ids[i] as string)?.requestId === `burst-${i}`),
    'each id names the record of its own request',
  );
  t.equal((await chainRows(app)).length, before.length + 200, 'no other rows were written');
  await assertChainVerifies(t, app);
});

forEachDriver(t, 'no answer without its record: 503 when the trail cannot be written', async (t, driver) => {
  const { app } = await setup(t, driver);
  const { client, secret } = await createClient(app.db, app.clientSecrets, { agency: 'zj-edu', scopes: ['catalog:read'] });
  const first = await requestToken(app, client.id, secret as string);
  t.equal(first.statusCode, 200);
  const before = await chainRows(app);
  const head = before.at(-1);

  await app.db.execute(sql`alter table audit_events rename to audit_events_gone`);
  let restored = false;
  t.teardown(async () => {
    if (!restored) await app.db.execute(sql`alter table audit_events_gone rename to audit_events`);
  });

  const refused = await requestToken(app, client.id, secret as string);
  const body = assertProblem(t, refused, 503, 'audit_unavailable');
  t.notOk('access_token' in body, 'no token leaves without its record');
  t.notOk(refused.body.includes('eyJ'), 'nothing token-like in the body');
  t.notOk(refused.headers['x-audit-id'], 'no audit id');
  t.ok(refused.headers['retry-after'], 'the caller is told to retry');
  t.notOk(/audit_events|relation|sql/i.test(refused.body), 'the database error does not leak');

  await app.db.execute(sql`alter table audit_events_gone rename to audit_events`);
  restored = true;

  const next = await requestToken(app, client.id, secret as string);
  t.equal(next.statusCode, 200, 'the trail is back: so are the answers');
  const row = await storedEvent(app, next.headers['x-audit-id'] as string);
  t.equal(Number(row?.seq), Number(head?.seq) + 1, 'the failed batch did not advance the chain');
  t.equal(row?.prevHash, head?.hash, 'the new record links to the last written one');
  const failed = await app.db.select().from(auditEvents).where(eq(auditEvents.requestId, refused.headers['x-request-id'] as string));
  t.same(failed, [], 'the refused answer left no record');
  await assertChainVerifies(t, app);
});

forEachDriver(t, 'nothing is lost on graceful shutdown', async (t, driver) => {
  const database = await freshDatabase(t, driver);
  const app = await openGateway(testConfig(), { database, logger: pino({ level: 'silent' }) });
  let closed = false;
  t.teardown(async () => {
    if (!closed) await app.close();
  });
  await app.ready();
  const chainId = app.audit.chainId;
  const chainCount = async () => {
    const [row] = await database.db.select({ n: count() }).from(auditEvents).where(eq(auditEvents.chainId, chainId));
    return Number(row?.n);
  };
  const atStart = await chainCount();
  t.ok(atStart >= 1, 'start-up wrote its catalog sync');

  const { client, secret } = await createClient(database.db, app.clientSecrets, { agency: 'zj-edu', scopes: ['catalog:read'] });
  const inFlight = Array.from({ length: 50 }, () => requestToken(app, client.id, secret as string));
  const responses = await Promise.all(inFlight);
  t.ok(
    responses.every((response) => response.statusCode === 200 && typeof response.headers['x-audit-id'] === 'string'),
    'all 50 answered with their records',
  );
  // Records still queued when close() is called are written before the app goes.
  const queued = Array.from({ length: 20 }, (_, i) => app.audit.record({ action: 'test.queued', outcome: 'allowed', purpose: `queued ${i}` }));
  await app.close();
  closed = true;
  const queuedIds = await Promise.all(queued);
  t.equal(new Set(queuedIds).size, 20, 'every queued record was committed');
  await t.rejects(app.audit.record({ action: 'test.late', outcome: 'allowed' }), { statusCode: 503, code: 'GW_AUDIT_UNAVAILABLE' }, 'a closed trail takes no records');

  t.equal(await chainCount(), atStart + 50 + 20, '50 answers and 20 queued records, plus start-up');
  const [last] = await database.db
    .select({ seq: sql<number>`max(${auditEvents.seq})` })
    .from(auditEvents)
    .where(eq(auditEvents.chainId, chainId));
  const lastSeq = Number(last?.seq);
  t.equal(lastSeq, atStart + 70);
  const closing = await database.db
    .select()
    .from(auditCheckpoints)
    .where(and(eq(auditCheckpoints.chainId, chainId), eq(auditCheckpoints.seq, lastSeq)));
  t.equal(closing.length, 1, 'the closing checkpoint signs the last record');
  const [head] = await database.db
    .select({ hash: auditEvents.hash })
    .from(auditEvents)
    .where(and(eq(auditEvents.chainId, chainId), eq(auditEvents.seq, lastSeq)));
  t.equal(closing[0]?.headHash, head?.hash, 'over the hash of that record');
});

forEachDriver(t, 'a checkpoint that cannot be written loses no record and stops nothing', async (t, driver) => {
  // Every batch is followed by a checkpoint; one batch holds one record.
  const { app } = await setup(t, driver, { AUDIT_CHECKPOINT_EVERY: '1', AUDIT_BATCH_MAX: '1' });
  // A rejection that escapes the writer would take a production process down (close-with-grace
  // exits on it); collect them here so that this test can say so instead of aborting.
  const escaped: unknown[] = [];
  const tapListeners = process.listeners('unhandledRejection');
  process.removeAllListeners('unhandledRejection');
  process.on('unhandledRejection', (reason) => escaped.push(reason));
  t.teardown(() => {
    process.removeAllListeners('unhandledRejection');
    for (const listener of tapListeners) process.on('unhandledRejection', listener);
  });
  await app.db.execute(sql`alter table audit_checkpoints rename to audit_checkpoints_gone`);
  let restored = false;
  t.teardown(async () => {
    if (!restored) await app.db.execute(sql`alter table audit_checkpoints_gone rename to audit_checkpoints`);
  });

  // The records are committed; only their signature is missing, so every answer goes out.
  const burst = Promise.all(Array.from({ length: 5 }, (_, i) => app.inject({ url: '/v1/catalog/agencies', headers: bearer(`nope-${i}`) })));
  const answered = await Promise.race([burst, new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 5000).unref())]);
  if (answered === 'timeout') {
    t.fail('requests queued behind the failed checkpoint were never written nor answered');
  } else {
    t.same(
      answered.map((response) => response.statusCode),
      [401, 401, 401, 401, 401],
    );
    t.ok(
      answered.every((response) => typeof response.headers['x-audit-id'] === 'string'),
      'each with its record',
    );
  }

  await new Promise((resolve) => setImmediate(resolve));
  t.same(
    escaped.map((reason) => String((reason as Error).message).slice(0, 60)),
    [],
    'no rejection escapes the writer',
  );

  await app.db.execute(sql`alter table audit_checkpoints_gone rename to audit_checkpoints`);
  restored = true;
  const later = await app.inject({ url: '/v1/catalog/agencies', headers: bearer('later') });
  t.equal(later.statusCode, 401);
  t.type(later.headers['x-audit-id'], 'string');
  await app.audit.flush();
  const rows = await assertChainVerifies(t, app);
  const [head] = await app.db
    .select()
    .from(auditCheckpoints)
    .where(and(eq(auditCheckpoints.chainId, app.audit.chainId), eq(auditCheckpoints.seq, Number(rows.at(-1)?.seq))));
  t.ok(head, 'once the table is back, the head is signed again');
});
