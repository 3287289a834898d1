import t, { type Test } from 'tap';
import { count, eq, like } from 'drizzle-orm';
import type { App } from '../../src/app.js';
import type { Driver } from '../../src/db/index.js';
import { auditEvents } from '../../src/db/schema.js';
import { enterprises, residents, seedDemo, students } from '../../src/demo/seed.js';
import { residentIdCheckChar } from '../../src/records/identifiers.js';
import { buildTestApp, forEachDriver, freshDatabase } from '../helpers/app.js';
import { party, type Party } from '../helpers/parties.js';
import { assertProblem } from '../helpers/problem.js';

const STUDENT = '330000-EDU-00001'; // zj-edu, conditional: student_id key, id_number, school, region_code filterable
const ENTERPRISE = '330000-AMR-00001'; // zj-amr, unconditional: uscc key, name, region_code, status, industry filterable
const SURVEY_MAPS = '330000-NR-00003'; // zj-nr, sharing none
const NO_SUCH_RESOURCE = '330000-EDU-09999';

const PURPOSE = 'employment subsidy eligibility review';
const ON_BEHALF_OF = 'case HRSS-2026-0042';

type Injected = Awaited<ReturnType<App['inject']>>;
type AuditRow = typeof auditEvents.$inferSelect;

// The demo data the tests compare with: the same generators seedDemo(…, 'small') loads.
const pupils = [...students(residents(5000), 1500)];
const firms = [...enterprises(1000)];
const enrolled = pupils.filter((pupil) => pupil.status === '在读');
const [alice, bob, carol] = enrolled as [(typeof pupils)[number], (typeof pupils)[number], (typeof pupils)[number]];

/** A valid ID number no demo resident has: the demo's residents are born 1940-2019. */
const absentId = (() => {
  const first17 = '33010619300101123';
  return `${first17}${residentIdCheckChar(first17)}`;
})();
/** A real student's ID number with a wrong check character. */
const badCheckId = `${alice.id_number.slice(0, 17)}${alice.id_number[17] === '0' ? '1' : '0'}`;


forEachDriver(t, 'exchange: read, query and verify, decided by grants and audited', async (t: Test, driver: Driver) => {
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, { database });
  await seedDemo(database, 'small');

  const hrss = await party(app, 'zj-hrss', ['records:read', 'records:verify', 'applications:write']);
  const hrssApplyOnly = await party(app, 'zj-hrss', ['applications:write']);
  const hrssReadOnly = await party(app, 'zj-hrss', ['records:read']);
  const edu = await party(app, 'zj-edu', ['grants:manage']);

  const exchangeHeaders = (who: Party, extra: Record<string, string> = {}) => ({ ...who.headers, 'x-purpose': PURPOSE, 'x-on-behalf-of': ON_BEHALF_OF, ...extra });
  let exchangeCalls = 0;
  const read = (code: string, key: string, headers: Record<string, string> = exchangeHeaders(hrss)) => {
    exchangeCalls += 1;
    return app.inject({ url: `/v1/resources/${code}/records/${encodeURIComponent(key)}`, headers });
  };
  const query = (code: string, body: object, headers: Record<string, string> = exchangeHeaders(hrss)) => {
    exchangeCalls += 1;
    return app.inject({ method: 'POST', url: `/v1/resources/${code}/query`, headers, payload: body });
  };
  const verify = (code: string, body: object, headers: Record<string, string> = exchangeHeaders(hrss)) => {
    exchangeCalls += 1;
    return app.inject({ method: 'POST', url: `/v1/resources/${code}/verify`, headers, payload: body });
  };

  /**
   * The audit record an exchange answer names in X-Audit-Id: it exists when the answer arrives,
   * holds what is expected, and never a raw ID number or student number.
   */
  async function audited(t: Test, response: Injected, expected: Partial<AuditRow>, raw: string[] = []): Promise<AuditRow> {
    const id = response.headers['x-audit-id'];
    t.type(id, 'string', 'X-Audit-Id on the answer');
    const [row] = await app.db.select().from(auditEvents).where(eq(auditEvents.id, String(id)));
    if (!row) throw new Error(`no audit record ${String(id)}`);
    t.match(row, { requestId: response.headers['x-request-id'], status: response.statusCode, ...expected }, 'the audit record');
    const text = JSON.stringify(row);
    for (const value of raw) t.notOk(text.includes(value), `the audit record does not hold ${value.slice(0, 4)}… in the clear`);
    return row;
  }
  const allowedBy = (action: string, grantId: string, more: Partial<AuditRow> = {}): Partial<AuditRow> => ({
    action,
    outcome: 'allowed',
    reason: null,
    agency: 'zj-hrss',
    clientId: hrss.clientId,
    purpose: PURPOSE,
    onBehalfOf: ON_BEHALF_OF,
    grantId,
    ...more,
  });
  const deniedAs = (action: string, reason: string, more: Partial<AuditRow> = {}): Partial<AuditRow> => ({
    action,
    outcome: 'denied',
    reason,
    agency: 'zj-hrss',
    ...more,
  });
  const sameItems = (t: Test, actual: string[] | null, expected: string[], message: string) => t.same([...(actual ?? [])].sort(), [...expected].sort(), message);

  async function applyAndApprove(body: object, fields?: string[], who: Party = hrss): Promise<string> {
    const applied = await app.inject({ method: 'POST', url: '/v1/applications', headers: who.headers, payload: body });
    if (applied.statusCode === 201) return applied.json().grant_id as string;
    if (applied.statusCode !== 202) throw new Error(`apply: ${applied.statusCode} ${applied.body}`);
    const decided = await app.inject({
      method: 'POST',
      url: `/v1/applications/${applied.json().id as string}/decision`,
      headers: edu.headers,
      payload: { decision: 'approve', ...(fields ? { fields } : {}) },
    });
    if (decided.statusCode !== 200) throw new Error(`decide: ${decided.statusCode} ${decided.body}`);
    return decided.json().grant_id as string;
  }

  const aliceSubject = { name: alice.name, id_number: alice.id_number, school: alice.school };

  t.test('without a grant, a purpose, the scope, or a shared resource: refused and recorded', async (t) => {
    t.test('no grant: read, query and verify are 403 grant_missing', async (t) => {
      const refusals: Array<[Injected, string]> = [
        [await read(STUDENT, alice.student_id), 'records.read'],
        [await query(STUDENT, { filter: { school: { eq: alice.school } } }), 'records.query'],
        [await verify(STUDENT, { subject: aliceSubject }), 'records.verify'],
      ];
      for (const [response, action] of refusals) {
        assertProblem(t, response, 403, 'grant_missing');
        await audited(t, response, deniedAs(action, 'grant_missing', { resource: STUDENT, provider: 'zj-edu', grantId: null, purpose: PURPOSE, onBehalfOf: ON_BEHALF_OF, rowCount: null, subjectRefs: null }), [alice.id_number]);
      }
    });

    t.test('no X-Purpose, or a blank one: 400 purpose_required, before anything is looked up', async (t) => {
      const bare = { ...hrss.headers };
      const refusals: Array<[Injected, string]> = [
        [await read(STUDENT, alice.student_id, bare), 'records.read'],
        [await query(STUDENT, {}, bare), 'records.query'],
        [await verify(STUDENT, { subject: aliceSubject }, bare), 'records.verify'],
        [await verify(STUDENT, { subject: aliceSubject }, { ...hrss.headers, 'x-purpose': '   ' }), 'records.verify'],
      ];
      for (const [response, action] of refusals) {
        const problem = assertProblem(t, response, 400, 'purpose_required');
        t.match(problem.detail, /X-Purpose/);
        await audited(t, response, deniedAs(action, 'purpose_required', { resource: STUDENT, provider: 'zj-edu', grantId: null, rowCount: null }), [alice.id_number]);
      }
    });

    t.test('a token without the scope: 403 insufficient_scope', async (t) => {
      const noRead = await read(STUDENT, alice.student_id, exchangeHeaders(hrssApplyOnly));
      assertProblem(t, noRead, 403, 'insufficient_scope');
      t.match(noRead.headers['www-authenticate'], /error="insufficient_scope", scope="records:read"/);
      await audited(t, noRead, deniedAs('records.read', 'insufficient_scope', { clientId: hrssApplyOnly.clientId }));

      const noQuery = await query(STUDENT, {}, exchangeHeaders(hrssApplyOnly));
      assertProblem(t, noQuery, 403, 'insufficient_scope');
      await audited(t, noQuery, deniedAs('records.query', 'insufficient_scope'));

      const noVerify = await verify(STUDENT, { subject: aliceSubject }, exchangeHeaders(hrssReadOnly));
      assertProblem(t, noVerify, 403, 'insufficient_scope');
      t.match(noVerify.headers['www-authenticate'], /scope="records:verify"/);
      await audited(t, noVerify, deniedAs('records.verify', 'insufficient_scope', { clientId: hrssReadOnly.clientId }), [alice.id_number]);
    });

    t.test('a resource that is not shared (不予共享): 403 sharing_not_allowed', async (t) => {
      for (const response of [await read(SURVEY_MAPS, 'ZJ-2021-0001'), await query(SURVEY_MAPS, {}), await verify(SURVEY_MAPS, { subject: { product_id: 'ZJ-2021-0001' } })]) {
        assertProblem(t, response, 403, 'sharing_not_allowed');
        await audited(t, response, { outcome: 'denied', reason: 'sharing_not_allowed', resource: SURVEY_MAPS, provider: 'zj-nr', grantId: null });
      }
    });

    t.test('an unknown resource: 404', async (t) => {
      for (const response of [await read(NO_SUCH_RESOURCE, 'G1'), await query(NO_SUCH_RESOURCE, {}), await verify(NO_SUCH_RESOURCE, { subject: { student_id: 'G1' } })]) {
        assertProblem(t, response, 404, 'not_found');
        await audited(t, response, { outcome: 'denied', reason: 'not_found', resource: null });
      }
    });
  });

  t.test('a verify grant narrowed to name, id_number and school', async (t) => {
    const grantId = await applyAndApprove(
      { resource: STUDENT, fields: ['name', 'id_number', 'school', 'grade'], mode: 'verify', purpose: '就业补贴审核', legal_basis: '《就业促进法》', duration_days: 90 },
      ['name', 'id_number', 'school'],
    );

    t.test('a real student matches on every field', async (t) => {
      const response = await verify(STUDENT, { subject: aliceSubject });
      t.equal(response.statusCode, 200, response.body);
      t.same(response.json(), { verdict: 'match', fields: { name: 'match', id_number: 'match', school: 'match' } });
      t.equal(response.headers['cache-control'], 'no-store');
      t.notOk(response.headers.etag, 'a POST answer has no entity tag');
      const row = await audited(t, response, allowedBy('records.verify', grantId, { resource: STUDENT, provider: 'zj-edu', rowCount: 1, subjectRefs: [app.subjectRef(alice.id_number)] }), [alice.id_number]);
      sameItems(t, row.fields, ['name', 'id_number', 'school'], 'the compared fields are recorded');
    });

    t.test('a wrong school is a mismatch with a result per field, and the stored school is never in the answer', async (t) => {
      const response = await verify(STUDENT, { subject: { ...aliceSubject, school: '杭州市不存在的学校' } });
      t.equal(response.statusCode, 200);
      t.same(response.json(), { verdict: 'mismatch', fields: { name: 'match', id_number: 'match', school: 'mismatch' } });
      t.notOk(response.body.includes(alice.school), 'the stored school does not appear in the answer');
      t.notOk(response.body.includes(alice.name), 'nor the name');
      await audited(t, response, allowedBy('records.verify', grantId, { rowCount: 1, subjectRefs: [app.subjectRef(alice.id_number)] }), [alice.id_number]);

      const wrongName = await verify(STUDENT, { subject: { ...aliceSubject, name: `${alice.name}某` } });
      t.same(wrongName.json(), { verdict: 'mismatch', fields: { name: 'mismatch', id_number: 'match', school: 'match' } });
      t.notOk(wrongName.body.includes(alice.school));
      await audited(t, wrongName, allowedBy('records.verify', grantId), [alice.id_number]);
    });

    t.test('a valid ID number nobody has: not_found, every field unknown', async (t) => {
      const response = await verify(STUDENT, { subject: { name: '张三', id_number: absentId, school: alice.school } });
      t.equal(response.statusCode, 200);
      t.same(response.json(), { verdict: 'not_found', fields: { name: 'unknown', id_number: 'unknown', school: 'unknown' } });
      await audited(t, response, allowedBy('records.verify', grantId, { rowCount: 0, subjectRefs: [app.subjectRef(absentId)] }), [absentId]);
    });

    t.test('an ID number with a wrong check character: 400 invalid_identifier, recorded as denied', async (t) => {
      const response = await verify(STUDENT, { subject: { ...aliceSubject, id_number: badCheckId } });
      const problem = assertProblem(t, response, 400, 'invalid_identifier');
      t.match(problem.detail, /id_number/);
      t.notOk(response.body.includes(badCheckId), 'the number is not echoed');
      await audited(t, response, deniedAs('records.verify', 'invalid_identifier', { resource: STUDENT, provider: 'zj-edu', grantId, purpose: PURPOSE }), [badCheckId, alice.id_number]);
    });

    t.test('comparing a field outside the grant (grade): 403 field_not_granted', async (t) => {
      const response = await verify(STUDENT, { subject: { ...aliceSubject, grade: alice.grade } });
      assertProblem(t, response, 403, 'field_not_granted');
      await audited(t, response, deniedAs('records.verify', 'field_not_granted', { resource: STUDENT, grantId: null }), [alice.id_number]);
    });

    t.test('a verify grant does not read or query: 403 mode_not_granted', async (t) => {
      const readResponse = await read(STUDENT, alice.student_id);
      assertProblem(t, readResponse, 403, 'mode_not_granted');
      await audited(t, readResponse, deniedAs('records.read', 'mode_not_granted', { resource: STUDENT, rowCount: null }), [alice.id_number]);
      const queryResponse = await query(STUDENT, { filter: { school: { eq: alice.school } } });
      assertProblem(t, queryResponse, 403, 'mode_not_granted');
      await audited(t, queryResponse, deniedAs('records.query', 'mode_not_granted', { resource: STUDENT }));
    });

    t.test('a batch of subjects answers each, in order', async (t) => {
      const subjects = [
        { name: bob.name, id_number: bob.id_number, school: bob.school },
        { name: '李四', id_number: absentId, school: '某学校' },
        { name: carol.name, id_number: carol.id_number, school: bob.school === carol.school ? '另一所学校' : bob.school },
      ];
      const response = await verify(STUDENT, { subjects });
      t.equal(response.statusCode, 200, response.body);
      t.same(response.json(), {
        results: [
          { verdict: 'match', fields: { name: 'match', id_number: 'match', school: 'match' } },
          { verdict: 'not_found', fields: { name: 'unknown', id_number: 'unknown', school: 'unknown' } },
          { verdict: 'mismatch', fields: { name: 'match', id_number: 'match', school: 'mismatch' } },
        ],
      });
      t.notOk(response.body.includes(carol.school), 'carol\'s stored school is not in the answer');
      const row = await audited(t, response, allowedBy('records.verify', grantId, { rowCount: 2 }), [bob.id_number, carol.id_number, absentId]);
      sameItems(t, row.subjectRefs, [app.subjectRef(bob.id_number), app.subjectRef(absentId), app.subjectRef(carol.id_number)], 'a reference for each person verified');
    });

    t.test('more than 100 subjects: 400', async (t) => {
      const subjects = Array.from({ length: 101 }, () => aliceSubject);
      const response = await verify(STUDENT, { subjects });
      assertProblem(t, response, 400, 'invalid_request');
      await audited(t, response, { action: 'records.verify', outcome: 'denied', reason: 'invalid_request', rowCount: null }, [alice.id_number]);
      const hundred = await verify(STUDENT, { subjects: subjects.slice(0, 100) });
      t.equal(hundred.statusCode, 200, '100 subjects are fine');
      t.equal(hundred.json().results.length, 100);
      await audited(t, hundred, allowedBy('records.verify', grantId, { rowCount: 100, subjectRefs: [app.subjectRef(alice.id_number)] }), [alice.id_number]);
    });

    t.test('revoking the grant stops verification at once: 403 grant_missing', async (t) => {
      const revoked = await app.inject({ method: 'DELETE', url: `/v1/grants/${grantId}`, headers: edu.headers });
      t.equal(revoked.statusCode, 200, revoked.body);
      t.equal(revoked.json().status, 'revoked');
      const response = await verify(STUDENT, { subject: aliceSubject });
      assertProblem(t, response, 403, 'grant_missing');
      await audited(t, response, deniedAs('records.verify', 'grant_missing', { resource: STUDENT, grantId: null }), [alice.id_number]);
    });
  });

  t.test('a read grant on student_id, name, school and status', async (t) => {
    const granted = ['student_id', 'name', 'school', 'status'];
    const grantId = await applyAndApprove({ resource: STUDENT, fields: granted, mode: 'read', purpose: '学生资助资格审核', legal_basis: '《学生资助资金管理办法》', duration_days: 90 });

    t.test('GET a record: exactly the granted fields, never the ID number', async (t) => {
      const response = await read(STUDENT, alice.student_id);
      t.equal(response.statusCode, 200, response.body);
      const body = response.json();
      t.same(Object.keys(body).sort(), ['grant_id', 'record', 'resource']);
      t.same(Object.keys(body.record).sort(), [...granted].sort(), 'the granted fields and nothing else');
      t.same(body, { resource: STUDENT, record: { student_id: alice.student_id, name: alice.name, school: alice.school, status: alice.status }, grant_id: grantId });
      t.notOk('id_number' in body.record);
      t.equal(response.headers['cache-control'], 'no-store', 'personal data: no cache may keep it');
      t.notOk(response.headers.etag, 'nor is it tagged for one');
      const row = await audited(t, response, allowedBy('records.read', grantId, { resource: STUDENT, provider: 'zj-edu', rowCount: 1 }), [alice.id_number]);
      sameItems(t, row.fields, granted, 'the disclosed fields are recorded');
    });

    t.test('the read is findable by the student\'s subject reference (for the citizen\'s access log)', async (t) => {
      const response = await read(STUDENT, bob.student_id);
      t.equal(response.statusCode, 200);
      const row = await audited(t, response, allowedBy('records.read', grantId), [bob.id_number]);
      const refs = row.subjectRefs ?? [];
      t.ok(
        refs.includes(app.subjectRef(bob.id_number)) || refs.includes(app.subjectRef(bob.student_id)),
        `subject_refs holds a keyed hash of the student (got ${JSON.stringify(row.subjectRefs)})`,
      );
    });

    t.test('an unknown key: 404 record_not_found, recorded with no rows', async (t) => {
      const missing = `G${absentId}`;
      const response = await read(STUDENT, missing);
      assertProblem(t, response, 404, 'record_not_found');
      t.notOk(response.body.includes(absentId), 'the key is not echoed in full');
      await audited(t, response, deniedAs('records.read', 'record_not_found', { resource: STUDENT, grantId, rowCount: 0 }), [absentId]);
    });

    t.test('query by school: the school\'s students with the granted fields only', async (t) => {
      const expected = pupils.filter((pupil) => pupil.school === alice.school);
      const response = await query(STUDENT, { filter: { school: { eq: alice.school } } });
      t.equal(response.statusCode, 200, response.body);
      const body = response.json() as { items: Array<Record<string, unknown>>; next_cursor: string | null; grant_id: string };
      t.equal(body.grant_id, grantId);
      t.equal(body.next_cursor, null);
      t.same(body.items.map((item) => item.student_id).sort(), expected.map((pupil) => pupil.student_id).sort());
      t.ok(body.items.every((item) => Object.keys(item).sort().join() === [...granted].sort().join() && item.school === alice.school), 'granted fields only');
      const row = await audited(t, response, allowedBy('records.query', grantId, { rowCount: expected.length }), expected.map((pupil) => pupil.id_number));
      sameItems(t, row.fields, granted, 'the disclosed fields');

      const some = await query(STUDENT, { filter: { school: { eq: alice.school } }, fields: ['name'] });
      t.equal(some.statusCode, 200);
      t.ok((some.json().items as object[]).every((item) => Object.keys(item).join() === 'name'), 'fields: a subset of the grant');
      await audited(t, some, allowedBy('records.query', grantId, { fields: ['name'] }));
    });

    t.test('filtering on an item outside the grant (id_number): 403 field_not_granted', async (t) => {
      for (const body of [{ filter: { id_number: { eq: alice.id_number } } }, { filter: { id_number: { eq: alice.id_number } }, fields: ['name'] }]) {
        const response = await query(STUDENT, body);
        assertProblem(t, response, 403, 'field_not_granted');
        t.notOk(response.body.includes(alice.id_number));
        await audited(t, response, deniedAs('records.query', 'field_not_granted', { resource: STUDENT }), [alice.id_number]);
      }
    });

    t.test('asking for fields outside the grant: 403 field_not_granted', async (t) => {
      const response = await query(STUDENT, { filter: { school: { eq: alice.school } }, fields: ['name', 'id_number'] });
      assertProblem(t, response, 403, 'field_not_granted');
      await audited(t, response, deniedAs('records.query', 'field_not_granted', { resource: STUDENT }));
    });

    t.test('filter mistakes: 400 invalid_filter naming the item', async (t) => {
      const mistakes: Array<[string, object, RegExp]> = [
        ['a non-filterable item', { name: { eq: alice.name } }, /^name: is not filterable/],
        ['an unknown operator', { school: { like: alice.school } }, /^school: unknown operator like/],
        ['comparisons that are not an object', { school: alice.school }, /^school: must be an object of operators/],
        ['in without an array', { school: { in: alice.school } }, /^school: in needs a non-empty array/],
        ['in with an empty array', { school: { in: [] } }, /^school: in needs a non-empty array/],
        ['in with 101 values', { school: { in: Array.from({ length: 101 }, (_, i) => `学校${i}`) } }, /^school: in takes at most 100 values/],
        ['prefix with a number', { school: { prefix: 3 } }, /^school: prefix needs a non-empty string/],
        ['null for a value', { school: { eq: null } }, /^school: is required/],
      ];
      for (const [what, filter, detail] of mistakes) {
        const response = await query(STUDENT, { filter });
        const problem = assertProblem(t, response, 400, 'invalid_filter');
        t.match(problem.detail, detail, what);
        await audited(t, response, deniedAs('records.query', 'invalid_filter', { resource: STUDENT, grantId }));
      }
    });

    t.test('a filter on an item the resource does not have: 400 invalid_filter naming it', async (t) => {
      const response = await query(STUDENT, { filter: { nickname: { eq: '小明' } } });
      if (!t.equal(response.statusCode, 400, `400, not ${response.statusCode} ${response.body}`)) return;
      const problem = assertProblem(t, response, 400, 'invalid_filter');
      t.match(problem.detail, /nickname/);
      await audited(t, response, deniedAs('records.query', 'invalid_filter', { resource: STUDENT }));
    });

    t.test('a value of the wrong type (an object for a text item): 400 invalid_filter naming the item', async (t) => {
      const response = await query(STUDENT, { filter: { school: { eq: { name: alice.school } } } });
      if (!t.equal(response.statusCode, 400, `400, not ${response.statusCode} ${response.body}`)) return;
      const problem = assertProblem(t, response, 400, 'invalid_filter');
      t.match(problem.detail, /^school:/);
      await audited(t, response, deniedAs('records.query', 'invalid_filter', { resource: STUDENT }));
    });

    t.test('keyset paging with limit 50 covers the students of a hundred schools once each', async (t) => {
      const schoolCounts = new Map<string, number>();
      for (const pupil of pupils) schoolCounts.set(pupil.school, (schoolCounts.get(pupil.school) ?? 0) + 1);
      const schools = [...schoolCounts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 100).map(([school]) => school);
      const expected = pupils.filter((pupil) => schools.includes(pupil.school)).map((pupil) => pupil.student_id).sort();
      t.ok(expected.length > 150, `${expected.length} students: several pages`);

      const seen: string[] = [];
      let cursor: string | null | undefined;
      let pages = 0;
      do {
        const response = await query(STUDENT, { filter: { school: { in: schools } }, limit: 50, ...(cursor ? { cursor } : {}) });
        t.equal(response.statusCode, 200, response.body);
        const body = response.json() as { items: Array<{ student_id: string }>; next_cursor: string | null };
        t.ok(body.items.length <= 50, 'at most 50 a page');
        seen.push(...body.items.map((item) => item.student_id));
        cursor = body.next_cursor;
        pages += 1;
        await audited(t, response, allowedBy('records.query', grantId, { rowCount: body.items.length }));
      } while (cursor && pages < 20);
      t.equal(pages, Math.ceil(expected.length / 50), 'full pages until the last');
      t.equal(new Set(seen).size, seen.length, 'no student twice');
      t.same([...seen].sort(), expected, 'every student of those schools');

      const tampered = await query(STUDENT, { filter: { school: { in: schools } }, limit: 50, cursor: Buffer.from('{"not":"a keyset"}').toString('base64url') });
      assertProblem(t, tampered, 400, 'invalid_cursor');
      await audited(t, tampered, deniedAs('records.query', 'invalid_cursor'));
    });

    t.test('revoking the read grant stops reading', async (t) => {
      const revoked = await app.inject({ method: 'DELETE', url: `/v1/grants/${grantId}`, headers: edu.headers });
      t.equal(revoked.statusCode, 200);
      const response = await read(STUDENT, alice.student_id);
      assertProblem(t, response, 403, 'grant_missing');
      await audited(t, response, deniedAs('records.read', 'grant_missing', { grantId: null }));
    });
  });

  t.test('enterprise registration: unconditional, granted at once', async (t) => {
    const applied = await app.inject({
      method: 'POST',
      url: '/v1/applications',
      headers: hrss.headers,
      payload: { resource: ENTERPRISE, fields: ['uscc', 'name', 'region_code', 'status'], mode: 'read', purpose: '用工企业核查', legal_basis: '《劳动合同法》', duration_days: 30 },
    });
    t.equal(applied.statusCode, 201, 'approved at once');
    const grantId = applied.json().grant_id as string;
    const [firm] = firms as [(typeof firms)[number]];

    t.test('query by region_code prefix', async (t) => {
      const expected = firms.filter((candidate) => candidate.region_code.startsWith('3301')).map((candidate) => candidate.uscc).sort();
      const response = await query(ENTERPRISE, { filter: { region_code: { prefix: '3301' } }, limit: 1000 });
      t.equal(response.statusCode, 200, response.body);
      const items = response.json().items as Array<{ uscc: string; region_code: string }>;
      t.same(items.map((item) => item.uscc).sort(), expected, 'every Hangzhou enterprise, no other');
      t.ok(items.every((item) => item.region_code.startsWith('3301')));
      await audited(t, response, allowedBy('records.query', grantId, { resource: ENTERPRISE, provider: 'zj-amr', rowCount: expected.length }));
    });

    t.test('read one enterprise by its unified social credit code', async (t) => {
      const response = await read(ENTERPRISE, firm.uscc);
      t.equal(response.statusCode, 200, response.body);
      t.same(response.json().record, { uscc: firm.uscc, name: firm.name, region_code: firm.region_code, status: firm.status });
      await audited(t, response, allowedBy('records.read', grantId, { resource: ENTERPRISE, provider: 'zj-amr', rowCount: 1 }));
    });

    t.test('a code with a wrong check character, or a malformed division code in a filter: 400', async (t) => {
      const wrong = `${firm.uscc.slice(0, 17)}${firm.uscc[17] === '0' ? '1' : '0'}`;
      const response = await read(ENTERPRISE, wrong);
      assertProblem(t, response, 400, 'invalid_identifier');
      await audited(t, response, deniedAs('records.read', 'invalid_identifier', { resource: ENTERPRISE, grantId }));

      const badFilter = await query(ENTERPRISE, { filter: { region_code: { eq: '33010' } } });
      const problem = assertProblem(t, badFilter, 400, 'invalid_filter');
      t.match(problem.detail, /^region_code: must be a division code/);
      await audited(t, badFilter, deniedAs('records.query', 'invalid_filter', { resource: ENTERPRISE }));
    });
  });

  t.test('a query cursor does not carry a record key the grant does not cover', async (t) => {
    // zj-ca may read names and schools, not student numbers (which hold the ID number: G + ID).
    const ca = await party(app, 'zj-ca', ['records:read', 'applications:write']);
    const grantId = await applyAndApprove(
      { resource: STUDENT, fields: ['name', 'school'], mode: 'read', purpose: '婚姻登记核查', legal_basis: '《婚姻登记条例》', duration_days: 30 },
      undefined,
      ca,
    );
    const schools = [...new Set(pupils.slice(0, 40).map((pupil) => pupil.school))];
    const response = await query(STUDENT, { filter: { school: { in: schools } }, limit: 1 }, exchangeHeaders(ca));
    t.equal(response.statusCode, 200, response.body);
    const body = response.json() as { items: Array<Record<string, unknown>>; next_cursor: string | null };
    t.same(Object.keys(body.items[0] ?? {}).sort(), ['name', 'school'], 'the item itself is cut to the grant');
    t.type(body.next_cursor, 'string', 'more pages');
    const decoded = Buffer.from(String(body.next_cursor), 'base64url').toString('utf8');
    const leaked = pupils.find((pupil) => decoded.includes(pupil.student_id) || decoded.includes(pupil.id_number));
    t.notOk(leaked, `the cursor does not reveal a student number or ID number (decodes to ${decoded.slice(0, 6)}…)`);
    await audited(t, response, { action: 'records.query', outcome: 'allowed', agency: 'zj-ca', grantId, rowCount: 1 });
  });

  t.test('every exchange call left exactly one audit record', async (t) => {
    const [row] = await app.db.select({ n: count() }).from(auditEvents).where(like(auditEvents.action, 'records.%'));
    t.equal(row?.n, exchangeCalls, `${exchangeCalls} calls, as many records`);
  });
});
