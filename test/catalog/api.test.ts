import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { openDatabase } from '../../src/db/index.js';
import type { App } from '../../src/app.js';
import { buildTestApp, forEachDriver, freshDatabaseUrl } from '../helpers/app.js';
import { copyCatalog, editCatalogFile, installTestVerifier } from '../helpers/catalog.js';
import { assertProblem } from '../helpers/problem.js';
import { formatResults, parseTurtle, quadsFromJsonLd, validateDcatAp } from '../helpers/shacl.js';

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function allPages(app: App, url: string, headers: Record<string, string> = {}) {
  const codes: string[] = [];
  let next: string | null = url;
  let pages = 0;
  while (next) {
    const response: Awaited<ReturnType<App['inject']>> = await app.inject({ url: next, headers });
    const body: { items: Array<{ code: string }>; next_cursor: string | null } = response.json();
    if (!body.items) throw new Error(`${next}: ${response.statusCode} ${response.body}`);
    codes.push(...body.items.map((item: { code: string }) => item.code));
    if (body.next_cursor) {
      // Follow the Link header, as a client would; it carries the body's cursor.
      const link = /^<([^>]+)>; rel="next"$/.exec(String(response.headers.link));
      t.ok(link, 'Link: rel="next"');
      const nextUrl = new URL(link?.[1] ?? '', 'http://x');
      t.equal(nextUrl.searchParams.get('cursor'), body.next_cursor);
      next = `${nextUrl.pathname}${nextUrl.search}`;
    } else {
      t.equal(response.headers.link, undefined, 'no Link on the last page');
      next = null;
    }
    pages += 1;
  }
  return { codes, pages };
}

forEachDriver(t, 'catalog API', async (t, driver) => {
  const dir = copyCatalog(t);
  const database = await openDatabase(await freshDatabaseUrl(driver));
  t.teardown(() => database.close());
  const app = await buildTestApp(t, driver, { database, env: { CATALOG_DIR: dir }, extend: installTestVerifier });

  t.test('anonymous callers see open resources only', async (t) => {
    const response = await app.inject({ url: '/v1/catalog/resources?limit=100' });
    t.equal(response.statusCode, 200);
    const body = response.json();
    t.equal(body.items.length, 22, 'the 22 open resources of the demo catalog');
    t.ok(body.items.every((item: { open: { type: string } }) => item.open.type !== 'none'));
    t.equal(body.next_cursor, null);
    t.equal(response.headers['cache-control'], 'public, max-age=60');

    const hidden = await app.inject({ url: '/v1/catalog/resources/330000-EDU-00001' });
    assertProblem(t, hidden, 404, 'not_found');
    const search = await app.inject({ url: `/v1/catalog/resources?q=${encodeURIComponent('学籍')}` });
    t.same(search.json().items, [], 'student status is not open: anonymous search does not find it');
  });

  t.test('q=学籍 finds student status for an agency with catalog:read', async (t) => {
    const response = await app.inject({ url: `/v1/catalog/resources?q=${encodeURIComponent('学籍')}`, headers: bearer('edu-catalog') });
    t.equal(response.statusCode, 200);
    const body = response.json();
    t.equal(body.items[0].code, '330000-EDU-00001', 'the resource named 学籍信息 ranks first');
    t.equal(body.items[0].name, '学籍信息');
    t.equal(response.headers['cache-control'], 'private, no-cache');
    t.equal(response.headers.vary, 'Authorization');

    const detail = await app.inject({ url: '/v1/catalog/resources/330000-EDU-00001', headers: bearer('edu-catalog') });
    t.equal(detail.statusCode, 200);
    const resource = detail.json();
    t.same(resource.record_key, ['student_id']);
    t.match(resource.items.find((item: { name: string }) => item.name === 'id_number'), {
      format: 'cn-resident-id',
      personal: true,
      sensitive: true,
    });
    t.equal(resource.provider_name, '浙江省教育厅');
    t.match(resource.contact_point, { email: /@/ });
    t.equal(resource.version, 1);
  });

  t.test('search words: several terms, English, no SQL wildcards', async (t) => {
    const both = (await app.inject({ url: `/v1/catalog/resources?q=${encodeURIComponent('行政区划 村')}` })).json();
    t.ok(both.items.length >= 1);
    t.ok(both.items.every((item: { provider: string }) => item.provider === 'zj-stats'));
    const english = (await app.inject({ url: '/v1/catalog/resources?q=Enterprise' })).json();
    t.ok(english.items.some((item: { code: string }) => item.code === '330000-AMR-00001'), 'case-insensitive English');
    const wildcard = (await app.inject({ url: `/v1/catalog/resources?q=${encodeURIComponent('%')}` })).json();
    t.same(wildcard.items, [], '% is a character, not a wildcard');
  });

  t.test('filters and facets', async (t) => {
    const all = (await app.inject({ url: '/v1/catalog/resources?limit=100', headers: bearer('edu-catalog') })).json();
    t.equal(all.items.length, 37);
    const sum = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);
    for (const facet of ['provider', 'theme', 'sharing', 'open'] as const) {
      t.equal(sum(all.facets[facet]), 37, `${facet} facet counts every resource`);
    }
    t.same(Object.keys(all.facets.sharing).sort(), ['conditional', 'none', 'unconditional']);

    const stats = (await app.inject({ url: '/v1/catalog/resources?provider=zj-stats&limit=100' })).json();
    t.same(stats.facets.provider, { 'zj-stats': stats.items.length });
    t.ok(stats.items.length >= 5);

    const conditional = (await app.inject({ url: '/v1/catalog/resources?sharing=conditional&open=none&limit=100', headers: bearer('edu-catalog') })).json();
    t.ok(conditional.items.length > 0);
    t.ok(conditional.items.every((i: { sharing: { type: string }; open: { type: string } }) => i.sharing.type === 'conditional' && i.open.type === 'none'));
    t.same(conditional.facets.sharing, { conditional: conditional.items.length });

    const keyword = (await app.inject({ url: `/v1/catalog/resources?keyword=${encodeURIComponent('行政区划')}` })).json();
    t.ok(keyword.items.length >= 5);
    t.ok(keyword.items.every((i: { keywords: string[] }) => i.keywords.includes('行政区划')));
    const theme = (await app.inject({ url: '/v1/catalog/resources?theme=education', headers: bearer('edu-catalog') })).json();
    t.ok(theme.items.every((i: { theme: string }) => i.theme === 'education'));
  });

  t.test('keyset cursor: pages cover the list once, and stay stable while resources are added', async (t) => {
    const whole = (await app.inject({ url: '/v1/catalog/resources?limit=100', headers: bearer('edu-catalog') })).json();
    const paged = await allPages(app, '/v1/catalog/resources?limit=5', bearer('edu-catalog'));
    t.same(paged.codes, whole.items.map((i: { code: string }) => i.code));
    t.equal(paged.pages, 8);

    const ranked = await allPages(app, `/v1/catalog/resources?limit=2&q=${encodeURIComponent('行政')}`);
    t.equal(new Set(ranked.codes).size, ranked.codes.length, 'no repeats across ranked pages');

    // Take the first page, add one resource before the cursor and one after it, then go on.
    const first = (await app.inject({ url: '/v1/catalog/resources?limit=3' })).json();
    t.same(first.items.map((i: { code: string }) => i.code), ['330000-AMR-00001', '330000-AMR-00002', '330000-AMR-00003']);
    const template = readFileSync(join(dir, 'zj-amr/330000-AMR-00004.yaml'), 'utf8');
    for (const code of ['330000-AMR-00000', '330000-AMR-00009']) {
      writeFileSync(join(dir, `zj-amr/${code}.yaml`), template.replace(/^code: .*$/m, `code: ${code}`));
    }
    t.equal((await app.inject({ method: 'POST', url: '/v1/admin/catalog/sync', headers: bearer('admin') })).json().created, 2);
    const rest = await allPages(app, `/v1/catalog/resources?limit=3&cursor=${first.next_cursor}`);
    const seen = [...first.items.map((i: { code: string }) => i.code), ...rest.codes];
    t.equal(new Set(seen).size, seen.length, 'no resource twice');
    t.notOk(seen.includes('330000-AMR-00000'), 'a resource added before the cursor does not shift the pages');
    t.ok(seen.includes('330000-AMR-00009'), 'a resource added after the cursor appears');
    t.equal(seen.length, 23);
    for (const code of ['330000-AMR-00000', '330000-AMR-00009']) rmSync(join(dir, `zj-amr/${code}.yaml`));
    t.equal((await app.inject({ method: 'POST', url: '/v1/admin/catalog/sync', headers: bearer('admin') })).json().retired, 2);
  });

  t.test('ETag and 304', async (t) => {
    const first = await app.inject({ url: '/v1/catalog/resources/330000-AMR-00001' });
    const etag = first.headers.etag as string;
    t.match(etag, /^"[^"]+"$/);
    const again = await app.inject({ url: '/v1/catalog/resources/330000-AMR-00001', headers: { 'if-none-match': etag } });
    t.equal(again.statusCode, 304);
    t.equal(again.body, '');
    const list = await app.inject({ url: '/v1/catalog/resources' });
    const listAgain = await app.inject({ url: '/v1/catalog/resources', headers: { 'if-none-match': list.headers.etag as string } });
    t.equal(listAgain.statusCode, 304);

    editCatalogFile(dir, 'zj-amr/330000-AMR-00001.yaml', /^summary: .*$/m, 'summary: 企业登记信息，已更新。');
    const sync = await app.inject({ method: 'POST', url: '/v1/admin/catalog/sync', headers: bearer('admin') });
    t.equal(sync.statusCode, 200);
    const changed = await app.inject({ url: '/v1/catalog/resources/330000-AMR-00001', headers: { 'if-none-match': etag } });
    t.equal(changed.statusCode, 200, 'a changed resource is sent again');
    t.not(changed.headers.etag, etag);
    t.equal(changed.json().version, 2);

    const history = (await app.inject({ url: '/v1/catalog/resources/330000-AMR-00001/history' })).json();
    t.match(history.items, [{ version: 2, change: 'updated', fields: ['summary'] }, { version: 1, change: 'created' }]);
  });

  t.test('bad parameters are 400 with the parameter named', async (t) => {
    const tooMany = assertProblem(t, await app.inject({ url: '/v1/catalog/resources?limit=1000' }), 400, 'invalid_request');
    t.same(tooMany.errors, [{ in: 'querystring', pointer: '/limit', message: 'must be <= 100' }]);
    const theme = assertProblem(t, await app.inject({ url: '/v1/catalog/resources?theme=cooking' }), 400, 'invalid_request');
    t.equal(theme.errors[0].pointer, '/theme');
    const unknown = assertProblem(t, await app.inject({ url: '/v1/catalog/resources?color=red' }), 400, 'invalid_request');
    t.same(unknown.errors, [{ in: 'querystring', pointer: '/color', message: 'is not a known property' }]);
    assertProblem(t, await app.inject({ url: '/v1/catalog/resources?cursor=bm9wZQ' }), 400, 'invalid_cursor');
    assertProblem(t, await app.inject({ url: '/v1/catalog/resources/not-a-code' }), 400, 'invalid_request');
    assertProblem(t, await app.inject({ url: '/v1/catalog/resources/330000-XYZ-99999' }), 404, 'not_found');
  });

  t.test('a token that does not verify is refused, also on public routes', async (t) => {
    const response = await app.inject({ url: '/v1/catalog/resources', headers: bearer('stolen') });
    assertProblem(t, response, 401, 'token_expired');
    t.match(response.headers['www-authenticate'], /^Bearer realm="govdata-gateway", error="invalid_token"/);
    const malformed = await app.inject({ url: '/v1/catalog/resources', headers: { authorization: 'Basic dXNlcjpwYXNz' } });
    assertProblem(t, malformed, 401, 'token_invalid');
  });

  t.test('a citizen or an agency without catalog:read sees the open part', async (t) => {
    for (const token of ['citizen', 'edu-records']) {
      const body = (await app.inject({ url: '/v1/catalog/resources?limit=100', headers: bearer(token) })).json();
      t.ok(body.items.every((i: { open: { type: string } }) => i.open.type !== 'none'), token);
    }
  });

  t.test('admin sync needs the admin scope and refuses an invalid catalog', async (t) => {
    const anonymous = await app.inject({ method: 'POST', url: '/v1/admin/catalog/sync' });
    assertProblem(t, anonymous, 401, 'token_missing');
    t.equal(anonymous.headers['www-authenticate'], 'Bearer realm="govdata-gateway"');
    const notAdmin = await app.inject({ method: 'POST', url: '/v1/admin/catalog/sync', headers: bearer('edu-catalog') });
    const body = assertProblem(t, notAdmin, 403, 'insufficient_scope');
    t.equal(body.required_scope, 'admin');
    t.match(notAdmin.headers['www-authenticate'], /error="insufficient_scope", scope="admin"/);

    editCatalogFile(dir, 'zj-edu/330000-EDU-00001.yaml', /^theme: education$/m, 'theme: cooking');
    const invalid = await app.inject({ method: 'POST', url: '/v1/admin/catalog/sync', headers: bearer('admin') });
    const problem = assertProblem(t, invalid, 422, 'catalog_invalid');
    t.same(problem.errors.map((e: { in: string; pointer: string }) => `${e.in}#${e.pointer}`), ['zj-edu/330000-EDU-00001.yaml#/theme']);
    const stillServed = await app.inject({ url: '/v1/catalog/resources/330000-EDU-00001', headers: bearer('edu-catalog') });
    t.equal(stillServed.json().theme, 'education', 'the last good catalog stays served');
  });

  t.test('agencies', async (t) => {
    const list = (await app.inject({ url: '/v1/catalog/agencies?limit=3' })).json();
    t.equal(list.items.length, 3);
    t.ok(list.next_cursor);
    t.same(Object.keys(list.items[0]).sort(), ['code', 'homepage', 'level', 'name', 'name_en', 'region']);
    const rest = (await app.inject({ url: `/v1/catalog/agencies?limit=100&cursor=${list.next_cursor}` })).json();
    t.equal(list.items.length + rest.items.length, 9);
    const edu = await app.inject({ url: '/v1/catalog/agencies/zj-edu' });
    t.match(edu.json(), { code: 'zj-edu', name: '浙江省教育厅', level: 'province', region: '330000' });
    assertProblem(t, await app.inject({ url: '/v1/catalog/agencies/zj-nobody' }), 404, 'not_found');
  });

  t.test('/catalog.ttl and /catalog.jsonld are DCAT-AP 3 with no SHACL violation', async (t) => {
    const turtle = await app.inject({ url: '/catalog.ttl' });
    t.equal(turtle.statusCode, 200);
    t.match(turtle.headers['content-type'], /^text\/turtle/);
    const turtleQuads = parseTurtle(turtle.body);
    const turtleReport = await validateDcatAp('dcat-ap-SHACL.ttl', turtleQuads);
    t.ok(turtleReport.conforms, formatResults(turtleReport.results));

    const jsonld = await app.inject({ url: '/catalog.jsonld' });
    t.equal(jsonld.statusCode, 200);
    t.match(jsonld.headers['content-type'], /^application\/ld\+json/);
    const jsonldQuads = await quadsFromJsonLd(jsonld.json());
    const jsonldReport = await validateDcatAp('dcat-ap-SHACL.ttl', jsonldQuads);
    t.ok(jsonldReport.conforms, formatResults(jsonldReport.results));
    t.equal(jsonldQuads.length, turtleQuads.length, 'both serialisations carry the same graph');

    t.match(turtle.body, /<http:\/\/127\.0\.0\.1:3000\/v1\/open\/datasets\/330000-AMR-00001>/);
    t.notMatch(turtle.body, /330000-EDU-00001/, 'a resource that is not open is not described');

    const again = await app.inject({ url: '/catalog.ttl', headers: { 'if-none-match': turtle.headers.etag as string } });
    t.equal(again.statusCode, 304);
  });

  t.test('readiness includes the catalog', async (t) => {
    t.match((await app.inject({ url: '/readyz' })).json().checks, { catalog: 'ok' });
  });
});

t.test('readyz is 503 until a catalog has been loaded', async (t) => {
  const database = await openDatabase('memory://');
  t.teardown(() => database.close());
  const app = await buildTestApp(t, 'pglite', { database, env: { CATALOG_SYNC_ON_START: 'false' } });
  const body = assertProblem(t, await app.inject({ url: '/readyz' }), 503, 'not_ready');
  t.equal(body.checks.catalog, 'not loaded');
});
