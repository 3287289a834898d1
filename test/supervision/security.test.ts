import t from 'tap';
import { and, desc, eq, gte } from 'drizzle-orm';
import type { Driver } from '../../src/db/index.js';
import { auditEvents, endedSessions } from '../../src/db/schema.js';
import { testDrivers } from '../helpers/app.js';
import { CookieJar, csrfOf, location, peopleGateway, type PeopleGateway } from '../helpers/people.js';

t.setTimeout(600_000);

/** The newest audit records of an action since a moment. */
async function recordsOf(gateway: PeopleGateway, action: string, since: Date) {
  return gateway.app.db
    .select()
    .from(auditEvents)
    .where(and(eq(auditEvents.action, action), gte(auditEvents.occurredAt, since)))
    .orderBy(desc(auditEvents.occurredAt));
}

/** Who a browser is signed in as (the name its sign-out page shows), or null when nobody. */
async function signedInAs(gateway: PeopleGateway, jar: CookieJar): Promise<string | null> {
  const response = await gateway.visit(jar, '/logout');
  if (response.status === 303) return null;
  return /<a href="[^"]*">([^<]+)<\/a>\s*<form method="post" action="\/logout">/.exec(await response.text())?.[1] ?? 'unknown';
}

/** The code an error page shows. */
const codeOf = (html: string) => /<dd><code>([a-z_]+)<\/code><\/dd>/.exec(html)?.[1];

for (const driver of testDrivers()) {
  t.test(`security of people's sessions [${driver}]`, async (t) => {
    // The gateway's clock, movable: sessions time out by it.
    let offset = 0;
    const gateway = await peopleGateway(t, driver, { clock: () => new Date(Date.now() + offset) });

    await t.test('a form posted without its CSRF token, or with another session’s, is refused and changes nothing', async (t) => {
      const jar = await gateway.signIn('provider');
      const other = await gateway.signIn('consumer');
      const foreign = csrfOf(await (await gateway.visit(other, '/logout')).text());
      const forms: Record<string, string>[] = [{}, { _csrf: 'forged' }, { _csrf: foreign }];
      for (const form of forms) {
        const response = await gateway.visit(jar, '/logout', { form });
        t.equal(response.status, 403, `refused: ${JSON.stringify(Object.keys(form))}`);
        t.equal(codeOf(await response.text()), 'csrf_invalid', 'an error page that says why');
      }
      t.equal(await signedInAs(gateway, jar), '陈学籍（演示）', 'still signed in: the forged sign-outs did nothing');
    });

    await t.test('session fixation: the cookie from before sign-in is not the session after it', async (t) => {
      const victim = new CookieJar();
      const start = await gateway.visit(victim, '/login?issuer=officials');
      t.equal(start.status, 303);
      const planted = victim.get('gw_session') as string;
      t.ok(planted, 'a cookie before sign-in (the pending sign-in)');
      // The attacker keeps a copy of that cookie; the victim signs in in the same browser.
      const attacker = new CookieJar();
      attacker.set('gw_session', planted);
      await gateway.signIn('supervisor', victim);
      t.not(victim.get('gw_session'), planted, 'sign-in sealed a new cookie');
      t.equal(await signedInAs(gateway, victim), '周监察（演示）', 'the victim is signed in');
      t.equal(await signedInAs(gateway, attacker), null, 'the planted cookie signs nobody in');
      const attackerPage = await gateway.visit(attacker, '/supervision');
      t.equal(attackerPage.status, 303, 'and the dashboard sends it to sign in');
      t.equal(location(attackerPage, gateway.url).pathname, '/login');
      // Nor does the planted cookie finish someone else's sign-in: its pending sign-in was used.
      const replay = await gateway.visit(attacker, '/login/callback?code=x&state=y');
      t.equal(replay.status, 400);
    });

    await t.test('sign-out ends the session everywhere: a copy of its cookie signs nobody in after it', async (t) => {
      const jar = await gateway.signIn('provider');
      const copy = new CookieJar();
      copy.set('gw_session', jar.get('gw_session') as string);
      t.equal(await signedInAs(gateway, copy), '陈学籍（演示）', 'the copy works while the session lasts');
      const html = await (await gateway.visit(jar, '/logout')).text();
      t.equal((await gateway.visit(jar, '/logout', { form: { _csrf: csrfOf(html) } })).status, 303);
      t.equal(await signedInAs(gateway, jar), null, 'signed out in this browser');
      t.equal(await signedInAs(gateway, copy), null, 'and the copy of the cookie is refused');
      const [ended] = await gateway.app.db.select().from(endedSessions).orderBy(desc(endedSessions.endedAt)).limit(1);
      t.ok(ended && ended.expiresAt.getTime() > Date.now() + 7 * 3_600_000, 'its id is refused until the session’s absolute timeout');
    });

    await t.test('a session works on every instance, and a sign-out on one ends it on all', async (t) => {
      const other = await peopleGateway(t, driver);
      const jar = await gateway.signIn('consumer');
      const copy = new CookieJar();
      copy.set('gw_session', jar.get('gw_session') as string);
      t.equal(await signedInAs(other, jar), '王人社（演示）', 'signed in on one instance, known on another (the cookie is sealed under a key every instance derives)');
      const html = await (await other.visit(jar, '/logout')).text();
      t.equal((await other.visit(jar, '/logout', { form: { _csrf: csrfOf(html) } })).status, 303, 'signed out on the other');
      t.equal(await signedInAs(gateway, copy), null, 'and the first refuses the session');
    });

    await t.test('cookie flags: HttpOnly, SameSite=Lax, Path=/; Secure over HTTPS', async (t) => {
      const jar = await gateway.signIn('consumer');
      const cookie = jar.setCookies.filter((line) => line.startsWith('gw_session=')).at(-1) as string;
      t.match(cookie, /;\s*HttpOnly/i);
      t.match(cookie, /;\s*SameSite=Lax/i);
      t.match(cookie, /;\s*Path=\//i);
      t.notMatch(cookie, /;\s*Secure/i, 'plain HTTP on loopback: not Secure, or the browser would drop it');
    });

    await t.test('a returnTo that leaves the gateway is refused; one within it is where sign-in lands', async (t) => {
      for (const returnTo of ['https://evil.example/', '//evil.example/x', '/\\evil.example', 'javascript:alert(1)', 'http:evil.example', '/login?returnTo=//evil.example', '/\r\nLocation: https://evil.example/']) {
        const response = await gateway.visit(new CookieJar(), `/login?issuer=officials&returnTo=${encodeURIComponent(returnTo)}`);
        const html = await response.text();
        t.equal(response.status, 400, `refused: ${returnTo}`);
        t.equal(codeOf(html), 'return_to_refused');
        t.equal(response.headers.get('location'), null, 'no redirect anywhere');
      }
      const jar = await gateway.signIn('supervisor', new CookieJar(), '/supervision/events?outcome=denied');
      t.equal(jar.landedAt, '/supervision/events?outcome=denied');
    });

    await t.test('a callback that this browser did not start is refused', async (t) => {
      const response = await gateway.visit(new CookieJar(), '/login/callback?code=abc&state=def&iss=x');
      t.equal(response.status, 400);
      t.equal(codeOf(await response.text()), 'sign_in_expired');
      const [record] = await recordsOf(gateway, 'session.signin', new Date(Date.now() - 60_000));
      t.equal(record?.outcome, 'denied', 'the refused sign-in is on the trail');
      t.equal(record?.reason, 'sign_in_expired');
    });

    await t.test('sign-in and sign-out are audited, a citizen by keyed hash only', async (t) => {
      const since = new Date(); // the trail’s times are the gateway’s clock, this process’s
      const official = await gateway.signIn('provider');
      const citizen = await gateway.signIn('citizen');
      const signins = await recordsOf(gateway, 'session.signin', since);
      const allowed = signins.filter((row) => row.outcome === 'allowed');
      t.ok(allowed.some((row) => row.agency === 'zj-edu' && row.reason === 'officials'), 'the official’s sign-in, with their agency and issuer');
      const citizenRow = allowed.find((row) => row.reason === 'citizens');
      t.ok(citizenRow, 'the citizen’s sign-in');
      const id = gateway.person('citizen').claims.id_number as string;
      t.ok(citizenRow?.clientId?.includes(gateway.app.subjectRef(id)), 'the citizen as the keyed hash');
      t.notOk(JSON.stringify(signins).includes(id), 'the citizen’s id is nowhere in clear');
      for (const jar of [official, citizen]) {
        const html = await (await gateway.visit(jar, '/logout')).text();
        t.equal((await gateway.visit(jar, '/logout', { form: { _csrf: csrfOf(html) } })).status, 303);
        t.equal((await gateway.visit(jar, '/supervision')).status, 303, 'signed out');
      }
      const signouts = await recordsOf(gateway, 'session.signout', since);
      t.equal(signouts.filter((row) => row.outcome === 'allowed').length, 2, 'both sign-outs');
      t.ok(signouts.some((row) => row.agency === 'zj-edu'));
    });

    await t.test('a session ends after the idle timeout and after the absolute one, on the trail', async (t) => {
      const since = new Date(Date.now() - 1000);
      const jar = await gateway.signIn('supervisor');
      t.equal(await signedInAs(gateway, jar), '周监察（演示）');
      offset = 31 * 60_000; // SESSION_IDLE_MINUTES defaults to 30
      try {
        const idle = await gateway.visit(jar, '/supervision');
        t.equal(idle.status, 303, 'idle: sent to sign in again');
        t.equal(location(idle, gateway.url).pathname, '/login');
        const [ended] = await recordsOf(gateway, 'session.end', since);
        t.equal(ended?.reason, 'idle_timeout');
        t.equal(ended?.agency, 'zj-dsj');
      } finally {
        offset = 0;
      }
      // Active all along, but past SESSION_MAX_HOURS (default 8): ended all the same.
      const busy = await gateway.signIn('supervisor');
      try {
        // A page every 25 minutes (within the idle timeout) for 7 hours 55 minutes.
        for (let minutes = 25; minutes < 8 * 60; minutes += 25) {
          offset = minutes * 60_000;
          t.equal(await signedInAs(gateway, busy), '周监察（演示）', `still signed in after ${minutes} minutes of use`);
        }
        offset = 8 * 3_600_000 + 60_000;
        t.equal((await gateway.visit(busy, '/supervision')).status, 303, 'past the absolute timeout');
        const [ended] = await recordsOf(gateway, 'session.end', since);
        t.equal(ended?.reason, 'session_timeout');
      } finally {
        offset = 0;
      }
    });

    await t.test('a person’s cookie opens no API route; a citizen’s session opens no official page', async (t) => {
      const citizen = await gateway.signIn('citizen');
      const official = await gateway.signIn('supervisor');
      const log = await gateway.visit(citizen, '/v1/me/access-log', { headers: { accept: 'application/json' } });
      t.equal(log.status, 401, 'the API reads bearer tokens only');
      const events = await gateway.visit(official, '/v1/audit/events', { headers: { accept: 'application/json' } });
      t.equal(events.status, 401);
      for (const path of ['/supervision', '/supervision/events', '/supervision/applications', '/supervision/grants']) {
        const response = await gateway.visit(citizen, path);
        t.equal(response.status, 403, `citizen on ${path}`);
        t.equal(codeOf(await response.text()), 'officials_only');
      }
      const me = await gateway.visit(official, '/me');
      t.equal(me.status, 403, 'an official on /me');
      t.equal(codeOf(await me.text()), 'citizens_only');
    });
  });
}

t.test('behind a proxy that says HTTPS, the session cookie is Secure', async (t) => {
  const [driver] = testDrivers();
  const gateway = await peopleGateway(t, driver as Driver, { env: { TRUST_PROXY: '127.0.0.1' } });
  const jar = new CookieJar();
  const response = await gateway.visit(jar, '/login?issuer=officials', { headers: { 'x-forwarded-proto': 'https' } });
  t.equal(response.status, 303);
  const cookie = jar.setCookies.find((line) => line.startsWith('gw_session=')) as string;
  t.match(cookie, /;\s*Secure/i);
  t.match(cookie, /;\s*HttpOnly/i);
  const plain = new CookieJar();
  await gateway.visit(plain, '/login?issuer=officials');
  t.notMatch(plain.setCookies.find((line) => line.startsWith('gw_session=')) as string, /;\s*Secure/i, 'not over plain HTTP');
});
