import { join } from 'node:path';
import { DataFactory, Store, type Quad, type Term } from 'n3';
import t, { type Test } from 'tap';
import {
  catalogJsonLd,
  catalogQuads,
  catalogTurtle,
  datasetFormats,
  downloadFormats,
  openResources,
  type DcatOptions,
  type DcatResource,
} from '../../src/catalog/dcat.js';
import { loadCatalog } from '../../src/catalog/files.js';
import type { Agency } from '../../src/model/catalog.js';
import { projectRoot } from '../../src/paths.js';
import {
  canonicalNQuads,
  formatResults,
  parseTurtle,
  quadsFromJsonLd,
  validateDcatAp,
  type DcatApShapes,
  type ShaclResult,
} from '../helpers/shacl.js';

const { namedNode } = DataFactory;
const publicUrl = 'http://gateway.test';
const options: DcatOptions = { publicUrl };

const dcat = (local: string) => namedNode(`http://www.w3.org/ns/dcat#${local}`);
const dct = (local: string) => namedNode(`http://purl.org/dc/terms/${local}`);
const rdfType = namedNode('http://www.w3.org/1999/02/22-rdf-syntax-ns#type');
const datasetIri = (code: string) => `${publicUrl}/v1/open/datasets/${code}`;

/** The shapes that must report no violation: the full profile, and the two files it is built from. */
const violationShapes: DcatApShapes[] = ['dcat-ap-SHACL.ttl', 'shapes.ttl', 'range.ttl'];

const loaded = await loadCatalog(join(projectRoot, 'catalog'));
if (!loaded.ok) throw new Error(`the demo catalog does not load: ${JSON.stringify(loaded.errors)}`);
const { agencies, resources } = loaded.catalog;
const open = openResources(resources);

const turtle = await catalogTurtle(agencies, resources, options);
const document = await catalogJsonLd(agencies, resources, options);
const turtleQuads = parseTurtle(turtle);
const jsonLdQuads = await quadsFromJsonLd(document);

function subjectsOfType(quads: Quad[], type: Term): string[] {
  return new Store(quads).getSubjects(rdfType, type, null).map((subject) => subject.value);
}

function objectsOf(quads: Quad[], subject: string, predicate: Term): string[] {
  return new Store(quads).getObjects(namedNode(subject), predicate, null).map((object) => object.value);
}

/** Valid against each file of shapes; a failure lists the results (focus node, path, message). */
async function assertConforms(t: Test, quads: Quad[]) {
  for (const shapes of violationShapes) {
    const report = await validateDcatAp(shapes, quads);
    t.ok(report.conforms, `conforms to ${shapes}${report.conforms ? '' : `:\n${formatResults(report.results)}`}`);
  }
}

/** Literals as `text@language`. */
function taggedTextsOf(quads: Quad[], subject: string, predicate: Term): string[] {
  return new Store(quads)
    .getObjects(namedNode(subject), predicate, null)
    .map((object) => `${object.value}@${object.termType === 'Literal' ? object.language : ''}`);
}

function resourceNamed(code: string): DcatResource {
  const resource = resources.find((r) => r.code === code);
  if (!resource) throw new Error(`no resource ${code} in the demo catalog`);
  return structuredClone(resource);
}

t.test('the Turtle conforms to the DCAT-AP 3.0.1 shapes', async (t) => {
  await assertConforms(t, turtleQuads);
});

t.test('the JSON-LD conforms to the DCAT-AP 3.0.1 shapes', async (t) => {
  await assertConforms(t, jsonLdQuads);
});

t.test('the recommended shapes warn only where the catalog has no data to give', async (t) => {
  const report = await validateDcatAp('shapes_recommended.ttl', turtleQuads);
  const warnings = report.results;
  t.ok(
    warnings.every((warning) => warning.severity === 'Warning'),
    'recommendations are warnings',
  );
  // 27 warnings, each a fact the catalog files do not hold (inventing them would be worse than leaving them out):
  // - dct:temporal on the 17 open datasets without a `temporal` (registers and snapshots have no time coverage);
  // - dct:spatial on the 5 datasets without a `spatial` (STATS-00001…5 cover all of China, which has no division code);
  // - dcat:endDate on the 5 periods with an open end (DCAT-AP leaves an ongoing period's end out).
  t.equal(warnings.length, 27, formatResults(warnings));
  const expected: Pick<ShaclResult, 'focusNode' | 'path'>[] = [
    ...open.filter((r) => !r.temporal).map((r) => ({ focusNode: datasetIri(r.code), path: dct('temporal').value })),
    ...open.filter((r) => !r.spatial).map((r) => ({ focusNode: datasetIri(r.code), path: dct('spatial').value })),
    ...open
      .filter((r) => r.temporal && !r.temporal.end)
      .map((r) => ({ focusNode: `${datasetIri(r.code)}#period`, path: dcat('endDate').value })),
  ];
  const byFocusAndPath = (a: Pick<ShaclResult, 'focusNode' | 'path'>, b: typeof a) =>
    `${a.focusNode} ${a.path}`.localeCompare(`${b.focusNode} ${b.path}`);
  t.same(
    warnings.map(({ focusNode, path }) => ({ focusNode, path })).sort(byFocusAndPath),
    expected.sort(byFocusAndPath),
  );
});

t.test('every open resource is a dataset, and no other is', async (t) => {
  const datasets = subjectsOfType(turtleQuads, dcat('Dataset')).sort();
  t.same(datasets, open.map((r) => datasetIri(r.code)).sort());
  t.equal(datasets.length, 22, 'the demo catalog opens 18 resources unconditionally and 4 on conditions');
  for (const resource of resources.filter((r) => r.open.type === 'none')) {
    t.notOk(turtle.includes(resource.code), `${resource.code} (open: none) is not in the Turtle`);
    t.notOk(JSON.stringify(document).includes(resource.code), `${resource.code} (open: none) is not in the JSON-LD`);
  }
  t.notOk(turtle.includes('330000-EDU-00001'), 'student status (学籍信息) is not described');
  t.same(objectsOf(turtleQuads, `${publicUrl}/catalog`, dcat('dataset')).sort(), datasets);
});

t.test('a dataset has its access rights, publisher and contact point', async (t) => {
  const conditional = datasetIri('330000-HRSS-00003');
  t.same(objectsOf(turtleQuads, conditional, dct('accessRights')), [
    'http://publications.europa.eu/resource/authority/access-right/RESTRICTED',
  ]);
  const unconditional = datasetIri('330000-ENV-00001');
  t.same(objectsOf(turtleQuads, unconditional, dct('accessRights')), [
    'http://publications.europa.eu/resource/authority/access-right/PUBLIC',
  ]);
  t.same(objectsOf(turtleQuads, unconditional, dct('publisher')), [`${publicUrl}/v1/catalog/agencies/zj-env`]);
  t.same(objectsOf(turtleQuads, unconditional, dcat('theme')), [
    'http://publications.europa.eu/resource/authority/data-theme/ENVI',
  ]);
  t.same(objectsOf(turtleQuads, unconditional, dct('accrualPeriodicity')), [
    'http://publications.europa.eu/resource/authority/frequency/IRREG',
  ]);
  // PSB-00004 names its own contact point; ENV-00001 is answered for by its agency's.
  const ownContact = `${datasetIri('330000-PSB-00004')}#contact`;
  t.same(objectsOf(turtleQuads, ownContact, namedNode('http://www.w3.org/2006/vcard/ns#hasEmail')), [
    'mailto:traffic@psb.zj.example',
  ]);
  const agencyContact = `${unconditional}#contact`;
  const env = agencies.find((agency) => agency.code === 'zj-env');
  t.same(objectsOf(turtleQuads, agencyContact, namedNode('http://www.w3.org/2006/vcard/ns#hasEmail')), [
    `mailto:${env?.contact_point.email}`,
  ]);
});

t.test('a dataset with locations has a GeoJSON distribution, one without has none', async (t) => {
  const distributions = (code: string) => objectsOf(turtleQuads, datasetIri(code), dcat('distribution')).sort();
  const spatial = '330000-ENV-00001';
  t.same(distributions(spatial), [
    `${datasetIri(spatial)}/datapackage.json`,
    `${datasetIri(spatial)}/download.csv`,
    `${datasetIri(spatial)}/download.geojson`,
    `${datasetIri(spatial)}/download.json`,
    `${datasetIri(spatial)}/download.ndjson`,
    `${datasetIri(spatial)}/download.xlsx`,
  ]);
  const geojson = `${datasetIri(spatial)}/download.geojson`;
  t.same(objectsOf(turtleQuads, geojson, dct('format')), [
    'http://publications.europa.eu/resource/authority/file-type/GEOJSON',
  ]);
  t.same(objectsOf(turtleQuads, geojson, dcat('mediaType')), [
    'https://www.iana.org/assignments/media-types/application/geo+json',
  ]);
  t.same(objectsOf(turtleQuads, geojson, dcat('accessURL')), [`${datasetIri(spatial)}/records`]);
  t.same(objectsOf(turtleQuads, geojson, dcat('downloadURL')), [geojson]);
  t.same(objectsOf(turtleQuads, geojson, dct('license')), ['https://creativecommons.org/licenses/by/4.0/']);

  const flat = '330000-STATS-00001';
  t.notOk(distributions(flat).some((iri) => iri.endsWith('.geojson')), `${flat} has no GeoJSON`);
  t.equal(distributions(flat).length, 5);

  t.same(
    datasetFormats(resourceNamed(spatial)).map((format) => format.name),
    ['csv', 'json', 'ndjson', 'geojson', 'xlsx', 'datapackage'],
  );
  t.same(
    datasetFormats(resourceNamed(flat)).map((format) => format.name),
    ['csv', 'json', 'ndjson', 'xlsx', 'datapackage'],
  );
  t.same(
    downloadFormats.map((format) => format.file),
    ['download.csv', 'download.json', 'download.ndjson', 'download.geojson', 'download.xlsx', 'datapackage.json'],
  );
});

t.test('the data service serves every dataset', async (t) => {
  const service = `${publicUrl}/v1/open`;
  t.same(subjectsOfType(turtleQuads, dcat('DataService')), [service]);
  t.same(objectsOf(turtleQuads, `${publicUrl}/catalog`, dcat('service')), [service]);
  t.same(
    objectsOf(turtleQuads, service, dcat('servesDataset')).sort(),
    open.map((r) => datasetIri(r.code)).sort(),
  );
  t.same(objectsOf(turtleQuads, service, dcat('endpointURL')), [service]);
  t.same(objectsOf(turtleQuads, service, dcat('endpointDescription')), [`${publicUrl}/openapi.json`]);
});

t.test('the Turtle and the JSON-LD carry the same quads, with no blank node', async (t) => {
  const quads = catalogQuads(agencies, resources, options);
  t.equal(canonicalNQuads(turtleQuads), canonicalNQuads(quads), 'Turtle = the graph');
  t.equal(canonicalNQuads(jsonLdQuads), canonicalNQuads(quads), 'JSON-LD = the graph');
  t.notOk(
    quads.some((q) => q.subject.termType === 'BlankNode' || q.object.termType === 'BlankNode'),
    'every node is an IRI',
  );
  t.match(turtle, /^@prefix dcat: <http:\/\/www\.w3\.org\/ns\/dcat#>\./m);
  t.type((document as Record<string, unknown>)['@context'], 'object', 'the JSON-LD context is inline');
});

t.test('the output is deterministic, whatever the order of the input', async (t) => {
  t.equal(await catalogTurtle(agencies, resources, options), turtle);
  t.equal(JSON.stringify(await catalogJsonLd(agencies, resources, options)), JSON.stringify(document));
  const shuffled = await catalogTurtle([...agencies].reverse(), [...resources].reverse(), options);
  t.equal(shuffled, turtle, 'reversed agencies and resources');
});

t.test('the validator reports a dataset without its mandatory description', async (t) => {
  const dataset = namedNode(datasetIri('330000-ENV-00001'));
  const broken = turtleQuads.filter((q) => !(q.subject.equals(dataset) && q.predicate.equals(dct('description'))));
  t.equal(broken.length, turtleQuads.length - 2, 'the zh and en descriptions are gone');
  const report = await validateDcatAp('dcat-ap-SHACL.ttl', broken);
  t.equal(report.conforms, false);
  t.same(
    report.results.map(({ severity, focusNode, path }) => ({ severity, focusNode, path })),
    [{ severity: 'Violation', focusNode: dataset.value, path: dct('description').value }],
    formatResults(report.results),
  );
});

t.test('what the gateway knows beyond the catalog files', async (t) => {
  const modified = new Date('2024-05-06T07:08:09.000Z');
  const changed: DcatResource = { ...resourceNamed('330000-ENV-00002'), modified, version: 3 };
  const rest = resources.filter((r) => r.code !== changed.code);
  const quads = catalogQuads(agencies, [...rest, changed], options);
  const dataset = datasetIri(changed.code);
  t.same(objectsOf(quads, dataset, dct('modified')), ['2024-05-06T07:08:09.000Z']);
  t.same(objectsOf(quads, dataset, dcat('version')), ['3']);
  t.same(objectsOf(quads, `${publicUrl}/catalog`, dct('modified')), ['2024-05-06T07:08:09.000Z'], 'the newest change');
  t.same(objectsOf(quads, `${publicUrl}/catalog`, dct('issued')), ['2019-06-01'], 'the first publication');

  const catalogModified = new Date('2025-01-02T03:04:05.000Z');
  const titled = catalogQuads(agencies, resources, {
    publicUrl: `${publicUrl}/`,
    title: '杭州市开放数据目录',
    description: 'Open datasets of Hangzhou.',
    modified: catalogModified,
  });
  const catalog = `${publicUrl}/catalog`;
  t.same(taggedTextsOf(titled, catalog, dct('title')), ['杭州市开放数据目录@zh'], 'a Chinese title is tagged zh');
  t.same(taggedTextsOf(titled, catalog, dct('description')), ['Open datasets of Hangzhou.@en']);
  t.same(objectsOf(titled, catalog, dct('modified')), [catalogModified.toISOString()]);
  await assertConforms(t, quads);
});

t.test('periods, licences and divisions the demo catalog does not have', async (t) => {
  const base = resourceNamed('330000-STATS-00006');
  const licensed = (code: string, license: string): DcatResource => ({
    ...base,
    code,
    open: { type: 'unconditional', license },
  });
  const variants: DcatResource[] = [
    { ...base, code: '330000-STATS-00101', temporal: { start: '2020-01-01', end: '2020-12-31' } },
    licensed('330000-STATS-00102', 'https://creativecommons.org/publicdomain/zero/1.0/'),
    licensed('330000-STATS-00103', 'https://creativecommons.org/licenses/by-sa/4.0/'),
    licensed('330000-STATS-00104', 'https://creativecommons.org/licenses/by-nd/4.0/'),
    licensed('330000-STATS-00105', 'https://data.gov.example/licence'),
    licensed('330000-STATS-00107', 'https://creativecommons.org/licenses/sampling/1.0/'),
    { ...base, code: '330000-STATS-00106', spatial: ['330100'] },
  ];
  const quads = catalogQuads(agencies, variants, options);
  await assertConforms(t, quads);

  const period = `${datasetIri('330000-STATS-00101')}#period`;
  t.same(objectsOf(quads, period, dcat('startDate')), ['2020-01-01']);
  t.same(objectsOf(quads, period, dcat('endDate')), ['2020-12-31']);

  const licenceTypes = (licence: string) => objectsOf(quads, licence, dct('type')).sort();
  const adms = 'http://purl.org/adms/licencetype/';
  t.same(licenceTypes('https://creativecommons.org/publicdomain/zero/1.0/'), [`${adms}PublicDomain`]);
  t.same(licenceTypes('https://creativecommons.org/licenses/by-sa/4.0/'), [
    `${adms}Attribution`,
    `${adms}ViralEffect-ShareAlike`,
  ]);
  t.same(licenceTypes('https://creativecommons.org/licenses/by-nd/4.0/'), [
    `${adms}Attribution`,
    `${adms}OtherRestrictiveClauses`,
  ]);
  t.same(licenceTypes('https://data.gov.example/licence'), [], 'an unknown licence has no type');
  t.same(licenceTypes('https://creativecommons.org/licenses/sampling/1.0/'), [], 'nor a retired Creative Commons one');

  const hangzhou = `${publicUrl}/catalog#division-330100`;
  t.same(objectsOf(quads, hangzhou, dct('identifier')), ['330100']);
  t.same(objectsOf(quads, hangzhou, dcat('bbox')), [], 'no extent known for the division');

  const recommended = await validateDcatAp('shapes_recommended.ttl', quads);
  t.same(
    recommended.results
      .filter((r) => r.focusNode === hangzhou || r.focusNode === 'https://data.gov.example/licence')
      .map(({ focusNode, path }) => ({ focusNode, path }))
      .sort((a, b) => `${a.focusNode}${a.path}`.localeCompare(`${b.focusNode}${b.path}`)),
    [
      { focusNode: hangzhou, path: dcat('bbox').value },
      { focusNode: hangzhou, path: dcat('centroid').value },
      { focusNode: 'https://data.gov.example/licence', path: dct('type').value },
    ],
    'the gaps are reported as warnings',
  );
});

t.test('a catalog with nothing open', async (t) => {
  const closed = resources.filter((r) => r.open.type === 'none');
  const quads = catalogQuads(agencies, closed, options);
  t.same(subjectsOfType(quads, dcat('Dataset')), []);
  t.same(objectsOf(quads, `${publicUrl}/catalog`, dct('issued')), []);
  t.same(objectsOf(quads, `${publicUrl}/catalog`, dct('modified')), []);
  await assertConforms(t, quads);
});

t.test('a resource whose provider is not among the agencies', async (t) => {
  const others: Agency[] = agencies.filter((agency) => agency.code !== 'zj-env');
  t.throws(() => catalogQuads(others, resources, options), /330000-ENV-00001: no agency zj-env/);
});
