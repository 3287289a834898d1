import t from 'tap';
import { createClient } from '../../src/identity/clients.js';
import type { App } from '../../src/app.js';
import { buildTestApp, forEachDriver, LogCapture } from '../helpers/app.js';
import { within } from '../helpers/demo-gateways.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

// Redis holds only the rate-limit counts. When it goes away the limits are skipped (fail open)
// with one warning, no request waits on it, and once it is back two instances share the counts
// again. The outage is a relay in front of the test Redis taken down.
t.setTimeout(180_000);

const redisPort = Number(new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379').port || 6379);
const LIMIT = 4;

async function client(app: App) {
  const { client, secret } = await createClient(app.db, app.clientSecrets, { agency: 'zj-hrss', scopes: ['records:verify'] });
  return { id: client.id, secret: secret as string };
}

async function token(app: App, credentials: { id: string; secret: string }) {
  const started = Date.now();
  const response = await app.inject({
    method: 'POST',
    url: '/oauth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ grant_type: 'client_credentials', client_id: credentials.id, client_secret: credentials.secret }).toString(),
  });
  return { status: response.statusCode, ms: Date.now() - started };
}

/** LIMIT + 1 tokens for one client, asked of A and B in turn: the statuses. */
async function alternating(a: App, b: App, credentials: { id: string; secret: string }) {
  const answers = [];
  for (let i = 0; i <= LIMIT; i++) answers.push(await token(i % 2 ? b : a, credentials));
  return answers;
}

forEachDriver(t, 'Redis away and back: limits skipped with one warning, then shared again', async (t, driver) => {
  const proxy = await new TcpProxy(redisPort).up();
  t.teardown(() => proxy.down());
  const logs = new LogCapture();
  const env = { REDIS_URL: `redis://127.0.0.1:${proxy.port}`, TOKEN_RATE_LIMIT_PER_MINUTE: String(LIMIT) };
  const a = await buildTestApp(t, driver, { env, logs });
  const b = await buildTestApp(t, driver, { env });
  t.not(await within(5000, async () => a.redis?.status === 'ready' && b.redis?.status === 'ready'), undefined, 'both instances reach Redis');

  const shared = await alternating(a, b, await client(a));
  t.same(shared.map((answer) => answer.status), [200, 200, 200, 200, 429], `the ${LIMIT + 1}th token of the minute is refused, counted across both instances`);

  // Redis away: every token is issued (the limit is skipped), none waits for Redis.
  await proxy.down();
  const away = await client(a);
  const during = [];
  for (let i = 0; i < LIMIT * 3; i++) during.push(await token(i % 2 ? b : a, away));
  t.same(during.map((answer) => answer.status), Array(LIMIT * 3).fill(200), 'with Redis away the limit is skipped: every token is issued');
  const slowest = Math.max(...during.map((answer) => answer.ms));
  t.ok(slowest < 1500, `no request waited on the dead Redis (slowest ${slowest} ms)`);
  const warnings = () => logs.lines.filter((line) => String(line.msg).startsWith('redis (rate-limit counts) unavailable'));
  t.not(await within(3000, async () => warnings().length === 1), undefined, 'one warning says Redis is away');
  // More reconnect attempts meanwhile: still the one warning.
  await new Promise((resolve) => setTimeout(resolve, 2500));
  t.equal(warnings().length, 1, 'and only one, whatever the reconnect attempts');

  // Back: counts shared again.
  await proxy.up();
  t.not(await within(5000, async () => a.redis?.status === 'ready' && b.redis?.status === 'ready'), undefined, 'both reconnect to Redis');
  t.ok(logs.lines.some((line) => line.msg === 'redis (rate-limit counts) available again'), 'a line says it is back');
  const again = await alternating(a, b, await client(a));
  t.same(again.map((answer) => answer.status), [200, 200, 200, 200, 429], 'after Redis is back the limit is shared again');
});
