import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import type { App } from '../../src/app.js';
import type { Driver } from '../../src/db/index.js';
import { seedDemoClients, type DemoCredentials } from '../../src/demo/clients.js';
import { ensureDemoPeople, type DemoPerson } from '../../src/demo/people.js';
import { seedDemo } from '../../src/demo/seed.js';
import { sharingSettings } from '../../src/sharing/index.js';
import { buildTestApp, testConfig, type TestAppOptions } from './app.js';
import { accessToken, VERIFY } from './demo-gateways.js';
import { freePort } from './server.js';

/** A browser's cookies, enough of one for a sign-in: by name, sent on the paths they were set for. */
export class CookieJar {
  private readonly cookies = new Map<string, { value: string; path: string }>();
  /** Where the last sign-in in this browser sent it (path and query). */
  landedAt = '';
  /** Every Set-Cookie line seen, as sent (for the cookie flags). */
  readonly setCookies: string[] = [];

  take(response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      this.setCookies.push(line);
      const [pair = '', ...attributes] = line.split(';').map((part) => part.trim());
      const at = pair.indexOf('=');
      const name = pair.slice(0, at);
      const value = pair.slice(at + 1);
      const path = attributes.find((a) => a.toLowerCase().startsWith('path='))?.slice(5) ?? '/';
      const expired = attributes.some((a) => /^expires=.*1970/i.test(a) || /^max-age=0$/i.test(a));
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, { value, path });
    }
  }

  header(url: URL): string {
    return [...this.cookies]
      .filter(([, cookie]) => url.pathname === cookie.path || url.pathname.startsWith(cookie.path.endsWith('/') ? cookie.path : `${cookie.path}/`))
      .map(([name, cookie]) => `${name}=${cookie.value}`)
      .join('; ');
  }

  get(name: string): string | undefined {
    return this.cookies.get(name)?.value;
  }

  set(name: string, value: string, path = '/'): void {
    this.cookies.set(name, { value, path });
  }

  names(): string[] {
    return [...this.cookies.keys()];
  }
}

export interface VisitOptions {
  method?: string;
  form?: Record<string, string | string[]>;
  headers?: Record<string, string>;
}

/** One request as a browser sends it (loopback only), redirects not followed. */
export async function visit(jar: CookieJar, url: string | URL, init: VisitOptions = {}): Promise<Response> {
  const target = new URL(url);
  if (target.hostname !== '127.0.0.1') throw new Error(`the test only talks to loopback, not ${target.host}`);
  const headers: Record<string, string> = { accept: 'text/html', ...init.headers };
  const cookie = jar.header(target);
  if (cookie) headers.cookie = cookie;
  let body: string | undefined;
  if (init.form) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    const form = new URLSearchParams();
    for (const [key, value] of Object.entries(init.form)) for (const one of Array.isArray(value) ? value : [value]) form.append(key, one);
    body = form.toString();
  }
  const response = await fetch(target, { method: init.method ?? (init.form ? 'POST' : 'GET'), headers, redirect: 'manual', ...(body ? { body } : {}) });
  jar.take(response);
  return response;
}

/** Where a redirect leads, as an absolute URL. */
export const location = (response: Response, base: string) => new URL(response.headers.get('location') as string, base);

/** The CSRF token of the first form of a page that has one. */
export function csrfOf(html: string): string {
  const token = /name="_csrf" value="([^"]+)"/.exec(html)?.[1];
  if (!token) throw new Error('no CSRF token on the page');
  return token;
}

export interface PeopleGateway {
  url: string;
  app: App;
  people: DemoPerson[];
  person(role: DemoPerson['role']): DemoPerson;
  /** A browser signed in as the demo person of `role` (through the real sign-in: the gateway, the demo provider, back). */
  signIn(role: DemoPerson['role'], jar?: CookieJar, returnTo?: string): Promise<CookieJar>;
  /** GET a page (or POST a form) in `jar`'s browser. */
  visit(jar: CookieJar, path: string, init?: VisitOptions): Promise<Response>;
}

/**
 * Sign in at the gateway at `base` as a demo person, as a browser does: the gateway's /login, the
 * demo provider's form and password, its resume, the gateway's callback. The jar then holds the
 * session; `landedAt` is where the gateway sent the browser.
 */
export async function signInAt(base: string, who: DemoPerson, jar = new CookieJar(), returnTo?: string): Promise<CookieJar> {
  const go = (path: string | URL, init?: VisitOptions) => visit(jar, new URL(path, base), init);
  const expect = async (response: Response, status: number, step: string) => {
    if (response.status !== status) throw new Error(`sign-in as ${who.role}: ${step} answered ${response.status}, not ${status}: ${(await response.text()).slice(0, 2000)}`);
    return response;
  };
  const start = await expect(await go(`/login?issuer=${who.role === 'citizen' ? 'citizens' : 'officials'}${returnTo ? `&returnTo=${encodeURIComponent(returnTo)}` : ''}`), 303, 'the gateway’s /login');
  const authorize = await expect(await go(location(start, base)), 303, 'the authorization request');
  const login = location(authorize, base);
  await expect(await go(login), 200, 'the sign-in form');
  const posted = await expect(await go(`${login.href}/login`, { form: { username: who.username, password: who.password } }), 303, 'the password');
  const resume = await expect(await go(location(posted, base)), 303, 'the provider’s resume');
  const landed = await expect(await go(location(resume, base)), 303, 'the callback');
  jar.landedAt = location(landed, base).pathname + location(landed, base).search;
  return jar;
}

/**
 * The gateway listening on loopback with the demo identity provider and its people mounted, and
 * the demo supervisor agency (zj-dsj) a supervisor, as the embedded demo has them, on either driver.
 */
export async function peopleGateway(t: Test, driver: Driver, options: TestAppOptions = {}): Promise<PeopleGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'people-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const people = await ensureDemoPeople(join(dir, 'demo-credentials.json'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const app = await buildTestApp(t, driver, { ...options, env: { PUBLIC_URL: url, HOST: '127.0.0.1', PORT: String(port), SUPERVISOR_AGENCIES: 'zj-dsj', ...options.env }, demoPeople: people });
  await app.listen({ host: '127.0.0.1', port });
  const person = (role: DemoPerson['role']) => people.find((p) => p.role === role) as DemoPerson;
  const go = (jar: CookieJar, path: string, init?: VisitOptions) => visit(jar, new URL(path, url), init);

  const signIn = (role: DemoPerson['role'], jar = new CookieJar(), returnTo?: string) => signInAt(url, person(role), jar, returnTo);

  return { url, app, people, person, signIn, visit: go };
}

/**
 * The demo's exchange records and clients, as the embedded demo's first start loads them (its
 * grants approved, two applications waiting, the first overdue): for pages about exchanges.
 */
export async function seedDemoExchange(gateway: PeopleGateway): Promise<DemoCredentials> {
  const { app } = gateway;
  await seedDemo(app.database, 'small', undefined, { missingOnly: true });
  const credentials = await seedDemoClients(app.database, {
    record: (input) => app.audit.record(input),
    settings: sharingSettings(testConfig()),
    secrets: app.clientSecrets,
    now: app.clock(),
  });
  await app.grants.reload();
  return credentials;
}

/** The demo consumer verifies the demo citizen's student status, for `purpose` (sent in the RFC 8187 form, UTF-8 percent-encoded). */
export async function demoVerify(gateway: PeopleGateway, credentials: DemoCredentials, purpose: string): Promise<Response> {
  const token = await accessToken(gateway, credentials.consumer);
  return fetch(`${gateway.url}/v1/resources/330000-EDU-00001/verify`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-purpose': `UTF-8''${encodeURIComponent(purpose)}` },
    body: JSON.stringify(VERIFY),
  });
}
