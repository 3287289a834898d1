import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import t from 'tap';
import { eq } from 'drizzle-orm';
import { auditEvents } from '../../src/db/schema.js';
import { enterprises } from '../../src/demo/seed.js';
import { buildTestApp, forEachDriver, freshDatabase } from '../helpers/app.js';
import { copyCatalog } from '../helpers/catalog.js';
import { party } from '../helpers/parties.js';
import { assertProblem } from '../helpers/problem.js';

const PROXIED = '330000-AMR-00009';
const [known, slow] = [...enterprises(2)];
const absent = [...enterprises(3)][2];

/** The provider's own system: answers with more than it should be allowed to pass on. */
async function providerSystem() {
  const seen: Array<{ url: string; authorization: string | undefined }> = [];
  const body = async (request: IncomingMessage) => {
    let text = '';
    for await (const chunk of request) text += chunk;
    return text ? JSON.parse(text) : undefined;
  };
  const server = createServer(async (request, response) => {
    seen.push({ url: request.url ?? '', authorization: request.headers.authorization });
    if (request.headers.authorization !== 'Bearer provider-secret') {
      response.writeHead(401).end();
      return;
    }
    const send = (value: unknown) => response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(value));
    const full = { ...known, internal_note: '仅供内部使用' };
    if (request.url === `/records/${slow?.uscc}`) {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      return send(full);
    }
    if (request.url === `/records/${known?.uscc}`) return send(full);
    if (request.url?.startsWith('/records/')) return void response.writeHead(404).end();
    if (request.url === '/query') {
      await body(request);
      return send({ items: [full, { ...full, uscc: slow?.uscc }], next_cursor: null });
    }
    if (request.url === '/verify') {
      const { subjects } = (await body(request)) as { subjects: Array<Record<string, string>> };
      return send({
        results: subjects.map((subject) => ({
          verdict: subject.name === known?.name ? 'match' : 'mismatch',
          fields: Object.fromEntries(Object.keys(subject).map((name) => [name, subject[name] === (known as Record<string, unknown>)[name] ? 'match' : 'mismatch'])),
          stored: known,
        })),
      });
    }
    response.writeHead(500).end();
  }).listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, seen, url: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
}

forEachDriver(t, 'a proxied resource: forwarded, cut to the grant, audited; timeouts and outages', async (t, driver) => {
  const provider = await providerSystem();
  t.teardown(() => provider.server.close());
  process.env.AMR_UPSTREAM_TOKEN = 'provider-secret';

  // A copy of enterprise registration that the market regulator serves from its own system.
  const dir = copyCatalog(t);
  const template = readFileSync(join(dir, 'zj-amr/330000-AMR-00001.yaml'), 'utf8');
  writeFileSync(
    join(dir, `zj-amr/${PROXIED}.yaml`),
    `${template.replace(/^code: .*$/m, `code: ${PROXIED}`)}upstream:\n  url: ${provider.url}\n  credential_env: AMR_UPSTREAM_TOKEN\n  timeout_ms: 300\n`,
  );
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, { database, env: { CATALOG_DIR: dir } });
  const consumer = await party(app, 'zj-psb', ['applications:write', 'records:read', 'records:verify']);
  const applied = await app.inject({
    method: 'POST',
    url: '/v1/applications',
    headers: consumer.headers,
    payload: { resource: PROXIED, fields: ['uscc', 'name', 'status'], mode: 'read', purpose: '涉企核查', legal_basis: '《市场主体登记管理条例》', duration_days: 30 },
  });
  t.equal(applied.statusCode, 201, 'unconditional: granted at once');
  const headers = { ...consumer.headers, 'x-purpose': '涉企核查' };
  const audit = async (id: unknown) => (await app.db.select().from(auditEvents).where(eq(auditEvents.id, String(id))))[0];

  const read = await app.inject({ url: `/v1/resources/${PROXIED}/records/${known?.uscc}`, headers });
  t.equal(read.statusCode, 200);
  t.same(read.json().record, { uscc: known?.uscc, name: known?.name, status: known?.status }, 'only the granted fields pass');
  t.notMatch(read.body, /internal_note|仅供内部使用|legal_representative/);
  const forwarded = provider.seen.at(-1);
  t.equal(forwarded?.authorization, 'Bearer provider-secret', "the provider gets the gateway's credential");
  t.notMatch(String(forwarded?.authorization), new RegExp(consumer.headers.authorization.slice(7)), "never the caller's token");
  t.match(await audit(read.headers['x-audit-id']), { action: 'records.read', outcome: 'allowed', resource: PROXIED, rowCount: 1 });

  const missing = await app.inject({ url: `/v1/resources/${PROXIED}/records/${absent?.uscc}`, headers });
  assertProblem(t, missing, 404, 'record_not_found');
  const badKey = await app.inject({ url: `/v1/resources/${PROXIED}/records/91330000XXXXXXXXX1`, headers });
  assertProblem(t, badKey, 400, 'invalid_identifier');
  t.notOk(provider.seen.some((call) => call.url.includes('XXXXXXXX')), 'a bad identifier never reaches the provider');

  const query = await app.inject({ method: 'POST', url: `/v1/resources/${PROXIED}/query`, headers, payload: { filter: { uscc: { eq: known?.uscc } } } });
  t.equal(query.statusCode, 200);
  t.same(query.json().items.map((item: object) => Object.keys(item).sort()), [['name', 'status', 'uscc'], ['name', 'status', 'uscc']]);

  const verify = await app.inject({ method: 'POST', url: `/v1/resources/${PROXIED}/verify`, headers, payload: { subject: { uscc: known?.uscc, name: '别的公司' } } });
  t.equal(verify.statusCode, 200);
  t.same(verify.json(), { verdict: 'mismatch', fields: { uscc: 'match', name: 'mismatch' } }, 'nothing the provider adds passes through');

  const timedOut = await app.inject({ url: `/v1/resources/${PROXIED}/records/${slow?.uscc}`, headers });
  assertProblem(t, timedOut, 504, 'upstream_timeout');
  t.match(await audit(timedOut.headers['x-audit-id']), { outcome: 'error', status: 504, reason: 'upstream_timeout' });

  provider.server.close();
  provider.server.closeAllConnections();
  await once(provider.server, 'close');
  const down = await app.inject({ url: `/v1/resources/${PROXIED}/records/${known?.uscc}`, headers });
  assertProblem(t, down, 502, 'upstream_unavailable');
  t.match(await audit(down.headers['x-audit-id']), { outcome: 'error', status: 502, reason: 'upstream_unavailable' });
  for (let i = 0; i < 6; i++) await app.inject({ url: `/v1/resources/${PROXIED}/records/${known?.uscc}`, headers });
  const paused = await app.inject({ url: `/v1/resources/${PROXIED}/records/${known?.uscc}`, headers });
  const problem = assertProblem(t, paused, 502, 'upstream_unavailable');
  t.match(problem.detail, /calls are paused/, 'the circuit breaker opened after repeated failures');
});
