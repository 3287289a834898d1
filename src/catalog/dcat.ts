import jsonld, { type ContextDefinition } from 'jsonld';
import { DataFactory, Writer, termToId, type Literal, type NamedNode, type Quad } from 'n3';
import {
  euDataThemes,
  euDataThemeVocabulary,
  type Agency,
  type AgencyLevel,
  type ContactPoint,
  type EuDataTheme,
  type Resource,
  type UpdateCycle,
} from '../model/catalog.js';

/**
 * The open part of the catalog as DCAT-AP 3.0.1 (https://semiceu.github.io/DCAT-AP/releases/3.0.1/),
 * checked against its official SHACL shapes. `catalogQuads` builds the one graph; Turtle and JSON-LD are
 * written from it. Every node is an IRI (no blank nodes), so that both serialisations carry the very same
 * quads, and the quads are sorted and unique, so that the same catalog always gives the same bytes (ETag).
 * The shapes check values by class (`sh:class`), so every vocabulary term used is typed in the graph too.
 */

export interface DcatOptions {
  /** The gateway's public base URL, e.g. `http://127.0.0.1:3000` (no trailing slash). */
  publicUrl: string;
  /** The catalog's title; default: a Chinese and an English one. */
  title?: string;
  /** The catalog's description; default: a Chinese and an English one. */
  description?: string;
  /** When the catalog last changed; default: the newest dataset modification. */
  modified?: Date;
}

/** A resource with what the gateway knows beyond the catalog file: when its data last changed. */
export interface DcatResource extends Resource {
  modified?: Date;
  version?: number;
}

/** A way to download an open dataset, as `/v1/open/datasets/<code>/<file>`. */
export interface DownloadFormat {
  name: 'csv' | 'json' | 'ndjson' | 'geojson' | 'xlsx' | 'datapackage';
  /** The last segment of the download path. */
  file: string;
  /** Short name for titles. */
  label: string;
  /** IANA media type. */
  mediaType: string;
  /** Code in the EU file-type table, the value set DCAT-AP takes `dct:format` from. */
  fileType: 'CSV' | 'JSON' | 'GEOJSON' | 'XLSX';
  /** The specification the file follows. */
  conformsTo?: string;
  description: { zh: string; en: string };
}

export const downloadFormats: readonly DownloadFormat[] = [
  {
    name: 'csv',
    file: 'download.csv',
    label: 'CSV',
    mediaType: 'text/csv',
    fileType: 'CSV',
    conformsTo: 'https://www.rfc-editor.org/rfc/rfc4180',
    description: { zh: '全部记录，CSV 格式（RFC 4180，UTF-8 编码）。', en: 'All records as CSV (RFC 4180, UTF-8).' },
  },
  {
    name: 'json',
    file: 'download.json',
    label: 'JSON',
    mediaType: 'application/json',
    fileType: 'JSON',
    conformsTo: 'https://www.rfc-editor.org/rfc/rfc8259',
    description: { zh: '全部记录，JSON 格式。', en: 'All records as JSON.' },
  },
  {
    name: 'ndjson',
    file: 'download.ndjson',
    label: 'NDJSON',
    mediaType: 'application/x-ndjson',
    // The EU file-type table has no line-delimited JSON: JSON, with the media type telling the framing.
    fileType: 'JSON',
    conformsTo: 'https://github.com/ndjson/ndjson-spec',
    description: {
      zh: '全部记录，NDJSON 格式（每行一条记录）。',
      en: 'All records as newline-delimited JSON, one record a line.',
    },
  },
  {
    name: 'geojson',
    file: 'download.geojson',
    label: 'GeoJSON',
    mediaType: 'application/geo+json',
    fileType: 'GEOJSON',
    conformsTo: 'https://www.rfc-editor.org/rfc/rfc7946',
    description: {
      zh: '全部记录，GeoJSON 格式（按 WGS 84 经纬度定位的点要素）。',
      en: 'All records as GeoJSON points at their WGS 84 longitude and latitude.',
    },
  },
  {
    name: 'xlsx',
    file: 'download.xlsx',
    label: 'XLSX',
    mediaType: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
    fileType: 'XLSX',
    description: { zh: '全部记录，Excel 工作簿（XLSX）。', en: 'All records as an Excel workbook (XLSX).' },
  },
  {
    name: 'datapackage',
    file: 'datapackage.json',
    label: 'Data Package',
    mediaType: 'application/json',
    fileType: 'JSON',
    conformsTo: 'https://specs.frictionlessdata.io/data-package/',
    description: {
      zh: 'Frictionless 数据包描述文件，含记录的表结构（Table Schema）和各下载文件。',
      en: 'Frictionless Data Package descriptor: the Table Schema of the records and the files to download.',
    },
  },
];

/** The resources the public may see: open unconditionally or on conditions (开放属性 not `none`). */
export function openResources<R extends Resource>(resources: R[]): R[] {
  return resources.filter((resource) => resource.open.type !== 'none');
}

/** The download formats of a resource: GeoJSON only when its records carry a WGS 84 longitude and latitude. */
export function datasetFormats(resource: Resource): DownloadFormat[] {
  return downloadFormats.filter((format) => format.name !== 'geojson' || isLocated(resource));
}

function isLocated(resource: Resource): boolean {
  const formats = new Set(resource.items.map((item) => item.format));
  return formats.has('wgs84-longitude') && formats.has('wgs84-latitude');
}

const prefixes = {
  dcat: 'http://www.w3.org/ns/dcat#',
  dct: 'http://purl.org/dc/terms/',
  foaf: 'http://xmlns.com/foaf/0.1/',
  vcard: 'http://www.w3.org/2006/vcard/ns#',
  xsd: 'http://www.w3.org/2001/XMLSchema#',
  adms: 'http://www.w3.org/ns/adms#',
  skos: 'http://www.w3.org/2004/02/skos/core#',
  locn: 'http://www.w3.org/ns/locn#',
  dcatap: 'http://data.europa.eu/r5r/',
  spdx: 'http://spdx.org/rdf/terms#',
  rdfs: 'http://www.w3.org/2000/01/rdf-schema#',
  geo: 'http://www.opengis.net/ont/geosparql#',
} as const;

const { namedNode, literal, quad } = DataFactory;

function vocabulary(base: string): (local: string) => NamedNode {
  return (local) => namedNode(base + local);
}

const rdfType = namedNode('http://www.w3.org/1999/02/22-rdf-syntax-ns#type');
const dcat = vocabulary(prefixes.dcat);
const dct = vocabulary(prefixes.dct);
const foaf = vocabulary(prefixes.foaf);
const vcard = vocabulary(prefixes.vcard);
const xsd = vocabulary(prefixes.xsd);
const skos = vocabulary(prefixes.skos);
const dcatap = vocabulary(prefixes.dcatap);
const geo = vocabulary(prefixes.geo);

// The EU Publications Office authority tables and the ADMS vocabularies DCAT-AP takes its values from.
const euAuthority = 'http://publications.europa.eu/resource/authority/';
const accessRight = vocabulary(`${euAuthority}access-right/`);
const fileType = vocabulary(`${euAuthority}file-type/`);
const frequency = vocabulary(`${euAuthority}frequency/`);
const language = vocabulary(`${euAuthority}language/`);
const plannedAvailability = vocabulary(`${euAuthority}planned-availability/`);
const dataTheme = vocabulary(euDataThemeVocabulary);
const dataThemeScheme = namedNode(`${euAuthority}data-theme`);
const publisherType = vocabulary('http://purl.org/adms/publishertype/');
const licenceType = vocabulary('http://purl.org/adms/licencetype/');
const ianaMediaType = vocabulary('https://www.iana.org/assignments/media-types/');

const updateFrequencies: Readonly<Record<UpdateCycle, string>> = {
  realtime: 'UPDATE_CONT',
  daily: 'DAILY',
  weekly: 'WEEKLY',
  monthly: 'MONTHLY',
  quarterly: 'QUARTERLY',
  yearly: 'ANNUAL',
  irregular: 'IRREG',
};

/** The EU data themes' English preferred labels, as the authority table gives them. */
const dataThemeLabels: Readonly<Record<EuDataTheme, string>> = {
  AGRI: 'Agriculture, fisheries, forestry and food',
  ECON: 'Economy and finance',
  EDUC: 'Education, culture and sport',
  ENER: 'Energy',
  ENVI: 'Environment',
  GOVE: 'Government and public sector',
  HEAL: 'Health',
  INTR: 'International issues',
  JUST: 'Justice, legal system and public safety',
  REGI: 'Regions and cities',
  SOCI: 'Population and society',
  TECH: 'Science and technology',
  TRAN: 'Transport',
};

const publisherTypes: Readonly<Record<AgencyLevel, { code: string; label: string }>> = {
  national: { code: 'NationalAuthority', label: 'National authority' },
  province: { code: 'RegionalAuthority', label: 'Regional authority' },
  city: { code: 'LocalAuthority', label: 'Local authority' },
  county: { code: 'LocalAuthority', label: 'Local authority' },
};

/** ADMS licence types of the Creative Commons licence elements (`by`, `nc`, `sa`, `nd`). */
const creativeCommonsElements: Readonly<Record<string, { code: string; label: string }>> = {
  by: { code: 'Attribution', label: 'Attribution' },
  nc: { code: 'NonCommercialUseOnly', label: 'Non-commercial use only' },
  sa: { code: 'ViralEffect-ShareAlike', label: 'Viral effect (a.k.a. Share-alike)' },
  nd: { code: 'OtherRestrictiveClauses', label: 'Other restrictive clauses' },
};
const publicDomain = { code: 'PublicDomain', label: 'Public domain' };

/** The gateway operator, publisher of the catalog and of its data service. */
const operator = {
  name: '浙江省大数据发展管理局',
  name_en: 'Zhejiang Big Data Development Administration',
  level: 'province',
} as const;

/** The licence of the catalog's own metadata. */
const catalogLicence = 'https://creativecommons.org/licenses/by/4.0/';

const catalogDefaults = {
  title: { zh: '浙江省公共数据开放目录', en: 'Zhejiang Open Government Data Catalogue' },
  description: {
    zh: '浙江省政务数据共享交换网关向社会开放的数据集目录，按 DCAT-AP 3.0 描述。',
    en: 'The datasets the Zhejiang government data-exchange gateway opens to the public, described in DCAT-AP 3.0.',
  },
};

const service = {
  title: { zh: '浙江省公共数据开放接口', en: 'Zhejiang open data API' },
  description: {
    zh: '查询和下载开放数据集的记录：按条件筛选、分页，以 CSV、JSON、NDJSON、GeoJSON、XLSX 和数据包下载。',
    en:
      'Query and download the records of the open datasets: filters, paging, and downloads as CSV, JSON, NDJSON, ' +
      'GeoJSON, XLSX and Data Packages.',
  },
  keywords: ['开放数据', '公共数据', 'open data', 'government data'],
  // The endpoint is described by an OpenAPI 3.1 document (`dcat:endpointDescription`).
  conformsTo: 'https://spec.openapis.org/oas/v3.1.0',
};

interface Division {
  name: string;
  name_en: string;
  /** WGS 84 bounding box: west, south, east, north. */
  bbox: readonly [number, number, number, number];
  centroid: readonly [number, number];
}

/**
 * GB/T 2260 divisions with the extent DCAT-AP recommends for a `dct:Location` (`dcat:bbox`, `dcat:centroid`).
 * Add a division here when the catalog's resources start covering it.
 */
const divisions: Readonly<Record<string, Division>> = {
  // 27°02′–31°11′ N, 118°01′–123°10′ E; the centroid is the box's centre.
  '330000': {
    name: '浙江省',
    name_en: 'Zhejiang Province',
    bbox: [118.02, 27.03, 123.17, 31.18],
    centroid: [120.6, 29.1],
  },
};

/** The IRIs the gateway mints, all under its public URL. */
class GatewayIris {
  readonly catalog: string;
  readonly service: string;
  readonly docs: string;
  readonly openapi: string;

  constructor(readonly publicUrl: string) {
    this.catalog = `${publicUrl}/catalog`;
    this.service = `${publicUrl}/v1/open`;
    this.docs = `${publicUrl}/docs`;
    this.openapi = `${publicUrl}/openapi.json`;
  }

  dataset(code: string): string {
    return `${this.service}/datasets/${code}`;
  }

  resource(code: string): string {
    return `${this.publicUrl}/v1/catalog/resources/${code}`;
  }

  agency(code: string): string {
    return `${this.publicUrl}/v1/catalog/agencies/${code}`;
  }

  division(code: string): string {
    return `${this.catalog}#division-${code}`;
  }
}

/** Quads without duplicates, handed out sorted. */
class Graph {
  readonly #quads = new Map<string, Quad>();

  add(subject: NamedNode, predicate: NamedNode, ...objects: (NamedNode | Literal)[]): void {
    for (const object of objects) {
      const added = quad(subject, predicate, object);
      this.#quads.set(`${termToId(subject)} ${termToId(predicate)} ${termToId(object)}`, added);
    }
  }

  sorted(): Quad[] {
    return [...this.#quads.values()].sort(compareQuads);
  }
}

/** By subject, its types first, then by predicate and object. */
function compareQuads(a: Quad, b: Quad): number {
  return (
    compareStrings(a.subject.value, b.subject.value) ||
    compareStrings(predicateKey(a), predicateKey(b)) ||
    compareStrings(termToId(a.object), termToId(b.object))
  );
}

function predicateKey(q: Quad): string {
  return q.predicate.equals(rdfType) ? '' : q.predicate.value;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function text(value: string, lang: 'zh' | 'en'): Literal {
  return literal(value, lang);
}

/** A free text's language tag: Chinese when it has Han characters, else English. */
function textOf(value: string): Literal {
  return text(value, /\p{Script=Han}/u.test(value) ? 'zh' : 'en');
}

function bilingual(value: { zh: string; en: string }): Literal[] {
  return [text(value.zh, 'zh'), text(value.en, 'en')];
}

/** An RFC 3339 full-date, as `xsd:date`. */
function date(value: string): Literal {
  return literal(value, xsd('date'));
}

function dateTime(value: Date): Literal {
  return literal(value.toISOString(), xsd('dateTime'));
}

function modifiedOf(resource: DcatResource): Literal {
  return resource.modified ? dateTime(resource.modified) : date(resource.published);
}

function modifiedAt(resource: DcatResource): number {
  return resource.modified?.getTime() ?? Date.parse(resource.published);
}

/** The catalog as one sorted graph: the only source of the Turtle and JSON-LD documents. */
export function catalogQuads(agencies: Agency[], resources: DcatResource[], options: DcatOptions): Quad[] {
  const iris = new GatewayIris(options.publicUrl.replace(/\/+$/, ''));
  const graph = new Graph();
  // By code, so that the output does not depend on the order of the input (ties in modification time included).
  const datasets = openResources(resources).sort((a, b) => compareStrings(a.code, b.code));
  const agenciesByCode = new Map(agencies.map((agency) => [agency.code, agency]));
  const openCodes = new Set(datasets.map((resource) => resource.code));
  describeCatalog(graph, iris, datasets, options);
  describeService(graph, iris, datasets);
  for (const resource of datasets) {
    const provider = agenciesByCode.get(resource.provider);
    if (!provider) throw new Error(`resource ${resource.code}: no agency ${resource.provider} in the catalog`);
    describeDataset(graph, iris, resource, provider, openCodes);
  }
  return graph.sorted();
}

function describeCatalog(graph: Graph, iris: GatewayIris, datasets: DcatResource[], options: DcatOptions): void {
  const catalog = namedNode(iris.catalog);
  graph.add(catalog, rdfType, dcat('Catalog'));
  graph.add(catalog, dct('title'), ...(options.title ? [textOf(options.title)] : bilingual(catalogDefaults.title)));
  graph.add(
    catalog,
    dct('description'),
    ...(options.description ? [textOf(options.description)] : bilingual(catalogDefaults.description)),
  );
  graph.add(catalog, dct('publisher'), describeOperator(graph, iris));
  graph.add(catalog, dct('language'), describeLanguage(graph, 'ZHO'), describeLanguage(graph, 'ENG'));
  graph.add(catalog, dct('license'), describeLicence(graph, catalogLicence));
  graph.add(catalog, dcat('themeTaxonomy'), describeThemeScheme(graph));
  graph.add(catalog, foaf('homepage'), describeDocument(graph, iris.docs));
  graph.add(catalog, dcat('service'), namedNode(iris.service));
  const published = datasets.map((resource) => resource.published).sort();
  // The catalog went public with its first dataset.
  if (published[0]) graph.add(catalog, dct('issued'), date(published[0]));
  const latest = datasets.reduce<DcatResource | undefined>(
    (newest, resource) => (newest && modifiedAt(newest) >= modifiedAt(resource) ? newest : resource),
    undefined,
  );
  if (options.modified) graph.add(catalog, dct('modified'), dateTime(options.modified));
  else if (latest) graph.add(catalog, dct('modified'), modifiedOf(latest));
  for (const resource of datasets) {
    graph.add(catalog, dcat('dataset'), namedNode(iris.dataset(resource.code)));
    for (const code of resource.spatial ?? []) graph.add(catalog, dct('spatial'), describeDivision(graph, iris, code));
  }
}

function describeService(graph: Graph, iris: GatewayIris, datasets: DcatResource[]): void {
  const node = namedNode(iris.service);
  graph.add(node, rdfType, dcat('DataService'));
  graph.add(node, dct('title'), ...bilingual(service.title));
  graph.add(node, dct('description'), ...bilingual(service.description));
  graph.add(node, dcat('keyword'), ...service.keywords.map(textOf));
  graph.add(node, dcat('endpointURL'), namedNode(iris.service));
  graph.add(node, dcat('endpointDescription'), namedNode(iris.openapi));
  graph.add(node, dct('conformsTo'), describeStandard(graph, service.conformsTo));
  graph.add(node, dcat('landingPage'), describeDocument(graph, iris.docs));
  graph.add(node, dct('publisher'), describeOperator(graph, iris));
  graph.add(node, dcat('contactPoint'), describeOperatorContact(graph, iris));
  // Anybody may call it; conditional datasets say their own access rights.
  graph.add(node, dct('accessRights'), describeAccessRight(graph, 'PUBLIC'));
  for (const resource of datasets) {
    graph.add(node, dcat('servesDataset'), namedNode(iris.dataset(resource.code)));
    graph.add(node, dcat('theme'), describeTheme(graph, euDataThemes[resource.theme]));
  }
}

function describeDataset(
  graph: Graph,
  iris: GatewayIris,
  resource: DcatResource,
  provider: Agency,
  openCodes: ReadonlySet<string>,
): void {
  const iri = iris.dataset(resource.code);
  const node = namedNode(iri);
  graph.add(node, rdfType, dcat('Dataset'));
  graph.add(node, dct('identifier'), literal(resource.code));
  graph.add(node, dct('title'), text(resource.name, 'zh'), text(resource.title, 'en'));
  graph.add(node, dct('description'), text(resource.summary, 'zh'), text(resource.description, 'en'));
  graph.add(node, dcat('keyword'), ...resource.keywords.map(textOf));
  graph.add(node, dcat('theme'), describeTheme(graph, euDataThemes[resource.theme]));
  graph.add(node, dct('publisher'), describeAgency(graph, iris, provider));
  graph.add(
    node,
    dcat('contactPoint'),
    describeContact(graph, `${iri}#contact`, resource.contact_point ?? provider.contact_point),
  );
  graph.add(node, dct('issued'), date(resource.published));
  graph.add(node, dct('modified'), modifiedOf(resource));
  if (resource.version !== undefined) graph.add(node, dcat('version'), literal(String(resource.version)));
  graph.add(node, dct('accrualPeriodicity'), describeFrequency(graph, updateFrequencies[resource.update_cycle]));
  for (const code of resource.spatial ?? []) graph.add(node, dct('spatial'), describeDivision(graph, iris, code));
  if (resource.temporal) {
    const period = namedNode(`${iri}#period`);
    graph.add(node, dct('temporal'), period);
    graph.add(period, rdfType, dct('PeriodOfTime'));
    graph.add(period, dcat('startDate'), date(resource.temporal.start));
    // An open end means up to now: DCAT-AP leaves the end date out.
    if (resource.temporal.end) graph.add(period, dcat('endDate'), date(resource.temporal.end));
  }
  const rights = resource.open.type === 'unconditional' ? 'PUBLIC' : 'RESTRICTED';
  graph.add(node, dct('accessRights'), describeAccessRight(graph, rights));
  graph.add(node, dcat('landingPage'), describeDocument(graph, iris.resource(resource.code)));
  for (const code of resource.related_codes ?? []) {
    if (openCodes.has(code)) graph.add(node, dct('relation'), namedNode(iris.dataset(code)));
  }
  for (const format of datasetFormats(resource)) {
    graph.add(node, dcat('distribution'), describeDistribution(graph, iris, resource, format));
  }
}

function describeDistribution(
  graph: Graph,
  iris: GatewayIris,
  resource: DcatResource,
  format: DownloadFormat,
): NamedNode {
  const dataset = iris.dataset(resource.code);
  const node = namedNode(`${dataset}/${format.file}`);
  graph.add(node, rdfType, dcat('Distribution'));
  graph.add(
    node,
    dct('title'),
    text(`${resource.name}（${format.label}）`, 'zh'),
    text(`${resource.title} (${format.label})`, 'en'),
  );
  graph.add(node, dct('description'), ...bilingual(format.description));
  graph.add(node, dcat('accessURL'), namedNode(`${dataset}/records`));
  graph.add(node, dcat('downloadURL'), node);
  graph.add(node, dcat('accessService'), namedNode(iris.service));
  graph.add(node, dct('format'), describeFileType(graph, format.fileType));
  graph.add(node, dcat('mediaType'), describeMediaType(graph, format.mediaType));
  if (format.conformsTo) graph.add(node, dct('conformsTo'), describeStandard(graph, format.conformsTo));
  // The catalog rules give every open resource a licence.
  if (resource.open.license) graph.add(node, dct('license'), describeLicence(graph, resource.open.license));
  // The gateway keeps serving these URLs for as long as the dataset stays open.
  graph.add(node, dcatap('availability'), describeConcept(graph, plannedAvailability('STABLE'), 'Stable'));
  return node;
}

function describeOperator(graph: Graph, iris: GatewayIris): NamedNode {
  const node = namedNode(`${iris.catalog}#operator`);
  graph.add(node, rdfType, foaf('Agent'));
  graph.add(node, foaf('name'), text(operator.name, 'zh'), text(operator.name_en, 'en'));
  graph.add(node, dct('type'), describePublisherType(graph, operator.level));
  return node;
}

function describeOperatorContact(graph: Graph, iris: GatewayIris): NamedNode {
  const node = namedNode(`${iris.service}#contact`);
  graph.add(node, rdfType, vcard('Kind'));
  graph.add(node, vcard('fn'), literal(operator.name));
  graph.add(node, vcard('hasURL'), namedNode(iris.docs));
  return node;
}

function describeAgency(graph: Graph, iris: GatewayIris, agency: Agency): NamedNode {
  const node = namedNode(iris.agency(agency.code));
  graph.add(node, rdfType, foaf('Agent'));
  graph.add(node, foaf('name'), text(agency.name, 'zh'), text(agency.name_en, 'en'));
  graph.add(node, dct('type'), describePublisherType(graph, agency.level));
  if (agency.homepage) graph.add(node, foaf('homepage'), describeDocument(graph, agency.homepage));
  return node;
}

function describeContact(graph: Graph, iri: string, contact: ContactPoint): NamedNode {
  const node = namedNode(iri);
  graph.add(node, rdfType, vcard('Kind'));
  graph.add(node, vcard('fn'), literal(contact.name));
  graph.add(node, vcard('hasEmail'), namedNode(`mailto:${contact.email}`));
  return node;
}

function describeDivision(graph: Graph, iris: GatewayIris, code: string): NamedNode {
  const node = namedNode(iris.division(code));
  graph.add(node, rdfType, dct('Location'));
  graph.add(node, dct('identifier'), literal(code));
  const division = divisions[code];
  if (division) {
    const [west, south, east, north] = division.bbox;
    const [longitude, latitude] = division.centroid;
    graph.add(node, skos('prefLabel'), text(division.name, 'zh'), text(division.name_en, 'en'));
    // GeoSPARQL WKT in CRS84: longitude before latitude.
    const ring = [`${west} ${south}`, `${east} ${south}`, `${east} ${north}`, `${west} ${north}`, `${west} ${south}`];
    graph.add(node, dcat('bbox'), literal(`POLYGON((${ring.join(', ')}))`, geo('wktLiteral')));
    graph.add(node, dcat('centroid'), literal(`POINT(${longitude} ${latitude})`, geo('wktLiteral')));
  }
  return node;
}

function describeLicence(graph: Graph, iri: string): NamedNode {
  const node = namedNode(iri);
  graph.add(node, rdfType, dct('LicenseDocument'));
  for (const type of licenceTypes(iri)) {
    graph.add(node, dct('type'), describeConcept(graph, licenceType(type.code), type.label));
  }
  return node;
}

/** The ADMS licence types of a Creative Commons licence; none for a licence this does not know. */
function licenceTypes(iri: string): { code: string; label: string }[] {
  const licence = /^https?:\/\/creativecommons\.org\/(licenses\/([a-z-]+)|publicdomain)\//.exec(iri);
  if (!licence) return [];
  if (!licence[2]) return [publicDomain];
  return licence[2].split('-').flatMap((element) => creativeCommonsElements[element] ?? []);
}

function describeTheme(graph: Graph, theme: EuDataTheme): NamedNode {
  const node = describeConcept(graph, dataTheme(theme), dataThemeLabels[theme]);
  graph.add(node, skos('inScheme'), describeThemeScheme(graph));
  return node;
}

function describeThemeScheme(graph: Graph): NamedNode {
  graph.add(dataThemeScheme, rdfType, skos('ConceptScheme'));
  graph.add(dataThemeScheme, dct('title'), text('Data theme', 'en'));
  return dataThemeScheme;
}

function describePublisherType(graph: Graph, level: AgencyLevel): NamedNode {
  const type = publisherTypes[level];
  return describeConcept(graph, publisherType(type.code), type.label);
}

function describeConcept(graph: Graph, node: NamedNode, label: string): NamedNode {
  graph.add(node, rdfType, skos('Concept'));
  graph.add(node, skos('prefLabel'), text(label, 'en'));
  return node;
}

function describeTyped(graph: Graph, node: NamedNode, type: NamedNode): NamedNode {
  graph.add(node, rdfType, type);
  return node;
}

function describeLanguage(graph: Graph, code: string): NamedNode {
  return describeTyped(graph, language(code), dct('LinguisticSystem'));
}

function describeAccessRight(graph: Graph, code: string): NamedNode {
  return describeTyped(graph, accessRight(code), dct('RightsStatement'));
}

function describeFrequency(graph: Graph, code: string): NamedNode {
  return describeTyped(graph, frequency(code), dct('Frequency'));
}

function describeFileType(graph: Graph, code: string): NamedNode {
  return describeTyped(graph, fileType(code), dct('MediaTypeOrExtent'));
}

function describeMediaType(graph: Graph, type: string): NamedNode {
  return describeTyped(graph, ianaMediaType(type), dct('MediaType'));
}

function describeStandard(graph: Graph, iri: string): NamedNode {
  return describeTyped(graph, namedNode(iri), dct('Standard'));
}

function describeDocument(graph: Graph, iri: string): NamedNode {
  return describeTyped(graph, namedNode(iri), foaf('Document'));
}

/** The catalog as Turtle. */
export async function catalogTurtle(
  agencies: Agency[],
  resources: DcatResource[],
  options: DcatOptions,
): Promise<string> {
  const writer = new Writer({ prefixes, format: 'text/turtle' });
  writer.addQuads(catalogQuads(agencies, resources, options));
  return new Promise((resolve, reject) => {
    /* c8 ignore next -- n3 writes into a string, which never fails */
    writer.end((error, turtle: string) => (error ? reject(error) : resolve(turtle)));
  });
}

/** The JSON-LD context: the Turtle prefixes, inline, so that no reader has to fetch a context. */
const jsonLdContext: ContextDefinition = { ...prefixes };

/** Nothing is ever fetched: the context is inline, and a remote one would be a bug. */
/* c8 ignore next 3 -- a guard: jsonld calls it only for a remote context, which the catalog never has */
async function refuseRemoteDocument(url: string): Promise<never> {
  throw new Error(`JSON-LD: refusing to load ${url}; the catalog's context is inline`);
}

/** The catalog as compacted JSON-LD, from the same quads as the Turtle. */
export async function catalogJsonLd(
  agencies: Agency[],
  resources: DcatResource[],
  options: DcatOptions,
): Promise<object> {
  const expanded = await jsonld.fromRDF(catalogQuads(agencies, resources, options));
  return jsonld.compact(expanded, jsonLdContext, { documentLoader: refuseRemoteDocument });
}
