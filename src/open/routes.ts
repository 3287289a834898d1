import { createReadStream } from 'node:fs';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { TypedApp } from '../plugins/typed-app.js';
import rangeParser from 'range-parser';
import Type from 'typebox';
import { datasetFormats } from '../catalog/dcat.js';
import type { DataItem } from '../catalog/index.js';
import { defineProblem, NotFound } from '../errors.js';
import { decodeCursor, page } from '../pagination.js';
import { acceptTerms, findDataset, hasAccepted, lastModified, listDatasets, stampOf, termsOf, type Dataset } from './datasets.js';
import { DownloadFiles, fileFormatsOf } from './files.js';
import { coordinates, fileFormats, formatInfo, recordStream, type FileFormat } from './formats.js';
import type { RecordTotals } from './totals.js';
import { fitsOrder, MAX_OPEN_PAGE, parseOpenQuery, recordsPage } from './query.js';
import { noneMatch } from '../plugins/etag.js';
import { howToSendText } from '../plugins/text-headers.js';

export const TermsRequired = defineProblem<[string]>('terms_not_accepted', '%s', 403);
export const NotLocated = defineProblem<[string]>('not_located', '%s', 400);
export const NotHosted = defineProblem<[string]>('not_hosted', '%s', 404);

const CodeParam = Type.String({ pattern: '^[0-9]{6}-[A-Z]{2,8}-[0-9]{5}$' });
const problems = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, { $ref: 'Problem#' }]));
const WHERE_PATTERN = '^where\\[[a-z][a-z0-9_]{0,62}\\]\\[[a-z]+\\]$';
const whereProperties = {
  patternProperties: {
    [WHERE_PATTERN]: { anyOf: [{ type: 'string', maxLength: 2000 }, { type: 'array', items: { type: 'string', maxLength: 2000 }, maxItems: 100 }] },
  },
};
const SelectionQuery = {
  select: Type.Optional(Type.String({ maxLength: 2000, description: 'Comma-separated items to answer (default: all).' })),
  filter: Type.Optional(Type.String({ maxLength: 8000, description: 'JSON filter as in the exchange query: `{"item": {"op": value}}`.' })),
};

const FieldView = Type.Object({
  name: Type.String(),
  title: Type.String(),
  title_en: Type.String(),
  type: Type.String(),
  format: Type.Optional(Type.String()),
  required: Type.Boolean(),
  filterable: Type.Boolean(),
  description: Type.Optional(Type.String()),
});
const DistributionView = Type.Object({
  format: Type.String(),
  media_type: Type.String(),
  url: Type.String(),
  conforms_to: Type.Optional(Type.String()),
});
const DatasetSummary = Type.Object({
  code: Type.String(),
  name: Type.String(),
  title: Type.String(),
  provider: Type.String(),
  provider_name: Type.String(),
  open: Type.String({ enum: ['unconditional', 'conditional'] }),
  license: Type.Union([Type.String(), Type.Null()]),
  version: Type.Integer(),
  row_count: Type.Integer(),
  last_modified: Type.String({ format: 'date-time' }),
  url: Type.String(),
});
const DatasetDetail = Type.Object({
  ...DatasetSummary.properties,
  summary: Type.String(),
  description: Type.String(),
  provider_name_en: Type.String(),
  theme: Type.String(),
  update_cycle: Type.String(),
  conditions: Type.Optional(Type.String()),
  legal_basis: Type.Optional(Type.String()),
  terms: Type.Optional(Type.Object({ sha256: Type.String(), text: Type.String(), accept: Type.String() })),
  record_key: Type.Array(Type.String()),
  schema: Type.Object({ fields: Type.Array(FieldView) }),
  distributions: Type.Array(DistributionView),
});
const RecordObject = Type.Record(Type.String(), Type.Unknown());
/** What a download answers, per format: text, or bytes for XLSX. */
const fileContent = Object.fromEntries(
  fileFormats.map((format) => [formatInfo(format).mediaType, { schema: { type: 'string', ...(format === 'xlsx' ? { format: 'binary' } : {}) } }]),
);

function base(dataset: Dataset): string {
  return `/v1/open/datasets/${dataset.resource.code}`;
}

function summaryOf(dataset: Dataset) {
  const r = dataset.resource;
  return {
    code: r.code,
    name: r.name,
    title: r.title,
    provider: r.provider,
    provider_name: dataset.providerName,
    open: r.open.type as 'unconditional' | 'conditional',
    license: r.open.license ?? null,
    version: dataset.version,
    row_count: dataset.rows,
    last_modified: lastModified(dataset).toISOString(),
    url: base(dataset),
  };
}

function fieldOf(item: DataItem) {
  return {
    name: item.name,
    title: item.title,
    title_en: item.title_en,
    type: item.type,
    ...(item.format ? { format: item.format } : {}),
    required: item.required || false,
    filterable: item.filterable || false,
    ...(item.description ? { description: item.description } : {}),
  };
}

/** Table Schema field types (Frictionless) for the catalog's item types. */
const tableSchemaTypes: Record<DataItem['type'], string> = {
  string: 'string',
  integer: 'integer',
  number: 'number',
  boolean: 'boolean',
  date: 'date',
  datetime: 'datetime',
};

/** A Frictionless Data Package (v1, readable by v2 tools) with the Table Schema of the records. */
export function dataPackage(dataset: Dataset, publicUrl: string) {
  const r = dataset.resource;
  const files = fileFormatsOf(dataset).filter((format) => format === 'csv');
  return {
    profile: 'tabular-data-package',
    name: r.code.toLowerCase(),
    id: `${publicUrl}${base(dataset)}`,
    title: `${r.name} (${r.title})`,
    description: r.summary,
    version: stampOf(dataset),
    created: lastModified(dataset).toISOString(),
    homepage: `${publicUrl}${base(dataset)}`,
    keywords: r.keywords,
    licenses: r.open.license ? [{ path: r.open.license, title: r.open.license.includes('creativecommons.org') ? `CC ${r.open.license.split('/licenses/')[1]?.replace(/\/$/, '').toUpperCase().replaceAll('/', ' ')}` : r.open.license }] : [],
    contributors: [{ title: dataset.providerName, role: 'publisher' }],
    resources: files.map(() => ({
      profile: 'tabular-data-resource',
      name: r.code.toLowerCase(),
      path: `${publicUrl}${base(dataset)}/download.csv`,
      format: 'csv',
      mediatype: 'text/csv',
      encoding: 'utf-8',
      dialect: { delimiter: ',', lineTerminator: '\r\n', quoteChar: '"', doubleQuote: true, header: true },
      schema: {
        fields: r.items.map((item) => ({
          name: item.name,
          title: item.title,
          description: [item.title_en, item.description].filter(Boolean).join(' — '),
          type: tableSchemaTypes[item.type],
          ...(item.type === 'date' ? { format: 'default' } : {}),
          constraints: {
            ...(item.required || r.record_key.includes(item.name) ? { required: true } : {}),
            ...(item.max_length ? { maxLength: item.max_length } : {}),
            ...(item.format === 'wgs84-longitude' ? { minimum: -180, maximum: 180 } : {}),
            ...(item.format === 'wgs84-latitude' ? { minimum: -90, maximum: 90 } : {}),
          },
        })),
        primaryKey: r.record_key,
        missingValues: [''],
      },
      ...(dataset.rows ? { stats: { rows: dataset.rows } } : {}),
    })),
  };
}

/** 304 when the caller's copy is current (If-None-Match first; If-Modified-Since only without it). */
function notModified(request: FastifyRequest, etag: string, modified: Date): boolean {
  if (request.headers['if-none-match'] !== undefined) return noneMatch(request, etag);
  const since = request.headers['if-modified-since'];
  if (!since) return false;
  const date = Date.parse(since);
  return !Number.isNaN(date) && modified.getTime() <= date;
}

function contentDisposition(dataset: Dataset, extension: string): string {
  const ascii = `${dataset.resource.code}.${extension}`;
  const full = encodeURIComponent(`${dataset.resource.code}-${dataset.resource.name}.${extension}`).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename="${ascii}"; filename*=UTF-8''${full}`;
}

function acceptsGzip(request: FastifyRequest): boolean {
  const header = request.headers['accept-encoding'];
  if (typeof header !== 'string') return false;
  return header.split(',').some((part) => {
    const [name, ...params] = part.trim().toLowerCase().split(';');
    const q = params.find((p) => p.trim().startsWith('q='));
    return (name?.trim() === 'gzip' || name?.trim() === '*') && (!q || Number(q.trim().slice(2)) > 0);
  });
}

export interface OpenRouteOptions {
  files: DownloadFiles;
  totals: RecordTotals;
  publicUrl: string;
  fetchRows: number;
  prebuild: boolean;
}

/** The dataset, or 404; a conditional one only for a caller whose agency accepted its terms. */
async function admit(app: TypedApp, request: FastifyRequest, reply: FastifyReply, code: string): Promise<Dataset> {
  const dataset = await findDataset(app.db, code);
  if (dataset) request.auditDetails = { resource: code, provider: dataset.resource.provider };
  if (!dataset) throw new NotFound(`No open dataset ${code}.`);
  const terms = termsOf(dataset.resource);
  if (terms) {
    const caller = request.caller;
    if (!caller) {
      reply.header('www-authenticate', 'Bearer realm="govdata-gateway"');
      throw Object.assign(new Error(`${code} is open on conditions: call with a token of a client whose agency accepted its terms (POST ${base(dataset)}/terms).`), {
        statusCode: 401,
        code: 'token_missing',
      });
    }
    if (caller.kind !== 'agency' || !(await hasAccepted(app.db, code, terms.sha256, caller.agency))) {
      throw new TermsRequired(`${code} is open on conditions that your agency has not accepted: read them at ${base(dataset)}/terms and accept them there.`);
    }
  }
  if (dataset.resource.upstream) throw new NotHosted(`${code} is served by its provider's own system, not hosted here.`);
  reply.header('cache-control', terms ? 'private, no-cache' : 'public, max-age=60');
  reply.header('vary', 'Authorization, Accept-Encoding');
  return dataset;
}

function ifRangeHolds(request: FastifyRequest, etag: string, modified: Date): boolean {
  const header = request.headers['if-range'];
  if (typeof header !== 'string') return header === undefined;
  if (header.startsWith('"') || header.startsWith('W/')) return !header.startsWith('W/') && header === etag;
  const date = Date.parse(header);
  return !Number.isNaN(date) && date === modified.getTime();
}

/** The open datasets, one with its schema and distributions, and its Data Package. */
function datasetRoutes(app: TypedApp, options: OpenRouteOptions) {
  const { publicUrl } = options;
  app.get(
    '/v1/open/datasets',
    {
      schema: {
        tags: ['open'],
        summary: 'Open datasets (unconditional and conditional), in code order',
        querystring: Type.Object(
          {
            provider: Type.Optional(Type.String({ maxLength: 64 })),
            open: Type.Optional(Type.String({ enum: ['unconditional', 'conditional'] })),
            limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
            cursor: Type.Optional(Type.String({ maxLength: 200 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ items: Type.Array(DatasetSummary), next_cursor: Type.Union([Type.String(), Type.Null()]) }), ...problems(400, 429) },
      },
    },
    async (request, reply) => {
      const { limit, cursor, provider, open } = request.query;
      const after = cursor ? decodeCursor(cursor, (value): value is string => typeof value === 'string') : undefined;
      const result = await listDatasets(app.db, { limit, ...(after ? { after } : {}), ...(provider ? { provider } : {}), ...(open ? { open } : {}) });
      reply.header('cache-control', 'public, max-age=60');
      return page(request, reply, { items: result.items.map(summaryOf) }, result.next);
    },
  );

  app.get(
    '/v1/open/datasets/:code',
    {
      schema: {
        tags: ['open'],
        summary: 'An open dataset: schema, row count, last modified, licence, terms and distributions',
        params: Type.Object({ code: CodeParam }),
        response: { 200: DatasetDetail, ...problems(404, 429) },
      },
    },
    async (request, reply) => {
      const dataset = await findDataset(app.db, request.params.code);
      if (!dataset) throw new NotFound(`No open dataset ${request.params.code}.`);
      const r = dataset.resource;
      const terms = termsOf(r);
      reply.header('cache-control', 'public, max-age=60');
      reply.header('last-modified', lastModified(dataset).toUTCString());
      return {
        ...summaryOf(dataset),
        summary: r.summary,
        description: r.description,
        provider_name_en: dataset.providerNameEn,
        theme: r.theme,
        update_cycle: r.update_cycle,
        ...(r.open.conditions ? { conditions: r.open.conditions } : {}),
        ...(r.open.legal_basis ? { legal_basis: r.open.legal_basis } : {}),
        ...(terms ? { terms: { sha256: terms.sha256, text: terms.text, accept: `${base(dataset)}/terms` } } : {}),
        record_key: r.record_key,
        schema: { fields: r.items.map(fieldOf) },
        distributions: datasetFormats(r).map((format) => ({
          format: format.name,
          media_type: format.mediaType,
          url: `${publicUrl}${base(dataset)}/${format.file}`,
          ...(format.conformsTo ? { conforms_to: format.conformsTo } : {}),
        })),
      };
    },
  );

  app.get(
    '/v1/open/datasets/:code/datapackage.json',
    {
      config: { audit: 'open.describe', auditAnonymous: false },
      schema: {
        tags: ['open'],
        summary: 'Frictionless Data Package descriptor with the Table Schema (types, primary key) of the records',
        params: Type.Object({ code: CodeParam }),
        response: { 200: Type.Object({}, { additionalProperties: true }), ...problems(401, 403, 404, 429) },
      },
    },
    async (request, reply) => {
      const dataset = await admit(app, request, reply, request.params.code);
      reply.header('last-modified', lastModified(dataset).toUTCString());
      return dataPackage(dataset, publicUrl);
    },
  );
}

/** The terms of a conditional dataset, and their acceptance by an agency. */
function termsRoutes(app: TypedApp) {
  app.get(
    '/v1/open/datasets/:code/terms',
    {
      schema: {
        tags: ['open'],
        summary: 'The terms of a conditional dataset, and whether your agency has accepted them',
        params: Type.Object({ code: CodeParam }),
        response: {
          200: Type.Object({ dataset: Type.String(), sha256: Type.String(), text: Type.String(), accepted: Type.Union([Type.Boolean(), Type.Null()]) }),
          ...problems(404, 429),
        },
      },
    },
    async (request) => {
      const dataset = await findDataset(app.db, request.params.code);
      const terms = dataset && termsOf(dataset.resource);
      if (!dataset || !terms) throw new NotFound(`${request.params.code} is not an open dataset with terms.`);
      const caller = request.caller;
      const accepted = caller?.kind === 'agency' ? await hasAccepted(app.db, dataset.resource.code, terms.sha256, caller.agency) : null;
      return { dataset: dataset.resource.code, sha256: terms.sha256, text: terms.text, accepted };
    },
  );

  app.post(
    '/v1/open/datasets/:code/terms',
    {
      config: { audit: 'open.terms.accept' },
      schema: {
        tags: ['open'],
        summary: 'Accept the terms of a conditional dataset for your agency (recorded, and audited)',
        description: 'Send the `sha256` of the terms you read: terms changed since are not accepted by accident.',
        params: Type.Object({ code: CodeParam }),
        headers: Type.Object({ 'x-purpose': Type.Optional(Type.String({ maxLength: 500, description: `Why (logged on the audit trail). ${howToSendText('X-Purpose', '数据开放条款确认')}` })) }),
        body: Type.Object({ sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }), purpose: Type.String({ minLength: 1, maxLength: 500 }) }, { additionalProperties: false }),
        response: {
          201: Type.Object({ dataset: Type.String(), sha256: Type.String(), agency: Type.String(), client_id: Type.String(), accepted_at: Type.String({ format: 'date-time' }) }),
          ...problems(400, 401, 403, 404, 409, 429),
        },
      },
    },
    async (request, reply) => {
      const caller = request.caller;
      if (!caller) {
        reply.header('www-authenticate', 'Bearer realm="govdata-gateway"');
        return reply.problem(401, 'token_missing', 'Terms are accepted by a client of an agency: call with its token.');
      }
      const dataset = await findDataset(app.db, request.params.code);
      const terms = dataset && termsOf(dataset.resource);
      if (dataset) request.auditDetails = { resource: dataset.resource.code, provider: dataset.resource.provider };
      if (!dataset || !terms) throw new NotFound(`${request.params.code} is not an open dataset with terms.`);
      if (caller.kind !== 'agency') return reply.problem(403, 'agency_required', 'Terms are accepted by a client of an agency, not by a person.');
      if (request.body.sha256 !== terms.sha256) {
        return reply.problem(409, 'terms_changed', `The terms of ${dataset.resource.code} are not the ones you sent: read them again at ${base(dataset)}/terms.`);
      }
      const row = await acceptTerms(app.db, {
        resource: dataset.resource.code,
        termsSha256: terms.sha256,
        agency: caller.agency,
        clientId: caller.clientId,
        purpose: request.body.purpose,
        requestId: request.id,
      });
      reply.code(201);
      return { dataset: row.resource, sha256: row.termsSha256, agency: row.agency, client_id: row.clientId, accepted_at: row.acceptedAt.toISOString() };
    },
  );
}

/** GET …/records: select, where, order and keyset pages, with their total (RecordTotals). */
function recordsRoute(app: TypedApp, totals: RecordTotals) {
  app.get(
    '/v1/open/datasets/:code/records',
    {
      config: { audit: 'open.records' },
      schema: {
        tags: ['open'],
        summary: 'Query the records of an open dataset: select, where, order, keyset cursor',
        description:
          'Filters as `where[item][op]=value` (ops: eq, in (comma-separated), lt, lte, gt, gte, prefix) on indexed items, or a JSON `filter`. ' +
          '`order=item,-item` on the record key or required indexed items. `total` is the row count without a filter; with one, exact up to 10,000 matches and the planner\'s estimate beyond (`total_exact: false`), counted once for the dataset\'s current data.',
        params: Type.Object({ code: CodeParam }),
        querystring: Type.Object(
          {
            ...SelectionQuery,
            order: Type.Optional(Type.String({ maxLength: 500, description: 'Comma-separated items, `-` for descending.' })),
            limit: Type.Integer({ minimum: 1, maximum: MAX_OPEN_PAGE, default: 100 }),
            cursor: Type.Optional(Type.String({ maxLength: 4000 })),
          },
          { additionalProperties: false, ...whereProperties },
        ),
        response: {
          200: Type.Object({
            dataset: Type.String(),
            items: Type.Array(RecordObject),
            total: Type.Integer(),
            total_exact: Type.Boolean(),
            next_cursor: Type.Union([Type.String(), Type.Null()]),
          }),
          ...problems(400, 401, 403, 404, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const dataset = await admit(app, request, reply, request.params.code);
      const resource = dataset.resource;
      const query = parseOpenQuery(resource, request.query);
      const cursor = request.query.cursor;
      let after: unknown[] | undefined;
      if (cursor) {
        const position = decodeCursor(
          cursor,
          (value): value is { o: string; k: unknown[] } =>
            typeof value === 'object' && value !== null && (value as { o?: unknown }).o === query.orderText && Array.isArray((value as { k?: unknown }).k) && fitsOrder(resource, query.order, (value as { k: unknown[] }).k),
        );
        after = position.k;
      }
      const [result, count] = await Promise.all([recordsPage(app.db, resource, query, request.query.limit, after), totals.of(dataset, query)]);
      request.auditDetails = { ...request.auditDetails, fields: query.fields, row_count: result.items.length };
      return page(
        request,
        reply,
        { dataset: resource.code, items: result.items, total: count.total, total_exact: count.exact },
        result.next ? { o: query.orderText, k: result.next } : null,
      );
    },
  );
}

/** GET …/download.{format}: the whole dataset or a filtered part, prebuilt or streamed. */
function downloadRoute(app: TypedApp, options: OpenRouteOptions) {
  const { files } = options;
  app.get(
    '/v1/open/datasets/:code/download.:format',
    {
      config: { audit: 'open.download', streams: true },
      schema: {
        tags: ['open'],
        summary: 'Download an open dataset, whole or filtered: CSV, JSON, NDJSON, GeoJSON or XLSX, streamed',
        description:
          'Streamed from the database in constant memory. gzip and br on Accept-Encoding; ETag and Last-Modified from the dataset version (304 on revalidation). ' +
          'The whole dataset (no select or filter) is served from a file prebuilt after each import, with Range and If-Range so that a broken download resumes. ' +
          'GeoJSON is for datasets with WGS 84 coordinates (400 not_located for the rest). `bom=true` makes a CSV for spreadsheets: a byte order mark first, and a text that a spreadsheet would take for a formula gets a leading `\'`. ' +
          'XLSX cells are typed: texts are never formulas.',
        params: Type.Object({ code: CodeParam, format: Type.String({ enum: [...fileFormats] }) }),
        querystring: Type.Object(
          {
            ...SelectionQuery,
            bom: Type.Boolean({
              default: false,
              description: "CSV only, for spreadsheets: start with a UTF-8 byte order mark, and put a ' before a text that begins with =, +, -, @, a tab or a CR (OWASP), unless it is a plain decimal number.",
            }),
          },
          { additionalProperties: false, ...whereProperties },
        ),
        response: {
          200: { description: 'The records in the requested format: streamed, or the prebuilt whole-dataset file', content: fileContent },
          206: { description: 'A byte range of the prebuilt whole-dataset file (Range, If-Range)', content: fileContent },
          304: { description: 'Not modified (If-None-Match, If-Modified-Since)', type: 'null' },
          ...problems(400, 401, 403, 404, 416, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const format = request.params.format as FileFormat;
      const dataset = await admit(app, request, reply, request.params.code);
      const resource = dataset.resource;
      if (format === 'geojson' && !coordinates(resource)) {
        throw new NotLocated(`${resource.code} has no WGS 84 longitude and latitude items: download it as CSV, JSON, NDJSON or XLSX.`);
      }
      const query = parseOpenQuery(resource, request.query);
      const bom = request.query.bom && format === 'csv';
      const info = formatInfo(format);
      const modified = lastModified(dataset);
      const variant = query.filtered || bom ? `-${createHash('sha256').update(JSON.stringify([query.fields, query.filter, bom])).digest('base64url').slice(0, 16)}` : '';
      const tag = `${resource.code}-${stampOf(dataset)}-${format}${variant}`;
      request.auditDetails = { ...request.auditDetails, fields: query.fields };
      reply.header('content-type', `${info.mediaType}${format === 'xlsx' ? '' : '; charset=utf-8'}`);
      reply.header('content-disposition', contentDisposition(dataset, format));
      reply.header('last-modified', modified.toUTCString());

      const wholeDataset = !query.filtered && !bom;
      const prebuilt = wholeDataset ? await files.find(dataset, format, acceptsGzip(request)) : undefined;
      if (prebuilt) {
        const etag = `"${tag}${prebuilt.encoding ? '-gz' : ''}"`;
        reply.header('etag', etag);
        reply.header('accept-ranges', 'bytes');
        if (prebuilt.encoding) reply.header('content-encoding', prebuilt.encoding);
        // The file goes as it is: compressed on the fly (br for a caller that takes br but not
        // gzip) its bytes would not be the ones its strong ETag, Content-Length and ranges name.
        else request.headers['x-no-compression'] = 'prebuilt';
        if (notModified(request, etag, modified)) return reply.code(304).send(null);
        let start = 0;
        let end = prebuilt.size - 1;
        const range = request.headers.range;
        if (range && ifRangeHolds(request, etag, modified)) {
          const ranges = rangeParser(prebuilt.size, range, { combine: true });
          if (ranges === -1) {
            reply.header('content-range', `bytes */${prebuilt.size}`);
            reply.removeHeader('content-encoding');
            return reply.problem(416, 'range_not_satisfiable', `The file is ${prebuilt.size} bytes long.`);
          }
          // A malformed range, or several: the whole file (RFC 9110 lets a server ignore Range).
          if (ranges !== -2 && ranges.type === 'bytes' && ranges.length === 1) {
            start = (ranges[0] as rangeParser.Range).start;
            end = (ranges[0] as rangeParser.Range).end;
            reply.code(206).header('content-range', `bytes ${start}-${end}/${prebuilt.size}`);
          }
        }
        reply.header('content-length', end - start + 1);
        request.auditDetails.row_count = start === 0 ? dataset.rows : null;
        // HEAD: the headers (Content-Length of the file) and no body; an empty stream keeps Fastify
        // from reading the file through, or from setting Content-Length to 0.
        if (request.method === 'HEAD') return reply.send(Readable.from([]));
        return reply.send(createReadStream(prebuilt.path, { start, end }));
      }

      // Streamed: the ETag is weak (compression and the XLSX writer's timestamps vary the bytes).
      const etag = `W/"${tag}"`;
      reply.header('etag', etag);
      reply.header('accept-ranges', 'none');
      if (notModified(request, etag, modified)) return reply.code(304).send(null);
      if (wholeDataset && options.prebuild) {
        // The file for this stamp is missing (first request after an import elsewhere): build it for the next caller.
        app.background.run(`prebuild ${resource.code}`, () => files.build(dataset));
      }
      if (request.method === 'HEAD') return reply.send(Readable.from([]));
      return reply.send(recordStream(app.database, resource, format, query.fields, query.where, options.fetchRows, { bom }));
    },
  );
}

/**
 * Open data (数据开放): list and describe open datasets, query their records, download them in
 * every format, whole or filtered, streamed, cached and resumable; conditional datasets after
 * their terms are accepted. Every records query and download is on the audit trail.
 */
export async function openRoutes(parent: FastifyInstance, options: OpenRouteOptions) {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  datasetRoutes(app, options);
  termsRoutes(app);
  recordsRoute(app, options.totals);
  downloadRoute(app, options);
}
