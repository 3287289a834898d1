import t from 'tap';
import { testDrivers } from '../helpers/app.js';
import { CookieJar, csrfOf, location, peopleGateway } from '../helpers/people.js';

t.setTimeout(300_000);

for (const driver of testDrivers()) {
  t.test(`sign-in for people [${driver}]`, async (t) => {
    const gateway = await peopleGateway(t, driver);

    await t.test('the chooser lists both issuers', async (t) => {
      const response = await gateway.visit(new CookieJar(), '/login');
      t.equal(response.status, 200);
      const html = await response.text();
      t.match(html, /政务人员（演示）/);
      t.match(html, /市民（演示）/);
      t.equal(response.headers.get('cache-control'), 'no-store');
    });

    await t.test('an official signs in and lands on the dashboard; signs out at the provider too', async (t) => {
      const jar = await gateway.signIn('provider');
      t.ok(jar.get('gw_session'), 'a session cookie');
      const cookie = jar.setCookies.filter((line) => line.startsWith('gw_session=')).at(-1) as string;
      t.match(cookie, /HttpOnly/i);
      t.match(cookie, /SameSite=Lax/i);
      const logout = await gateway.visit(jar, '/logout');
      t.equal(logout.status, 200);
      const html = await logout.text();
      t.match(html, /陈学籍（演示）/);
      const out = await gateway.visit(jar, '/logout', { form: { _csrf: csrfOf(html) } });
      t.equal(out.status, 303);
      t.match(location(out, gateway.url).pathname, /^\/demo-idp\/session\/end/, 'RP-initiated logout');
    });
  });
}
