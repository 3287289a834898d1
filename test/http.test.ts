import t from 'tap';
import Type from 'typebox';
import { buildTestApp, LogCapture } from './helpers/app.js';
import { assertProblem } from './helpers/problem.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const logs = new LogCapture();
const app = await buildTestApp(t, 'pglite', {
  env: { BODY_LIMIT: '2048' },
  logs,
  extend(app) {
    app.post(
      '/test/things',
      {
        schema: {
          body: Type.Object(
            { name: Type.String({ minLength: 1 }), count: Type.Integer({ minimum: 0 }), kind: Type.Optional(Type.Union([Type.Literal('a'), Type.Literal('b')])) },
            { additionalProperties: false },
          ),
        },
      },
      async (request) => ({ received: request.body }),
    );
    app.get('/test/boom', async () => {
      throw new Error('relation "secret_table" does not exist: select password from users');
    });
    app.get('/test/people/:id_number', async () => ({ ok: true }));
  },
});

t.test('X-Request-Id: generated when absent, echoed when sane, replaced when not', async (t) => {
  const generated = await app.inject({ url: '/healthz' });
  t.match(generated.headers['x-request-id'], UUID);

  const echoed = await app.inject({ url: '/healthz', headers: { 'x-request-id': 'trace-42.a:b@c' } });
  t.equal(echoed.headers['x-request-id'], 'trace-42.a:b@c');

  for (const bad of ['has space', 'x'.repeat(129), 'semi;colon', '']) {
    const replaced = await app.inject({ url: '/healthz', headers: { 'x-request-id': bad } });
    t.match(replaced.headers['x-request-id'], UUID, `replaces ${JSON.stringify(bad.slice(0, 10))}`);
  }
});

t.test('unknown routes are 404 problem+json', async (t) => {
  const response = await app.inject({ url: '/no/such/route?x=1' });
  const body = assertProblem(t, response, 404, 'not_found');
  t.equal(body.detail, 'No route serves GET /no/such/route.');
});

t.test('validation errors name the failing field by JSON pointer', async (t) => {
  const response = await app.inject({ method: 'POST', url: '/test/things', payload: { name: '', count: -1, kind: 'c' } });
  const body = assertProblem(t, response, 400, 'invalid_request');
  t.same(
    body.errors.map((e: { in: string; pointer: string }) => `${e.in}${e.pointer}`).sort(),
    ['body/count', 'body/kind', 'body/name'],
  );
  t.match(body.detail, /body\/name must NOT have fewer than 1 characters/);
  t.equal(body.errors.find((e: { pointer: string }) => e.pointer === '/kind').message, 'must be one of a, b');

  const missing = assertProblem(t, await app.inject({ method: 'POST', url: '/test/things', payload: { name: 'x' } }), 400, 'invalid_request');
  t.same(missing.errors, [{ in: 'body', pointer: '/count', message: "must have required property 'count'" }]);
});

t.test('unknown properties are refused, never silently dropped', async (t) => {
  const response = await app.inject({ method: 'POST', url: '/test/things', payload: { name: 'x', count: 1, extra: true } });
  const body = assertProblem(t, response, 400, 'invalid_request');
  t.same(body.errors, [{ in: 'body', pointer: '/extra', message: 'is not a known property' }]);
});

t.test('a valid body passes through', async (t) => {
  const response = await app.inject({ method: 'POST', url: '/test/things', payload: { name: 'x', count: 1 } });
  t.equal(response.statusCode, 200);
  t.same(response.json(), { received: { name: 'x', count: 1 } });
});

t.test('malformed JSON, wrong media type and oversized bodies', async (t) => {
  assertProblem(
    t,
    await app.inject({ method: 'POST', url: '/test/things', headers: { 'content-type': 'application/json' }, payload: '{"name":' }),
    400,
    'invalid_json',
  );
  assertProblem(
    t,
    await app.inject({ method: 'POST', url: '/test/things', headers: { 'content-type': 'text/plain' }, payload: 'hello' }),
    415,
    'unsupported_media_type',
  );
  assertProblem(
    t,
    await app.inject({ method: 'POST', url: '/test/things', payload: { name: 'x'.repeat(4096), count: 1 } }),
    413,
    'payload_too_large',
  );
});

t.test('a 500 tells the client nothing about the cause; the log has it with the request id', async (t) => {
  const response = await app.inject({ url: '/test/boom', headers: { 'x-request-id': 'boom-1' } });
  const body = assertProblem(t, response, 500, 'internal_error');
  t.equal(body.detail, 'The gateway could not complete this request; quote request id boom-1.');
  t.notMatch(response.body, /secret_table|password|stack|at /);
  const logged = logs.lines.find((line) => line.request_id === 'boom-1' && line.level === 50);
  t.ok(logged, 'error logged');
  t.match((logged as { err: { message: string } }).err.message, /secret_table/);
});

t.test('logs never carry credentials, cookies or values from the path', async (t) => {
  await app.inject({
    url: '/test/people/11010519491231002X?token=abc',
    headers: { authorization: 'Bearer eyJsecret.token.value', cookie: 'session=topsecret', 'x-request-id': 'redact-1' },
  });
  await app.inject({ url: '/unmatched/330102199001011234', headers: { 'x-request-id': 'redact-2' } });
  const text = logs.text();
  t.notMatch(text, /eyJsecret|topsecret|11010519491231002X|330102199001011234|token=abc/);
  // One line per request, written when it is answered: the route pattern, the status and the time.
  const lines = logs.lines.filter((line) => line.request_id === 'redact-1');
  t.notOk(lines.some((line) => line.msg === 'incoming request'), 'no second line when the request comes in');
  const answered = lines.filter((line) => line.msg === 'request completed');
  t.equal(answered.length, 1, 'one line when it is answered');
  const completed = answered[0] as { msg: string; req: { method: string; url: string }; res: { statusCode: number }; responseTime: number };
  t.match(completed.req, { method: 'GET', url: '/test/people/:id_number' });
  t.equal(typeof completed.res.statusCode, 'number');
  t.ok(completed.responseTime >= 0);
  const unmatched = logs.lines.find((line) => line.request_id === 'redact-2' && line.msg === 'request completed') as {
    req: { url: string };
    res: { statusCode: number };
  };
  t.equal(unmatched.req.url, '/unmatched/***');
  t.equal(unmatched.res.statusCode, 404);
});

t.test('security headers are set on every response', async (t) => {
  const response = await app.inject({ url: '/healthz' });
  t.equal(response.headers['x-content-type-options'], 'nosniff');
  t.equal(response.headers['x-frame-options'], 'SAMEORIGIN');
  t.match(response.headers['content-security-policy'], /frame-ancestors 'none'/);
  t.match(response.headers['strict-transport-security'], /max-age=/);
  t.equal(response.headers['referrer-policy'], 'no-referrer');
  const notFound = await app.inject({ url: '/nothing' });
  t.equal(notFound.headers['x-content-type-options'], 'nosniff');
});

t.test('GET /metrics is Prometheus text with per-route histograms, event-loop lag and the pool', async (t) => {
  await app.inject({ url: '/healthz' });
  await app.inject({ url: '/healthz' });
  const response = await app.inject({ url: '/metrics' });
  t.equal(response.statusCode, 200);
  t.match(response.headers['content-type'], /^text\/plain; version=0.0.4/);
  const count = response.body.match(/http_request_duration_seconds_count\{method="GET",route="\/healthz",status_code="200"\} (\d+)/);
  t.ok(count, 'healthz counted');
  t.ok(Number(count?.[1]) >= 2);
  t.match(response.body, /http_request_duration_seconds_bucket\{le="0.005",method="GET",route="\/healthz",status_code="200"\}/);
  t.match(response.body, /gateway_nodejs_eventloop_lag_seconds \d/);
  t.match(response.body, /gateway_db_pool_connections\{driver="pglite",state="max"\} 1/);
});

t.test('GET /openapi.json and the docs UI', async (t) => {
  const spec = (await app.inject({ url: '/openapi.json' })).json();
  t.equal(spec.openapi, '3.1.0');
  t.ok(spec.paths['/readyz'].get.responses['503'], 'readyz documents its 503');
  t.ok(spec.components.schemas.Problem, 'Problem is a shared component');
  const ui = await app.inject({ url: '/docs/' });
  t.equal(ui.statusCode, 200);
  t.match(ui.headers['content-type'], /text\/html/);
  t.match(ui.body, /swagger/i);
});
