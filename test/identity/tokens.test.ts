import { createPublicKey, randomUUID, verify as verifySignature } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { createLocalJWKSet, exportJWK, generateKeyPair, jwtVerify, SignJWT, UnsecuredJWT, decodeJwt, decodeProtectedHeader, type JWK } from 'jose';
import type { App } from '../../src/app.js';
import { openDatabase, type Driver } from '../../src/db/index.js';
import { createClient } from '../../src/identity/clients.js';
import { KeyStore } from '../../src/identity/keys.js';
import { buildTestApp, forEachDriver, freshDatabase, freshDatabaseUrl, TEST_KEY_ENCRYPTION_KEY } from '../helpers/app.js';
import { assertProblem } from '../helpers/problem.js';

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const ISSUER = 'http://127.0.0.1:3000';

function form(fields: Record<string, string>) {
  return new URLSearchParams(fields).toString();
}

function basic(id: string, secret: string) {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

async function tokenFor(app: App, id: string, secret: string, extra: Record<string, string> = {}) {
  const response = await app.inject({
    method: 'POST',
    url: '/oauth/token',
    headers: { ...FORM, authorization: basic(id, secret) },
    payload: form({ grant_type: 'client_credentials', ...extra }),
  });
  return response;
}

/** A protected call: the catalog search as an agency with catalog:read sees every resource. */
function callWith(app: App, token: string) {
  return app.inject({ url: '/v1/catalog/resources?q=%E5%AD%A6%E7%B1%8D', headers: { authorization: `Bearer ${token}` } });
}

async function setup(t: Test, driver: Driver, env: Record<string, string> = {}) {
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, { database, env });
  const secretClient = await createClient(app.db, app.clientSecrets, { agency: 'zj-edu', scopes: ['catalog:read', 'records:verify'] });
  return { database, app, id: secretClient.client.id, secret: secretClient.secret as string };
}

/** The gateway's own signing key, read the way an instance does, to forge near-miss tokens. */
async function gatewayKey(app: App) {
  const keys = new KeyStore(app.db, Buffer.from(TEST_KEY_ENCRYPTION_KEY, 'base64url'), 'EdDSA', 900);
  await keys.reload();
  return keys.signingKey();
}

forEachDriver(t, 'token endpoint', async (t, driver) => {
  const { app, id, secret } = await setup(t, driver);

  t.test('client_secret_basic gives an RFC 9068 access token', async (t) => {
    const response = await tokenFor(app, id, secret);
    t.equal(response.statusCode, 200);
    t.equal(response.headers['cache-control'], 'no-store');
    const body = response.json();
    t.match(body, { token_type: 'Bearer', expires_in: 900, scope: 'catalog:read records:verify' });
    const header = decodeProtectedHeader(body.access_token);
    t.match(header, { alg: 'EdDSA', typ: 'at+jwt', kid: /\S/ });
    const claims = decodeJwt(body.access_token);
    t.match(claims, { iss: ISSUER, aud: 'govdata-gateway', sub: id, client_id: id, agency: 'zj-edu', scope: 'catalog:read records:verify' });
    t.equal((claims.exp as number) - (claims.iat as number), 900);
    t.match(claims.jti, /^[0-9a-f-]{36}$/);
    t.equal((await callWith(app, body.access_token)).json().items[0].code, '330000-EDU-00001', 'the token opens a protected view');
  });

  t.test('authentication schemes are matched without regard to case (RFC 9110 §11.1)', async (t) => {
    const basic = Buffer.from(`${id}:${secret}`).toString('base64');
    const issued = await app.inject({
      method: 'POST',
      url: '/oauth/token',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `basic ${basic}` },
      payload: 'grant_type=client_credentials',
    });
    t.equal(issued.statusCode, 200, '`basic` is Basic');
    const token = issued.json().access_token as string;
    for (const header of [`bearer ${token}`, `BEARER  ${token}`]) {
      const response = await app.inject({ url: '/v1/catalog/resources?q=%E5%AD%A6%E7%B1%8D', headers: { authorization: header } });
      t.equal(response.statusCode, 200, `${header.split(' ')[0]} is Bearer`);
    }
    for (const header of [`Token ${token}`, `Bearer${token}`, `Bearer ${token} extra`, 'Bearer ']) {
      const response = await app.inject({ url: '/v1/catalog/resources', headers: { authorization: header } });
      assertProblem(t, response, 401, 'token_invalid');
    }
  });

  t.test('client_secret_post works too, and scope narrows but never widens', async (t) => {
    const post = await app.inject({
      method: 'POST',
      url: '/oauth/token',
      headers: FORM,
      payload: form({ grant_type: 'client_credentials', client_id: id, client_secret: secret, scope: 'records:verify' }),
    });
    t.equal(post.statusCode, 200);
    t.equal(post.json().scope, 'records:verify');
    t.equal(decodeJwt(post.json().access_token).scope, 'records:verify');
    const narrowed = await callWith(app, post.json().access_token);
    t.same(narrowed.json().items, [], 'without catalog:read the caller sees only open resources');

    const wider = await tokenFor(app, id, secret, { scope: 'records:verify admin' });
    const body = assertProblem(t, wider, 400, 'invalid_scope');
    t.equal(body.error, 'invalid_scope');
    t.match(body.error_description, /admin/);
  });

  t.test('RFC 6749 §5.2 errors', async (t) => {
    const wrong = await tokenFor(app, id, 'gws_wrong');
    const body = assertProblem(t, wrong, 401, 'invalid_client');
    t.equal(body.error, 'invalid_client');
    t.match(wrong.headers['www-authenticate'], /^Basic realm=/);
    assertProblem(t, await tokenFor(app, 'cl_nobody', secret), 401, 'invalid_client');
    assertProblem(t, await tokenFor(app, id, secret, { grant_type: 'password' }), 400, 'unsupported_grant_type');
    const none = await app.inject({ method: 'POST', url: '/oauth/token', headers: FORM, payload: form({ grant_type: 'client_credentials' }) });
    assertProblem(t, none, 401, 'invalid_client');
    const missing = await app.inject({ method: 'POST', url: '/oauth/token', headers: { ...FORM, authorization: basic(id, secret) }, payload: '' });
    assertProblem(t, missing, 400, 'invalid_request');
    const twice = await app.inject({
      method: 'POST',
      url: '/oauth/token',
      headers: { ...FORM, authorization: basic(id, secret) },
      payload: form({ grant_type: 'client_credentials', client_secret: secret }),
    });
    assertProblem(t, twice, 400, 'invalid_request');
    const json = await app.inject({ method: 'POST', url: '/oauth/token', payload: { grant_type: 'client_credentials' } });
    t.equal(json.statusCode, 401, 'a JSON body is not a form: no credentials');
  });

  t.test('private_key_jwt (RFC 7523): accepted once, with the token endpoint as audience', async (t) => {
    const { publicKey, privateKey } = await generateKeyPair('EdDSA', { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'EdDSA' };
    const { client } = await createClient(app.db, app.clientSecrets, { agency: 'zj-psb', scopes: ['records:read'], jwks: { keys: [jwk] } });
    const assertion = (claims: { aud?: string; expiresIn?: string; jti?: string; sub?: string } = {}) =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
        .setIssuer(client.id)
        .setSubject(claims.sub ?? client.id)
        .setAudience(claims.aud ?? `${ISSUER}/oauth/token`)
        .setIssuedAt()
        .setExpirationTime(claims.expiresIn ?? '60s')
        .setJti(claims.jti ?? randomUUID())
        .sign(privateKey);
    const request = (clientAssertion: string) =>
      app.inject({
        method: 'POST',
        url: '/oauth/token',
        headers: FORM,
        payload: form({
          grant_type: 'client_credentials',
          client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
          client_assertion: clientAssertion,
        }),
      });

    const once = await assertion();
    const first = await request(once);
    t.equal(first.statusCode, 200);
    t.equal(decodeJwt(first.json().access_token).agency, 'zj-psb');
    assertProblem(t, await request(once), 401, 'invalid_client');
    t.match((await request(once)).json().detail, /used before/);

    assertProblem(t, await request(await assertion({ aud: 'https://elsewhere.example/token' })), 401, 'invalid_client');
    const long = await request(await assertion({ expiresIn: '1h' }));
    assertProblem(t, long, 401, 'invalid_client');
    t.match(long.json().detail, /within 300 s/);
    const other = await generateKeyPair('EdDSA');
    const forged = await new SignJWT({})
      .setProtectedHeader({ alg: 'EdDSA', kid: 'k1' })
      .setIssuer(client.id)
      .setSubject(client.id)
      .setAudience(`${ISSUER}/oauth/token`)
      .setExpirationTime('60s')
      .setJti(randomUUID())
      .sign(other.privateKey);
    assertProblem(t, await request(forged), 401, 'invalid_client');
    // A secret client cannot authenticate with an assertion, nor a key client with a secret.
    assertProblem(t, await request(await assertion({ sub: id })), 401, 'invalid_client');
  });

  t.test('metadata and the JWK Set', async (t) => {
    const metadata = (await app.inject({ url: '/.well-known/oauth-authorization-server' })).json();
    t.match(metadata, {
      issuer: ISSUER,
      token_endpoint: `${ISSUER}/oauth/token`,
      jwks_uri: `${ISSUER}/.well-known/jwks.json`,
      revocation_endpoint: `${ISSUER}/oauth/revoke`,
      grant_types_supported: ['client_credentials'],
    });
    t.same(metadata.token_endpoint_auth_methods_supported, ['client_secret_basic', 'client_secret_post', 'private_key_jwt']);

    // Verify a token with node:crypto alone, from the published JWK: no JWT library involved.
    const token = (await tokenFor(app, id, secret)).json().access_token as string;
    const jwks = (await app.inject({ url: '/.well-known/jwks.json' })).json() as { keys: JWK[] };
    const [headerPart, payloadPart, signaturePart] = token.split('.') as [string, string, string];
    const kid = JSON.parse(Buffer.from(headerPart, 'base64url').toString()).kid;
    const jwk = jwks.keys.find((key) => key.kid === kid);
    t.ok(jwk, 'the signing key is published');
    t.notOk(jwk && 'd' in jwk, 'no private part');
    const publicKey = createPublicKey({ key: jwk as Parameters<typeof createPublicKey>[0] extends { key: infer K } ? K : never, format: 'jwk' });
    t.ok(verifySignature(null, Buffer.from(`${headerPart}.${payloadPart}`), publicKey, Buffer.from(signaturePart, 'base64url')));
  });
});

forEachDriver(t, 'every bad token is refused with its code', async (t, driver) => {
  const { app, id, secret } = await setup(t, driver);
  const key = await gatewayKey(app);
  const now = Math.floor(Date.now() / 1000);
  const claims = { client_id: id, agency: 'zj-edu', scope: 'catalog:read' };
  const sign = (overrides: { payload?: object; header?: object; iss?: string; aud?: string; exp?: number; nbf?: number } = {}) => {
    const jwt = new SignJWT({ ...claims, ...overrides.payload })
      .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: 'at+jwt', ...overrides.header })
      .setIssuer(overrides.iss ?? ISSUER)
      .setAudience(overrides.aud ?? 'govdata-gateway')
      .setSubject(id)
      .setIssuedAt(now - 60)
      .setExpirationTime(overrides.exp ?? now + 600)
      .setJti(randomUUID());
    if (overrides.nbf) jwt.setNotBefore(overrides.nbf);
    return jwt.sign(key.privateKey);
  };
  const refused = async (t: Test, token: string, code: string, name: string) => {
    const response = await callWith(app, token);
    assertProblem(t, response, 401, code);
    t.match(response.headers['www-authenticate'], /error="invalid_token"/, name);
  };

  t.equal((await callWith(app, await sign())).statusCode, 200, 'the well-formed control token passes');
  await refused(t, await sign({ exp: now - 60 }), 'token_expired', 'expired');
  await refused(t, await sign({ nbf: now + 600 }), 'token_invalid', 'not yet valid');
  const good = await sign();
  const [h, p, s] = good.split('.') as [string, string, string];
  const tamperedPayload = Buffer.from(JSON.stringify({ ...decodeJwt(good), scope: 'catalog:read admin' })).toString('base64url');
  await refused(t, `${h}.${tamperedPayload}.${s}`, 'token_invalid', 'tampered');
  await refused(t, `${h}.${p}.${s.slice(0, -4)}AAAA`, 'token_invalid', 'bad signature');
  await refused(t, await sign({ iss: 'https://evil.example' }), 'token_invalid', 'wrong issuer');
  await refused(t, await sign({ aud: 'another-api' }), 'token_invalid', 'wrong audience');
  await refused(t, await sign({ header: { typ: 'JWT' } }), 'token_invalid', 'typ JWT is not an access token');
  await refused(t, await sign({ header: { kid: 'no-such-key' } }), 'token_invalid', 'unknown kid');
  const noClientId = await new SignJWT({ agency: 'zj-edu', scope: 'catalog:read' })
    .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: 'at+jwt' })
    .setIssuer(ISSUER)
    .setAudience('govdata-gateway')
    .setSubject(id)
    .setIssuedAt()
    .setExpirationTime('5m')
    .setJti(randomUUID())
    .sign(key.privateKey);
  await refused(t, noClientId, 'token_invalid', 'a required claim missing');

  const unsecured = new UnsecuredJWT({ ...claims }).setIssuer(ISSUER).setAudience('govdata-gateway').setSubject(id).setExpirationTime('5m').encode();
  await refused(t, unsecured, 'token_invalid', 'alg none');

  // HS256 with the public key as the HMAC secret: the classic key-confusion forgery.
  const jwk = (await app.inject({ url: '/.well-known/jwks.json' })).json().keys[0];
  const confused = await new SignJWT({ ...claims })
    .setProtectedHeader({ alg: 'HS256', kid: key.kid, typ: 'at+jwt' })
    .setIssuer(ISSUER)
    .setAudience('govdata-gateway')
    .setSubject(id)
    .setIssuedAt()
    .setExpirationTime('5m')
    .setJti(randomUUID())
    .sign(new TextEncoder().encode(JSON.stringify(jwk)));
  await refused(t, confused, 'token_invalid', 'HS256 signed with the public key');
  await refused(t, 'not.a.jwt', 'token_invalid', 'garbage');

  const issued = (await tokenFor(app, id, secret)).json().access_token as string;
  t.equal((await callWith(app, issued)).statusCode, 200);
  const revoke = await app.inject({ method: 'POST', url: '/oauth/revoke', headers: { ...FORM, authorization: basic(id, secret) }, payload: form({ token: issued }) });
  t.equal(revoke.statusCode, 200);
  await refused(t, issued, 'token_revoked', 'revoked');
  const unknown = await app.inject({ method: 'POST', url: '/oauth/revoke', headers: { ...FORM, authorization: basic(id, secret) }, payload: form({ token: 'garbage' }) });
  t.equal(unknown.statusCode, 200, 'RFC 7009: revoking an invalid token is no error');
  const noToken = await app.inject({ method: 'POST', url: '/oauth/revoke', headers: { ...FORM, authorization: basic(id, secret) }, payload: form({}) });
  assertProblem(t, noToken, 400, 'invalid_request');
  const other = await createClient(app.db, app.clientSecrets, { agency: 'zj-psb', scopes: ['catalog:read'] });
  const stranger = (await tokenFor(app, other.client.id, other.secret as string)).json().access_token as string;
  const notYours = await app.inject({ method: 'POST', url: '/oauth/revoke', headers: { ...FORM, authorization: basic(id, secret) }, payload: form({ token: stranger }) });
  assertProblem(t, notYours, 400, 'unauthorized_client');
  t.equal((await callWith(app, stranger)).statusCode, 200, "another client's token stays valid");
});

forEachDriver(t, 'revocation and disabling reach a second instance within 1 s', async (t, driver) => {
  const url = await freshDatabaseUrl(driver);
  const first = await openDatabase(url);
  t.teardown(() => first.close());
  await first.migrate();
  // PGlite is one instance per process: both apps share it. PostgreSQL: a pool each, as two servers would.
  const second = driver === 'pglite' ? first : await openDatabase(url);
  if (second !== first) t.teardown(() => second.close());
  const a = await buildTestApp(t, driver, { database: first });
  const b = await buildTestApp(t, driver, { database: second });
  const { client, secret } = await createClient(a.db, a.clientSecrets, { agency: 'zj-edu', scopes: ['catalog:read', 'admin'] });

  const refusedWithin = async (token: string, code: string) => {
    const started = Date.now();
    while (Date.now() - started < 1000) {
      const response = await callWith(b, token);
      if (response.statusCode === 401) return { code: response.json().code, ms: Date.now() - started };
      await sleep(20);
    }
    return { code: 'still accepted', ms: Date.now() - started };
  };

  const token = (await tokenFor(a, client.id, secret as string)).json().access_token as string;
  t.equal((await callWith(b, token)).statusCode, 200, 'instance B accepts (and caches) the token');
  await a.inject({ method: 'POST', url: '/oauth/revoke', headers: { ...FORM, authorization: basic(client.id, secret as string) }, payload: form({ token }) });
  const revoked = await refusedWithin(token, 'token_revoked');
  t.equal(revoked.code, 'token_revoked', `B refuses the revoked token after ${revoked.ms} ms`);

  const other = await createClient(a.db, a.clientSecrets, { agency: 'zj-edu', scopes: ['catalog:read'] });
  const otherToken = (await tokenFor(a, other.client.id, other.secret as string)).json().access_token as string;
  const adminToken = (await tokenFor(a, client.id, secret as string)).json().access_token as string;
  t.equal((await callWith(b, otherToken)).statusCode, 200);
  const disabled = await a.inject({
    method: 'POST',
    url: `/v1/admin/clients/${other.client.id}/disable`,
    headers: { authorization: `Bearer ${adminToken}` },
  });
  t.equal(disabled.statusCode, 200);
  const refused = await refusedWithin(otherToken, 'token_revoked');
  t.equal(refused.code, 'token_revoked', `B refuses the disabled client's token after ${refused.ms} ms`);
  t.equal((await tokenFor(b, other.client.id, other.secret as string)).statusCode, 401, 'and issues it no new token, though B held the client in memory');

  // B holds a third client in memory; a new secret made through A stops the old one on B within a second.
  const third = await createClient(a.db, a.clientSecrets, { agency: 'zj-edu', scopes: ['catalog:read'] });
  t.equal((await tokenFor(b, third.client.id, third.secret as string)).statusCode, 200, 'B issues (and keeps the client)');
  const rotated = await a.inject({ method: 'POST', url: `/v1/admin/clients/${third.client.id}/rotate-secret`, headers: { authorization: `Bearer ${adminToken}` } });
  t.equal(rotated.statusCode, 200);
  const started = Date.now();
  let oldStatus = 200;
  while (Date.now() - started < 1000 && oldStatus === 200) {
    oldStatus = (await tokenFor(b, third.client.id, third.secret as string)).statusCode;
    if (oldStatus === 200) await sleep(20);
  }
  t.equal(oldStatus, 401, `B refuses the old secret ${Date.now() - started} ms after the rotation through A`);
  t.equal((await tokenFor(b, third.client.id, rotated.json().client_secret)).statusCode, 200, 'and takes the new one');
});

t.test('token issuance is rate limited per client', async (t) => {
  const { app, id, secret } = await setup(t, 'pglite', { TOKEN_RATE_LIMIT_PER_MINUTE: '3' });
  for (let i = 0; i < 3; i++) t.equal((await tokenFor(app, id, secret)).statusCode, 200);
  const limited = await tokenFor(app, id, secret);
  assertProblem(t, limited, 429, 'rate_limited');
  t.match(limited.headers['retry-after'], /^\d+$/);
  const other = await createClient(app.db, app.clientSecrets, { agency: 'zj-psb', scopes: ['catalog:read'] });
  t.equal((await tokenFor(app, other.client.id, other.secret as string)).statusCode, 200, 'another client has its own count');
});

t.test('tokens of trusted external issuers', async (t) => {
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'idp-1', alg: 'ES256', use: 'sig' };
  let jwksRequests = 0;
  const idp = createServer((request, response) => {
    jwksRequests += 1;
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify({ keys: [jwk] }));
  }).listen(0, '127.0.0.1');
  await once(idp, 'listening');
  t.teardown(() => idp.close());
  const jwksUri = `http://127.0.0.1:${(idp.address() as { port: number }).port}/jwks`;
  const trusted = [
    { issuer: 'https://id.zj.example', jwks_uri: jwksUri, audience: 'gateway', algorithms: ['ES256'], kind: 'agency', agency_claim: 'org', typ: ['JWT'] },
    { issuer: 'https://citizen.zj.example', jwks_uri: jwksUri, audience: 'gateway', algorithms: ['ES256'], kind: 'citizen', person_claim: 'sub', typ: ['JWT'] },
  ];
  const database = await openDatabase('memory://');
  t.teardown(() => database.close());
  const app = await buildTestApp(t, 'pglite', { database, env: { TRUSTED_ISSUERS: JSON.stringify(trusted) } });
  const external = (issuer: string, payload: object, header: object = {}, signingKey = privateKey) =>
    new SignJWT({ ...payload })
      .setProtectedHeader({ alg: 'ES256', kid: 'idp-1', typ: 'JWT', ...header })
      .setIssuer(issuer)
      .setAudience('gateway')
      .setSubject('user-1')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(signingKey);

  const agencyToken = await external('https://id.zj.example', { org: 'zj-edu', scope: 'catalog:read admin' });
  const search = await callWith(app, agencyToken);
  t.equal(search.statusCode, 200);
  t.equal(search.json().items[0]?.code, '330000-EDU-00001', 'catalog:read from the provider holds');
  const adminTry = await app.inject({ method: 'POST', url: '/v1/admin/catalog/sync', headers: { authorization: `Bearer ${agencyToken}` } });
  assertProblem(t, adminTry, 403, 'insufficient_scope');
  t.equal(jwksRequests, 1, 'keys fetched once, then cached');
  t.equal((await callWith(app, agencyToken)).statusCode, 200);
  t.equal(jwksRequests, 1, 'the verified token is cached too');

  const citizen = await external('https://citizen.zj.example', { scope: 'catalog:read' });
  const asCitizen = await callWith(app, citizen);
  t.equal(asCitizen.statusCode, 200);
  t.same(asCitizen.json().items, [], 'a citizen sees only the open catalog');
  const citizenAdmin = await app.inject({ method: 'POST', url: '/v1/admin/catalog/sync', headers: { authorization: `Bearer ${citizen}` } });
  assertProblem(t, citizenAdmin, 403, 'insufficient_scope');

  const atJwt = await external('https://id.zj.example', { org: 'zj-edu' }, { typ: 'at+jwt' });
  assertProblem(t, await callWith(app, atJwt), 401, 'token_invalid');
  const noAgency = await external('https://id.zj.example', { scope: 'catalog:read' });
  assertProblem(t, await callWith(app, noAgency), 401, 'token_invalid');
  const stranger = await generateKeyPair('ES256');
  const untrusted = await external('https://untrusted.example', { org: 'zj-edu' }, {}, stranger.privateKey);
  assertProblem(t, await callWith(app, untrusted), 401, 'token_invalid');
  const forged = await external('https://id.zj.example', { org: 'zj-edu' }, { kid: 'idp-2' }, stranger.privateKey);
  assertProblem(t, await callWith(app, forged), 401, 'token_invalid');
  t.equal(jwksRequests, 2, 'an unknown kid refetches the keys once');
  await external('https://id.zj.example', { org: 'zj-edu' }, { kid: 'idp-3' }, stranger.privateKey).then((token) => callWith(app, token));
  t.equal(jwksRequests, 2, 'and not again within the cool-down');
});

t.test('a bad TRUSTED_ISSUERS stops start-up with one line', async (t) => {
  const { loadConfig } = await import('../../src/config.js');
  t.throws(() => loadConfig({ TRUSTED_ISSUERS: 'not json' }), { message: 'TRUSTED_ISSUERS: is not valid JSON' });
  t.throws(() => loadConfig({ TRUSTED_ISSUERS: '[{"issuer":"x"}]' }), { message: /^TRUSTED_ISSUERS\/0\/jwks_uri: / });
  t.throws(
    () => loadConfig({ TRUSTED_ISSUERS: '[{"issuer":"x","jwks_uri":"https://x/j","audience":"a","algorithms":["ES256"],"kind":"citizen"}]' }),
    { message: 'TRUSTED_ISSUERS/0: a citizen issuer needs person_claim' },
  );
  t.throws(() => loadConfig({ TRUSTED_ISSUERS: '[{"issuer":"x","jwks_uri":"https://x/j","audience":"a","algorithms":["HS256"],"kind":"agency","agency_claim":"o"}]' }), {
    message: /^TRUSTED_ISSUERS\/0\/algorithms\/0: must be one of/,
  });
});

forEachDriver(t, 'tokens signed with both signing algorithms verify against the published JWK Set', async (t, driver) => {
  for (const alg of ['EdDSA', 'ES256'] as const) {
    const { app, id, secret } = await setup(t, driver, { TOKEN_SIGNING_ALG: alg });
    const response = await tokenFor(app, id, secret);
    t.equal(response.statusCode, 200);
    const token = response.json().access_token as string;
    t.match(decodeProtectedHeader(token), { alg, typ: 'at+jwt', kid: /\S/ });
    const jwks = (await app.inject({ url: '/.well-known/jwks.json' })).json() as { keys: JWK[] };
    const { payload } = await jwtVerify(token, createLocalJWKSet(jwks as { keys: JWK[] }), { issuer: ISSUER, audience: 'govdata-gateway', typ: 'at+jwt', algorithms: [alg] });
    t.match(payload, { client_id: id, sub: id, agency: 'zj-edu', scope: 'catalog:read records:verify', jti: /^[0-9a-f-]{36}$/ });
    t.equal((payload.exp as number) - (payload.iat as number), 900, `${alg}: exp is iat + TOKEN_TTL_SECONDS`);
    t.equal((await callWith(app, token)).statusCode, 200, `${alg}: the gateway accepts its own token`);
  }
});
