import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import Type from 'typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { TypedApp } from '../plugins/typed-app.js';
import { defineProblem, NotFound } from '../errors.js';
import { decodeCursor, page } from '../pagination.js';
import type { Caller } from '../plugins/auth.js';
import { catalogJsonLd, catalogTurtle } from './dcat.js';
import { findAgency, findResource, listAgencies, openCatalog, resourceHistory, type StoredResource, type Visibility } from './repository.js';
import type { CatalogIndex } from './search.js';
import {
  AgencyList,
  AgencyView,
  PageQuery,
  ResourceDetail,
  ResourceHistory,
  ResourceList,
  ResourceSummary,
  SearchQuery,
} from './schemas.js';
import type { Agency } from '../model/catalog.js';

export const ResourceRetired = defineProblem('resource_retired', 'Resource %s has been retired from the catalog.', 410);

/** Agencies with `catalog:read` see the whole catalog; everybody else sees its open part. */
export function catalogVisibility(caller: Caller | null): Visibility {
  return caller?.kind === 'agency' && caller.scopes.has('catalog:read') ? 'all' : 'open';
}

function summaryOf(row: StoredResource) {
  const r = row.document;
  return {
    code: r.code,
    name: r.name,
    title: r.title,
    summary: r.summary,
    provider: r.provider,
    provider_name: row.providerName,
    theme: r.theme,
    format: r.format,
    update_cycle: r.update_cycle,
    published: r.published,
    keywords: r.keywords,
    sharing: r.sharing,
    open: r.open,
    version: row.version,
    modified: row.updatedAt.toISOString(),
  };
}

function detailOf(row: StoredResource, agency: Agency | undefined) {
  const r = row.document;
  return {
    ...summaryOf(row),
    description: r.description,
    provider_name_en: row.providerNameEn,
    related_codes: r.related_codes ?? [],
    spatial: r.spatial ?? [],
    ...(r.temporal ? { temporal: r.temporal } : {}),
    contact_point: r.contact_point ?? (agency?.contact_point as NonNullable<typeof r.contact_point>),
    items: r.items,
    record_key: r.record_key,
  };
}

function publicAgency(agency: Agency) {
  return {
    code: agency.code,
    name: agency.name,
    name_en: agency.name_en,
    level: agency.level,
    region: agency.region,
    ...(agency.homepage ? { homepage: agency.homepage } : {}),
  };
}

/** What anonymous answers may be cached for; anything that depends on a token is private. */
function cacheFor(request: FastifyRequest, reply: FastifyReply) {
  reply.header('cache-control', request.caller ? 'private, no-cache' : 'public, max-age=60');
  reply.header('vary', 'Authorization');
}

const isResourceCursor = (value: unknown): value is [number, string] =>
  Array.isArray(value) && value.length === 2 && Number.isInteger(value[0]) && typeof value[1] === 'string';
const isAgencyCursor = (value: unknown): value is string => typeof value === 'string';

const CodeParams = Type.Object({ code: Type.String({ pattern: '^[0-9]{6}-[A-Z]{2,8}-[0-9]{5}$', description: 'Resource code' }) });
const AgencyParams = Type.Object({ agency: Type.String({ pattern: '^[a-z][a-z0-9-]{1,31}$' }) });

export interface CatalogRouteOptions {
  publicUrl: string;
  /** Where the search is answered (in memory). */
  search: CatalogIndex;
}

/** Search, one resource with its data items, its history. */
function resourceRoutes(app: TypedApp, search: CatalogIndex) {
  app.get(
    '/v1/catalog/resources',
    {
      config: { audit: 'catalog.search', auditAnonymous: false },
      schema: {
        tags: ['catalog'],
        summary: 'Search the resource catalog',
        description:
          'Full-text search over names, summaries and keywords (Chinese included), filters, facet counts and a keyset cursor. ' +
          'Anonymous callers see open resources only; agencies with catalog:read see every resource.',
        querystring: SearchQuery,
        response: { 200: ResourceList, 400: { $ref: 'Problem#' }, 401: { $ref: 'Problem#' } },
      },
    },
    async (request, reply) => {
      const { cursor, limit, ...filters } = request.query;
      const result = await search.search({
        ...filters,
        limit,
        visibility: catalogVisibility(request.caller),
        ...(cursor ? { after: decodeCursor(cursor, isResourceCursor) } : {}),
      });
      cacheFor(request, reply);
      return page(request, reply, { items: result.items.map(summaryOf), facets: result.facets }, result.next);
    },
  );

  app.get(
    '/v1/catalog/resources/:code',
    {
      config: { audit: 'catalog.read', auditAnonymous: false },
      schema: {
        tags: ['catalog'],
        summary: 'One resource with its data items',
        params: CodeParams,
        response: {
          200: { $ref: 'ResourceDetail#' },
          304: Type.Null({ description: 'Not modified (If-None-Match)' }),
          404: { $ref: 'Problem#' },
          410: { $ref: 'Problem#' },
        },
      },
    },
    async (request, reply) => {
      const row = await findResource(app.db, request.params.code);
      if (!row || (catalogVisibility(request.caller) === 'open' && row.document.open.type === 'none')) {
        throw new NotFound(`No resource ${request.params.code} in the catalog.`);
      }
      request.auditDetails = { resource: row.document.code, provider: row.document.provider };
      if (row.retiredAt) throw new ResourceRetired(request.params.code);
      cacheFor(request, reply);
      return detailOf(row, await findAgency(app.db, row.document.provider));
    },
  );

  app.get(
    '/v1/catalog/resources/:code/history',
    {
      schema: {
        tags: ['catalog'],
        summary: 'Versions of a catalog entry: what changed and when',
        params: CodeParams,
        response: { 200: ResourceHistory, 404: { $ref: 'Problem#' } },
      },
    },
    async (request, reply) => {
      const row = await findResource(app.db, request.params.code);
      if (!row || (catalogVisibility(request.caller) === 'open' && row.document.open.type === 'none')) {
        throw new NotFound(`No resource ${request.params.code} in the catalog.`);
      }
      cacheFor(request, reply);
      const history = await resourceHistory(app.db, request.params.code);
      return {
        items: history.map((h) => ({
          version: h.version,
          change: h.change as 'created' | 'updated' | 'retired' | 'restored' | 'imported',
          fields: h.fields,
          changed_at: h.changedAt.toISOString(),
          sync_id: h.syncId,
          ...(h.detail ? { detail: h.detail as { rows: number; skipped: number; sha256: string; seconds: number; source: string } } : {}),
        })),
      };
    },
  );
}

/** The provider agencies. */
function agencyRoutes(app: TypedApp) {
  app.get(
    '/v1/catalog/agencies',
    {
      schema: {
        tags: ['catalog'],
        summary: 'The agencies that provide resources',
        querystring: PageQuery,
        response: { 200: AgencyList, 400: { $ref: 'Problem#' } },
      },
    },
    async (request, reply) => {
      const { limit, cursor } = request.query;
      const result = await listAgencies(app.db, limit, cursor ? decodeCursor(cursor, isAgencyCursor) : undefined);
      cacheFor(request, reply);
      return page(request, reply, { items: result.items.map(publicAgency) }, result.next);
    },
  );

  app.get(
    '/v1/catalog/agencies/:agency',
    {
      schema: {
        tags: ['catalog'],
        summary: 'One agency',
        params: AgencyParams,
        response: { 200: { $ref: 'Agency#' }, 404: { $ref: 'Problem#' } },
      },
    },
    async (request, reply) => {
      const agency = await findAgency(app.db, request.params.agency);
      if (!agency) throw new NotFound(`No agency ${request.params.agency}.`);
      cacheFor(request, reply);
      return publicAgency(agency);
    },
  );
}

/** GET /catalog.jsonld and /catalog.ttl: the open part as DCAT-AP 3. */
function dcatRoutes(app: TypedApp, publicUrl: string) {
  const dcatRoute = (url: string, mediaType: string, render: (catalog: Awaited<ReturnType<typeof openCatalog>>) => Promise<string>) =>
    app.get(
      url,
      {
        schema: {
          tags: ['catalog'],
          summary: `The open part of the catalog as DCAT-AP 3 (${mediaType})`,
          description:
            'dcat:Catalog with a dcat:Dataset per open resource, a dcat:Distribution per download format, and the gateway as dcat:DataService; valid against the DCAT-AP 3.0.1 SHACL shapes.',
          produces: [mediaType],
          response: { 200: Type.String({ description: `DCAT-AP 3 as ${mediaType}` }), 304: Type.Null() },
        },
      },
      async (request, reply) => {
        const body = await render(await openCatalog(app.db));
        cacheFor(request, reply);
        return reply.type(mediaType).send(body);
      },
    );
  dcatRoute('/catalog.jsonld', 'application/ld+json', async (catalog) =>
    JSON.stringify(await catalogJsonLd(catalog.agencies, catalog.resources, { publicUrl })),
  );
  dcatRoute('/catalog.ttl', 'text/turtle', (catalog) => catalogTurtle(catalog.agencies, catalog.resources, { publicUrl }));
}

/**
 * GET /v1/catalog/…: search, one resource with its data items, its history, and the agencies;
 * GET /catalog.jsonld and /catalog.ttl: the open part as DCAT-AP 3.
 */
export async function catalogRoutes(parent: FastifyInstance, { publicUrl, search }: CatalogRouteOptions) {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  app.addSchema(AgencyView);
  app.addSchema(ResourceSummary);
  app.addSchema(ResourceDetail);
  resourceRoutes(app, search);
  agencyRoutes(app);
  dcatRoutes(app, publicUrl);
}
