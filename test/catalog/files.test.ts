import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { stringify } from 'yaml';
import { formatCatalogError, loadCatalog } from '../../src/catalog/files.js';
import {
  agencyLevels,
  euDataThemes,
  itemFormats,
  itemTypes,
  openTypes,
  resourceFormats,
  sharingMethods,
  sharingTypes,
  themes,
  updateCycles,
  type Catalog,
  type CatalogError,
} from '../../src/model/catalog.js';
import { projectRoot } from '../../src/paths.js';

type Doc = Record<string, unknown>;
type WithTestdir = Pick<typeof t, 'testdir'>;
/** A catalog in the making: path relative to the catalog folder → document (written as YAML) or raw text. */
type CatalogFiles = Record<string, Doc | string>;

function agency(code: string, abbr: string, name: string): Doc {
  return {
    code,
    abbr,
    name,
    name_en: `${abbr} of Zhejiang Province`,
    level: 'province',
    region: '330000',
    contact_point: { name: `${name}办公室`, email: `data@${code}.example` },
  };
}

const studentStatus: Doc = {
  code: '330000-EDU-00001',
  name: '学籍信息',
  title: 'Student status',
  summary: '全省中小学生学籍信息。',
  description: 'Student status records.',
  provider: 'zj-edu',
  theme: 'education',
  format: 'database',
  update_cycle: 'daily',
  published: '2019-09-01',
  keywords: ['学籍'],
  items: [
    { name: 'student_id', title: '学籍号', title_en: 'Student number', type: 'string', required: true },
    {
      name: 'id_number',
      title: '公民身份号码',
      title_en: 'Resident ID number',
      type: 'string',
      format: 'cn-resident-id',
      personal: true,
      sensitive: true,
    },
  ],
  record_key: ['student_id'],
  sharing: { type: 'conditional', conditions: '须说明事项。', legal_basis: '《中小学生学籍管理办法》', methods: ['verify'] },
  open: { type: 'none', conditions: '个人信息，不予开放。', legal_basis: '《中华人民共和国个人信息保护法》' },
};

const enterprises: Doc = {
  code: '330000-AMR-00001',
  name: '企业登记信息',
  title: 'Enterprise registration',
  summary: '企业登记信息。',
  description: 'Registered enterprises.',
  provider: 'zj-amr',
  theme: 'economy',
  format: 'database',
  update_cycle: 'daily',
  published: '2019-06-01',
  keywords: ['企业'],
  related_codes: ['330000-EDU-00001'],
  items: [{ name: 'uscc', title: '统一社会信用代码', title_en: 'USCC', type: 'string', format: 'cn-uscc' }],
  record_key: ['uscc'],
  sharing: { type: 'unconditional', methods: ['read', 'query'] },
  open: { type: 'unconditional', license: 'https://creativecommons.org/licenses/by/4.0/' },
};

const studentStatusFile = 'zj-edu/330000-EDU-00001.yaml';
const enterprisesFile = 'zj-amr/330000-AMR-00001.yaml';

/** A small valid catalog: two agencies, a conditional non-open resource and an open one. */
function validFiles(): CatalogFiles {
  return structuredClone({
    'zj-edu/agency.yaml': agency('zj-edu', 'EDU', '浙江省教育厅'),
    'zj-amr/agency.yaml': agency('zj-amr', 'AMR', '浙江省市场监督管理局'),
    [studentStatusFile]: studentStatus,
    [enterprisesFile]: enterprises,
  });
}

/** The valid catalog with `edit` applied to a copy of the document at `file`. */
function withDoc(file: string, edit: (doc: Doc) => void, files = validFiles()): CatalogFiles {
  const doc = files[file];
  if (typeof doc !== 'object') throw new Error(`no document at ${file}`);
  edit(doc);
  return files;
}

/** tap's testdir layout: folders as objects, files as their text. */
function testdirOf(files: CatalogFiles): Record<string, Record<string, string> | string> {
  const tree: Record<string, Record<string, string> | string> = {};
  for (const [path, content] of Object.entries(files)) {
    const text = typeof content === 'string' ? content : stringify(content);
    const [folder, name] = path.split('/');
    if (name === undefined) tree[path] = text;
    else tree[folder!] = { ...(tree[folder!] as Record<string, string> | undefined), [name]: text };
  }
  return tree;
}

async function loadFiles(t: WithTestdir, files: CatalogFiles) {
  return loadCatalog(t.testdir(testdirOf(files)));
}

async function errorsOf(t: WithTestdir, files: CatalogFiles): Promise<CatalogError[]> {
  const result = await loadFiles(t, files);
  if (result.ok) throw new Error('the catalog was expected to have errors');
  return result.errors;
}

/** The errors without their messages, to compare exactly. */
function withoutMessages(errors: CatalogError[]) {
  return errors.map(({ file, pointer, code }) => ({ file, pointer, code }));
}

async function problemsOf(t: WithTestdir, files: CatalogFiles) {
  return withoutMessages(await errorsOf(t, files));
}

async function catalogOf(t: WithTestdir, files: CatalogFiles): Promise<Catalog> {
  const result = await loadFiles(t, files);
  if (!result.ok) throw new Error(result.errors.map(formatCatalogError).join('\n'));
  return result.catalog;
}

t.test('the project catalog', async (t) => {
  const result = await loadCatalog(join(projectRoot, 'catalog'));
  if (!result.ok) {
    t.fail(result.errors.map(formatCatalogError).join('\n'));
    return;
  }
  const { agencies, resources } = result.catalog;
  const resource = (code: string) => {
    const found = resources.find((r) => r.code === code);
    if (!found) throw new Error(`${code} is not in the catalog`);
    return found;
  };
  const item = (code: string, name: string) => resource(code).items.find((i) => i.name === name);

  t.ok(agencies.length >= 8, `${agencies.length} agencies`);
  t.ok(resources.length >= 22, `${resources.length} resources`);
  t.same(
    agencies.map((a) => a.code),
    agencies.map((a) => a.code).sort(),
    'agencies sorted by code',
  );
  t.same(
    resources.map((r) => r.code),
    resources.map((r) => r.code).sort(),
    'resources sorted by code',
  );
  for (const name of ['教育厅', '公安厅', '民政厅', '市场监督管理局', '统计局', '自然资源厅', '生态环境厅', '人力资源和社会保障厅']) {
    t.ok(
      agencies.some((a) => a.name === `浙江省${name}` && a.region === '330000'),
      `浙江省${name}`,
    );
  }
  for (const type of sharingTypes) {
    t.ok(resources.filter((r) => r.sharing.type === type).length >= 3, `sharing ${type} at least 3 times`);
  }
  for (const type of openTypes) {
    t.ok(resources.filter((r) => r.open.type === type).length >= 3, `open ${type} at least 3 times`);
  }

  const studentStatus = resource('330000-EDU-00001');
  t.match(studentStatus, {
    name: '学籍信息',
    provider: 'zj-edu',
    theme: 'education',
    summary: /学籍/,
    sharing: { type: 'conditional', methods: ['read', 'query', 'verify'] },
    open: { type: 'none' },
    record_key: ['student_id'],
  });
  t.same(
    studentStatus.items.map((i) => i.name),
    ['student_id', 'name', 'id_number', 'school', 'grade', 'status', 'enrolled_on', 'region_code'],
  );
  t.match(item('330000-EDU-00001', 'name'), { title: '姓名', personal: true });
  t.match(item('330000-EDU-00001', 'id_number'), {
    title: '公民身份号码',
    format: 'cn-resident-id',
    personal: true,
    sensitive: true,
    filterable: true,
  });
  t.match(item('330000-EDU-00001', 'school'), { title: '学校名称', filterable: true });
  t.match(item('330000-EDU-00001', 'status'), { title: '学籍状态' });
  t.match(item('330000-EDU-00001', 'enrolled_on'), { type: 'date' });
  t.match(item('330000-EDU-00001', 'region_code'), { format: 'cn-division-code', filterable: true });

  t.match(resource('330000-PSB-00001'), {
    name: '人口基本信息',
    provider: 'zj-psb',
    sharing: { type: 'conditional' },
    open: { type: 'none' },
    record_key: ['id_number'],
  });
  t.match(item('330000-PSB-00001', 'id_number'), { format: 'cn-resident-id', personal: true, sensitive: true });
  t.match(item('330000-PSB-00001', 'region_code'), { format: 'cn-division-code' });
  t.match(item('330000-PSB-00001', 'address'), { personal: true });
  for (const name of ['name', 'gender', 'birth_date', 'ethnicity']) t.ok(item('330000-PSB-00001', name), name);

  t.match(resource('330000-AMR-00001'), {
    name: '企业登记信息',
    provider: 'zj-amr',
    sharing: { type: 'unconditional' },
    open: { type: 'unconditional', license: 'https://creativecommons.org/licenses/by/4.0/' },
    record_key: ['uscc'],
  });
  t.match(item('330000-AMR-00001', 'uscc'), { format: 'cn-uscc' });
  t.match(item('330000-AMR-00001', 'registered_capital'), { type: 'number' });
  t.match(item('330000-AMR-00001', 'established_on'), { type: 'date' });
  for (const name of ['name', 'legal_representative', 'region_code', 'status', 'industry']) {
    t.ok(item('330000-AMR-00001', name), name);
  }

  const divisions = {
    '330000-STATS-00001': ['code', 'name'],
    '330000-STATS-00002': ['code', 'name', 'province_code'],
    '330000-STATS-00003': ['code', 'name', 'city_code', 'province_code'],
    '330000-STATS-00004': ['code', 'name', 'county_code', 'city_code', 'province_code'],
    '330000-STATS-00005': ['code', 'name', 'town_code', 'county_code', 'city_code', 'province_code'],
  };
  for (const [code, names] of Object.entries(divisions)) {
    const division = resource(code);
    t.match(division, { provider: 'zj-stats', sharing: { type: 'unconditional' }, open: { type: 'unconditional' } });
    t.ok(division.keywords.includes('行政区划'), `${code} has the keyword 行政区划`);
    t.same(
      division.items.map((i) => i.name),
      names,
    );
    for (const i of division.items.filter((i) => i.name.endsWith('code'))) {
      t.equal(i.format, 'cn-division-code', `${code} ${i.name} is a division code`);
      if (i.name !== 'code') t.ok(i.filterable, `${code} ${i.name} is filterable`);
    }
  }

  t.ok(
    resources.some(
      (r) =>
        r.format === 'spatial' &&
        r.open.type === 'unconditional' &&
        r.items.some((i) => i.format === 'wgs84-longitude') &&
        r.items.some((i) => i.format === 'wgs84-latitude'),
    ),
    'an open spatial dataset with WGS 84 coordinates',
  );

  for (const r of resources) {
    const provider = agencies.find((a) => a.code === r.provider);
    t.ok(provider, `${r.code} has its provider`);
    if (r.sharing.type === 'none') {
      t.match(r.sharing, { conditions: String, legal_basis: String }, `${r.code} says why it is not shared`);
    }
    if (r.open.type === 'none') continue;
    t.match(r, { title: String, description: String, theme: String }, `${r.code} is described`);
    t.ok(r.open.license && r.keywords.length > 0, `${r.code} has a licence and keywords`);
    t.ok(r.contact_point ?? provider?.contact_point, `${r.code} has a contact point`);
    if (r.open.type === 'conditional') t.match(r.open, { conditions: String, legal_basis: String });
  }
});

t.test('the schemas enumerate the same vocabularies as the types', async (t) => {
  const schema = (name: string) => JSON.parse(readFileSync(join(projectRoot, 'schemas', name), 'utf8'));
  const agencySchema = schema('agency.schema.json');
  const resourceSchema = schema('resource.schema.json');
  const defs = resourceSchema.$defs;
  t.same(agencySchema.properties.level.enum, agencyLevels);
  t.same(resourceSchema.properties.theme.enum, themes);
  t.same(Object.keys(euDataThemes), themes);
  t.same(resourceSchema.properties.format.enum, resourceFormats);
  t.same(resourceSchema.properties.update_cycle.enum, updateCycles);
  t.same(defs.data_item.properties.type.enum, itemTypes);
  t.same(defs.data_item.properties.format.enum, itemFormats);
  t.same(defs.attribute_type.enum, sharingTypes);
  t.same(defs.attribute_type.enum, openTypes);
  t.same(defs.sharing.properties.methods.items.enum, sharingMethods);
});

t.test('a valid catalog loads sorted, with the schemas defaults applied', async (t) => {
  const catalog = await catalogOf(t, {
    ...validFiles(),
    'README.md': '# not part of the catalog',
    'zj-edu/.gitkeep': '',
  });
  t.same(
    catalog.agencies.map((a) => a.code),
    ['zj-amr', 'zj-edu'],
  );
  t.same(
    catalog.resources.map((r) => r.code),
    ['330000-AMR-00001', '330000-EDU-00001'],
  );
  const [enterpriseRegistration, students] = catalog.resources;
  t.same(enterpriseRegistration?.items[0], {
    name: 'uscc',
    title: '统一社会信用代码',
    title_en: 'USCC',
    type: 'string',
    format: 'cn-uscc',
    personal: false,
    sensitive: false,
    required: false,
    filterable: false,
  });
  t.match(students?.items[1], { personal: true, sensitive: true, required: false, filterable: false });

  const notShared = await catalogOf(
    t,
    withDoc(studentStatusFile, (doc) => {
      doc.sharing = { type: 'none', conditions: '不予共享。', legal_basis: '《中华人民共和国个人信息保护法》' };
    }),
  );
  t.same(notShared.resources[1]?.sharing.methods, [], 'a resource that is not shared has no methods');
});

t.test('schema errors carry the file and a JSON pointer', async (t) => {
  t.same(
    await problemsOf(
      t,
      withDoc(studentStatusFile, (doc) => {
        delete doc.name;
      }),
    ),
    [{ file: studentStatusFile, pointer: '/name', code: 'schema' }],
    'a missing property is pointed at',
  );

  const misspelt = await errorsOf(
    t,
    withDoc(studentStatusFile, (doc) => {
      (doc.items as Doc[])[0]!.type = 'strng';
    }),
  );
  t.same(misspelt, [
    {
      file: studentStatusFile,
      pointer: '/items/0/type',
      code: 'schema',
      message: 'must be one of: string, integer, number, boolean, date, datetime',
    },
  ]);
  t.equal(
    formatCatalogError(misspelt[0]!),
    'zj-edu/330000-EDU-00001.yaml#/items/0/type: must be one of: string, integer, number, boolean, date, datetime',
  );

  const unquoted = await errorsOf(
    t,
    withDoc('zj-edu/agency.yaml', (doc) => {
      doc.region = 330000;
      doc.homepage = 'not a uri';
      doc.contact_point = { name: '办公室', email: 'data@edu.example', fax: '0571-1' };
    }),
  );
  t.same(
    unquoted.map(({ pointer, code }) => ({ pointer, code })),
    [
      { pointer: '/region', code: 'schema' },
      { pointer: '/homepage', code: 'schema' },
      { pointer: '/contact_point/fax', code: 'schema' },
    ],
    'every error of a file is reported',
  );
  t.match(unquoted[0]?.message, /must be string .*Quote it in YAML/, 'the type error says what the value stands for');
  t.equal(unquoted[2]?.message, 'is not a property this file may have');

  const badCode = await errorsOf(
    t,
    withDoc(studentStatusFile, (doc) => {
      doc.code = '330000-EDU-1';
      doc.name = 'Student status';
      doc.published = '2019-13-01';
    }),
  );
  t.same(
    badCode.map(({ file, pointer }) => `${file}#${pointer}`),
    [
      `${enterprisesFile}#/related_codes/0`,
      `${studentStatusFile}#/code`,
      `${studentStatusFile}#/name`,
      `${studentStatusFile}#/published`,
    ],
    'the code a file declares is the one others must use, even when it is malformed',
  );
  t.match(badCode[1]?.message, /must match pattern .*5-digit serial/);
  t.match(badCode[2]?.message, /at least one Han character/);
  t.equal(badCode[3]?.message, 'must match format "date"');

  t.same(
    await errorsOf(
      t,
      withDoc(enterprisesFile, (doc) => {
        doc.keywords = [42];
      }),
    ),
    [{ file: enterprisesFile, pointer: '/keywords/0', code: 'schema', message: 'must be string' }],
    'a schema without a description gives the plain message',
  );
});

t.test('sharing methods follow the sharing type', async (t) => {
  t.same(
    await errorsOf(
      t,
      withDoc(enterprisesFile, (doc) => {
        doc.sharing = { type: 'unconditional', methods: [] };
      }),
    ),
    [
      {
        file: enterprisesFile,
        pointer: '/sharing/methods',
        code: 'schema',
        message: 'must NOT have fewer than 1 items',
      },
    ],
  );
  t.same(
    await problemsOf(
      t,
      withDoc(enterprisesFile, (doc) => {
        doc.sharing = { type: 'unconditional' };
      }),
    ),
    [{ file: enterprisesFile, pointer: '/sharing/methods', code: 'schema' }],
    'a shared resource offers a method',
  );
  t.same(
    await problemsOf(
      t,
      withDoc(studentStatusFile, (doc) => {
        doc.sharing = { type: 'none', conditions: '不予共享。', legal_basis: '法', methods: ['read'] };
      }),
    ),
    [{ file: studentStatusFile, pointer: '/sharing/methods', code: 'schema' }],
    'a resource that is not shared offers none',
  );
});

t.test('YAML syntax errors name the file and the line', async (t) => {
  const errors = await errorsOf(t, {
    ...validFiles(),
    [studentStatusFile]: 'code: 330000-EDU-00001\nname: [学籍信息\ntitle: Student status\n',
  });
  t.same(
    withoutMessages(errors),
    [{ file: studentStatusFile, pointer: '', code: 'yaml_syntax' }],
    'and a broken file hides no code from the rules: the AMR resource still finds its related code',
  );
  t.match(errors[0]?.message, /^line 3, column 1: /);

  const duplicateKey = await errorsOf(t, { ...validFiles(), 'zj-edu/agency.yaml': 'code: zj-edu\ncode: zj-edu\n' });
  t.match(duplicateKey, [{ file: 'zj-edu/agency.yaml', pointer: '', code: 'yaml_syntax', message: /line 2.*unique/ }]);
});

t.test('aliases that expand without bound are refused', async (t) => {
  // "Billion laughs": each anchor repeats the one before ten times.
  const names = [...'abcdefgh'];
  const layers = names.map((name, i) => {
    const repeated = Array<string>(10).fill(i === 0 ? 'lol' : `*${names[i - 1]}`);
    return `${name}: &${name} [${repeated.join(', ')}]`;
  });
  const errors = await problemsOf(t, { ...validFiles(), [studentStatusFile]: layers.join('\n') });
  t.same(errors, [{ file: studentStatusFile, pointer: '', code: 'yaml_syntax' }]);
});

t.test('an empty file is not a document', async (t) => {
  t.same(await problemsOf(t, { ...validFiles(), [studentStatusFile]: '' }), [
    { file: studentStatusFile, pointer: '', code: 'schema' },
  ]);
});

t.test('every error in every file is reported in one run', async (t) => {
  const files = withDoc(studentStatusFile, (doc) => {
    doc.record_key = ['student_number'];
    (doc.items as Doc[])[1]!.type = 'strng';
  });
  files[enterprisesFile] = 'code: [\n';
  files['zj-edu/agency.yaml'] = { ...(files['zj-edu/agency.yaml'] as Doc), level: 'provincial' };
  files['zj-edu/330000-EDU-00002.yaml'] = { ...studentStatus, code: '330000-EDU-00002', published: 'yesterday' };
  t.same(await problemsOf(t, files), [
    { file: enterprisesFile, pointer: '', code: 'yaml_syntax' },
    { file: studentStatusFile, pointer: '/items/1/type', code: 'schema' },
    { file: 'zj-edu/330000-EDU-00002.yaml', pointer: '/published', code: 'schema' },
    { file: 'zj-edu/agency.yaml', pointer: '/level', code: 'schema' },
  ]);

  const rulesAndSchema = withDoc(studentStatusFile, (doc) => {
    doc.record_key = ['student_number'];
  });
  rulesAndSchema['zj-edu/agency.yaml'] = { ...(rulesAndSchema['zj-edu/agency.yaml'] as Doc), level: 'provincial' };
  t.same(
    await problemsOf(t, rulesAndSchema),
    [
      { file: studentStatusFile, pointer: '/record_key/0', code: 'unknown_key_item' },
      { file: 'zj-edu/agency.yaml', pointer: '/level', code: 'schema' },
    ],
    'rule errors come with schema errors, and a broken agency file does not make its provider unknown',
  );
});

t.test('duplicate_code: two files with one code both hear of it', async (t) => {
  const copy = 'zj-edu/330000-EDU-00002.yaml';
  const errors = await errorsOf(t, { ...validFiles(), [copy]: studentStatus });
  t.same(
    withoutMessages(errors),
    [
      { file: studentStatusFile, pointer: '/code', code: 'duplicate_code' },
      { file: copy, pointer: '/code', code: 'duplicate_code' },
      { file: copy, pointer: '/code', code: 'file_name_mismatch' },
    ],
  );
  t.match(errors[0]?.message, copy);
  t.match(errors[1]?.message, studentStatusFile);

  const agencies = await problemsOf(t, {
    ...validFiles(),
    'zj-edu2/agency.yaml': agency('zj-edu', 'EDU', '浙江省教育厅'),
  });
  t.same(agencies, [
    { file: 'zj-edu/agency.yaml', pointer: '/code', code: 'duplicate_code' },
    { file: 'zj-edu2/agency.yaml', pointer: '/code', code: 'duplicate_code' },
    { file: 'zj-edu2/agency.yaml', pointer: '/code', code: 'agency_folder_mismatch' },
  ]);
});

t.test('code_pattern: a resource code starts with its provider region and abbreviation', async (t) => {
  const cityCode = 'zj-edu/330100-EDU-00002.yaml';
  const otherAbbr = 'zj-edu/330000-AMR-00002.yaml';
  const errors = await errorsOf(t, {
    ...validFiles(),
    [cityCode]: { ...studentStatus, code: '330100-EDU-00002' },
    [otherAbbr]: { ...studentStatus, code: '330000-AMR-00002' },
  });
  t.same(
    withoutMessages(errors),
    [
      { file: otherAbbr, pointer: '/code', code: 'code_pattern' },
      { file: cityCode, pointer: '/code', code: 'code_pattern' },
    ],
  );
  t.match(errors[1]?.message, /330000-EDU-/);
});

t.test('unknown_provider: the provider must be a catalog agency', async (t) => {
  const errors = await errorsOf(
    t,
    withDoc(studentStatusFile, (doc) => {
      doc.provider = 'zj-edo';
    }),
  );
  t.same(
    withoutMessages(errors),
    [{ file: studentStatusFile, pointer: '/provider', code: 'unknown_provider' }],
    'a mistyped provider is one error, not also a folder mismatch',
  );
  t.match(errors[0]?.message, /zj-edo/);
});

t.test('provider_folder_mismatch: a resource lies in its provider folder', async (t) => {
  const files = validFiles();
  files['zj-edu/330000-AMR-00001.yaml'] = files[enterprisesFile]!;
  delete files[enterprisesFile];
  t.same(await problemsOf(t, files), [
    { file: 'zj-edu/330000-AMR-00001.yaml', pointer: '/provider', code: 'provider_folder_mismatch' },
  ]);
});

t.test('agency_folder_mismatch and missing_agency_file', async (t) => {
  const files = validFiles();
  files['zj-amr/agency.yaml'] = agency('zj-samr', 'AMR', '浙江省市场监督管理局');
  t.same(
    await problemsOf(t, files),
    [
      { file: enterprisesFile, pointer: '/provider', code: 'unknown_provider' },
      { file: 'zj-amr/agency.yaml', pointer: '/code', code: 'agency_folder_mismatch' },
    ],
    'an agency described in another folder',
  );

  const withoutAgency = validFiles();
  delete withoutAgency['zj-amr/agency.yaml'];
  t.same(await problemsOf(t, withoutAgency), [
    { file: enterprisesFile, pointer: '/provider', code: 'unknown_provider' },
    { file: 'zj-amr/agency.yaml', pointer: '', code: 'missing_agency_file' },
  ]);
});

t.test('file_name_mismatch: a resource file is named by its code', async (t) => {
  const files = validFiles();
  files['zj-edu/students.yaml'] = files[studentStatusFile]!;
  delete files[studentStatusFile];
  t.same(await problemsOf(t, files), [{ file: 'zj-edu/students.yaml', pointer: '/code', code: 'file_name_mismatch' }]);
});

t.test('unexpected_file: an agency folder holds only YAML files', async (t) => {
  const files: CatalogFiles = { ...validFiles(), 'zj-edu/330000-EDU-00002.yml': 'code: x', 'zj-edu/notes.txt': '' };
  const tree = testdirOf(files);
  (tree['zj-edu'] as Record<string, unknown>)['drafts'] = {};
  const result = await loadCatalog(t.testdir(tree as Parameters<typeof t.testdir>[0]));
  t.same(result.ok ? [] : result.errors.map(({ file, code }) => ({ file, code })), [
    { file: 'zj-edu/330000-EDU-00002.yml', code: 'unexpected_file' },
    { file: 'zj-edu/drafts', code: 'unexpected_file' },
    { file: 'zj-edu/notes.txt', code: 'unexpected_file' },
  ]);
});

t.test('unknown_key_item and duplicate_item: the record key and the items', async (t) => {
  const errors = await errorsOf(
    t,
    withDoc(studentStatusFile, (doc) => {
      const items = doc.items as Doc[];
      items.push({ ...items[1], title: '身份证号' }, { ...items[0] });
      doc.record_key = ['student_id', 'school', 'id_number'];
    }),
  );
  t.same(
    withoutMessages(errors),
    [
      { file: studentStatusFile, pointer: '/items/2/name', code: 'duplicate_item' },
      { file: studentStatusFile, pointer: '/items/3/name', code: 'duplicate_item' },
      { file: studentStatusFile, pointer: '/record_key/1', code: 'unknown_key_item' },
    ],
  );
  t.match(errors[0]?.message, /id_number .*\/items\/1/);
});

t.test('missing_conditions and missing_legal_basis: conditional and none say why', async (t) => {
  const errors = await errorsOf(
    t,
    withDoc(studentStatusFile, (doc) => {
      doc.sharing = { type: 'conditional', methods: ['verify'] };
      doc.open = { type: 'none' };
    }),
  );
  t.same(
    withoutMessages(errors),
    [
      { file: studentStatusFile, pointer: '/sharing/conditions', code: 'missing_conditions' },
      { file: studentStatusFile, pointer: '/sharing/legal_basis', code: 'missing_legal_basis' },
      { file: studentStatusFile, pointer: '/open/conditions', code: 'missing_conditions' },
      { file: studentStatusFile, pointer: '/open/legal_basis', code: 'missing_legal_basis' },
    ],
  );
  t.match(errors[0]?.message, /sharing type conditional/);
  t.match(errors[3]?.message, /open type none .*refusal/);

  t.same(
    await problemsOf(
      t,
      withDoc(enterprisesFile, (doc) => {
        doc.sharing = { type: 'none', legal_basis: '法', methods: [] };
        doc.open = { type: 'conditional', conditions: '实名注册。', license: 'https://creativecommons.org/licenses/by/' };
      }),
    ),
    [
      { file: enterprisesFile, pointer: '/sharing/conditions', code: 'missing_conditions' },
      { file: enterprisesFile, pointer: '/open/legal_basis', code: 'missing_legal_basis' },
    ],
  );
});

t.test('missing_license: open data names its licence', async (t) => {
  t.same(
    await problemsOf(
      t,
      withDoc(enterprisesFile, (doc) => {
        doc.open = { type: 'unconditional' };
      }),
    ),
    [{ file: enterprisesFile, pointer: '/open/license', code: 'missing_license' }],
  );
  t.same(
    await problemsOf(
      t,
      withDoc(enterprisesFile, (doc) => {
        doc.open = { type: 'conditional', conditions: '实名注册。', legal_basis: '《浙江省公共数据条例》' };
      }),
    ),
    [{ file: enterprisesFile, pointer: '/open/license', code: 'missing_license' }],
  );
});

t.test('unknown_related_code: related resources are in the catalog', async (t) => {
  t.same(
    await problemsOf(
      t,
      withDoc(enterprisesFile, (doc) => {
        doc.related_codes = ['330000-EDU-00001', '330000-EDU-00009'];
      }),
    ),
    [{ file: enterprisesFile, pointer: '/related_codes/1', code: 'unknown_related_code' }],
  );
});

t.test('catalog_unreadable: a catalog folder that is not there', async (t) => {
  const result = await loadCatalog(join(t.testdir({}), 'missing'));
  t.match(result, { ok: false, errors: [{ file: '.', pointer: '', code: 'catalog_unreadable', message: /ENOENT/ }] });
});
