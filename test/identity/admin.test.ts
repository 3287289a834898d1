import t from 'tap';
import { eq, sql } from 'drizzle-orm';
import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { App } from '../../src/app.js';
import type { Database } from '../../src/db/index.js';
import { clients } from '../../src/db/schema.js';
import { createClient } from '../../src/identity/clients.js';
import { buildTestApp, forEachDriver, freshDatabase } from '../helpers/app.js';
import { assertProblem } from '../helpers/problem.js';

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const STUDENT_STATUS_SEARCH = `/v1/catalog/resources?q=${encodeURIComponent('学籍')}`;
/** What the admin API shows of a client: never a secret, never a hash, never the JWKS. */
const VIEW_KEYS = ['agency', 'auth_method', 'client_id', 'created_at', 'name', 'scopes', 'status'];

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

function requestToken(app: App, id: string, secret: string) {
  return app.inject({
    method: 'POST',
    url: '/oauth/token',
    headers: FORM,
    payload: new URLSearchParams({ grant_type: 'client_credentials', client_id: id, client_secret: secret }).toString(),
  });
}

async function accessToken(app: App, id: string, secret: string): Promise<string> {
  const response = await requestToken(app, id, secret);
  if (response.statusCode !== 200) throw new Error(`token for ${id}: ${response.statusCode} ${response.body}`);
  return response.json().access_token;
}

/** A client made directly in the database (not through the routes under test) and its token. */
async function clientWithToken(app: App, agency: string, scopes: string[]) {
  const { client, secret } = await createClient(app.db, app.clientSecrets, { agency, scopes });
  return { id: client.id, secret: secret as string, token: await accessToken(app, client.id, secret as string) };
}

async function storedClient(database: Database, id: string) {
  const [row] = await database.db.select().from(clients).where(eq(clients.id, id));
  return row;
}

async function clientCount(database: Database): Promise<number> {
  const [row] = await database.db.select({ n: sql<number>`count(*)::int` }).from(clients);
  return Number(row?.n);
}

async function publicJwks() {
  const { publicKey, privateKey } = await generateKeyPair('EdDSA', { extractable: true });
  const kid = 'client-key-1';
  return {
    publicJwks: { keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'EdDSA', use: 'sig' }] },
    privateJwk: { ...(await exportJWK(privateKey)), kid },
    privateKey,
    kid,
  };
}

forEachDriver(t, 'admin routes', async (t, driver) => {
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, { database });
  const admin = await clientWithToken(app, 'zj-stats', ['admin', 'catalog:read']);
  const reader = await clientWithToken(app, 'zj-edu', ['catalog:read']);

  const registerClient = (body: unknown, token = admin.token) =>
    app.inject({ method: 'POST', url: '/v1/admin/clients', headers: bearer(token), payload: body as object });

  t.test('POST /v1/admin/clients registers a secret client; the secret is shown once and stored only as a hash', async (t) => {
    const before = Date.now();
    const response = await registerClient({ agency: 'zj-edu', name: '学籍核验系统', scopes: ['records:verify', 'catalog:read'] });
    t.equal(response.statusCode, 201);
    t.match(response.headers['content-type'], /^application\/json/);
    const created = response.json();
    t.same(Object.keys(created).sort(), [...VIEW_KEYS, 'client_secret'].sort());
    t.match(created.client_id, /^cl_[A-Za-z0-9_-]{22}$/);
    t.equal(created.agency, 'zj-edu');
    t.equal(created.name, '学籍核验系统');
    t.same(created.scopes, ['catalog:read', 'records:verify'], 'scopes sorted');
    t.equal(created.auth_method, 'client_secret');
    t.equal(created.status, 'active');
    t.match(created.client_secret, /^gws_[A-Za-z0-9_-]{43}$/);
    const createdAt = Date.parse(created.created_at);
    t.ok(createdAt >= before - 1000 && createdAt <= Date.now() + 1000, 'created_at is now');
    t.match(created.created_at, /Z$/, 'RFC 3339 UTC');

    const token = await requestToken(app, created.client_id, created.client_secret);
    t.equal(token.statusCode, 200, 'the secret obtains a token');
    t.equal(token.json().scope, 'catalog:read records:verify');
    t.match(decodeJwt(token.json().access_token), { sub: created.client_id, client_id: created.client_id, agency: 'zj-edu' });

    const shown = await app.inject({ url: `/v1/admin/clients/${created.client_id}`, headers: bearer(admin.token) });
    t.equal(shown.statusCode, 200);
    const view = shown.json();
    t.same(Object.keys(view).sort(), VIEW_KEYS, 'no secret, no hash');
    t.same(view, {
      client_id: created.client_id,
      agency: 'zj-edu',
      name: '学籍核验系统',
      scopes: ['catalog:read', 'records:verify'],
      auth_method: 'client_secret',
      status: 'active',
      created_at: created.created_at,
    });
    t.notMatch(shown.body, created.client_secret);
    t.notMatch(shown.body, 'hmac-sha256');

    const row = await storedClient(database, created.client_id);
    t.ok(row, 'stored');
    t.match(row?.secretHash, /^hmac-sha256\$1\$[A-Za-z0-9_-]{43}$/);
    t.notOk(row?.secretHash?.includes(created.client_secret), 'the stored hash does not contain the secret');
    t.notOk(row?.secretHash?.includes(created.client_secret.slice(4)), 'nor its random part');
    t.same(row?.scopes, ['catalog:read', 'records:verify']);
    t.equal(row?.jwks, null);

    const missing = await app.inject({ url: '/v1/admin/clients/cl_nobody', headers: bearer(admin.token) });
    assertProblem(t, missing, 404, 'client_not_found');
  });

  t.test('POST /v1/admin/clients with a public JWKS registers a private_key_jwt client without a secret', async (t) => {
    const keys = await publicJwks();
    const response = await registerClient({ agency: 'zj-psb', scopes: ['records:read'], jwks: keys.publicJwks });
    t.equal(response.statusCode, 201);
    const created = response.json();
    t.same(Object.keys(created).sort(), VIEW_KEYS, 'no client_secret');
    t.match(created, { client_id: /^cl_/, agency: 'zj-psb', scopes: ['records:read'], auth_method: 'private_key_jwt', status: 'active' });
    t.equal(created.name, 'zj-psb client', 'a default name');
    const row = await storedClient(database, created.client_id);
    t.equal(row?.secretHash, null);
    t.same(row?.jwks, keys.publicJwks);

    // The registered key is what authenticates it (RFC 7523).
    const metadata = (await app.inject({ url: '/.well-known/oauth-authorization-server' })).json();
    const assertion = await new SignJWT({})
      .setProtectedHeader({ alg: 'EdDSA', kid: keys.kid })
      .setIssuer(created.client_id)
      .setSubject(created.client_id)
      .setAudience(metadata.token_endpoint)
      .setIssuedAt()
      .setExpirationTime('60s')
      .setJti(crypto.randomUUID())
      .sign(keys.privateKey);
    const token = await app.inject({
      method: 'POST',
      url: '/oauth/token',
      headers: FORM,
      payload: new URLSearchParams({
        grant_type: 'client_credentials',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: assertion,
      }).toString(),
    });
    t.equal(token.statusCode, 200, 'a client assertion signed with the registered key obtains a token');
    t.equal(decodeJwt(token.json().access_token).client_id, created.client_id);
  });

  t.test('POST /v1/admin/clients refuses bad registrations and stores nothing', async (t) => {
    const count = await clientCount(database);
    const keys = await publicJwks();

    const privateJwks = await registerClient({ agency: 'zj-psb', scopes: ['records:read'], jwks: { keys: [keys.privateJwk] } });
    const jwksProblem = assertProblem(t, privateJwks, 400, 'invalid_jwks');
    t.match(jwksProblem.detail, /private/);
    t.notMatch(privateJwks.body, String(keys.privateJwk.d), 'the private key is not echoed');

    const agency = await registerClient({ agency: 'zj-nobody', scopes: ['catalog:read'] });
    t.match(assertProblem(t, agency, 400, 'unknown_agency').detail, /zj-nobody/);

    const scope = await registerClient({ agency: 'zj-edu', scopes: ['catalog:write'] });
    const scopeProblem = assertProblem(t, scope, 400, 'invalid_request');
    t.match(scopeProblem.errors, [{ in: 'body', pointer: '/scopes/0', message: /must be one of .*catalog:read/ }]);

    const extra = await registerClient({ agency: 'zj-edu', scopes: ['catalog:read'], colour: 'red' });
    const extraProblem = assertProblem(t, extra, 400, 'invalid_request');
    t.match(extraProblem.errors, [{ in: 'body', pointer: '/colour', message: 'is not a known property' }]);
    t.match(extraProblem.detail, /colour/);

    const noScopes = await registerClient({ agency: 'zj-edu', scopes: [] });
    t.match(assertProblem(t, noScopes, 400, 'invalid_request').errors, [{ pointer: '/scopes' }]);

    t.equal(await clientCount(database), count, 'no client was stored');
  });

  t.test('GET /v1/admin/clients pages with next_cursor and Link, and filters by agency', async (t) => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i += 1) {
      const response = await registerClient({ agency: 'zj-env', name: `环境监测 ${i}`, scopes: ['catalog:read'] });
      t.equal(response.statusCode, 201);
      ids.push(response.json().client_id);
    }
    ids.sort();

    const first = await app.inject({ url: '/v1/admin/clients?agency=zj-env&limit=2', headers: bearer(admin.token) });
    t.equal(first.statusCode, 200);
    const firstPage = first.json();
    t.same(firstPage.items.map((c: { client_id: string }) => c.client_id), ids.slice(0, 2));
    t.type(firstPage.next_cursor, 'string');
    const link = /^<([^>]+)>; rel="next"$/.exec(String(first.headers.link));
    t.ok(link, 'Link: rel="next"');
    const nextUrl = new URL(link?.[1] ?? '', 'http://x');
    t.equal(nextUrl.pathname, '/v1/admin/clients');
    t.equal(nextUrl.searchParams.get('cursor'), firstPage.next_cursor);
    t.equal(nextUrl.searchParams.get('agency'), 'zj-env', 'the filter is kept');
    t.equal(nextUrl.searchParams.get('limit'), '2');

    const second = await app.inject({ url: `${nextUrl.pathname}${nextUrl.search}`, headers: bearer(admin.token) });
    t.equal(second.statusCode, 200);
    const secondPage = second.json();
    t.same(secondPage.items.map((c: { client_id: string }) => c.client_id), ids.slice(2));
    t.equal(secondPage.next_cursor, null);
    t.equal(second.headers.link, undefined, 'no Link on the last page');

    for (const item of [...firstPage.items, ...secondPage.items]) {
      t.same(Object.keys(item).sort(), VIEW_KEYS, 'a listed client shows no secret or hash');
      t.equal(item.agency, 'zj-env');
    }

    const stats = (await app.inject({ url: '/v1/admin/clients?agency=zj-stats', headers: bearer(admin.token) })).json();
    t.same(stats, {
      items: [{ client_id: admin.id, agency: 'zj-stats', name: 'zj-stats client', scopes: ['admin', 'catalog:read'], auth_method: 'client_secret', status: 'active', created_at: stats.items[0]?.created_at }],
      next_cursor: null,
    });

    const all = await app.inject({ url: '/v1/admin/clients', headers: bearer(admin.token) });
    const everyone = all.json().items.map((c: { client_id: string }) => c.client_id);
    t.equal(everyone.length, await clientCount(database), 'without a filter, every client');
    t.same(everyone, [...everyone].sort(), 'in client_id order');
    t.notMatch(all.body, /gws_|hmac-sha256|scrypt/);

    const unknown = (await app.inject({ url: '/v1/admin/clients?agency=zj-nobody', headers: bearer(admin.token) })).json();
    t.same(unknown, { items: [], next_cursor: null });

    assertProblem(t, await app.inject({ url: '/v1/admin/clients?cursor=%%%', headers: bearer(admin.token) }), 400, 'invalid_cursor');
    assertProblem(t, await app.inject({ url: '/v1/admin/clients?limit=0', headers: bearer(admin.token) }), 400, 'invalid_request');
  });

  t.test('every admin route wants a token (401) with scope admin (403), and does nothing without', async (t) => {
    const target = await createClient(app.db, app.clientSecrets, { agency: 'zj-amr', scopes: ['catalog:read'] });
    const id = target.client.id;
    const jwksBefore = (await app.inject({ url: '/.well-known/jwks.json' })).json().keys.length;
    const count = await clientCount(database);
    const routes: Array<{ method: 'GET' | 'POST'; url: string; payload?: object }> = [
      { method: 'POST', url: '/v1/admin/clients', payload: { agency: 'zj-amr', scopes: ['admin'] } },
      { method: 'GET', url: '/v1/admin/clients' },
      { method: 'GET', url: `/v1/admin/clients/${id}` },
      { method: 'POST', url: `/v1/admin/clients/${id}/disable` },
      { method: 'POST', url: `/v1/admin/clients/${id}/rotate-secret` },
      { method: 'POST', url: '/v1/admin/keys/rotate' },
    ];
    for (const route of routes) {
      const anonymous = await app.inject(route);
      const missing = assertProblem(t, anonymous, 401, 'token_missing');
      t.match(anonymous.headers['www-authenticate'], /^Bearer realm="govdata-gateway"/, `${route.method} ${route.url}: challenge`);
      t.notMatch(anonymous.body, /gws_|client_secret/);
      t.match(missing.detail, /admin/);

      const withoutAdmin = await app.inject({ ...route, headers: bearer(reader.token) });
      const insufficient = assertProblem(t, withoutAdmin, 403, 'insufficient_scope');
      t.equal(insufficient.required_scope, 'admin', `${route.method} ${route.url}: names the scope`);
      t.match(withoutAdmin.headers['www-authenticate'], /error="insufficient_scope"/);
      t.notMatch(withoutAdmin.body, /gws_|client_secret/);
    }

    t.equal(await clientCount(database), count, 'no client registered');
    t.equal((await storedClient(database, id))?.status, 'active', 'not disabled');
    t.equal((await requestToken(app, id, target.secret as string)).statusCode, 200, 'the secret was not rotated');
    t.equal((await app.inject({ url: '/.well-known/jwks.json' })).json().keys.length, jwksBefore, 'no key rotated');

    const badToken = await app.inject({ url: '/v1/admin/clients', headers: bearer('not.a.token') });
    assertProblem(t, badToken, 401, 'token_invalid');
  });

  t.test('POST /v1/admin/clients/{id}/disable: its tokens stop at once, and it gets no new ones', async (t) => {
    const victim = await clientWithToken(app, 'zj-edu', ['catalog:read']);
    const beforeUse = await app.inject({ url: STUDENT_STATUS_SEARCH, headers: bearer(victim.token) });
    t.equal(beforeUse.statusCode, 200);
    t.equal(beforeUse.json().items[0]?.code, '330000-EDU-00001', 'the token works (and is now cached)');

    const response = await app.inject({ method: 'POST', url: `/v1/admin/clients/${victim.id}/disable`, headers: bearer(admin.token) });
    t.equal(response.statusCode, 200);
    const disabled = response.json();
    t.same(Object.keys(disabled).sort(), [...VIEW_KEYS, 'disabled_at'].sort());
    t.match(disabled, { client_id: victim.id, status: 'disabled', agency: 'zj-edu' });
    t.ok(Date.parse(disabled.disabled_at) >= Date.parse(disabled.created_at), 'disabled_at after created_at');
    t.ok(Math.abs(Date.parse(disabled.disabled_at) - Date.now()) < 10_000, 'disabled_at is now');

    const refused = await app.inject({ url: STUDENT_STATUS_SEARCH, headers: bearer(victim.token) });
    assertProblem(t, refused, 401, 'token_revoked');
    t.match(refused.headers['www-authenticate'], /error="invalid_token"/);

    const again = await requestToken(app, victim.id, victim.secret);
    const problem = assertProblem(t, again, 401, 'invalid_client');
    t.equal(problem.error, 'invalid_client', 'RFC 6749 §5.2 error');

    const row = await storedClient(database, victim.id);
    t.equal(row?.status, 'disabled');
    t.equal(row?.disabledAt?.toISOString(), disabled.disabled_at);
    const shown = (await app.inject({ url: `/v1/admin/clients/${victim.id}`, headers: bearer(admin.token) })).json();
    t.match(shown, { status: 'disabled', disabled_at: disabled.disabled_at });

    t.equal((await app.inject({ url: STUDENT_STATUS_SEARCH, headers: bearer(reader.token) })).statusCode, 200, 'other clients are untouched');

    const unknown = await app.inject({ method: 'POST', url: '/v1/admin/clients/cl_nobody/disable', headers: bearer(admin.token) });
    t.match(assertProblem(t, unknown, 404, 'client_not_found').detail, /cl_nobody/);
  });

  t.test('POST /v1/admin/clients/{id}/rotate-secret: the new secret works, the old one stops', async (t) => {
    const { client, secret: oldSecret } = await createClient(app.db, app.clientSecrets, { agency: 'zj-hrss', scopes: ['records:read'] });
    const hashBefore = (await storedClient(database, client.id))?.secretHash;
    const response = await app.inject({ method: 'POST', url: `/v1/admin/clients/${client.id}/rotate-secret`, headers: bearer(admin.token) });
    t.equal(response.statusCode, 200);
    const rotated = response.json();
    t.same(Object.keys(rotated).sort(), [...VIEW_KEYS, 'client_secret'].sort());
    t.match(rotated, { client_id: client.id, status: 'active', auth_method: 'client_secret' });
    t.match(rotated.client_secret, /^gws_[A-Za-z0-9_-]{43}$/);
    t.not(rotated.client_secret, oldSecret);

    t.equal((await requestToken(app, client.id, rotated.client_secret)).statusCode, 200, 'the new secret obtains a token');
    assertProblem(t, await requestToken(app, client.id, oldSecret as string), 401, 'invalid_client');
    const hashAfter = (await storedClient(database, client.id))?.secretHash;
    t.match(hashAfter, /^hmac-sha256\$1\$/);
    t.not(hashAfter, hashBefore);
    t.notOk(hashAfter?.includes(rotated.client_secret));

    const keys = await publicJwks();
    const jwtClient = await createClient(app.db, app.clientSecrets, { agency: 'zj-psb', scopes: ['records:read'], jwks: keys.publicJwks });
    const refused = await app.inject({ method: 'POST', url: `/v1/admin/clients/${jwtClient.client.id}/rotate-secret`, headers: bearer(admin.token) });
    t.equal(refused.statusCode, 400);
    t.match(refused.headers['content-type'], /^application\/problem\+json/);
    t.match(refused.json().detail, /private_key_jwt/);
    t.notOk('client_secret' in refused.json());
    t.equal((await storedClient(database, jwtClient.client.id))?.secretHash, null, 'no secret was given to it');

    const unknown = await app.inject({ method: 'POST', url: '/v1/admin/clients/cl_nobody/rotate-secret', headers: bearer(admin.token) });
    assertProblem(t, unknown, 404, 'client_not_found');
  });

  t.test('POST /v1/admin/keys/rotate: a new kid signs, the old one stays published and its tokens keep working', async (t) => {
    const jwksBefore = (await app.inject({ url: '/.well-known/jwks.json' })).json();
    t.equal(jwksBefore.keys.length, 1, 'a fresh database has one key');
    const oldKid = jwksBefore.keys[0].kid;
    const { client, secret } = await createClient(app.db, app.clientSecrets, { agency: 'zj-edu', scopes: ['catalog:read'] });
    // Not used before the rotation, so that it is verified (not served from a cache) afterwards.
    const oldToken = await accessToken(app, client.id, secret as string);
    t.equal(decodeProtectedHeader(oldToken).kid, oldKid);

    const response = await app.inject({ method: 'POST', url: '/v1/admin/keys/rotate', headers: bearer(admin.token) });
    t.equal(response.statusCode, 200);
    const { kid: newKid } = response.json();
    t.same(Object.keys(response.json()), ['kid']);
    t.type(newKid, 'string');
    t.not(newKid, oldKid);

    const jwks = await app.inject({ url: '/.well-known/jwks.json' });
    t.equal(jwks.statusCode, 200);
    const published = jwks.json().keys as Array<Record<string, unknown>>;
    t.same(published.map((key) => key.kid).sort(), [oldKid, newKid].sort(), 'both keys published');
    for (const key of published) {
      t.notOk('d' in key, `${String(key.kid)}: public only`);
      t.match(key, { kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' });
    }

    const withOld = await app.inject({ url: STUDENT_STATUS_SEARCH, headers: bearer(oldToken) });
    t.equal(withOld.statusCode, 200, 'a token signed before the rotation still verifies');
    t.equal(withOld.json().items[0]?.code, '330000-EDU-00001');

    const newToken = await accessToken(app, client.id, secret as string);
    t.equal(decodeProtectedHeader(newToken).kid, newKid, 'new tokens are signed with the new key');
    const withNew = await app.inject({ url: STUDENT_STATUS_SEARCH, headers: bearer(newToken) });
    t.equal(withNew.json().items[0]?.code, '330000-EDU-00001');
  });
});
