/**
 * Open data at full size: the 620,573 villages of China downloaded as CSV, NDJSON and XLSX from a
 * gateway in its own process, each file parsed back by an independent parser and compared with the
 * database row for row (SHA-256 over the rows in key order; XLSX read back by SheetJS), with the gateway's resident memory
 * sampled every 50 ms; the same for the prebuilt CSV; then every page of the villages by cursor
 * (no row lost or repeated), and the first page against the last under autocannon.
 *
 *   npm run bench:open [-- --connections 10 --duration 5 --json report.json]
 *
 * DATABASE_URL=postgres://… runs on PostgreSQL (a fresh database, dropped afterwards); unset, PGlite.
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { parse as parseCsv } from 'csv-parse';
import { sql } from 'drizzle-orm';
import XLSX from 'xlsx';
import { openDatabase, rowsOf } from '../src/db/index.js';
import { RowDigest, VILLAGE_COLUMNS as COLUMNS } from './digest.js';
import { BENCH_SETTINGS, benchDatabase, cli, load, mib, sampledRss, startGateway, type Gateway } from './lib.js';

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '10' },
    duration: { type: 'string', default: '5' },
    json: { type: 'string' },
  },
});
const connections = Number(values.connections);
const duration = Number(values.duration);

const VILLAGES = '330000-STATS-00005';

async function expectedDigest(url: string): Promise<{ rows: number; sha256: string }> {
  const database = await openDatabase(url);
  try {
    const digest = new RowDigest();
    let after = '';
    for (;;) {
      const rows = rowsOf<Record<string, string>>(
        await database.db.execute(sql`select code, name, town_code, county_code, city_code, province_code
          from records.r_330000_stats_00005 where code > ${after} order by code limit 50000`),
      );
      for (const row of rows) digest.add(COLUMNS.map((c) => row[c]));
      if (rows.length < 50000) break;
      after = (rows.at(-1) as Record<string, string>).code as string;
    }
    return { rows: digest.rows, sha256: digest.hex() };
  } finally {
    await database.close();
  }
}

interface DownloadReport {
  format: string;
  source: 'streamed' | 'prebuilt';
  rows: number;
  matches: boolean;
  in_order: boolean;
  bytes: number;
  seconds: number;
  rows_per_second: number;
  rss_baseline_mib: number;
  rss_peak_mib: number;
  rss_growth_mib: number;
}


async function download(gateway: Gateway, format: 'csv' | 'ndjson' | 'xlsx', work: string, expected: { sha256: string }, source: DownloadReport['source']): Promise<DownloadReport> {
  const started = performance.now();
  let bytes = 0;
  const { result: digest, baseline, peak } = await sampledRss(gateway.process.pid as number, async () => {
    const response = await fetch(`${gateway.url}/v1/open/datasets/${VILLAGES}/download.${format}`, { headers: { 'accept-encoding': 'identity' } });
    if (response.status !== 200 || !response.body) throw new Error(`download.${format}: ${response.status} ${await response.text()}`);
    if (source === 'prebuilt' && response.headers.get('accept-ranges') !== 'bytes') throw new Error(`download.${format} was not served from a prebuilt file`);
    const body = Readable.fromWeb(response.body as import('node:stream/web').ReadableStream).on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    const digest = new RowDigest();
    if (format === 'csv') {
      for await (const record of body.pipe(parseCsv({ columns: true, bom: true })) as AsyncIterable<Record<string, string>>) {
        digest.add(COLUMNS.map((c) => record[c]));
      }
    } else if (format === 'ndjson') {
      for await (const line of createInterface({ input: body, crlfDelay: Infinity })) {
        if (!line) continue;
        const record = JSON.parse(line) as Record<string, unknown>;
        digest.add(COLUMNS.map((c) => record[c]));
      }
    } else {
      const file = join(work, 'villages.xlsx');
      await pipeline(body, createWriteStream(file));
      // Read back by SheetJS, a parser independent of the exceljs writer (read-excel-file takes
      // minutes on a sheet of 620,000 rows).
      const sheet = XLSX.readFile(file, { dense: true });
      const [header, ...rows] = XLSX.utils.sheet_to_json<unknown[]>(sheet.Sheets[sheet.SheetNames[0] as string] as XLSX.WorkSheet, { header: 1 });
      const index = COLUMNS.map((c) => (header as unknown[]).indexOf(c));
      for (const row of rows) digest.add(index.map((i) => row[i]));
      await rm(file);
    }
    return { rows: digest.rows, outOfOrder: digest.outOfOrder, sha256: digest.hex() };
  });
  const seconds = (performance.now() - started) / 1000;
  return {
    format,
    source,
    rows: digest.rows,
    matches: digest.sha256 === expected.sha256,
    in_order: digest.outOfOrder === 0,
    bytes,
    seconds: Math.round(seconds * 100) / 100,
    rows_per_second: Math.round(digest.rows / seconds),
    rss_baseline_mib: mib(baseline),
    rss_peak_mib: mib(peak),
    rss_growth_mib: mib(peak - baseline),
  };
}

/** Every page of the villages by cursor (limit 1000): rows counted, checked for gaps and repeats. */
async function walkPages(gateway: Gateway, expected: { sha256: string }) {
  const digest = new RowDigest();
  let url = `/v1/open/datasets/${VILLAGES}/records?limit=1000`;
  let pages = 0;
  let lastPageUrl = url;
  for (;;) {
    lastPageUrl = url;
    const response = await fetch(`${gateway.url}${url}`);
    if (response.status !== 200) throw new Error(`${url}: ${response.status} ${await response.text()}`);
    const body = (await response.json()) as { items: Array<Record<string, unknown>>; next_cursor: string | null };
    pages += 1;
    for (const item of body.items) digest.add(COLUMNS.map((c) => item[c]));
    if (!body.next_cursor) break;
    // Followed as a client would: the Link header's next page.
    url = /<([^>]+)>; rel="next"/.exec(response.headers.get('link') ?? '')?.[1] ?? '';
  }
  return { pages, rows: digest.rows, matches: digest.hex() === expected.sha256, in_order: digest.outOfOrder === 0, lastPageUrl };
}

const database = await benchDatabase('open');
const work = await mkdtemp(join(tmpdir(), 'gw-bench-open-'));
const driver = database.url.startsWith('postgres') ? 'PostgreSQL' : 'PGlite';
const base = { ...BENCH_SETTINGS, DATABASE_URL: database.url, MAX_EVENT_LOOP_DELAY_MS: '0', RATE_LIMIT_ANONYMOUS_PER_MINUTE: '100000000', DEMO_DATA: 'off' };
try {
  process.stderr.write(`loading the open demo data (all levels) on ${driver}…\n`);
  const seeded = await cli(['demo', 'seed', '--open', 'full', '--no-exchange'], { ...base, OPEN_PREBUILD: 'false' });
  process.stderr.write(seeded);
  const expected = await expectedDigest(database.url);
  process.stderr.write(`${expected.rows} villages in the database, sha256 ${expected.sha256.slice(0, 16)}…\n`);

  // Streamed from the database (no prebuilt files).
  let gateway = await startGateway({ ...base, OPEN_PREBUILD: 'false', OPEN_DATA_DIR: join(work, 'none') }, join(work, 'gateway-streamed.log'));
  const downloads: DownloadReport[] = [];
  const warmups: Array<{ format: string; rss_growth_mib: number; rss_peak_mib: number }> = [];
  try {
    for (const format of ['csv', 'ndjson', 'xlsx'] as const) {
      // Warm-up: the same download once, read and dropped. Its growth is the first download's
      // (V8 sizing its heaps for the work); the measured run shows whether memory keeps growing.
      process.stderr.write(`download.${format} (streamed)…\n`);
      const warm = await sampledRss(gateway.process.pid as number, async () => {
        const response = await fetch(`${gateway.url}/v1/open/datasets/${VILLAGES}/download.${format}`, { headers: { 'accept-encoding': 'identity' } });
        for await (const _chunk of Readable.fromWeb(response.body as import('node:stream/web').ReadableStream));
      });
      warmups.push({ format, rss_growth_mib: mib(warm.peak - warm.baseline), rss_peak_mib: mib(warm.peak) });
      downloads.push(await download(gateway, format, work, expected, 'streamed'));
    }
  } finally {
    await gateway.stop();
  }

  // Prebuilt after the import, served from the file.
  gateway = await startGateway({ ...base, OPEN_PREBUILD: 'true', OPEN_DATA_DIR: join(work, 'files') }, join(work, 'gateway-prebuilt.log'));
  let paging: Awaited<ReturnType<typeof walkPages>>;
  let first: Awaited<ReturnType<typeof load>>;
  let last: Awaited<ReturnType<typeof load>>;
  try {
    process.stderr.write('waiting for the prebuilt files…\n');
    for (let i = 0; i < 1200; i++) {
      const head = await fetch(`${gateway.url}/v1/open/datasets/${VILLAGES}/download.xlsx`, { method: 'HEAD' });
      if (head.headers.get('accept-ranges') === 'bytes') break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    for (const format of ['csv', 'ndjson', 'xlsx'] as const) {
      process.stderr.write(`download.${format} (prebuilt)…\n`);
      downloads.push(await download(gateway, format, work, expected, 'prebuilt'));
    }
    process.stderr.write('every page by cursor…\n');
    paging = await walkPages(gateway, expected);
    const firstUrl = `${gateway.url}/v1/open/datasets/${VILLAGES}/records?limit=100`;
    // The last page of 100: the cursor just before the last 100 rows comes from a page of limit 1000.
    const lastUrl = `${gateway.url}${paging.lastPageUrl.replace('limit=1000', 'limit=100')}`;
    process.stderr.write(`first page and last page under load (${connections} connections, ${duration} s each)…\n`);
    first = await load({ url: firstUrl, connections, duration });
    last = await load({ url: lastUrl, connections, duration });
  } finally {
    await gateway.stop();
  }

  const cursor = {
    pages: paging.pages,
    rows: paging.rows,
    matches: paging.matches,
    in_order: paging.in_order,
    first_page: { rps: first.rps, p50_ms: first.p50, p97_5_ms: first.p97_5, p99_ms: first.p99, non2xx: first.non2xx },
    last_page: { rps: last.rps, p50_ms: last.p50, p97_5_ms: last.p97_5, p99_ms: last.p99, non2xx: last.non2xx },
    last_over_first_p50: Math.round((last.p50 / Math.max(first.p50, 0.001)) * 100) / 100,
    last_over_first_rps: Math.round((last.rps / Math.max(first.rps, 0.001)) * 100) / 100,
  };
  const report = { date: new Date().toISOString(), driver, expected, warmups, downloads, cursor };

  const lines = [
    `## Open data at full size: ${expected.rows} villages on ${driver}`,
    '',
    '| download | source | rows | same rows as the database | MB | s | rows/s | gateway RSS before → peak (MiB) | growth (MiB) |',
    '|---|---|---:|---|---:|---:|---:|---:|---:|',
    ...downloads.map(
      (d) =>
        `| ${d.format} | ${d.source} | ${d.rows} | ${d.matches && d.in_order ? 'yes' : 'NO'} | ${mib(d.bytes)} | ${d.seconds} | ${d.rows_per_second} | ${d.rss_baseline_mib} → ${d.rss_peak_mib} | ${d.rss_growth_mib} |`,
    ),
    '',
    `Warm-up before each streamed format (the same download once, not measured): RSS growth ${warmups.map((w) => `${w.format} ${w.rss_growth_mib} MiB (peak ${w.rss_peak_mib})`).join(', ')}.`,
    '',
    `Every page by cursor (limit 1000): ${cursor.pages} pages, ${cursor.rows} rows, ${cursor.matches && cursor.in_order ? 'every row once, in order' : 'ROWS LOST OR REPEATED'}.`,
    '',
    `| records page (limit 100, ${connections} connections) | req/s | p50 ms | p97.5 ms | p99 ms | non-2xx |`,
    '|---|---:|---:|---:|---:|---:|',
    `| first | ${first.rps} | ${first.p50} | ${first.p97_5} | ${first.p99} | ${first.non2xx} |`,
    `| last | ${last.rps} | ${last.p50} | ${last.p97_5} | ${last.p99} | ${last.non2xx} |`,
    '',
    `Last page over first: p50 × ${cursor.last_over_first_p50}, req/s × ${cursor.last_over_first_rps}.`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  if (values.json) await writeFile(values.json, `${JSON.stringify(report, null, 2)}\n`);
  const ok = downloads.every((d) => d.matches && d.in_order && d.rows === expected.rows) && paging.matches && paging.rows === expected.rows;
  process.exitCode = ok ? 0 : 1;
} finally {
  await database.drop();
  await rm(work, { recursive: true, force: true });
}
