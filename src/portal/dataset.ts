import type { FastifyInstance } from 'fastify';
import { LRUCache } from 'lru-cache';
import Type, { type Static } from 'typebox';
import { resourceHistory, type Agency, type ContactPoint } from '../catalog/index.js';
import { NotFound } from '../errors.js';
import { coordinates, fileFormatsOf, findDataset, formatInfo, lastModified, parseOpenQuery, recordsPage, stampOf, termsOf, type Dataset } from '../open/index.js';
import type { Frame } from './frame.js';
import { frameOf } from './frame.js';
import { GRID_PAGE, GridQuery, previewOf, type Grid } from './grid.js';
import { answerPage, pageKey, wantsFragment, type PageRender, type PortalOptions } from './pages.js';

const DatasetParams = Type.Object({ code: Type.String({ pattern: '^[0-9]{6}-[A-Z]{2,8}-[0-9]{5}$' }) });
const DatasetQuery = Type.Object({ ...GridQuery, lang: Type.Optional(Type.String({ maxLength: 16 })) });

/** Points the map's table lists (the map itself draws every point of the GeoJSON download). */
export const MAP_TABLE_ROWS = 500;

interface Download {
  format: string;
  label: string;
  mediaType: string;
  href: string;
  /** The prebuilt file's size; null while it is built (the download is then streamed). */
  size: number | null;
}

async function downloadsOf(app: FastifyInstance, dataset: Dataset): Promise<Download[]> {
  const code = dataset.resource.code;
  return Promise.all(
    fileFormatsOf(dataset).map(async (format) => {
      const info = formatInfo(format);
      const file = await app.downloads.find(dataset, format, false);
      return { format, label: info.label, mediaType: info.mediaType, href: `/v1/open/datasets/${code}/${info.file}`, size: file?.size ?? null };
    }),
  );
}

/** The points of a located dataset, for the table beside its map. */
async function mapOf(app: FastifyInstance, dataset: Dataset) {
  const resource = dataset.resource;
  const located = coordinates(resource);
  if (!located) return undefined;
  const label = resource.items.find((item) => item.name === 'name') ?? resource.items.find((item) => item.name === resource.record_key[0]);
  const fields = [...new Set([label?.name ?? resource.record_key[0], located.longitude, located.latitude].filter((name): name is string => Boolean(name)))];
  const page = await recordsPage(app.db, resource, parseOpenQuery(resource, { select: fields.join(',') }), MAP_TABLE_ROWS);
  return { geojson: `/v1/open/datasets/${resource.code}/download.geojson`, label: label?.name, longitude: located.longitude, latitude: located.latitude, points: page.items, more: page.next !== null };
}

/** schema.org `Dataset` (for dataset search engines), with `<` escaped for its script element. */
function schemaOrg(dataset: Dataset, agency: Agency | undefined, downloads: Download[], publicUrl: string, frame: Frame): string {
  const r = dataset.resource;
  const document = {
    '@context': 'https://schema.org/',
    '@type': 'Dataset',
    '@id': `${publicUrl}/datasets/${r.code}`,
    name: frame.locale === 'en' ? r.title : r.name,
    alternateName: frame.locale === 'en' ? r.name : r.title,
    description: frame.locale === 'en' ? r.description : r.summary,
    identifier: r.code,
    url: `${publicUrl}/datasets/${r.code}`,
    keywords: r.keywords,
    inLanguage: 'zh-Hans',
    isAccessibleForFree: true,
    ...(r.open.license ? { license: r.open.license } : {}),
    datePublished: r.published,
    dateModified: lastModified(dataset).toISOString(),
    ...(agency ? { creator: { '@type': 'GovernmentOrganization', name: agency.name, alternateName: agency.name_en, ...(agency.homepage ? { url: agency.homepage } : {}) } } : {}),
    ...(r.temporal ? { temporalCoverage: `${r.temporal.start}/${r.temporal.end ?? '..'}` } : {}),
    ...(r.spatial?.length ? { spatialCoverage: r.spatial.join(', ') } : {}),
    distribution: downloads.map((download) => ({ '@type': 'DataDownload', encodingFormat: download.mediaType, contentUrl: `${publicUrl}${download.href}` })),
  };
  return JSON.stringify(document).replace(/</g, '\\u003c');
}

/** The API examples of the API tab: the records of what the grid shows, in curl, Python and JavaScript. */
function examplesOf(publicUrl: string, grid: Grid | undefined, code: string) {
  const path = grid?.apiPath ?? `/v1/open/datasets/${code}`;
  const url = `${publicUrl}${path}`;
  const params: Array<[string, string]> = grid ? [...grid.apiParams, ['limit', '5']] : [];
  const quote = (text: string) => `'${text.replaceAll("'", `'\\''`)}'`;
  const curl = [`curl -sSg -G ${quote(url)}`, ...params.map(([name, value]) => `--data-urlencode ${quote(`${name}=${value}`)}`)].join(' \\\n  ');
  const pyQuery = params.length ? ` + "?" + urllib.parse.urlencode({${params.map(([name, value]) => `${JSON.stringify(name)}: ${JSON.stringify(value)}`).join(', ')}})` : '';
  const python = [
    'import json',
    'import urllib.parse',
    'import urllib.request',
    '',
    `with urllib.request.urlopen(${JSON.stringify(url)}${pyQuery}, timeout=30) as response:`,
    '    print(json.load(response))',
  ].join('\n');
  const jsParams = params.length ? `?\${new URLSearchParams(${JSON.stringify(Object.fromEntries(params))})}` : '';
  const javascript = [`const response = await fetch(\`${url}${jsParams}\`);`, 'if (!response.ok) throw new Error(`HTTP ${response.status}`);', 'console.log(await response.json());'].join('\n');
  return { url, curl, python, javascript };
}

type HistoryRow = Awaited<ReturnType<typeof resourceHistory>>[number];
const histories = new LRUCache<string, HistoryRow[]>({ max: 1000 });

/** The dataset's versions and imports (they change only with its stamp, so they are kept by it). */
async function historyOf(app: FastifyInstance, dataset: Dataset): Promise<HistoryRow[]> {
  const key = `${dataset.resource.code}@${stampOf(dataset)}`;
  const known = histories.get(key);
  if (known) return known;
  const rows = (await resourceHistory(app.db, dataset.resource.code)).slice(0, 50);
  histories.set(key, rows);
  return rows;
}

function contactOf(dataset: Dataset, agency: Agency | undefined): ContactPoint | undefined {
  return dataset.resource.contact_point ?? agency?.contact_point;
}

/** The dataset page's template and data, and the audit details of the grid's reading. */
async function renderDataset(app: FastifyInstance, options: PortalOptions, frame: Frame, dataset: Dataset, query: Static<typeof DatasetQuery>, fragment: boolean): Promise<PageRender> {
  const r = dataset.resource;
  const terms = termsOf(r);
  const hosted = !r.upstream;
  const readable = hosted && !terms;
  const grid = readable ? await previewOf(app, dataset, frame, query) : undefined;
  const audit = { resource: r.code, provider: r.provider, fields: grid?.columns.map((column) => column.item.name) ?? [], row_count: grid?.rows.length ?? 0 };
  const answer = { lastModified: lastModified(dataset).toUTCString(), audit, ...(grid?.error ? { status: 400 } : {}) };
  if (grid && fragment) return { ...answer, template: 'portal/templates/partials/grid.eta', data: { frame, dataset, grid, page: GRID_PAGE, examples: examplesOf(options.publicUrl, grid, r.code) } };
  const { agencies } = await options.shelf.get();
  const agency = agencies.get(r.provider);
  const downloads = readable ? await downloadsOf(app, dataset) : [];
  return {
    ...answer,
    template: 'portal/templates/dataset.eta',
    data: {
      frame,
      title: frame.locale === 'en' ? r.title : r.name,
      dataset,
      agency,
      contact: contactOf(dataset, agency),
      terms,
      hosted,
      grid,
      page: GRID_PAGE,
      map: readable ? await mapOf(app, dataset) : undefined,
      downloads,
      examples: examplesOf(options.publicUrl, grid, r.code),
      history: await historyOf(app, dataset),
      schemaOrg: schemaOrg(dataset, agency, downloads, options.publicUrl, frame),
      publicUrl: options.publicUrl,
    },
  };
}

/**
 * GET /datasets/:code: the dataset page (its preview grid alone for htmx, which swaps #preview).
 * The grid reads records: every answer is on the audit trail, as the records API's reads are,
 * kept pages included (they are kept under the dataset's stamp, so they show its current records).
 */
export function datasetRoutes(app: FastifyInstance, options: PortalOptions) {
  app.get<{ Params: Static<typeof DatasetParams>; Querystring: Static<typeof DatasetQuery> }>(
    '/datasets/:code',
    { config: { audit: 'open.records' }, schema: { hide: true, params: DatasetParams, querystring: DatasetQuery } },
    async (request, reply) => {
      const frame = frameOf(request);
      // The shelf's copy (at most its age old: the stamp it names is the page's key), else the database.
      const dataset = (await options.shelf.get()).datasets.get(request.params.code) ?? (await findDataset(app.db, request.params.code));
      if (!dataset) throw new NotFound(frame.t('dataset.not_found', { code: request.params.code }));
      request.auditDetails = { resource: dataset.resource.code, provider: dataset.resource.provider };
      const fragment = wantsFragment(request, 'preview');
      const key = pageKey(request, frame, fragment, `${dataset.resource.code}@${stampOf(dataset)}`);
      return answerPage(request, reply, options.pages, key, () => renderDataset(app, options, frame, dataset, request.query, fragment));
    },
  );
}
