import { randomInt } from 'node:crypto';
import t, { type Test } from 'tap';
import { eq } from 'drizzle-orm';
import { Redis } from 'ioredis';
import type { App } from '../../src/app.js';
import { auditEvents } from '../../src/db/schema.js';
import { buildTestApp, forEachDriver, LogCapture } from '../helpers/app.js';
import { party } from '../helpers/parties.js';
import { assertProblem } from '../helpers/problem.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const NAMESPACE = 'govdata-gateway:open-rate:';
const LIST = '/v1/open/datasets';
const RECORDS = '/v1/open/datasets/330000-STATS-00001/records?limit=1';

/** An address of this run alone (10.x.y.z), so that counts kept in a shared Redis never collide. */
function uniqueAddress(...not: string[]): string {
  for (;;) {
    const address = `10.${randomInt(1, 255)}.${randomInt(0, 256)}.${randomInt(1, 255)}`;
    if (!not.includes(address)) return address;
  }
}

function get(app: App, url: string, remoteAddress: string, headers: Record<string, string> = {}) {
  return app.inject({ method: 'GET', url, remoteAddress, headers });
}

type Response = Awaited<ReturnType<typeof get>>;

/** The draft-spec headers of an allowed answer: the limit, what is left, and when the window ends. */
function assertAllowed(t: Test, response: Response, limit: number, remaining: number, message = 'allowed') {
  t.equal(response.statusCode, 200, `${message}: ${response.statusCode === 200 ? 200 : response.body}`);
  t.equal(response.headers['ratelimit-limit'], String(limit));
  t.equal(response.headers['ratelimit-remaining'], String(remaining), `${remaining} left`);
  const reset = Number(response.headers['ratelimit-reset']);
  t.ok(reset > 0 && reset <= 60, `RateLimit-Reset is within the minute (${reset})`);
  t.notOk(response.headers['retry-after']);
}

/** 429 problem+json rate_limited, naming the limit and whose it is, with Retry-After. */
function assertLimited(t: Test, response: Response, limit: number, who: 'this address' | 'this client') {
  const body = assertProblem(t, response, 429, 'rate_limited');
  t.match(body.detail, new RegExp(`^Rate limit exceeded: ${limit} requests a minute for ${who}; retry in .+\\.$`));
  const retry = Number(response.headers['retry-after']);
  t.ok(Number.isInteger(retry) && retry > 0 && retry <= 60, `Retry-After in seconds (${retry})`);
  t.equal(response.headers['ratelimit-limit'], String(limit));
  t.equal(response.headers['ratelimit-remaining'], '0');
  t.equal(response.headers['ratelimit-reset'], response.headers['retry-after']);
  return body;
}

forEachDriver(t, 'anonymous callers: RATE_LIMIT_ANONYMOUS_PER_MINUTE per address', async (t, driver) => {
  const app = await buildTestApp(t, driver, { env: { RATE_LIMIT_ANONYMOUS_PER_MINUTE: '3' } });
  const address = uniqueAddress();
  for (const remaining of [2, 1, 0]) assertAllowed(t, await get(app, LIST, address), 3, remaining);

  const refused = await get(app, LIST, address, { origin: 'https://example.org' });
  assertLimited(t, refused, 3, 'this address');
  t.equal(refused.headers['access-control-allow-origin'], '*', 'a browser page can read the 429');
  t.match(refused.headers['access-control-expose-headers'], /Retry-After/);
  t.notOk(refused.headers['x-audit-id'], 'the dataset list is not an audited route, so its 429 is not recorded either');
  assertLimited(t, await get(app, '/v1/open/datasets/330000-STATS-00001', address), 3, 'this address');

  assertAllowed(t, await get(app, LIST, uniqueAddress(address)), 3, 2, 'another address is still allowed');
});

forEachDriver(t, 'a client with a token: RATE_LIMIT_CLIENT_PER_MINUTE, counted per client and not per address', async (t, driver) => {
  const app = await buildTestApp(t, driver, { env: { RATE_LIMIT_ANONYMOUS_PER_MINUTE: '2', RATE_LIMIT_CLIENT_PER_MINUTE: '4' } });
  const first = await party(app, 'zj-edu', ['catalog:read']);
  const second = await party(app, 'zj-edu', ['catalog:read']);
  const here = uniqueAddress();
  const there = uniqueAddress(here);

  // The client's four, from two addresses: one count.
  assertAllowed(t, await get(app, LIST, here, first.headers), 4, 3);
  assertAllowed(t, await get(app, LIST, here, first.headers), 4, 2);
  assertAllowed(t, await get(app, LIST, there, first.headers), 4, 1);
  assertAllowed(t, await get(app, LIST, there, first.headers), 4, 0);
  assertLimited(t, await get(app, LIST, here, first.headers), 4, 'this client');
  assertLimited(t, await get(app, LIST, uniqueAddress(), first.headers), 4, 'this client');

  // Another client of the same agency on the same address has a count of its own…
  for (const remaining of [3, 2, 1, 0]) assertAllowed(t, await get(app, LIST, here, second.headers), 4, remaining);
  assertLimited(t, await get(app, LIST, here, second.headers), 4, 'this client');
  // …and so has the address itself, without a token, with the anonymous limit.
  assertAllowed(t, await get(app, LIST, here), 2, 1);
  assertAllowed(t, await get(app, LIST, here), 2, 0);
  assertLimited(t, await get(app, LIST, here), 2, 'this address');
});

forEachDriver(t, 'a 429 on an audited open route is on the audit trail; other routes are not limited', async (t, driver) => {
  const app = await buildTestApp(t, driver, { env: { RATE_LIMIT_ANONYMOUS_PER_MINUTE: '1', RATE_LIMIT_CLIENT_PER_MINUTE: '1' } });
  const client = await party(app, 'zj-edu', ['catalog:read']);
  const address = uniqueAddress();

  const allowed = await get(app, RECORDS, address, client.headers);
  t.equal(allowed.statusCode, 200, allowed.body);
  const refused = await get(app, RECORDS, address, client.headers);
  assertLimited(t, refused, 1, 'this client');
  const id = refused.headers['x-audit-id'];
  t.type(id, 'string', 'the 429 carries its audit id');
  const [row] = await app.db.select().from(auditEvents).where(eq(auditEvents.id, id as string));
  t.match(row, {
    action: 'open.records',
    outcome: 'denied',
    status: 429,
    reason: 'rate_limited',
    clientId: client.clientId,
    agency: 'zj-edu',
    clientAddress: address,
    rowCount: null,
  });

  // Anonymous: the refusal of an audited route is recorded too, without a client.
  t.equal((await get(app, RECORDS, address)).statusCode, 200);
  const anonymous = await get(app, RECORDS, address);
  assertLimited(t, anonymous, 1, 'this address');
  const [anonymousRow] = await app.db.select().from(auditEvents).where(eq(auditEvents.id, anonymous.headers['x-audit-id'] as string));
  t.match(anonymousRow, { action: 'open.records', outcome: 'denied', status: 429, reason: 'rate_limited', clientId: null, clientAddress: address });

  // The same address and client, well past both limits, elsewhere in the gateway.
  for (let i = 0; i < 3; i += 1) {
    for (const headers of [{}, client.headers]) {
      const search = await get(app, '/v1/catalog/resources', address, headers);
      t.equal(search.statusCode, 200, '/v1/catalog is not limited by the open-data settings');
      t.notOk(search.headers['ratelimit-limit']);
    }
  }
});

t.test('with REDIS_URL, instances share one count per address [pglite]', async (t) => {
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  const address = uniqueAddress();
  const key = `${NAMESPACE}ip:${address}`;
  t.teardown(async () => {
    await redis.del(key);
    await redis.quit();
  });
  await redis.del(key);

  const env = { RATE_LIMIT_ANONYMOUS_PER_MINUTE: '3', REDIS_URL };
  const a = await buildTestApp(t, 'pglite', { env });
  const b = await buildTestApp(t, 'pglite', { env });

  assertAllowed(t, await get(a, LIST, address), 3, 2);
  assertAllowed(t, await get(a, LIST, address), 3, 1);
  assertAllowed(t, await get(b, LIST, address), 3, 0);
  assertLimited(t, await get(b, LIST, address), 3, 'this address');
  assertLimited(t, await get(a, LIST, address), 3, 'this address');

  t.equal(await redis.get(key), '5', 'the count is kept in Redis under the gateway\'s name space');
  const ttl = await redis.pttl(key);
  t.ok(ttl > 0 && ttl <= 60_000, `and expires with the minute (${ttl} ms)`);

  // Another address is not held back by this one's count, on either instance.
  const other = uniqueAddress(address);
  t.teardown(() => redis.del(`${NAMESPACE}ip:${other}`));
  assertAllowed(t, await get(b, LIST, other), 3, 2);
});

t.test('with REDIS_URL, a client is counted once across instances [pglite]', async (t) => {
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  const env = { RATE_LIMIT_CLIENT_PER_MINUTE: '2', REDIS_URL };
  const a = await buildTestApp(t, 'pglite', { env });
  const b = await buildTestApp(t, 'pglite', { env });
  const client = await party(a, 'zj-edu', ['catalog:read']);
  const key = `${NAMESPACE}client:${client.clientId}`;
  t.teardown(async () => {
    await redis.del(key);
    await redis.quit();
  });

  assertAllowed(t, await get(a, LIST, uniqueAddress(), client.headers), 2, 1);
  assertAllowed(t, await get(b, LIST, uniqueAddress(), client.headers), 2, 0);
  assertLimited(t, await get(a, LIST, uniqueAddress(), client.headers), 2, 'this client');
  t.equal(await redis.get(key), '3');
});

t.test('without REDIS_URL, each instance counts alone [pglite]', async (t) => {
  const env = { RATE_LIMIT_ANONYMOUS_PER_MINUTE: '3' };
  const a = await buildTestApp(t, 'pglite', { env });
  const b = await buildTestApp(t, 'pglite', { env });
  const address = uniqueAddress();

  for (const remaining of [2, 1, 0]) assertAllowed(t, await get(a, LIST, address), 3, remaining);
  for (const remaining of [2, 1, 0]) assertAllowed(t, await get(b, LIST, address), 3, remaining);
  assertLimited(t, await get(a, LIST, address), 3, 'this address');
  assertLimited(t, await get(b, LIST, address), 3, 'this address');
});

t.test('a Redis outage does not take open data down: the limit is skipped and the outage logged [pglite]', async (t) => {
  const logs = new LogCapture();
  // Nothing listens on port 1: every count fails.
  const app = await buildTestApp(t, 'pglite', { logs, env: { RATE_LIMIT_ANONYMOUS_PER_MINUTE: '1', REDIS_URL: 'redis://127.0.0.1:1' } });
  const address = uniqueAddress();
  for (let i = 0; i < 3; i += 1) {
    const response = await get(app, LIST, address);
    t.equal(response.statusCode, 200, `request ${i + 1} is answered`);
  }
  t.equal(
    logs.lines.filter((line) => line.level === 40 && line.msg === 'redis (rate-limit counts) unavailable: limits are skipped until it is back').length,
    1,
    'the outage is in the log as one warning',
  );
});
