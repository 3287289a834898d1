/**
 * Every operation fuzzed (issue 17, item 4). Each operation of the gateway's OpenAPI document gets
 * generated requests (test/helpers/fuzz.ts): wrong types, missing and extra fields, huge and empty
 * strings, deep JSON, Unicode edge cases, SQL and path metacharacters, bad cursors, bad Range and
 * conditional headers, with and without valid tokens. The promises checked on every answer:
 *
 * - it is below 500, carries X-Request-Id, and an error is RFC 9457 problem+json with a stable code;
 * - a refused answer (4xx) stores nothing but its own audit record: the trail records every answer
 *   of an audited route (config.audit), every 401, and every 403 to a caller whose token verified
 *   (src/audit/index.ts), and such a record is the request's own, `denied`, with the answer's
 *   status and code; every other table is unchanged. One exception: a client assertion that
 *   verified is spent (used_client_assertions, RFC 7523 §3) even when the token request is then
 *   refused for another reason, so that it cannot be replayed.
 *
 * FUZZ_RUNS sets the cases per operation and driver (default 100), FUZZ_SEED the seed; when one
 * operation is being looked into, FUZZ_ONLY (a regular expression) picks operations by name and
 * FUZZ_DEBUG=1 prints every case with its answer.
 */
import { generateKeyPair, exportJWK, SignJWT } from 'jose';
import t, { type Test } from 'tap';
import fc from 'fast-check';
import { eq } from 'drizzle-orm';
import type { App } from '../../src/app.js';
import type { Driver } from '../../src/db/index.js';
import { auditEvents } from '../../src/db/schema.js';
import { enterprises, residents, seedDemo, students } from '../../src/demo/seed.js';
import { STATIONS, stations, seedOpenDemo } from '../../src/demo/open.js';
import { findResource } from '../../src/catalog/index.js';
import { createClient } from '../../src/identity/clients.js';
import { findDataset, termsOf } from '../../src/open/datasets.js';
import { problemType } from '../../src/errors.js';
import { buildTestApp, forEachDriver, freshDatabase } from '../helpers/app.js';
import { citizenIdentityProvider } from '../helpers/citizens.js';
import { party, type Party } from '../helpers/parties.js';
import { assertProblem } from '../helpers/problem.js';
import { asText, badCursors, hostileKey, hostileText, operationsOf, percentEncode, requestsFor, SchemaFuzzer, seedFor, wrongValue, type FuzzRequest, type Hints, type JsonSchema, type Operation } from '../helpers/fuzz.js';
import { changedTables, storedStateReader, type StoredState } from '../helpers/stored.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 100);
const SEED = Number(process.env.FUZZ_SEED ?? 20260517);
const ONLY = new RegExp(process.env.FUZZ_ONLY ?? '');
/** Far beyond any answer here (milliseconds): a request still unanswered then is reported, not waited for. */
const HUNG_MS = 60_000;

// The file's own time limit, for as many cases as it is asked to run (about 20 ms a case per driver).
t.setTimeout(Math.max(600_000, RUNS * 6_000));

const ENTERPRISE = '330000-AMR-00001'; // zj-amr: shared and open unconditionally, 1000 enterprises
const STUDENT = '330000-EDU-00001'; // zj-edu: shared on conditions, 1500 students
const RESIDENTS = '330000-PSB-00001'; // zj-psb: shared on conditions, not granted here
const INSURED = '330000-HRSS-00003'; // zj-hrss: open on conditions (terms)
const PENALTIES = '330000-AMR-00002'; // zj-amr: unconditional, no records loaded
const SURVEY_MAPS = '330000-NR-00003'; // zj-nr: shared with nobody
const NO_SUCH = '330000-EDU-09999';
const OBSERVATIONS = '330000-ENV-00002'; // zj-env: open, keyed by station and a datetime, no records loaded
const CODES = [ENTERPRISE, STUDENT, RESIDENTS, INSURED, PENALTIES, OBSERVATIONS, SURVEY_MAPS, STATIONS, '330000-STATS-00001', NO_SUCH];

const people = [...residents(5000)].slice(0, 40);
const pupils = [...students(residents(5000), 1500)].slice(0, 20);
const firms = [...enterprises(1000)].slice(0, 20);
const sites = [...stations()].slice(0, 10);

const fullWidth = (text: string) => text.replace(/[0-9]/g, (d) => String.fromCharCode(0xff10 + Number(d)));
/** An ID number as people and systems mangle it: full-width digits, marks, spaces, a lower-case x. */
const idVariants = (id: string) => [id, fullWidth(id), `${fullWidth(id.slice(0, 6))}${id.slice(6)}`, `\u202D${id}\u202C`, `\u200F${id}`, ` ${id} `, id.toLowerCase(), `${id}\u0000`, `${id.slice(0, 17)}`, `${id}0`, id.replace(/\d$/, 'X')];

/** X-Purpose as clients send it: UTF-8 bytes, RFC 8187; and near misses (bad escapes, bytes that are not UTF-8, blank, long). */
const PURPOSES = ['就业补贴资格审核', 'employment subsidy eligibility review', "UTF-8''%E5%B0%B1%E4%B8%9A%E8%A1%A5%E8%B4%B4", "utf-8'zh'%E6%A0%B8%E9%AA%8C", '人社局 王小明'];
const PURPOSE_MISSES = ["UTF-8''%ED%A0%80", "UTF-8''%zz", "UTF-8''%C0%80", '\xff\xfe\xfd', '\xed\xa0\x80', '\xc0\x80', '\u202E审核', '   ', 'a'.repeat(600)];

type Injected = Awaited<ReturnType<App['inject']>>;

/** Tokens a request may carry: the world's parties, and the ways a token is wrong. */
interface Credentials {
  pool: Record<string, string | undefined>;
  /** Labels of the tokens that verify (the caller is known, so a 403 is audited). */
  verifying: Set<string>;
  /** Labels of the parties holding each scope. */
  byScope: Map<string, string[]>;
}

function alterLastChar(token: string): string {
  return `${token.slice(0, -2)}${token.at(-2) === 'A' ? 'B' : 'A'}${token.at(-1)}`;
}

async function setUpWorld(t: Test, driver: Driver) {
  const database = await freshDatabase(t, driver);
  const idp = await citizenIdentityProvider(t);
  /** The audit action each answered request's route declares, by the case id the test sends. */
  const routeAudit = new Map<string, { audit?: string; auditAnonymous?: boolean }>();
  const app = await buildTestApp(t, driver, {
    database,
    env: {
      // Limits and checkpoints are tested elsewhere; here they would only turn cases into 429s
      // or write between cases.
      RATE_LIMIT_ANONYMOUS_PER_MINUTE: '1000000',
      RATE_LIMIT_CLIENT_PER_MINUTE: '1000000',
      TOKEN_RATE_LIMIT_PER_MINUTE: '1000000',
      AUDIT_CHECKPOINT_EVERY: '100000000',
      AUDIT_CHECKPOINT_SECONDS: '86400',
      SUPERVISOR_AGENCIES: 'zj-dsj',
      TRUSTED_ISSUERS: idp.trustedIssuers,
    },
    extend: (app) => {
      app.addHook('onSend', async (request, _reply, payload) => {
        const caseId = request.headers['x-fuzz-case'];
        if (typeof caseId === 'string') routeAudit.set(caseId, { ...request.routeOptions.config });
        return payload;
      });
    },
  });
  await seedDemo(database, 'small');
  await seedOpenDemo(database, 'small');
  for (const code of [ENTERPRISE, STATIONS]) await app.downloads.build((await findDataset(app.db, code))!);

  const admin = await party(app, 'zj-dsj', ['admin']);
  const consumer = await party(app, 'zj-hrss', ['records:read', 'records:verify', 'applications:write', 'catalog:read']);
  const edu = await party(app, 'zj-edu', ['grants:manage']);
  const amr = await party(app, 'zj-amr', ['grants:manage', 'catalog:read']);
  const supervisor = await party(app, 'zj-dsj', ['audit:read']);
  const other = await party(app, 'zj-ca', ['applications:write', 'records:read']);

  const post = (who: Party, url: string, payload: object) => app.inject({ method: 'POST', url, headers: who.headers, payload });
  const ok = (response: Injected, what: string) => {
    if (response.statusCode >= 300) throw new Error(`${what}: ${response.statusCode} ${response.body}`);
    return response.body ? response.json() : undefined;
  };
  const apply = (who: Party, resource: string, fields: string[], mode = 'read') =>
    post(who, '/v1/applications', { resource, fields, mode, purpose: '企业资质核查', legal_basis: '《企业信息公示暂行条例》', duration_days: 90 });

  const enterpriseItems = (await findResource(app.db, ENTERPRISE))!.document.items.map((item) => item.name);
  const studentItems = (await findResource(app.db, STUDENT))!.document.items.map((item) => item.name);
  const enterpriseGrant = ok(await apply(consumer, ENTERPRISE, enterpriseItems), 'enterprise grant').grant_id as string;
  const studentApplication = ok(await apply(consumer, STUDENT, studentItems), 'student application').id as string;
  ok(await post(edu, `/v1/applications/${studentApplication}/decision`, { decision: 'approve' }), 'student grant');
  // Applications and a grant that the fuzzed decisions and revocations may use up.
  const pending = [];
  for (let i = 0; i < 3; i++) pending.push(ok(await apply(consumer, STUDENT, ['student_id', 'name'], 'verify'), 'pending').id as string);
  const spareGrant = ok(await apply(other, ENTERPRISE, ['uscc', 'name']), 'spare grant').grant_id as string;

  // Clients the admin operations may disable or rotate, and one whose tokens the OAuth endpoints use.
  const spareClients = [];
  for (let i = 0; i < 2; i++) spareClients.push((await createClient(app.db, app.clientSecrets, { agency: 'zj-ca', scopes: ['catalog:read'] })).client.id);
  const oauth = await createClient(app.db, app.clientSecrets, { agency: 'zj-ca', scopes: ['catalog:read', 'records:read'] });
  const form = (fields: Record<string, string>) => ({
    method: 'POST' as const,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams(fields).toString(),
  });
  const oauthToken = async () =>
    ok(await app.inject({ url: '/oauth/token', ...form({ grant_type: 'client_credentials', client_id: oauth.client.id, client_secret: oauth.secret as string }) }), 'token').access_token as string;
  const spareTokens = [await oauthToken(), await oauthToken()];
  const revoked = await oauthToken();
  ok(await app.inject({ url: '/oauth/revoke', ...form({ token: revoked, client_id: oauth.client.id, client_secret: oauth.secret as string }) }), 'revoke');
  const disabledParty = await party(app, 'zj-ca', ['records:read']);
  ok(await app.inject({ method: 'POST', url: `/v1/admin/clients/${disabledParty.clientId}/disable`, headers: admin.headers }), 'disable');

  // A client that authenticates by private_key_jwt (RFC 7523), and assertions good and bad.
  const { publicKey, privateKey } = await generateKeyPair('EdDSA', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'fuzz-1', alg: 'EdDSA' };
  const keyClient = (await createClient(app.db, app.clientSecrets, { agency: 'zj-ca', scopes: ['catalog:read'], jwks: { keys: [jwk] } })).client.id;
  const tokenEndpoint = String((await app.inject({ url: '/.well-known/oauth-authorization-server' })).json().token_endpoint);
  const assertion = (claims: { aud?: string; exp?: number; jti?: string; sub?: string }) => {
    const jwt = new SignJWT({}).setProtectedHeader({ alg: 'EdDSA', kid: 'fuzz-1' }).setIssuer(keyClient).setSubject(claims.sub ?? keyClient).setAudience(claims.aud ?? tokenEndpoint).setIssuedAt();
    if (claims.jti) jwt.setJti(claims.jti);
    return jwt.setExpirationTime(claims.exp ?? Math.floor(Date.now() / 1000) + 120).sign(privateKey);
  };
  const assertions = [
    ...(await Promise.all(Array.from({ length: 12 }, (_, i) => assertion({ jti: `fuzz-${i}` })))),
    await assertion({ jti: 'wrong-audience', aud: 'https://elsewhere.invalid/token' }),
    await assertion({ jti: 'expired', exp: 1_000_000_000 }),
    await assertion({ jti: 'too-long', exp: Math.floor(Date.now() / 1000) + 86_400 }),
    await assertion({}),
    await assertion({ jti: 'other-subject', sub: spareClients[0] as string }),
  ];

  const citizen = await idp.tokenFor(people[0]!.id_number);
  const [header, payload] = consumer.headers.authorization.slice(7).split('.') as [string, string];
  const unsigned = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url')}.${payload}.`;
  const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
  const credentials: Credentials = {
    pool: {
      none: undefined,
      admin: admin.headers.authorization,
      consumer: consumer.headers.authorization,
      edu: edu.headers.authorization,
      amr: amr.headers.authorization,
      supervisor: supervisor.headers.authorization,
      other: other.headers.authorization,
      citizen: `Bearer ${citizen}`,
      tampered: alterLastChar(consumer.headers.authorization),
      'alg-none': `Bearer ${unsigned}`,
      'header-swapped': `Bearer ${header}.${Buffer.from('{"sub":"x"}').toString('base64url')}.${consumer.headers.authorization.split('.')[2]}`,
      disabled: disabledParty.headers.authorization,
      revoked: `Bearer ${revoked}`,
      garbage: 'Bearer x',
      'bearer-empty': 'Bearer ',
      'bearer-lower-case': `bearer ${consumer.headers.authorization.slice(7)}`,
      'bearer-huge': `Bearer ${'a'.repeat(12_000)}`,
      'not-bearer': 'Token abc',
      basic: basic(oauth.client.id, oauth.secret as string),
      'basic-bad-escape': basic('%zz', '%E4'),
      'basic-no-colon': `Basic ${Buffer.from('nocolon').toString('base64')}`,
      'basic-garbage': 'Basic !!!',
    },
    // `bearer …` is the consumer's token: the scheme is matched without regard to case.
    verifying: new Set(['admin', 'consumer', 'bearer-lower-case', 'edu', 'amr', 'supervisor', 'other', 'citizen']),
    byScope: new Map(),
  };
  for (const [label, scopes] of [['admin', ['admin']], ['consumer', ['records:read', 'records:verify', 'applications:write', 'catalog:read']], ['bearer-lower-case', ['records:read', 'records:verify', 'applications:write', 'catalog:read']], ['edu', ['grants:manage']], ['amr', ['grants:manage', 'catalog:read']], ['supervisor', ['audit:read']], ['other', ['applications:write', 'records:read']]] as const) {
    for (const scope of scopes) credentials.byScope.set(scope, [...(credentials.byScope.get(scope) ?? []), label]);
  }

  const terms = termsOf((await findResource(app.db, INSURED))!.document)!;
  const exchangeHeaders = { ...consumer.headers, 'x-purpose': PURPOSES[0] as string };
  const nextCursor = async (url: string, headers: Record<string, string>) => {
    const response = await app.inject({ url, headers });
    return response.statusCode === 200 ? (response.json().next_cursor as string | null) : null;
  };
  const realCursors: Record<string, string[]> = {
    '/v1/admin/clients': [await nextCursor('/v1/admin/clients?limit=1', admin.headers)].filter(Boolean) as string[],
    '/v1/audit/events': [await nextCursor('/v1/audit/events?limit=1', supervisor.headers)].filter(Boolean) as string[],
    '/v1/catalog/resources': [await nextCursor('/v1/catalog/resources?limit=1', {})].filter(Boolean) as string[],
    '/v1/catalog/agencies': [await nextCursor('/v1/catalog/agencies?limit=1', {})].filter(Boolean) as string[],
    '/v1/applications': [await nextCursor('/v1/applications?limit=1', consumer.headers)].filter(Boolean) as string[],
    '/v1/grants': [await nextCursor('/v1/grants?limit=1', consumer.headers)].filter(Boolean) as string[],
    '/v1/open/datasets': [await nextCursor('/v1/open/datasets?limit=1', {})].filter(Boolean) as string[],
    '/v1/open/datasets/{code}/records': [
      await nextCursor(`/v1/open/datasets/${ENTERPRISE}/records?limit=1`, {}),
      await nextCursor(`/v1/open/datasets/${ENTERPRISE}/records?limit=1&order=-name`, {}),
      await nextCursor(`/v1/open/datasets/${STATIONS}/records?limit=1&order=station_code`, {}),
    ].filter(Boolean) as string[],
    '/v1/resources/{code}/query': [
      (await app.inject({ method: 'POST', url: `/v1/resources/${ENTERPRISE}/query`, headers: exchangeHeaders, payload: { limit: 1 } })).json().next_cursor as string,
    ],
  };

  return { app, database, routeAudit, credentials, enterpriseItems, studentItems, ids: { enterpriseGrant, studentApplication, pending, spareGrant, spareClients, keyClient, oauth, spareTokens, assertions }, terms, realCursors, chainId: app.audit.chainId };
}

type World = Awaited<ReturnType<typeof setUpWorld>>;

/** Values for the names the world knows, by parameter or property name (or `{path} name`). */
async function hintsFor(world: World): Promise<Hints> {
  const { ids, credentials } = world;
  const itemNames = new Set<string>();
  for (const code of [ENTERPRISE, STUDENT, RESIDENTS, STATIONS, INSURED, PENALTIES, OBSERVATIONS]) for (const item of (await findResource(world.app.db, code))!.document.items) itemNames.add(item.name);
  const names = [...itemNames];
  const ID_NUMBERS = people.slice(0, 5).flatMap((person) => idVariants(person.id_number));
  const byItem: Record<string, unknown[]> = {
    uscc: [...firms.map((f) => f.uscc), firms[0]!.uscc.toLowerCase(), fullWidth(firms[0]!.uscc), `${firms[0]!.uscc}~2026-01`],
    name: [...firms.map((f) => f.name), ...pupils.map((p) => p.name)],
    id_number: [...pupils.slice(0, 5).map((p) => p.id_number), ...ID_NUMBERS],
    student_id: [...pupils.map((p) => p.student_id), `G${fullWidth(pupils[0]!.id_number)}`],
    school: pupils.map((p) => p.school),
    status: ['存续', '在读', '注销'],
    region_code: ['330106', '330100', '33', '３３０１０６', '999999'],
    industry: ['制造业'],
    established_on: ['2001-02-03', '2001-02-30', '20010203', '2001-02-03T00:00:00Z'],
    registered_capital: [100000, -1, 1e308, '100000', '１２'],
    station_code: sites.map((s) => s.station_code),
    station_type: ['国控', '省控'],
    longitude: [120.15, 181, '120.15', -0],
    latitude: [30.27, -91, 'NaN'],
    started_on: ['2010-01-15'],
    code: ['11', '33', '330000'],
    month: ['2026-01', '2026-13'],
    decided_on: ['2020-01-01', '0000-01-01', '9999-12-31', '2020-02-30'],
    observed_at: ['2026-01-01T00:00:00Z', '0000-01-01T00:00:00Z', '0001-01-01T00:00:00+01:00', '9999-12-31T23:59:59-23:59', '2016-12-31T23:59:60Z'],
  };
  const itemValue = (name: string) => fc.oneof({ weight: 8, arbitrary: Object.hasOwn(byItem, name) ? fc.constantFrom(...(byItem[name] as unknown[])) : fc.constant('x') }, { weight: 1, arbitrary: hostileText }, { weight: 1, arbitrary: wrongValue });
  // Mostly the items of the resources that answer (granted, open), so that filters get past their checks.
  const itemName = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...world.enterpriseItems, ...world.studentItems, 'decided_on', 'observed_at', 'station_code') },
    { weight: 2, arbitrary: fc.constantFrom(...names) },
    { weight: 1, arbitrary: hostileKey },
    { weight: 1, arbitrary: fc.stringMatching(/^[a-z][a-z0-9_]{0,8}$/) },
  );
  const operator = fc.oneof({ weight: 8, arbitrary: fc.constantFrom('eq', 'in', 'lt', 'lte', 'gt', 'gte', 'prefix') }, { weight: 1, arbitrary: fc.constantFrom('like', 'ne', '$ne', '__proto__', 'EQ', '') });
  const comparison = fc.tuple(itemName, operator).chain(([name, op]) =>
    (op === 'in' ? fc.oneof(fc.array(itemValue(name), { minLength: 0, maxLength: 4 }), fc.constant(Array.from({ length: 101 }, () => 'x')), itemValue(name)) : itemValue(name)).map((value) => [name, op, value] as const),
  );
  const filter = fc.array(comparison, { maxLength: 2 }).map((comparisons) => {
    // Own properties, whatever the name (`__proto__` too): this process is the gateway's.
    const own = <T extends object>(object: T, key: string, value: unknown): T => Object.defineProperty(object, key, { value, enumerable: true, configurable: true, writable: true });
    const built: Record<string, Record<string, unknown>> = {};
    for (const [name, op, value] of comparisons) {
      if (!Object.hasOwn(built, name)) own(built, name, {});
      own(built[name] as Record<string, unknown>, op, value);
    }
    return built;
  });
  const subject = fc.array(itemName.chain((name) => itemValue(name).map((value) => [name, value] as const)), { minLength: 1, maxLength: 4 }).map((pairs) => Object.fromEntries(pairs));
  const knownSubject = fc.oneof(
    fc.constantFrom(...firms.slice(0, 5)).map((f) => ({ uscc: f.uscc, name: f.name, established_on: f.established_on, registered_capital: f.registered_capital })),
    fc.constantFrom(...pupils.slice(0, 5)).chain((p) => fc.constantFrom(...idVariants(p.id_number)).map((id) => ({ id_number: id, name: p.name, school: p.school }))),
  );
  /** Resource codes, mostly the likely ones, else any of the world's, now and then mangled. */
  const codes = (likely: string[]) =>
    fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom(...likely) },
      { weight: 2, arbitrary: fc.constantFrom(...CODES) },
      { weight: 1, arbitrary: fc.constantFrom(ENTERPRISE.toLowerCase(), `${ENTERPRISE}\u0000`, fullWidth(ENTERPRISE), `${ENTERPRISE}/`, ` ${ENTERPRISE}`) },
    );
  const list = (values: string[]) => fc.subarray(values, { minLength: 1 }).map((chosen) => chosen.join(','));
  const whereExtra = fc.array(comparison.map(([name, op, value]) => `${percentEncode(`where[${name}][${op}]`)}=${percentEncode(Array.isArray(value) ? value.map(asText).join(',') : asText(value))}`), { minLength: 1, maxLength: 3 });
  /** Text as people write it, and now and then a near miss (hostile text comes with the bent cases). */
  const text = (values: string[], misses: string[] = []) => (misses.length ? fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...values) }, { weight: 1, arbitrary: fc.constantFrom(...misses) }) : fc.constantFrom(...values));
  const scopeWords = ['catalog:read', 'records:read', 'records:verify', 'applications:write', 'grants:manage', 'audit:read', 'admin'];

  return {
    code: codes(CODES),
    // The exchange and open data mostly on the resources that answer there (granted, or open).
    ...Object.fromEntries(['/v1/resources/{code}/records/{key}', '/v1/resources/{code}/query', '/v1/resources/{code}/verify'].map((path) => [`${path} code`, codes([ENTERPRISE, STUDENT])])),
    ...Object.fromEntries(
      ['/v1/open/datasets/{code}', '/v1/open/datasets/{code}/datapackage.json', '/v1/open/datasets/{code}/terms', '/v1/open/datasets/{code}/records', '/v1/open/datasets/{code}/download.{format}'].map((path) => [`${path} code`, codes([ENTERPRISE, ENTERPRISE, STATIONS, INSURED, PENALTIES, OBSERVATIONS])]),
    ),
    resource: fc.constantFrom(...CODES, 'zj-amr', ''),
    key: fc.constantFrom(...firms.slice(0, 5).map((f) => f.uscc), ...pupils.slice(0, 5).map((p) => p.student_id), ...ID_NUMBERS, ...sites.slice(0, 3).map((s) => s.station_code), `${firms[0]!.uscc}~x`, '~', 'G'),
    agency: fc.constantFrom('zj-amr', 'zj-edu', 'zj-hrss', 'zj-dsj', 'zj-nobody', 'ZJ-AMR', 'zj_amr'),
    provider: fc.constantFrom('zj-amr', 'zj-stats', 'zj-env', 'nobody'),
    chain_id: fc.constantFrom(world.chainId, world.chainId.toUpperCase(), 'x'),
    action: fc.constantFrom('records.read', 'auth.refused', 'token.issue', '%', "records.read' or '1'='1"),
    q: text(['企业', '行政区划', 'enterprise', '学籍', '"', 'a & b', '!', '(', ':*', 'OR', '企业 登记 信息', "' | '"]),
    keyword: text(['企业登记', 'enterprise registration']),
    fields: fc.oneof(fc.subarray(world.enterpriseItems, { minLength: 1 }), fc.subarray(world.studentItems, { minLength: 1 }), fc.array(itemName, { minLength: 1, maxLength: 3 })),
    filter,
    '/v1/open/datasets/{code}/records filter': filter.map((value) => JSON.stringify(value)),
    '/v1/open/datasets/{code}/download.{format} filter': filter.map((value) => JSON.stringify(value)),
    subject: fc.oneof({ weight: 3, arbitrary: knownSubject }, { weight: 1, arbitrary: subject }),
    subjects: fc.array(fc.oneof({ weight: 3, arbitrary: knownSubject }, { weight: 1, arbitrary: subject }), { minLength: 1, maxLength: 4 }),
    select: fc.oneof(list(world.enterpriseItems), list(['station_code', 'name', 'longitude', 'latitude', 'started_on']), hostileText),
    order: fc.oneof(list(['uscc', '-uscc', 'name', '-name', 'status', '+region_code', 'station_code', '-station_code', 'code', 'established_on']), hostileText),
    '/v1/open/datasets/{code}/records query:extra': whereExtra,
    '/v1/open/datasets/{code}/download.{format} query:extra': whereExtra,
    sha256: fc.constantFrom(world.terms.sha256, world.terms.sha256.toUpperCase(), '0'.repeat(64)),
    purpose: text(PURPOSES.slice(0, 2)),
    legal_basis: text(['《企业信息公示暂行条例》']),
    reason: text(['材料不全']),
    duration_days: fc.oneof(fc.integer({ min: 1, max: 400 }), fc.constantFrom(365, 366, 3651, 2 ** 31)),
    scopes: fc.subarray(scopeWords, { minLength: 1 }),
    jwks: fc.constantFrom(
      { keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'AAAA' }] },
      { keys: [{ kty: 'EC', crv: 'P-256', x: '\u0000', y: 'y' }] },
      { keys: [{ kty: 'RSA', n: 'x', e: 'AQAB', kid: '\uD800' }] },
      { keys: [{ kty: 'oct', k: 'secret' }] },
      { keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'AAAA', d: 'private' }] },
      { keys: [] },
      { keys: 'x' },
    ),
    // The OAuth forms: the spare client's credentials and tokens, assertions, and near misses.
    grant_type: fc.constantFrom('client_credentials', 'authorization_code', 'password', 'urn:ietf:params:oauth:grant-type:jwt-bearer', 'CLIENT_CREDENTIALS', ''),
    client_id: text([ids.oauth.client.id, ids.keyClient], [ids.spareClients[0] as string, ids.oauth.client.id.toUpperCase(), `${ids.oauth.client.id}\u0000`]),
    client_secret: fc.constantFrom(ids.oauth.secret as string, `${ids.oauth.secret as string}x`, ''),
    client_assertion_type: fc.constantFrom('urn:ietf:params:oauth:client-assertion-type:jwt-bearer', 'urn:ietf:params:oauth:client-assertion-type:saml2-bearer'),
    client_assertion: fc.constantFrom(...ids.assertions, 'a.b.c', 'x', credentials.pool.consumer!.slice(7)),
    token: fc.constantFrom(...ids.spareTokens, `${ids.spareTokens[0] as string}x`, 'x', credentials.pool.tampered!.slice(7)),
    token_type_hint: fc.constantFrom('access_token', 'refresh_token', 'x'),
    // Whole forms as clients send them: by secret (post), by assertion, or with Basic in the header.
    ...Object.fromEntries(
      ['/oauth/token', '/oauth/revoke'].map((path) => [
        `${path} body`,
        fc.oneof(
          fc.record({ grant_type: fc.constant('client_credentials'), client_id: fc.constant(ids.oauth.client.id), client_secret: fc.constant(ids.oauth.secret as string), token: fc.constantFrom(...ids.spareTokens), scope: fc.constantFrom('catalog:read', 'records:read catalog:read', 'admin') }, { requiredKeys: ['grant_type', 'client_id', 'client_secret'] }),
          fc.record({ grant_type: fc.constant('client_credentials'), client_assertion_type: fc.constant('urn:ietf:params:oauth:client-assertion-type:jwt-bearer'), client_assertion: fc.constantFrom(...ids.assertions), token: fc.constantFrom(...ids.spareTokens) }, { requiredKeys: ['grant_type', 'client_assertion_type', 'client_assertion'] }),
          fc.record({ grant_type: fc.constant('client_credentials'), token: fc.constantFrom(...ids.spareTokens) }, { requiredKeys: ['grant_type'] }),
        ),
      ]),
    ),
    scope: fc.oneof(list(scopeWords).map((s) => s.replaceAll(',', ' ')), fc.constantFrom('', ' ', 'admin admin', 'catalog:read\u0000')),
    'header:x-purpose': text(PURPOSES, PURPOSE_MISSES),
    'header:x-on-behalf-of': text(['case HRSS-2026-0042', '人社局 王小明', "UTF-8''%E4%BA%BA"], ['\xe4\xba', 'x'.repeat(300)]),
    // Ids per operation: the ones a fuzzed call may use up are spares.
    '/v1/admin/clients/{id} id': fc.constantFrom(ids.oauth.client.id, ...ids.spareClients, 'x', ''),
    '/v1/admin/clients/{id}/disable id': fc.constantFrom(...ids.spareClients, 'x'),
    '/v1/admin/clients/{id}/rotate-secret id': fc.constantFrom(...ids.spareClients, ids.keyClient, 'x'),
    '/v1/applications/{id} id': fc.constantFrom(ids.studentApplication, ...ids.pending, ids.enterpriseGrant, 'x'),
    '/v1/applications/{id}/decision id': fc.constantFrom(...ids.pending, ids.studentApplication, 'x'),
    '/v1/grants/{id} id': fc.constantFrom(ids.spareGrant, ids.studentApplication, 'x'),
    // Cursors: real ones for each list, tampered, and ones of the right shape holding wrong values.
    ...Object.fromEntries(Object.entries(world.realCursors).map(([path, cursors]) => [`${path} cursor`, badCursors(cursors)])),
    cursor: badCursors([]),
  };
}

/** The world's credentials for an operation: mostly a token that may call it, else anything. */
function credentialsFor(credentials: Credentials) {
  const labels = Object.keys(credentials.pool);
  return (operation: Operation) => {
    const allowed = operation.security
      ? [...new Set(operation.security.flatMap((scopes) => (scopes.length === 0 ? ['citizen'] : scopes.flatMap((scope) => credentials.byScope.get(scope) ?? []))))]
      : ['none', 'consumer'];
    const pick = (label: string) => ({ label, ...(credentials.pool[label] !== undefined ? { authorization: credentials.pool[label] } : {}) });
    return fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...allowed) }, { weight: 1, arbitrary: fc.constant('none') }, { weight: 3, arbitrary: fc.constantFrom(...labels) }).map(pick);
  };
}

/** The answer, or a rejection when there is none long after any answer should have come. */
async function answerOf(answer: Promise<Injected>): Promise<Injected> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${HUNG_MS / 1000} s`)), HUNG_MS);
  });
  try {
    return await Promise.race([answer, hung]);
  } finally {
    clearTimeout(timer);
  }
}

/** Why an answer breaks a promise, or undefined when it keeps them all. */
async function brokenPromise(world: World, request: FuzzRequest, response: Injected, before: StoredState, after: StoredState, route: { audit?: string; auditAnonymous?: boolean } | undefined): Promise<string | undefined> {
  const status = response.statusCode;
  if (status >= 500) return `answered ${status}: ${response.body.slice(0, 300)}`;
  const requestId = response.headers['x-request-id'];
  if (typeof requestId !== 'string' || requestId === '') return 'no X-Request-Id';
  const refused = status >= 400;
  let code: string | undefined;
  if (refused) {
    const type = String(response.headers['content-type'] ?? '');
    if (!type.startsWith('application/problem+json')) return `a ${status} as ${type || 'no content type'}: ${response.body.slice(0, 200)}`;
    if (status === 401 && !response.headers['www-authenticate']) return 'a 401 without WWW-Authenticate';
    if (request.method !== 'HEAD') {
      let problem: Record<string, unknown>;
      try {
        problem = response.json();
      } catch {
        return `a problem that is not JSON: ${response.body.slice(0, 200)}`;
      }
      code = String(problem.code);
      if (!/^[a-z][a-z0-9_]*$/.test(code)) return `a problem without a stable code: ${response.body.slice(0, 200)}`;
      if (problem.status !== status || problem.type !== problemType(code) || typeof problem.title !== 'string' || typeof problem.detail !== 'string') return `a malformed problem: ${response.body.slice(0, 200)}`;
      if (problem.request_id !== requestId) return 'the problem names another request id';
    }
  } else if (String(response.headers['content-type'] ?? '').startsWith('application/problem+json')) {
    return `a ${status} answered as a problem`;
  }

  // The trail: who must be recorded, and that the record is this request's own.
  const auditId = response.headers['x-audit-id'];
  const anonymous = request.credentials === 'none';
  const audited = route?.audit !== undefined && !(anonymous && !refused && route.auditAnonymous === false);
  const mustRecord = audited || status === 401 || (status === 403 && world.credentials.verifying.has(request.credentials));
  if (mustRecord && typeof auditId !== 'string') return `a ${status} without X-Audit-Id`;
  if (refused && !mustRecord && auditId !== undefined) return `a ${status} audited, which no rule asks for`;
  const own = typeof auditId === 'string' ? await world.app.db.select().from(auditEvents).where(eq(auditEvents.id, auditId)) : [];
  if (typeof auditId === 'string') {
    const [record] = own;
    if (!record) return `X-Audit-Id ${auditId} names no record`;
    if (record.requestId !== requestId || record.status !== status) return `the record ${auditId} is another answer's`;
    if (record.outcome !== (refused ? 'denied' : 'allowed')) return `a ${status} recorded as ${record.outcome}`;
    if (refused && code !== undefined && record.reason !== code) return `a ${code} recorded with reason ${record.reason}`;
  }
  if (!refused) return undefined;

  // Nothing stored by a refused request but its own record (and a spent client assertion).
  if (after.auditRecords !== before.auditRecords + own.length) return `a refused request added ${after.auditRecords - before.auditRecords} audit records`;
  const changed = changedTables(before, after).filter((table) => !(table === 'public.used_client_assertions' && request.url.startsWith('/oauth/')));
  if (changed.length) return `a refused request changed ${changed.join(', ')}`;
  return undefined;
}

/** The defects the fuzzer found, each as the input that showed it, and the answer it gets now. */
async function foundDefects(t: Test, world: World) {
  const { app, credentials } = world;
  const as = (label: string) => ({ authorization: credentials.pool[label] as string });
  const readState = await storedStateReader(app.db);
  const get = (url: string, label = 'none') => app.inject({ url, headers: label === 'none' ? {} : as(label) });
  const cursor = (position: unknown) => Buffer.from(JSON.stringify(position)).toString('base64url');

  await t.test('a path that does not percent-decode, or a path parameter over the router\'s limit: a problem with its request id', async (t) => {
    for (const url of ['/v1/catalog/agencies/%', '/v1/applications/%C0%AE%C0%AE', `/v1/resources/${ENTERPRISE}/records/%ED%A0%80`]) {
      const problem = assertProblem(t, await get(url, 'consumer'), 400, 'invalid_url');
      t.type(problem.request_id, 'string', url);
    }
    assertProblem(t, await get(`/v1/catalog/resources/${'a'.repeat(300)}/history`), 414, 'uri_too_long');
    // The document lets a record key be 200 characters long; the router used to stop at 100.
    assertProblem(t, await app.inject({ url: `/v1/resources/${ENTERPRISE}/records/${'9'.repeat(150)}`, headers: { ...as('consumer'), 'x-purpose': PURPOSES[0] as string } }), 400, 'invalid_identifier');
  });

  await t.test('NUL and lone surrogates in the path, the query or the body: 400 naming the value, nothing stored', async (t) => {
    const before = await readState();
    const refusals: Array<[Injected, string, string]> = [
      [await app.inject({ method: 'POST', url: '/v1/admin/clients/%00/rotate-secret', headers: as('admin') }), 'params', '/id'],
      [await get('/v1/grants?resource=%00', 'consumer'), 'querystring', '/resource'],
      [await app.inject({ url: '/oauth/token', method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `grant_type=client_credentials&client_id=${world.ids.oauth.client.id}%00&client_secret=x` }), 'body', '/client_id'],
      [await app.inject({ method: 'POST', url: '/v1/admin/clients', headers: as('admin'), payload: { agency: 'zj-amr', scopes: ['catalog:read'], jwks: { keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'a\u0000' }] } } }), 'body', '/jwks/keys/0/x'],
      // Stored with U+FFFD in its place, while its audit record (jsonb) failed: 503 after the data was kept.
      [await app.inject({ method: 'POST', url: '/v1/applications', headers: { ...as('consumer'), 'content-type': 'application/json' }, payload: `{"resource":"${ENTERPRISE}","fields":["uscc"],"mode":"read","purpose":"x","legal_basis":"\\ud800","duration_days":1}` }), 'body', '/legal_basis'],
      [await app.inject({ method: 'POST', url: `/v1/resources/${STUDENT}/verify`, headers: { ...as('consumer'), 'x-purpose': PURPOSES[0] as string }, payload: { subject: { id_number: `${pupils[0]!.id_number}\u0000` } } }), 'body', '/subject/id_number'],
    ];
    for (const [response, where, pointer] of refusals) {
      const problem = assertProblem(t, response, 400, 'invalid_request');
      t.match(problem.errors, [{ in: where, pointer }], `${where}${pointer}`);
    }
    const after = await readState();
    t.same(changedTables(before, after), [], 'no table changed');
    t.equal(after.auditRecords - before.auditRecords, refusals.filter(([response]) => response.headers['x-audit-id']).length, 'only the refusals\' own audit records');
  });

  await t.test('a leap second or a year outside 0001-9999 in a time filter: answered, not 500', async (t) => {
    const stats = await get('/v1/audit/stats?to=2016-12-31T23:59:60Z', 'supervisor');
    t.equal(stats.statusCode, 200);
    t.equal(stats.json().to, '2017-01-01T00:00:00.000Z', 'a leap second is the next second, as in POSIX time');
    t.equal((await get('/v1/audit/stats?to=0001-01-01T00:00:00Z', 'supervisor')).statusCode, 200, 'a day before year 1');
    t.equal((await get('/v1/audit/events?from=1990-12-31T15:59:60-08:00&to=9999-12-31T23:59:59-23:59', 'supervisor')).statusCode, 200);
    for (const [url, item] of [[`/v1/open/datasets/${PENALTIES}/records?where[decided_on][gt]=0000-01-01`, 'decided_on'], [`/v1/open/datasets/${OBSERVATIONS}/records?where[observed_at][lt]=0001-01-01T00:00:00%2B01:00`, 'observed_at']] as const) {
      t.match(assertProblem(t, await get(url), 400, 'invalid_filter').detail, new RegExp(`^${item}: `), 'year 0 is no date PostgreSQL reads');
    }
  });

  await t.test('cursors of the right shape holding wrong values: 400 invalid_cursor', async (t) => {
    for (const [url, label] of [
      [`/v1/audit/checkpoints?cursor=${cursor(['', true])}`, 'supervisor'],
      [`/v1/audit/events?cursor=${cursor(['x', 'y'])}`, 'supervisor'],
      [`/v1/applications?cursor=${cursor(['', 'ap_x'])}`, 'consumer'],
      [`/v1/grants?cursor=${cursor(['2016-12-31T23:59:60Z', 'gr_x'])}`, 'consumer'],
      [`/v1/catalog/agencies?cursor=${cursor('\u0000')}`, 'none'],
      [`/v1/admin/clients?cursor=${cursor('a\u0000')}`, 'admin'],
      [`/v1/open/datasets?cursor=${cursor('\uD800')}`, 'none'],
    ] as const) {
      assertProblem(t, await get(url, label), 400, 'invalid_cursor');
    }
  });

  await t.test('OAuth: Basic credentials that do not percent-decode are 401, and every 401 challenges', async (t) => {
    const token = (headers: Record<string, string>, payload = 'grant_type=client_credentials') => app.inject({ method: 'POST', url: '/oauth/token', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, payload });
    const refusals = [await token({ authorization: credentials.pool['basic-bad-escape'] as string }), await token({}), await token({}, `grant_type=client_credentials&client_id=${world.ids.oauth.client.id}&client_secret=wrong`)];
    for (const response of refusals) {
      assertProblem(t, response, 401, 'invalid_client');
      t.match(response.headers['www-authenticate'], /^Basic realm="govdata-gateway"/, 'RFC 9110 §15.5.2: a 401 carries a challenge');
    }
  });
}

forEachDriver(t, 'every operation of the OpenAPI document, fuzzed', async (t: Test, driver: Driver) => {
  const world = await setUpWorld(t, driver);
  const { app } = world;
  await t.test('the defects the fuzzer found', (t) => foundDefects(t, world));
  const document = app.swagger() as JsonSchema;
  const operations = operationsOf(document);
  const fuzzer = new SchemaFuzzer(document, await hintsFor(world));
  const requestWorld = { credentials: credentialsFor(world.credentials) };
  const readState = await storedStateReader(app.db);
  let state = await readState();
  let caseNumber = 0;
  let total = 0;
  const started = Date.now();

  t.equal(operations.length, Object.values(document.paths as Record<string, object>).flatMap((item) => Object.keys(item)).length, 'every operation of the document is fuzzed');

  for (const operation of operations.filter((candidate) => ONLY.test(candidate.name))) {
    await t.test(operation.name, async (t) => {
      let cases = 0;
      const statuses = new Map<number, number>();
      const property = fc.asyncProperty(requestsFor(operation, fuzzer, requestWorld), async (request) => {
        cases += 1;
        const caseId = String((caseNumber += 1));
        const before = state;
        let broken: string | undefined;
        try {
          const response = await answerOf(app.inject({ method: request.method as 'GET', url: request.url, headers: { ...request.headers, 'x-fuzz-case': caseId }, ...(request.payload !== undefined ? { payload: request.payload } : {}) }));
          state = await readState();
          statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1);
          if (process.env.FUZZ_DEBUG) console.error(response.statusCode, request.credentials, request.method, request.url.slice(0, 200), String(request.payload ?? '').slice(0, 200), '=>', response.body.slice(0, 250));
          broken = await brokenPromise(world, request, response, before, state, world.routeAudit.get(caseId));
        } catch (error) {
          state = await readState();
          throw error;
        } finally {
          world.routeAudit.delete(caseId);
        }
        // The gateway runs in this process: no request may have added to every object.
        const polluted = Object.keys(Object.prototype);
        if (polluted.length) broken ??= `Object.prototype polluted with ${polluted.join(', ')}`;
        if (broken) throw new Error(`${broken}\n  ${request.method} ${request.url.slice(0, 300)} as ${request.credentials}`);
      });
      const details = await fc.check(property, { seed: seedFor(SEED, operation.name), numRuns: RUNS });
      total += cases;
      const answers = [...statuses].sort(([a], [b]) => a - b).map(([status, n]) => `${status}×${n}`).join(' ');
      t.notOk(details.failed, details.failed ? `${(details.errorInstance as Error)?.stack ?? String(details.errorInstance)}\n${fc.defaultReportMessage(details) ?? ''}` : `${details.numRuns} cases: ${answers}`);
    });
  }
  t.comment(`${driver}: ${total} cases over ${operations.length} operations in ${Math.round((Date.now() - started) / 1000)} s`);
});

