import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { TypedApp } from '../plugins/typed-app.js';
import Type from 'typebox';
import { NotFound } from '../errors.js';
import { themes } from '../model/catalog.js';
import type { Dataset } from '../open/index.js';
import { byLastModified } from './data.js';
import { datasetRoutes } from './dataset.js';
import { frameOf } from './frame.js';
import { searchRoute } from './search.js';
import { answerPage, LangQuery, pageKey, type PortalOptions } from './pages.js';

export type { PortalOptions } from './pages.js';

/** How many datasets have each value of a catalog attribute (their theme, their provider). */
function countBy(datasets: Iterable<Dataset>, key: (resource: Dataset['resource']) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const dataset of datasets) counts.set(key(dataset.resource), (counts.get(key(dataset.resource)) ?? 0) + 1);
  return counts;
}

/** Datasets per theme, in the catalog's theme order, for the home page's chart and its table. */
function themeCounts(datasets: Iterable<Dataset>) {
  const counts = countBy(datasets, (resource) => resource.theme);
  return themes.filter((theme) => counts.has(theme)).map((theme) => ({ theme, count: counts.get(theme) as number }));
}

function homeRoute(app: FastifyInstance, { shelf, pages }: PortalOptions) {
  app.get('/', { schema: { hide: true, querystring: LangQuery } }, async (request, reply) => {
    const frame = frameOf(request);
    return answerPage(request, reply, pages, pageKey(request, frame, false), async () => {
      const all = [...(await shelf.get()).datasets.values()];
      const providers = new Set(all.map((dataset) => dataset.resource.provider));
      return {
        template: 'portal/templates/home.eta',
        data: {
          frame,
          title: frame.t('home.title'),
          counts: { datasets: all.length, providers: providers.size, rows: all.reduce((sum, dataset) => sum + dataset.rows, 0) },
          themes: themeCounts(all),
          recent: all.sort(byLastModified).slice(0, 6),
        },
      };
    });
  });
}

function providerRoutes(app: TypedApp, { shelf, pages }: PortalOptions) {
  app.get('/providers', { schema: { hide: true, querystring: LangQuery } }, async (request, reply) => {
    const frame = frameOf(request);
    return answerPage(request, reply, pages, pageKey(request, frame, false), async () => {
      const { datasets, agencies } = await shelf.get();
      const counts = countBy(datasets.values(), (resource) => resource.provider);
      const providers = [...agencies.values()].map((agency) => ({ agency, count: counts.get(agency.code) ?? 0 })).filter((entry) => entry.count > 0);
      return { template: 'portal/templates/providers.eta', data: { frame, title: frame.t('providers.title'), providers } };
    });
  });

  app.get(
    '/providers/:agency',
    { schema: { hide: true, params: Type.Object({ agency: Type.String({ pattern: '^[a-z][a-z0-9-]{1,63}$' }) }), querystring: LangQuery } },
    async (request, reply) => {
      const { datasets, agencies } = await shelf.get();
      const agency = agencies.get(request.params.agency);
      const frame = frameOf(request);
      if (!agency) throw new NotFound(frame.t('provider.not_found', { agency: request.params.agency }));
      return answerPage(request, reply, pages, pageKey(request, frame, false), async () => {
        const own = [...datasets.values()].filter((dataset) => dataset.resource.provider === agency.code).sort(byLastModified);
        return { template: 'portal/templates/provider.eta', data: { frame, title: frame.locale === 'en' ? agency.name_en : agency.name, agency, datasets: own } };
      });
    },
  );
}

/** The portal's pages: home, search, dataset, providers (their errors are pages too, see index.ts). */
export async function portalRoutes(parent: FastifyInstance, options: PortalOptions) {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  homeRoute(app, options);
  searchRoute(app, options);
  datasetRoutes(app, options);
  providerRoutes(app, options);
}
