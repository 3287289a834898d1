import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { DatabaseBreaker, DatabaseUnavailable, isDatabaseUnavailable } from '../../src/db/breaker.js';
import { buildTestApp } from '../helpers/app.js';

const lost = (code: string) => Object.assign(new Error(`lost: ${code}`), { code });
/** As drizzle reports a failed query: its own error, the driver's as the cause. */
const wrapped = (cause: Error) => Object.assign(new Error('Failed query: select 1'), { cause });

t.test('which errors say the database is away', async (t) => {
  for (const code of ['ECONNREFUSED', 'ECONNRESET', 'CONNECTION_CLOSED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT', '08006', '08001', '57P01', '57P03', '53300', '3D000']) {
    t.ok(isDatabaseUnavailable(lost(code)), code);
    t.ok(isDatabaseUnavailable(wrapped(lost(code))), `${code} under drizzle's error`);
  }
  for (const code of ['23505', '42P01', '22P02', '40001', 'ERR_SOMETHING']) t.notOk(isDatabaseUnavailable(lost(code)), `${code} is the query's own problem`);
  t.notOk(isDatabaseUnavailable(new Error('no code')));
  t.notOk(isDatabaseUnavailable(undefined));
  t.ok(isDatabaseUnavailable(new DatabaseUnavailable()));
});

t.test('the breaker refuses at once while the database is away, tries again, and closes when it answers', async (t) => {
  const lines: string[] = [];
  const logger = { debug() {}, info: (_: object, msg?: string) => void lines.push(`info ${msg}`), warn: (_: object, msg?: string) => void lines.push(`warn ${msg}`) };
  const breaker = new DatabaseBreaker({ retryMs: 200, logger });
  t.teardown(() => breaker.shutdown());
  let calls = 0;
  let away = true;
  const query = async () => {
    calls += 1;
    if (away) throw wrapped(lost('ECONNREFUSED'));
    return 'rows';
  };

  // A query's own error never opens it.
  for (let i = 0; i < 5; i++) await t.rejects(breaker.run(async () => Promise.reject(lost('23505'))), { code: '23505' });
  t.equal(breaker.open, false, 'constraint errors leave it closed');

  await t.rejects(breaker.run(query), { message: 'Failed query: select 1' });
  await t.rejects(breaker.run(query), { message: 'Failed query: select 1' });
  t.equal(breaker.open, true, 'two lost connections open it');
  const before = calls;
  for (let i = 0; i < 50; i++) await t.rejects(breaker.run(query), DatabaseUnavailable);
  t.equal(calls, before, 'while open, no query reaches the driver');

  await sleep(250);
  await t.rejects(breaker.run(query), { message: 'Failed query: select 1' }, 'after retryMs one query is let through to try');
  t.equal(calls, before + 1);
  await t.rejects(breaker.run(query), DatabaseUnavailable, 'it failed: refused at once again');

  away = false;
  await sleep(250);
  t.equal(await breaker.run(query), 'rows', 'the next try finds the database back');
  t.equal(breaker.open, false);
  t.equal(await breaker.run(query), 'rows');
  t.same(lines, ['warn database unavailable: answering 503 database_unavailable until it is back', 'info database available again'], 'one line when it opened, one when it closed');
});

t.test('a try after an outage that hangs counts as failed after 2 s, and the next one is let through', async (t) => {
  const breaker = new DatabaseBreaker({ retryMs: 100 });
  t.teardown(() => breaker.shutdown());
  for (let i = 0; i < 2; i++) await t.rejects(breaker.run(async () => Promise.reject(lost('ECONNREFUSED'))));
  t.equal(breaker.open, true);
  await sleep(150);
  const started = Date.now();
  await t.rejects(breaker.run(() => new Promise(() => {})), DatabaseUnavailable, 'the try that never answers is given up');
  const waited = Date.now() - started;
  t.ok(waited >= 1900 && waited < 4000, `after ${waited} ms`);
  await sleep(150);
  t.equal(await breaker.run(async () => 'rows'), 'rows', 'the next try is let through and closes it');
  t.equal(breaker.open, false);
});

t.test('a request that meets the database away is answered 503 database_unavailable with Retry-After', async (t) => {
  const app = await buildTestApp(t, 'pglite', {
    env: { REQUEST_TIMEOUT_MS: '1000' },
    extend: (app) => {
      app.get('/test/lost', async () => {
        throw wrapped(lost('57P01'));
      });
      app.get('/test/open', async () => {
        throw new DatabaseUnavailable();
      });
      app.get('/test/hangs', () => new Promise(() => {}));
    },
  });
  for (const path of ['/test/lost', '/test/open']) {
    const response = await app.inject({ url: path });
    t.equal(response.statusCode, 503, path);
    t.equal(response.headers['retry-after'], '2');
    t.match(response.headers['content-type'], /^application\/problem\+json/);
    t.match(response.json(), { status: 503, code: 'database_unavailable', detail: /retry shortly/ });
  }
  const started = Date.now();
  const hung = await app.inject({ url: '/test/hangs' });
  t.equal(hung.statusCode, 503, 'a handler that never answers is answered 503 at REQUEST_TIMEOUT_MS');
  t.match(hung.json(), { code: 'timeout' });
  t.equal(hung.headers['retry-after'], '2');
  t.ok(Date.now() - started < 5000, 'not later than the limit and some slack');
});
