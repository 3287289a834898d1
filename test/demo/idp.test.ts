import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import * as client from 'openid-client';
import type { SignInIssuer } from '../../src/config.js';
import { openDatabase } from '../../src/db/index.js';
import { writeDemoCredentials, type DemoCredentials } from '../../src/demo/clients.js';
import demoIdp, { DEMO_IDP_PATH, DEMO_PEOPLE, demoSignIn, ensureDemoPeople, type DemoPerson } from '../../src/demo/idp.js';
import { buildTestApp, freshDatabaseUrl, testDrivers } from '../helpers/app.js';
import { CookieJar, location, visit } from '../helpers/people.js';
import { freePort } from '../helpers/server.js';

// Demo data on a PGlite directory loads for a while before the gateway is ready.
t.setTimeout(300_000);

interface Gateway {
  url: string;
  people: DemoPerson[];
  setup: ReturnType<typeof demoSignIn>;
}

/**
 * The gateway with the demo provider mounted as the embedded demo mounts it, listening on
 * loopback; the test holds the clients' secrets (the gateway's sign-in would).
 */
async function demoGateway(t: Test): Promise<Gateway> {
  const dir = mkdtempSync(join(tmpdir(), 'demo-idp-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const people = await ensureDemoPeople(join(dir, 'demo-credentials.json'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const setup = demoSignIn(url);
  const app = await buildTestApp(t, 'pglite', {
    env: { PUBLIC_URL: url, HOST: '127.0.0.1', PORT: String(port) },
    extend: async (app) => {
      await app.register(demoIdp, { issuer: setup.issuer, people, clients: setup.clients });
    },
  });
  await app.listen({ host: '127.0.0.1', port });
  return { url, people, setup };
}

async function rpConfig(gateway: Gateway, name: 'officials' | 'citizens'): Promise<client.Configuration> {
  const entry = gateway.setup.issuers.find((issuer) => issuer.name === name) as SignInIssuer;
  return client.discovery(new URL(entry.issuer), entry.client_id, undefined, client.ClientSecretBasic(entry.client_secret), {
    execute: [client.allowInsecureRequests],
  });
}

interface Started {
  jar: CookieJar;
  verifier: string;
  state: string;
  nonce: string;
  login: URL;
}

/** An authorization request with PKCE (S256), state and nonce, up to the sign-in form. */
async function startSignIn(t: Test, gateway: Gateway, config: client.Configuration, scope: string, jar = new CookieJar()): Promise<Started> {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authorize = client.buildAuthorizationUrl(config, {
    redirect_uri: `${gateway.url}/login/callback`,
    scope,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  const started = await visit(jar, authorize);
  t.equal(started.status, 303, 'the authorization request goes to the sign-in');
  const login = location(started, gateway.url);
  t.match(login.pathname, new RegExp(`^${DEMO_IDP_PATH}/interaction/[\\w-]+$`));
  return { jar, verifier, state, nonce, login };
}

/** Sign in on the form and follow the provider to the callback; the callback URL the browser lands on. */
async function signIn(t: Test, gateway: Gateway, started: Started, person: DemoPerson): Promise<URL> {
  const form = await visit(started.jar, started.login);
  t.equal(form.status, 200, 'the sign-in form');
  const posted = await visit(started.jar, `${started.login.href}/login`, { form: { username: person.username, password: person.password } });
  t.equal(posted.status, 303, 'right password: redirected');
  const resume = await visit(started.jar, location(posted, gateway.url));
  t.equal(resume.status, 303, 'the provider resumes the authorization');
  const callback = location(resume, gateway.url);
  t.equal(`${callback.origin}${callback.pathname}`, `${gateway.url}/login/callback`, 'back at the registered redirect URI');
  return callback;
}

t.test('the demo OpenID provider: authorization code with PKCE, the people, RP-initiated logout', async (t) => {
  const gateway = await demoGateway(t);
  const officials = await rpConfig(gateway, 'officials');
  const citizens = await rpConfig(gateway, 'citizens');

  await t.test('discovery through the gateway', async (t) => {
    const response = await fetch(`${gateway.url}${DEMO_IDP_PATH}/.well-known/openid-configuration`);
    t.equal(response.status, 200);
    t.ok(response.headers.get('x-request-id'), 'the gateway’s request id');
    t.match(response.headers.get('content-security-policy'), /form-action 'self'/, 'the gateway’s CSP, forms to this origin allowed');
    const metadata = (await response.json()) as Record<string, unknown>;
    t.equal(metadata.issuer, `${gateway.url}${DEMO_IDP_PATH}`);
    t.same(metadata.code_challenge_methods_supported, ['S256']);
    t.same(metadata.response_types_supported, ['code']);
    t.equal(metadata.end_session_endpoint, `${gateway.url}${DEMO_IDP_PATH}/session/end`);
    t.match(metadata.scopes_supported, ['openid', 'profile', 'agency', 'citizen']);
    const jwks = await fetch(metadata.jwks_uri as string);
    t.equal(jwks.status, 200);
    t.notMatch(await jwks.text(), /"d":/, 'the JWKS holds public keys only');
  });

  await t.test('an official signs in: agency and roles in the ID token', async (t) => {
    const provider = gateway.people.find((p) => p.role === 'provider') as DemoPerson;
    const started = await startSignIn(t, gateway, officials, 'openid profile agency');
    const callback = await signIn(t, gateway, started, provider);
    const tokens = await client.authorizationCodeGrant(officials, callback, {
      pkceCodeVerifier: started.verifier,
      expectedState: started.state,
      expectedNonce: started.nonce,
      idTokenExpected: true,
    });
    t.match(tokens.claims(), { iss: `${gateway.url}${DEMO_IDP_PATH}`, sub: 'demo-provider', name: '陈学籍（演示）', agency: 'zj-edu', roles: ['catalog:read', 'grants:manage', 'audit:read'] });
    t.notOk('id_number' in (tokens.claims() ?? {}), 'no citizen claim for an official');

    // RP-initiated logout: confirmed on the provider's page, then back at post_logout_redirect_uri.
    const end = client.buildEndSessionUrl(officials, { id_token_hint: tokens.id_token as string, post_logout_redirect_uri: `${gateway.url}/` });
    const confirm = await visit(started.jar, end);
    t.equal(confirm.status, 200, 'the logout confirmation');
    const html = await confirm.text();
    t.match(html, /<html lang="zh-Hans">/);
    t.match(html, /退出登录/);
    const action = /<form id="op\.logoutForm" method="post" action="([^"]+)"/.exec(html)?.[1] as string;
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(html)?.[1] as string;
    t.equal(action, `${gateway.url}${DEMO_IDP_PATH}/session/end/confirm`, 'the form posts to this origin');
    const out = await visit(started.jar, action, { form: { xsrf, logout: 'yes' } });
    t.equal(out.status, 303);
    t.equal(out.headers.get('location'), `${gateway.url}/`, 'ends at the post_logout_redirect_uri');
    t.notOk(started.jar.names().includes('demo_idp_session'), 'the provider’s session cookie is gone');

    // Signed out: the next authorization asks for the password again.
    const again = await startSignIn(t, gateway, officials, 'openid profile agency', started.jar);
    t.equal((await visit(again.jar, again.login)).status, 200, 'the sign-in form again');
  });

  await t.test('the citizen signs in: their id number in the ID token', async (t) => {
    const citizen = gateway.people.find((p) => p.role === 'citizen') as DemoPerson;
    const started = await startSignIn(t, gateway, citizens, 'openid profile citizen');
    const callback = await signIn(t, gateway, started, citizen);
    const tokens = await client.authorizationCodeGrant(citizens, callback, {
      pkceCodeVerifier: started.verifier,
      expectedState: started.state,
      expectedNonce: started.nonce,
      idTokenExpected: true,
    });
    t.match(tokens.claims(), { sub: 'demo-citizen', name: '孙思远', id_number: '331022201110043439' });
    t.notOk('agency' in (tokens.claims() ?? {}), 'no agency claim for a citizen');
  });

  await t.test('the sign-in form, and a wrong password', async (t) => {
    const started = await startSignIn(t, gateway, officials, 'openid profile agency');
    const form = await visit(started.jar, started.login);
    t.equal(form.headers.get('cache-control'), 'no-store');
    t.match(form.headers.get('content-type'), /^text\/html; charset=utf-8/);
    const html = await form.text();
    t.match(html, /<html lang="zh-Hans">/);
    t.match(html, /<h1>登录 <span lang="en">\(Sign in\)<\/span><\/h1>/);
    t.match(html, /<label for="username">用户名/);
    t.match(html, /<label for="password">密码/);
    t.match(html, /data\/demo-credentials\.json/, 'says where the passwords are');
    t.match(html, /登录后回到：公共数据网关（政务人员）/, 'names the client');
    for (const person of gateway.people) t.notMatch(html, person.password, `${person.role}'s password is not on the page`);

    const wrong = await visit(started.jar, `${started.login.href}/login`, { form: { username: 'consumer', password: 'not-the-password' } });
    t.equal(wrong.status, 401);
    t.equal(wrong.headers.get('location'), null, 'no redirect');
    const again = await wrong.text();
    t.match(again, /role="alert"[^>]*>用户名或密码不正确/);
    t.match(again, /<input id="username" name="username"[^>]*value="consumer"/, 'the username kept');
    t.match(again, /<form method="post"/);

    const hostile = await visit(started.jar, `${started.login.href}/login`, { form: { username: '"><script>alert(1)</script>', password: 'x' } });
    t.equal(hostile.status, 401);
    t.notMatch(await hostile.text(), '<script>alert(1)</script>', 'what was typed is escaped');

    const stranger = await visit(new CookieJar(), started.login);
    t.equal(stranger.status, 400, 'another browser (no interaction cookie) gets no form');
  });

  await t.test('PKCE is required', async (t) => {
    const jar = new CookieJar();
    const authorize = client.buildAuthorizationUrl(officials, {
      redirect_uri: `${gateway.url}/login/callback`,
      scope: 'openid profile agency',
      state: client.randomState(),
      nonce: client.randomNonce(),
    });
    const refused = await visit(jar, authorize);
    t.equal(refused.status, 303);
    const back = location(refused, gateway.url);
    t.equal(back.searchParams.get('error'), 'invalid_request', 'the RP is told');
    t.match(back.searchParams.get('error_description'), /PKCE/);
    t.equal(back.searchParams.get('code'), null, 'no code');
  });

  await t.test('an error with no redirect URI to trust is a page of the provider', async (t) => {
    const unknown = await visit(new CookieJar(), `${gateway.url}${DEMO_IDP_PATH}/auth?client_id=%3Cb%3Enobody&response_type=code&scope=openid&redirect_uri=${encodeURIComponent(`${gateway.url}/login/callback`)}`);
    t.equal(unknown.status, 400);
    t.match(unknown.headers.get('content-type'), /^text\/html/);
    t.ok(unknown.headers.get('content-security-policy'), 'with the gateway’s CSP');
    const html = await unknown.text();
    t.match(html, /<html lang="zh-Hans">/);
    t.match(html, /登录出错/);
    t.match(html, /invalid_client/);
    t.notMatch(html, '<b>nobody', 'escaped');
  });
});

t.test('ensureDemoPeople: the passwords in the credentials file, its other keys kept', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'demo-credentials.json');
  writeFileSync(file, JSON.stringify({ note: 'clients', consumer: { client_id: 'cl_1', client_secret: 'gws_1' } }), { mode: 0o644 });
  const people = await ensureDemoPeople(file);
  t.same(
    people.map((p) => [p.role, p.username, p.sub]),
    DEMO_PEOPLE.map((p) => [p.role, p.username, p.sub]),
  );
  t.same(people.find((p) => p.role === 'citizen')?.claims, { id_number: '331022201110043439' });
  t.same(people.find((p) => p.role === 'supervisor')?.claims, { agency: 'zj-dsj', roles: ['catalog:read', 'audit:read'] });
  for (const person of people) t.match(person.password, /^[A-Za-z0-9_-]{16}$/, `${person.role}: 12 random bytes`);
  t.equal(new Set(people.map((p) => p.password)).size, 4, 'each their own');
  t.equal(statSync(file).mode & 0o777, 0o600, 'mode 0600');
  const stored = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  t.match(stored, { note: 'clients', consumer: { client_id: 'cl_1', client_secret: 'gws_1' } }, 'the other keys kept');
  t.same(stored.people, people);

  t.same(await ensureDemoPeople(file), people, 'the second call: the same passwords');

  // The clients written again (the demo's next start) keep the people.
  await writeDemoCredentials(file, { note: 'again', consumer: { client_id: 'cl_2' } } as unknown as DemoCredentials);
  const rewritten = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  t.match(rewritten, { note: 'again', consumer: { client_id: 'cl_2' } });
  t.same(rewritten.people, people, 'the people kept');
  t.equal(statSync(file).mode & 0o777, 0o600);
  t.same(await ensureDemoPeople(file), people);

  const fresh = await ensureDemoPeople(join(dir, 'sub', 'new.json'));
  t.not(fresh[0]?.password, people[0]?.password, 'a new file, new passwords');
});

const discovery = `${DEMO_IDP_PATH}/.well-known/openid-configuration`;

t.test('off everywhere but the embedded demo on a PGlite directory', async (t) => {
  await t.test('DEMO_DATA=off on a PGlite directory', async (t) => {
    const database = await openDatabase(join(t.testdir(), 'pglite'));
    t.teardown(() => database.close());
    const app = await buildTestApp(t, 'pglite', { database, env: { DEMO_DATA: 'off' } });
    for (const url of [discovery, `${DEMO_IDP_PATH}/auth`, `${DEMO_IDP_PATH}/interaction/x`]) t.equal((await app.inject({ url })).statusCode, 404, url);
  });

  if (testDrivers().includes('postgres')) {
    await t.test('DEMO_DATA=auto on PostgreSQL', async (t) => {
      const database = await openDatabase(await freshDatabaseUrl('postgres'));
      t.teardown(() => database.close());
      await database.migrate();
      const app = await buildTestApp(t, 'postgres', { database, env: { DEMO_DATA: 'auto', PUBLIC_URL: 'http://127.0.0.1:3000' } });
      t.equal((await app.inject({ url: discovery })).statusCode, 404);
    });
  }

  // On the embedded demo (DEMO_DATA=auto on a PGlite directory) it is mounted, with the people in
  // data/demo-credentials.json: test/readme.test.ts signs in as each of them on `npm start`.
});
