import t, { type Test } from 'tap';
import canonicalize from 'canonicalize';
import { and, asc, eq, max } from 'drizzle-orm';
import { compactVerify, decodeProtectedHeader, importJWK, type JWK } from 'jose';
import type { LightMyRequestResponse } from 'fastify';
import type { App } from '../../src/app.js';
import type { AuditInput } from '../../src/audit/writer.js';
import { agencies, auditEvents, resources } from '../../src/db/schema.js';
import { createClient } from '../../src/identity/clients.js';
import { buildTestApp, forEachDriver, freshDatabase } from '../helpers/app.js';
import { assertProblem } from '../helpers/problem.js';
import { citizenIdentityProvider } from '../helpers/citizens.js';

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const PERSON = '330102199001011234';
const OTHER_PERSON = '330102199202022345';
/** The columns of the CSV export, in order: the fields of an audit record. */
const CSV_COLUMNS = [
  'id',
  'chain_id',
  'seq',
  'prev_hash',
  'hash',
  'occurred_at',
  'request_id',
  'client_id',
  'agency',
  'on_behalf_of',
  'action',
  'resource',
  'provider',
  'purpose',
  'legal_basis',
  'grant_id',
  'subject_refs',
  'fields',
  'row_count',
  'outcome',
  'status',
  'reason',
  'latency_ms',
  'bytes',
  'client_address',
];

async function clientToken(app: App, agency: string, scopes: string[]): Promise<string> {
  const { client, secret } = await createClient(app.db, app.clientSecrets, { agency, scopes });
  const response = await app.inject({
    method: 'POST',
    url: '/oauth/token',
    headers: FORM,
    payload: new URLSearchParams({ grant_type: 'client_credentials', client_id: client.id, client_secret: secret as string }).toString(),
  });
  if (response.statusCode !== 200) throw new Error(`token for ${agency}: ${response.statusCode} ${response.body}`);
  return response.json().access_token;
}

/** RFC 4180: quoted fields may hold commas, doubled quotes and line breaks. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c === '"') {
      quoted = true;
    } else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || (c === '\r' && text[i + 1] === '\n')) {
      if (c === '\r') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else {
      field += c;
    }
  }
  if (field !== '' || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

/** PostgreSQL's percentile_cont: linear interpolation between the closest ranks. */
function percentileCont(values: number[], fraction: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const position = (sorted.length - 1) * fraction;
  const lower = Math.floor(position);
  const upper = Math.ceil(position);
  return (sorted[lower] as number) + ((sorted[upper] as number) - (sorted[lower] as number)) * (position - lower);
}

const round = (value: number | null) => (value === null ? null : Math.round(value * 1e6) / 1e6);

interface Seed extends AuditInput {
  /** A name for the test's messages. */
  name: string;
}

/**
 * The events read back in the tests below, in a window of their own three hours ago (so that the
 * records the tests themselves cause, now, stay out of it). One a minute, newest last, and three
 * at the very same instant to page across a tie.
 */
function seedEvents(windowStart: number): Seed[] {
  const at = (minute: number) => new Date(windowStart + minute * 60_000).toISOString();
  const edu = { action: 'records.read', agency: 'zj-edu', provider: 'zj-amr', purpose: 'test' };
  return [
    { name: 'edu-1', ...edu, outcome: 'allowed', status: 200, resource: '330000-AMR-00001', latency_ms: 10, occurred_at: at(1) },
    { name: 'edu-2', ...edu, outcome: 'allowed', status: 200, resource: '330000-AMR-00001', latency_ms: 20, occurred_at: at(2) },
    { name: 'edu-3', ...edu, outcome: 'allowed', status: 200, resource: '330000-AMR-00001', latency_ms: 30, occurred_at: at(3) },
    { name: 'edu-4', ...edu, outcome: 'denied', status: 403, reason: 'grant_missing', resource: '330000-AMR-00002', latency_ms: 40, occurred_at: at(4) },
    { name: 'edu-5', ...edu, outcome: 'error', status: 500, resource: '330000-AMR-00001', latency_ms: 50, occurred_at: at(5) },
    {
      name: 'psb-1',
      action: 'records.read',
      outcome: 'allowed',
      status: 200,
      agency: 'zj-psb',
      resource: '330000-CA-00001',
      provider: 'zj-ca',
      purpose: 'case 17, "urgent"\nsecond line',
      latency_ms: 100,
      occurred_at: at(6),
    },
    { name: 'psb-2', action: 'records.read', outcome: 'denied', status: 403, agency: 'zj-psb', resource: '330000-CA-00001', provider: 'zj-ca', purpose: 'test', latency_ms: 200, occurred_at: at(7) },
    { name: 'amr-1', action: 'records.verify', outcome: 'allowed', status: 200, agency: 'zj-amr', resource: '330000-PSB-00001', provider: 'zj-psb', purpose: 'test', latency_ms: 300, occurred_at: at(8) },
    { name: 'hrss-1', action: 'records.query', outcome: 'allowed', status: 200, agency: 'zj-hrss', resource: '330000-AMR-00003', provider: 'zj-amr', purpose: 'test', latency_ms: 400, occurred_at: at(9) },
    ...[1, 2, 3].map((n): Seed => ({
      name: `ca-${n}`,
      action: 'records.read',
      outcome: 'allowed',
      status: 200,
      agency: 'zj-ca',
      resource: '330000-CA-00002',
      provider: 'zj-ca',
      purpose: 'test',
      latency_ms: 5 * n,
      occurred_at: at(10),
    })),
  ];
}

forEachDriver(t, 'reading the audit trail', async (t, driver) => {
  const idp = await citizenIdentityProvider(t);
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, { database, env: { SUPERVISOR_AGENCIES: 'zj-stats', TRUSTED_ISSUERS: idp.trustedIssuers } });
  const tokens = {
    consumer: await clientToken(app, 'zj-edu', ['audit:read']),
    provider: await clientToken(app, 'zj-amr', ['audit:read']),
    supervisor: await clientToken(app, 'zj-stats', ['audit:read']),
    noAudit: await clientToken(app, 'zj-edu', ['catalog:read', 'records:read']),
  };

  const windowStart = Math.floor(Date.now() / 60_000) * 60_000 - 3 * 3_600_000;
  const window = `from=${encodeURIComponent(new Date(windowStart).toISOString())}&to=${encodeURIComponent(new Date(windowStart + 3_600_000).toISOString())}`;
  const seeds = seedEvents(windowStart);
  const seeded = new Map<string, Seed>();
  for (const seed of seeds) {
    const { name: _name, ...input } = seed;
    seeded.set(await app.audit.record(input), seed);
  }
  const idsOf = (predicate: (seed: Seed) => boolean) => [...seeded].filter(([, seed]) => predicate(seed)).map(([id]) => id);

  /** Every event of a listing, page by page through the Link header. */
  async function listAll(t: Test, token: string, query: string, limit = 500) {
    const items: Record<string, unknown>[] = [];
    let url: string | null = `/v1/audit/events?${query}&limit=${limit}`;
    let pages = 0;
    while (url) {
      const response: LightMyRequestResponse = await app.inject({ url, headers: bearer(token) });
      t.equal(response.statusCode, 200, `page ${pages + 1} of ${query}`);
      const body = response.json();
      items.push(...body.items);
      pages += 1;
      const link = response.headers.link as string | undefined;
      if (body.next_cursor === null) {
        t.notOk(link, 'no Link on the last page');
        url = null;
      } else {
        t.match(link, /^<\/v1\/audit\/events\?[^>]*cursor=[^>]+>; rel="next"$/, 'Link: rel="next"');
        url = /^<([^>]+)>/.exec(link ?? '')?.[1] ?? null;
        t.ok(url?.includes(`cursor=${body.next_cursor}`), 'the Link carries next_cursor');
      }
      if (pages > 50) throw new Error('paging does not end');
    }
    return { items, pages };
  }

  t.test('each role sees its part of the trail', async (t) => {
    const consumer = await listAll(t, tokens.consumer, window);
    t.same(
      consumer.items.map((item) => item.id).sort(),
      idsOf((seed) => seed.agency === 'zj-edu').sort(),
      'a consumer sees its own calls only',
    );
    const provider = await listAll(t, tokens.provider, window);
    t.same(
      provider.items.map((item) => item.id).sort(),
      idsOf((seed) => seed.provider === 'zj-amr' || seed.agency === 'zj-amr').sort(),
      'a provider sees the uses of its resources and its own calls',
    );
    const supervisor = await listAll(t, tokens.supervisor, window);
    t.same(supervisor.items.map((item) => item.id).sort(), [...seeded.keys()].sort(), 'a supervisor sees everything');

    // Outside the window too: every row a caller sees is within its scope, and it sees all of those.
    const everything = await app.db.select().from(auditEvents);
    for (const [role, agency] of [
      ['consumer', 'zj-edu'],
      ['provider', 'zj-amr'],
    ] as const) {
      const all = await listAll(t, tokens[role], 'outcome=allowed');
      t.same(
        all.items.map((item) => item.id).sort(),
        everything.filter((row) => row.outcome === 'allowed' && (row.agency === agency || row.provider === agency)).map((row) => row.id).sort(),
        `${role}: exactly the rows of its scope`,
      );
    }
    const all = await listAll(t, tokens.supervisor, 'outcome=allowed');
    t.equal(all.items.length, everything.filter((row) => row.outcome === 'allowed').length, 'supervisor: every row');

    const first = supervisor.items.find((item) => item.id === idsOf((seed) => seed.name === 'edu-4')[0]);
    t.match(first, {
      chain_id: app.audit.chainId,
      seq: Number,
      action: 'records.read',
      outcome: 'denied',
      status: 403,
      reason: 'grant_missing',
      agency: 'zj-edu',
      resource: '330000-AMR-00002',
      provider: 'zj-amr',
      purpose: 'test',
      latency_ms: 40,
      occurred_at: seeds[3]?.occurred_at,
    });
  });

  t.test('who may read the trail', async (t) => {
    assertProblem(t, await app.inject({ url: '/v1/audit/events', headers: bearer(tokens.noAudit) }), 403, 'insufficient_scope');
    const anonymous = await app.inject({ url: '/v1/audit/events' });
    assertProblem(t, anonymous, 401, 'token_missing');
    t.match(anonymous.headers['www-authenticate'], /^Bearer /);
    assertProblem(t, await app.inject({ url: '/v1/audit/events', headers: bearer('garbage') }), 401, 'token_invalid');
    const citizen = await idp.tokenFor(PERSON);
    assertProblem(t, await app.inject({ url: '/v1/audit/events', headers: bearer(citizen) }), 403, 'insufficient_scope');
  });

  t.test('filters', async (t) => {
    const ids = async (token: string, query: string) => (await listAll(t, token, `${window}&${query}`)).items.map((item) => item.id as string).sort();
    t.same(await ids(tokens.supervisor, 'agency=zj-psb'), idsOf((s) => s.agency === 'zj-psb').sort(), 'by agency');
    t.same(await ids(tokens.supervisor, 'resource=330000-AMR-00001'), idsOf((s) => s.resource === '330000-AMR-00001').sort(), 'by resource');
    t.same(await ids(tokens.supervisor, 'action=records.verify'), idsOf((s) => s.action === 'records.verify').sort(), 'by action');
    t.same(await ids(tokens.supervisor, 'outcome=denied'), idsOf((s) => s.outcome === 'denied').sort(), 'by outcome');
    t.same(
      await ids(tokens.supervisor, 'agency=zj-edu&outcome=allowed'),
      idsOf((s) => s.agency === 'zj-edu' && s.outcome === 'allowed').sort(),
      'filters combine',
    );
    const from = new Date(windowStart + 3 * 60_000).toISOString();
    const to = new Date(windowStart + 6 * 60_000).toISOString();
    const between = (await listAll(t, tokens.supervisor, `from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`)).items;
    t.same(
      between.map((item) => item.id).sort(),
      idsOf((s) => ['edu-3', 'edu-4', 'edu-5'].includes(s.name)).sort(),
      'from is inclusive, to exclusive',
    );
    t.same(await ids(tokens.provider, 'agency=zj-psb'), [], 'a filter never widens the scope');
    t.same(await ids(tokens.consumer, 'resource=330000-CA-00001'), [], 'nor does a resource filter');

    assertProblem(t, await app.inject({ url: '/v1/audit/events?outcome=maybe', headers: bearer(tokens.supervisor) }), 400, 'invalid_request');
    assertProblem(t, await app.inject({ url: '/v1/audit/events?from=yesterday', headers: bearer(tokens.supervisor) }), 400, 'invalid_request');
    assertProblem(t, await app.inject({ url: '/v1/audit/events?cursor=bm9wZQ', headers: bearer(tokens.supervisor) }), 400, 'invalid_cursor');
  });

  t.test('keyset paging covers every event once, newest first', async (t) => {
    const whole = await listAll(t, tokens.supervisor, window);
    const paged = await listAll(t, tokens.supervisor, window, 2);
    t.equal(paged.pages, Math.ceil(seeded.size / 2), 'two to a page');
    const ids = paged.items.map((item) => item.id);
    t.equal(new Set(ids).size, ids.length, 'no event twice');
    t.same(ids, whole.items.map((item) => item.id), 'the same events in the same order as one page');
    t.same([...ids].sort(), [...seeded.keys()].sort(), 'every event');
    const times = paged.items.map((item) => Date.parse(item.occurred_at as string));
    t.ok(
      times.every((time, i) => i === 0 || (times[i - 1] as number) >= time),
      'newest first',
    );

    // Events added while a client pages do not shift the pages (the cursor is a position, not an offset).
    const firstPage = await app.inject({ url: `/v1/audit/events?${window}&limit=4`, headers: bearer(tokens.supervisor) });
    await app.audit.record({ action: 'records.read', outcome: 'allowed', agency: 'zj-nr', occurred_at: new Date(windowStart + 30 * 60_000).toISOString() });
    const rest = await listAll(t, tokens.supervisor, `${window}&cursor=${firstPage.json().next_cursor}`);
    t.same(
      [...firstPage.json().items, ...rest.items].map((item) => item.id),
      ids,
      'a newer event does not disturb the pages after the cursor',
    );
  });

  t.test('Accept: text/csv exports the events', async (t) => {
    const json = await listAll(t, tokens.supervisor, window);
    const response = await app.inject({ url: `/v1/audit/events?${window}&limit=1`, headers: { ...bearer(tokens.supervisor), accept: 'text/csv' } });
    t.equal(response.statusCode, 200);
    t.match(response.headers['content-type'], /^text\/csv/);
    t.match(response.headers['content-disposition'], /^attachment; filename="[^"]+\.csv"$/);
    const [header, ...rows] = parseCsv(response.body);
    t.same(header, CSV_COLUMNS, 'a header row names the columns');
    t.equal(rows.length, json.items.length, 'one line per event, every page of them');
    t.ok(
      rows.every((row) => row.length === CSV_COLUMNS.length),
      'every line has every column',
    );
    const records = rows.map((row) => Object.fromEntries(CSV_COLUMNS.map((column, i) => [column, row[i]])));
    t.same(
      records.map((record) => record.id),
      json.items.map((item) => item.id),
      'the same events as the JSON listing, in its order',
    );
    const psb = records.find((record) => record.id === idsOf((s) => s.name === 'psb-1')[0]);
    t.match(psb, {
      agency: 'zj-psb',
      resource: '330000-CA-00001',
      purpose: 'case 17, "urgent"\nsecond line',
      latency_ms: '100',
      outcome: 'allowed',
      chain_id: app.audit.chainId,
    });
    t.equal(psb?.client_id, '', 'nulls are empty fields');

    const consumer = await app.inject({ url: `/v1/audit/events?${window}`, headers: { ...bearer(tokens.consumer), accept: 'text/csv' } });
    const consumerRows = parseCsv(consumer.body).slice(1);
    t.same(
      consumerRows.map((row) => row[0]).sort(),
      idsOf((s) => s.agency === 'zj-edu').sort(),
      'the export keeps to the caller’s scope',
    );
    const none = await app.inject({ url: `/v1/audit/events?${window}&agency=zj-nowhere`, headers: { ...bearer(tokens.supervisor), accept: 'text/csv' } });
    t.same(parseCsv(none.body), [CSV_COLUMNS], 'nothing to export: the header alone');

    // More events than the export reads at a time: all of them, each once.
    const bulkStart = windowStart - 2 * 3_600_000;
    const bulk = await Promise.all(
      Array.from({ length: 1205 }, (_, i) =>
        app.audit.record({ action: 'records.query', outcome: 'allowed', agency: 'zj-env', occurred_at: new Date(bulkStart + (i % 600) * 1000).toISOString() }),
      ),
    );
    const bulkWindow = `from=${encodeURIComponent(new Date(bulkStart).toISOString())}&to=${encodeURIComponent(new Date(bulkStart + 3_600_000).toISOString())}`;
    const large = await app.inject({ url: `/v1/audit/events?${bulkWindow}`, headers: { ...bearer(tokens.supervisor), accept: 'text/csv' } });
    t.equal(large.statusCode, 200);
    const largeIds = parseCsv(large.body)
      .slice(1)
      .map((row) => row[0]);
    t.equal(largeIds.length, bulk.length, `${bulk.length} lines`);
    t.equal(new Set(largeIds).size, bulk.length, 'none twice');
    t.same([...largeIds].sort(), [...bulk].sort(), 'exactly the matching events');
  });

  t.test('statistics by resource and by agency', async (t) => {
    const response = await app.inject({ url: `/v1/audit/stats?${window}`, headers: bearer(tokens.supervisor) });
    t.equal(response.statusCode, 200);
    const body = response.json();
    const inWindow = (await app.db.select().from(auditEvents)).filter(
      (row) => row.occurredAt.getTime() >= windowStart && row.occurredAt.getTime() < windowStart + 3_600_000,
    );
    const expected = (rows: typeof inWindow) => ({
      count: rows.length,
      denied: rows.filter((row) => row.outcome === 'denied').length,
      errors: rows.filter((row) => row.outcome === 'error').length,
      refusal_rate: round(rows.filter((row) => row.outcome === 'denied').length / rows.length),
      error_rate: round(rows.filter((row) => row.outcome === 'error').length / rows.length),
      latency_ms: Object.fromEntries(
        (['p50', 'p95', 'p99'] as const).map((p) => [
          p,
          round(percentileCont(rows.flatMap((row) => (row.latencyMs === null ? [] : [row.latencyMs])), { p50: 0.5, p95: 0.95, p99: 0.99 }[p])),
        ]),
      ),
    });
    type Stat = { key: string | null; count: number; refusal_rate: number; error_rate: number; latency_ms: Record<string, number | null> };
    const rounded = (stat: Stat) => ({
      ...stat,
      refusal_rate: round(stat.refusal_rate),
      error_rate: round(stat.error_rate),
      latency_ms: Object.fromEntries(Object.entries(stat.latency_ms).map(([p, v]) => [p, round(v)])),
    });
    const { key: _total, ...total } = rounded(body.total);
    t.same(total, expected(inWindow), 'the totals');

    const grouped = (column: 'resource' | 'agency') => {
      const groups = new Map<string | null, typeof inWindow>();
      for (const row of inWindow) groups.set(row[column], [...(groups.get(row[column]) ?? []), row]);
      return Object.fromEntries([...groups].map(([key, rows]) => [String(key), expected(rows)]));
    };
    const byKey = (stats: Stat[]) => Object.fromEntries(stats.map((stat) => rounded(stat)).map(({ key, ...rest }) => [String(key), rest]));
    t.same(byKey(body.by_resource), grouped('resource'), 'per resource');
    t.same(byKey(body.by_agency), grouped('agency'), 'per agency');

    // The same numbers, spelled out for the seeded events.
    const amr1 = body.by_resource.find((stat: Stat) => stat.key === '330000-AMR-00001');
    t.match(amr1, { count: 4, denied: 0, errors: 1, error_rate: 0.25, refusal_rate: 0 });
    t.equal(amr1.latency_ms.p50, 25, 'p50 of 10, 20, 30, 50');
    const edu = body.by_agency.find((stat: Stat) => stat.key === 'zj-edu');
    t.match(edu, { count: 5, denied: 1, errors: 1, refusal_rate: 0.2, error_rate: 0.2 });
    t.equal(edu.latency_ms.p50, 30, 'p50 of 10, 20, 30, 40, 50');
    t.equal(edu.latency_ms.p95, 48);
    t.same(
      body.by_agency.map((stat: Stat) => stat.count),
      [...body.by_agency.map((stat: Stat) => stat.count)].sort((a: number, b: number) => b - a),
      'busiest first',
    );
    t.equal(body.from, new Date(windowStart).toISOString());

    const provider = (await app.inject({ url: `/v1/audit/stats?${window}`, headers: bearer(tokens.provider) })).json();
    t.equal(
      provider.total.count,
      inWindow.filter((row) => row.agency === 'zj-amr' || row.provider === 'zj-amr').length,
      'a provider’s statistics keep to its scope',
    );
    t.notOk(
      provider.by_agency.some((stat: Stat) => stat.key === 'zj-psb' || stat.key === 'zj-ca'),
      'no agency outside it',
    );

    const empty = (await app.inject({ url: '/v1/audit/stats?from=2001-01-01T00:00:00Z&to=2001-01-02T00:00:00Z', headers: bearer(tokens.supervisor) })).json();
    t.match(empty.total, { count: 0, refusal_rate: 0, error_rate: 0, latency_ms: { p50: null } });
    t.same(empty.by_resource, []);
    assertProblem(t, await app.inject({ url: '/v1/audit/stats', headers: bearer(tokens.noAudit) }), 403, 'insufficient_scope');
  });

  t.test('signed checkpoints', async (t) => {
    await app.audit.checkpoint();
    const lastSeq = async () => {
      const [row] = await app.db.select({ seq: max(auditEvents.seq) }).from(auditEvents).where(eq(auditEvents.chainId, app.audit.chainId));
      return Number(row?.seq);
    };
    const seq = await lastSeq();
    const response = await app.inject({ url: `/v1/audit/checkpoints?chain_id=${app.audit.chainId}`, headers: bearer(tokens.supervisor) });
    t.equal(response.statusCode, 200);
    const checkpoint = response.json().items.at(-1);
    t.match(checkpoint, { chain_id: app.audit.chainId, seq, head_hash: /^[0-9a-f]{64}$/, kid: /\S/, signature: /^[\w-]+\.[\w-]+\.[\w-]+$/ });
    const [head] = await app.db
      .select()
      .from(auditEvents)
      .where(and(eq(auditEvents.chainId, app.audit.chainId), eq(auditEvents.seq, seq)));
    t.equal(checkpoint.head_hash, head?.hash, 'it signs the hash of the last record');

    const header = decodeProtectedHeader(checkpoint.signature);
    t.equal(header.kid, checkpoint.kid);
    const jwks = (await app.inject({ url: '/.well-known/jwks.json' })).json() as { keys: JWK[] };
    const jwk = jwks.keys.find((key) => key.kid === header.kid);
    t.ok(jwk, 'the signing key is published');
    const { payload } = await compactVerify(checkpoint.signature, await importJWK(jwk as JWK, header.alg));
    const { chain_id, seq: signedSeq, head_hash, signed_at } = checkpoint;
    t.equal(new TextDecoder().decode(payload), canonicalize({ chain_id, seq: signedSeq, head_hash, signed_at }), 'over the canonical checkpoint');

    // A second checkpoint once the chain moved on; paging walks them in order.
    await app.audit.record({ action: 'records.read', outcome: 'allowed', agency: 'zj-edu' });
    await app.audit.checkpoint();
    const all = await app.inject({ url: `/v1/audit/checkpoints?chain_id=${app.audit.chainId}`, headers: bearer(tokens.supervisor) });
    const seqs = all.json().items.map((item: { seq: number }) => item.seq);
    t.equal(seqs.at(-1), await lastSeq());
    const walked: number[] = [];
    let url: string | null = `/v1/audit/checkpoints?chain_id=${app.audit.chainId}&limit=1`;
    while (url) {
      const page: LightMyRequestResponse = await app.inject({ url, headers: bearer(tokens.supervisor) });
      walked.push(...page.json().items.map((item: { seq: number }) => item.seq));
      url = /^<([^>]+)>/.exec((page.headers.link as string | undefined) ?? '')?.[1] ?? null;
    }
    t.same(walked, seqs, 'one to a page, each once, in order');
    t.ok(seqs.length >= 2);
    assertProblem(t, await app.inject({ url: '/v1/audit/checkpoints', headers: bearer(tokens.noAudit) }), 403, 'insufficient_scope');
  });

  t.test("a citizen's access log", async (t) => {
    const person = app.subjectRef(PERSON);
    const other = app.subjectRef(OTHER_PERSON);
    const minutesAgo = (minutes: number) => new Date(Date.now() - minutes * 60_000).toISOString();
    const older = await app.audit.record({
      action: 'records.read',
      outcome: 'allowed',
      agency: 'zj-edu',
      resource: '330000-PSB-00001',
      provider: 'zj-psb',
      purpose: '学籍注册核验',
      fields: ['name', 'id_number'],
      subject_refs: [person],
      occurred_at: minutesAgo(30),
    });
    const newer = await app.audit.record({
      action: 'records.verify',
      outcome: 'allowed',
      agency: 'zj-hrss',
      resource: '330000-AMR-00001',
      provider: 'zj-amr',
      purpose: '社保待遇资格审核',
      legal_basis: '《社会保险法》第七十五条',
      fields: ['uscc'],
      subject_refs: [other, person],
      occurred_at: minutesAgo(10),
    });
    await app.audit.record({
      action: 'records.read',
      outcome: 'denied',
      status: 403,
      agency: 'zj-ca',
      resource: '330000-PSB-00001',
      provider: 'zj-psb',
      purpose: 'refused',
      subject_refs: [person],
      occurred_at: minutesAgo(5),
    });
    await app.audit.record({
      action: 'records.read',
      outcome: 'allowed',
      agency: 'zj-nr',
      resource: '330000-PSB-00002',
      provider: 'zj-psb',
      purpose: 'somebody else',
      subject_refs: [other],
      occurred_at: minutesAgo(1),
    });
    const nameOf = async (code: string) => (await app.db.select({ name: agencies.name }).from(agencies).where(eq(agencies.code, code)))[0]?.name;
    const occurredAt = async (id: string) => (await app.db.select().from(auditEvents).where(eq(auditEvents.id, id)))[0]?.occurredAt.toISOString();
    const resourceNameOf = async (code: string) => (await app.db.select({ name: resources.name }).from(resources).where(eq(resources.code, code)))[0]?.name;

    const citizen = await idp.tokenFor(PERSON);
    const response = await app.inject({ url: '/v1/me/access-log', headers: bearer(citizen) });
    t.equal(response.statusCode, 200);
    const body = response.json();
    t.same(body.items, [
      {
        occurred_at: await occurredAt(newer),
        agency: 'zj-hrss',
        agency_name: await nameOf('zj-hrss'),
        action: 'records.verify',
        resource: '330000-AMR-00001',
        resource_name: await resourceNameOf('330000-AMR-00001'),
        purpose: '社保待遇资格审核',
        legal_basis: '《社会保险法》第七十五条',
        fields: ['uscc'],
      },
      {
        occurred_at: await occurredAt(older),
        agency: 'zj-edu',
        agency_name: await nameOf('zj-edu'),
        action: 'records.read',
        resource: '330000-PSB-00001',
        resource_name: await resourceNameOf('330000-PSB-00001'),
        purpose: '学籍注册核验',
        legal_basis: null,
        fields: ['name', 'id_number'],
      },
    ], 'exactly the allowed uses of records about this person, newest first');
    t.equal(body.next_cursor, null);
    t.type(body.items[0].agency_name, 'string', 'agency names come from the catalog');
    t.type(body.items[0].resource_name, 'string', 'resource names too');

    const firstPage = await app.inject({ url: '/v1/me/access-log?limit=1', headers: bearer(citizen) });
    t.same(firstPage.json().items.map((item: { purpose: string }) => item.purpose), ['社保待遇资格审核']);
    t.match(firstPage.headers.link, /rel="next"/);
    const secondPage = await app.inject({ url: `/v1/me/access-log?limit=1&cursor=${firstPage.json().next_cursor}`, headers: bearer(citizen) });
    t.same(secondPage.json().items.map((item: { purpose: string }) => item.purpose), ['学籍注册核验']);
    t.equal(secondPage.json().next_cursor, null);

    const otherLog = (await app.inject({ url: '/v1/me/access-log', headers: bearer(await idp.tokenFor(OTHER_PERSON)) })).json();
    t.same(
      otherLog.items.map((item: { purpose: string }) => item.purpose),
      ['somebody else', '社保待遇资格审核'],
      'another person sees only what concerns them',
    );

    assertProblem(t, await app.inject({ url: '/v1/me/access-log', headers: bearer(tokens.supervisor) }), 403, 'citizen_only');
    const anonymous = await app.inject({ url: '/v1/me/access-log' });
    assertProblem(t, anonymous, 401, 'token_missing');
    t.match(anonymous.headers['www-authenticate'], /^Bearer /);
    assertProblem(t, await app.inject({ url: '/v1/me/access-log', headers: bearer('garbage') }), 401, 'token_invalid');
  });

  t.test('reading the trail leaves the chain intact', async (t) => {
    const rows = await app.db.select().from(auditEvents).where(eq(auditEvents.chainId, app.audit.chainId)).orderBy(asc(auditEvents.seq));
    t.same(
      rows.map((row) => Number(row.seq)),
      rows.map((_row, i) => i + 1),
      'contiguous',
    );
    t.ok(
      rows.every((row, i) => i === 0 || row.prevHash === rows[i - 1]?.hash),
      'linked',
    );
  });
});
