import t from 'tap';
import { parse } from 'csv-parse/sync';
import { eq } from 'drizzle-orm';
import { auditEvents } from '../src/db/schema.js';
import { residents, seedDemo, students } from '../src/demo/seed.js';
import { headerText } from '../src/plugins/text-headers.js';
import { buildTestApp, forEachDriver, freshDatabase } from './helpers/app.js';
import { citizenIdentityProvider } from './helpers/citizens.js';
import { party } from './helpers/parties.js';
import { assertProblem } from './helpers/problem.js';
import { headerLine, listen, rawRequest, requestBytes, type RawResponse } from './helpers/raw-http.js';

const STUDENT = '330000-EDU-00001'; // zj-edu, conditional: a verify grant is applied for and approved

const PURPOSE = '就业补贴资格审核';
const ON_BEHALF_OF = '人社局 王小明（案件 2026-0042）';
const ENCODED_PURPOSE = '学生资助资格复核 (第2次)';
const ENCODED_ON_BEHALF_OF = '教育局 李华';

const enrolled = [...students(residents(5000), 1500)].filter((pupil) => pupil.status === '在读');
const [alice] = enrolled as [(typeof enrolled)[number]];
const aliceSubject = { name: alice.name, id_number: alice.id_number, school: alice.school };

t.test('headerText: the text a header value stands for, or null', async (t) => {
  const latin1 = (text: string) => Buffer.from(text).toString('latin1');
  const cases: Array<[string, string, string | null]> = [
    ['pure ASCII stays as it is', 'case review 42', 'case review 42'],
    ['UTF-8 bytes, one latin1 character each, are decoded', latin1(PURPOSE), PURPOSE],
    ['text handed in as text (app.inject) stays as it is', PURPOSE, PURPOSE],
    ['RFC 8187 ext-value', `UTF-8''${encodeURIComponent(PURPOSE)}`, PURPOSE],
    ['charset in any case, with a language tag', `utf-8'zh-Hans'${encodeURIComponent(PURPOSE)}`, PURPOSE],
    ["encodeURIComponent's unescaped ( ) ! * ' are value characters", `UTF-8''${encodeURIComponent("a(b)!*'")}`, "a(b)!*'"],
    ['an empty ext-value is empty text', "UTF-8''", ''],
    ['another charset is not decoded', "ISO-8859-1''caf%E9", "ISO-8859-1''caf%E9"],
    ['a tab is text', 'a\tb', 'a\tb'],
    ['a cut UTF-8 sequence', Buffer.from([0xe5, 0xb0]).toString('latin1'), null],
    ['latin1 text, not UTF-8', 'caf\xe9', null],
    ['an escape cut short', "UTF-8''%E5%B0%B", null],
    ['an escape that is no hex', "UTF-8''%G1", null],
    ['escapes that are not UTF-8', "UTF-8''%E5%B0", null],
    ['an encoded surrogate (CESU-8) is not UTF-8', "UTF-8''%ED%A0%80", null],
    ['a space is not a value character', "UTF-8''a b", null],
    ['raw UTF-8 inside an ext-value', latin1(`UTF-8''${PURPOSE}`), null],
    ['an encoded line break', "UTF-8''a%0D%0AX-Injected: 1", null],
    ['an encoded NUL', "UTF-8''a%00", null],
  ];
  for (const [name, value, expected] of cases) t.equal(headerText(value), expected, name);
});

forEachDriver(t, 'X-Purpose and X-On-Behalf-Of in Chinese, through a real socket, to every reader of the trail', async (t, driver) => {
  const idp = await citizenIdentityProvider(t);
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, { database, env: { SUPERVISOR_AGENCIES: 'zj-stats', TRUSTED_ISSUERS: idp.trustedIssuers } });
  await seedDemo(database, 'small');
  const port = await listen(app);

  const hrss = await party(app, 'zj-hrss', ['records:verify', 'applications:write']);
  const edu = await party(app, 'zj-edu', ['grants:manage']);
  const supervisor = await party(app, 'zj-stats', ['audit:read']);
  const applied = await app.inject({
    method: 'POST',
    url: '/v1/applications',
    headers: hrss.headers,
    payload: { resource: STUDENT, fields: ['name', 'id_number', 'school'], mode: 'verify', purpose: PURPOSE, legal_basis: '《就业促进法》', duration_days: 30 },
  });
  t.equal(applied.statusCode, 202, 'applied');
  const decided = await app.inject({ method: 'POST', url: `/v1/applications/${applied.json().id as string}/decision`, headers: edu.headers, payload: { decision: 'approve' } });
  t.equal(decided.statusCode, 200, 'approved');

  /** A verify of Alice's student status whose header lines go out as the bytes given. */
  const verify = (headers: Buffer[], authorization: string | null = hrss.headers.authorization): Promise<RawResponse> => {
    const body = JSON.stringify({ subject: aliceSubject });
    return rawRequest(
      port,
      requestBytes(
        [
          `POST /v1/resources/${STUDENT}/verify HTTP/1.1`,
          `Host: 127.0.0.1:${port}`,
          ...(authorization ? [`Authorization: ${authorization}`] : []),
          'Content-Type: application/json',
          `Content-Length: ${Buffer.byteLength(body)}`,
          'Connection: close',
          ...headers,
        ],
        body,
      ),
    );
  };
  const recordOf = async (response: RawResponse) => {
    const id = response.headers['x-audit-id'];
    if (!id) throw new Error(`no X-Audit-Id on ${response.statusLine}`);
    const [row] = await app.db.select().from(auditEvents).where(eq(auditEvents.id, id));
    if (!row) throw new Error(`no audit record ${id}`);
    return row;
  };

  const raw = await verify([headerLine('X-Purpose', Buffer.from(PURPOSE)), headerLine('X-On-Behalf-Of', Buffer.from(ON_BEHALF_OF))]);
  const encoded = await verify([
    headerLine('X-Purpose', `UTF-8''${encodeURIComponent(ENCODED_PURPOSE)}`),
    headerLine('X-On-Behalf-Of', `utf-8'zh'${encodeURIComponent(ENCODED_ON_BEHALF_OF)}`),
  ]);
  const rawId = raw.headers['x-audit-id'] as string;
  const encodedId = encoded.headers['x-audit-id'] as string;

  t.test('both forms are accepted: the verify answers as usual', async (t) => {
    for (const response of [raw, encoded]) {
      t.equal(response.statusCode, 200, response.body);
      t.equal(response.json().verdict, 'match');
    }
  });

  t.test('the audit record holds the exact text', async (t) => {
    t.match(await recordOf(raw), { action: 'records.verify', outcome: 'allowed', agency: 'zj-hrss', purpose: PURPOSE, onBehalfOf: ON_BEHALF_OF });
    t.match(await recordOf(encoded), { action: 'records.verify', outcome: 'allowed', purpose: ENCODED_PURPOSE, onBehalfOf: ENCODED_ON_BEHALF_OF });
  });

  t.test('GET /v1/audit/events shows it, as JSON and in the CSV export', async (t) => {
    const events = await app.inject({ url: `/v1/audit/events?resource=${STUDENT}&action=records.verify`, headers: supervisor.headers });
    t.equal(events.statusCode, 200);
    const byId = new Map(events.json().items.map((item: { id: string }) => [item.id, item]));
    t.match(byId.get(rawId), { purpose: PURPOSE, on_behalf_of: ON_BEHALF_OF });
    t.match(byId.get(encodedId), { purpose: ENCODED_PURPOSE, on_behalf_of: ENCODED_ON_BEHALF_OF });

    const csv = await app.inject({ url: `/v1/audit/events?resource=${STUDENT}&action=records.verify`, headers: { ...supervisor.headers, accept: 'text/csv' } });
    t.equal(csv.statusCode, 200);
    t.match(csv.headers['content-type'], /^text\/csv; charset=utf-8/);
    const rows = parse(csv.body, { columns: true }) as Array<Record<string, string>>;
    t.match(rows.find((row) => row.id === rawId), { purpose: PURPOSE, on_behalf_of: ON_BEHALF_OF });
    t.match(rows.find((row) => row.id === encodedId), { purpose: ENCODED_PURPOSE, on_behalf_of: ENCODED_ON_BEHALF_OF });
  });

  t.test("the citizen's access log shows the purposes", async (t) => {
    const log = await app.inject({ url: '/v1/me/access-log', headers: { authorization: `Bearer ${await idp.tokenFor(alice.id_number)}` } });
    t.equal(log.statusCode, 200);
    t.same(
      log.json().items.map((item: { purpose: string }) => item.purpose),
      [ENCODED_PURPOSE, PURPOSE],
      'newest first',
    );
  });

  t.test('GET /v1/audit/stats shows counts, no purpose: its counts include both', async (t) => {
    const stats = (await app.inject({ url: '/v1/audit/stats', headers: supervisor.headers })).json();
    t.ok(stats.by_resource.find((stat: { key: string; count: number }) => stat.key === STUDENT && stat.count >= 2));
    t.notOk(JSON.stringify(stats).includes('purpose'));
  });

  t.test('a purpose of 500 Chinese characters fits maxLength 500: the limit counts characters, not bytes', async (t) => {
    const long = '审'.repeat(500);
    const response = await verify([headerLine('X-Purpose', Buffer.from(long))]);
    t.equal(response.statusCode, 200);
    t.equal((await recordOf(response)).purpose, long);
  });

  t.test('a purpose that is too long is cut to 500 UTF-16 units on the record, never inside a surrogate pair', async (t) => {
    const long = `${'a'.repeat(499)}😀b`;
    const response = await verify([headerLine('X-Purpose', Buffer.from(long))]);
    assertProblem(t, response, 400, 'invalid_request');
    t.equal((await recordOf(response)).purpose, 'a'.repeat(499));
  });

  t.test('a refused token is recorded with the decoded purpose', async (t) => {
    const response = await verify([headerLine('X-Purpose', Buffer.from(PURPOSE))], null);
    assertProblem(t, response, 401, 'token_missing');
    t.match(await recordOf(response), { action: 'records.verify', status: 401, purpose: PURPOSE });
  });

  t.test('a value that is not UTF-8 is 400 invalid_header naming the header, and recorded', async (t) => {
    const cases: Array<[string, string, Buffer | string]> = [
      ['a cut UTF-8 sequence', 'X-Purpose', Buffer.from([0xe5, 0xb0])],
      ['latin1 text', 'X-On-Behalf-Of', Buffer.from('caf\xe9', 'latin1')],
      ['an RFC 8187 value with a broken escape', 'X-Purpose', "UTF-8''%E5%B0%B"],
      ['an RFC 8187 value that decodes to bytes that are not UTF-8', 'X-On-Behalf-Of', "UTF-8''%E5%B0"],
    ];
    for (const [name, header, value] of cases) {
      const other = header === 'X-Purpose' ? headerLine('X-On-Behalf-Of', Buffer.from(ON_BEHALF_OF)) : headerLine('X-Purpose', Buffer.from(PURPOSE));
      const response = await verify([headerLine(header, value), other]);
      const problem = assertProblem(t, response, 400, 'invalid_header');
      t.match(problem.detail, new RegExp(`^${header} is not one line of valid UTF-8 text`), `${name}: the detail names ${header}`);
      const record = await recordOf(response);
      t.match(record, { action: 'records.verify', outcome: 'denied', status: 400, reason: 'invalid_header', agency: 'zj-hrss', clientId: hrss.clientId }, `${name}: recorded with its caller`);
      if (header === 'X-Purpose') t.match(record, { purpose: null, onBehalfOf: ON_BEHALF_OF });
      else t.match(record, { purpose: PURPOSE, onBehalfOf: null });
    }
  });

  t.test('through app.inject too, and on routes without a header schema', async (t) => {
    const response = await app.inject({ url: '/v1/catalog/resources?limit=1', headers: { 'x-purpose': "UTF-8''%ZZ" } });
    const problem = assertProblem(t, response, 400, 'invalid_header');
    t.match(problem.detail, /^X-Purpose /);
    t.equal((await app.inject({ url: '/v1/catalog/resources?limit=1', headers: { 'x-purpose': PURPOSE } })).statusCode, 200);
  });
});
