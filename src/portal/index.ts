import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import compress from '@fastify/compress';
import rateLimit from '@fastify/rate-limit';
import fastifyStatic from '@fastify/static';
import view from '@fastify/view';
import { Eta } from 'eta';
import { publicUrl, type Config } from '../config.js';
import { projectRoot } from '../paths.js';
import { buildProblem, problemOf, type Problem, type ProblemExtras } from '../plugins/errors.js';
import { PageCache } from './cache.js';
import { Shelf } from './data.js';
import { frameOf, type Frame } from './frame.js';
import { portalRoutes } from './routes.js';

export const templatesDir = join(projectRoot, 'src', 'portal', 'templates');
/**
 * Where the pages' templates are found: src/, so that the portal's (`portal/templates/…`) and the
 * supervision's (`supervision/templates/…`) share one engine and one layout.
 */
export const viewsDir = join(projectRoot, 'src');
export const assetsDir = join(projectRoot, 'src', 'portal', 'assets');

/**
 * How long a rendered page is kept (see PageCache): as long as the lists beside the catalog search
 * are (Shelf), so that a page is never older than what it shows.
 */
export const PAGE_TTL_MS = 2000;

const packageDir = (name: string, file: string) => dirname(createRequire(import.meta.url).resolve(`${name}/${file}`));
/** The files /assets/ serves: the portal's own, and htmx and ECharts from their packages (nothing from outside). */
const ASSETS = new Set(['/portal.css', '/portal.js', '/htmx.min.js', '/echarts.min.js']);

/** Whether a request is a person's browser asking for a page (not a client of the API). */
export function wantsPage(request: FastifyRequest): boolean {
  const path = request.url.split('?')[0] as string;
  if (path.startsWith('/v1/') || path.startsWith('/docs') || path.startsWith('/assets/')) return false;
  const accept = request.headers.accept;
  return typeof accept === 'string' && accept.includes('text/html');
}

/** An error as the portal shows it: a page in the portal's style with the status, code and request id. */
export async function sendErrorPage(request: FastifyRequest, reply: FastifyReply, problem: Problem, frame: Frame = frameOf(request)) {
  const html = await reply.code(problem.status).viewAsync('portal/templates/error.eta', { frame, problem, title: frame.t(`error.${problem.status === 404 ? 'not_found' : problem.status >= 500 ? 'server' : 'request'}.title`) });
  reply.header('cache-control', 'no-store');
  return reply.type('text/html; charset=utf-8').send(html);
}

/**
 * The open-data portal (数据开放): server-rendered pages over the open data's and the catalog's
 * services (no second way to read the data), in Chinese and English, with its assets served by the
 * gateway itself. Errors on its pages, and unrouted paths a browser asks for, are pages too.
 */
async function portal(app: FastifyInstance, { config }: { config: Config }) {
  await app.register(view, {
    engine: { eta: new Eta({ views: viewsDir, cache: true, autoTrim: [false, 'nl'] }) },
    templates: viewsDir,
    production: true,
  });
  await app.register(fastifyStatic, {
    root: [assetsDir, packageDir('htmx.org', 'dist/htmx.min.js'), packageDir('echarts', 'dist/echarts.min.js')],
    prefix: '/assets/',
    allowedPath: (path) => ASSETS.has(path),
    maxAge: '1h',
    decorateReply: false,
    index: false,
    list: false,
  });
  const shelf = new Shelf(app.db);
  app.setNotFoundPage(async (request, reply) => {
    if (!wantsPage(request)) return false;
    const path = request.url.split('?')[0] as string;
    await sendErrorPage(request, reply, buildProblem(request, 404, 'not_found', frameOf(request).t('error.not_found.detail', { path })));
    return true;
  });

  await app.register(async (scope) => {
    scope.setErrorHandler(async (error: FastifyError & ProblemExtras, request, reply) => sendErrorPage(request, reply, problemOf(error, request, reply)));
    await scope.register(compress, { global: true, encodings: ['br', 'gzip'], threshold: 1024 });
    await scope.register(rateLimit, {
      global: true,
      timeWindow: 60_000,
      max: config.RATE_LIMIT_ANONYMOUS_PER_MINUTE,
      ...(app.redis ? { redis: app.redis, nameSpace: 'govdata-gateway:portal-rate:' } : {}),
      skipOnError: true,
      enableDraftSpec: true,
      errorResponseBuilder: (_request, context) =>
        Object.assign(new Error(`Rate limit exceeded: ${context.max} pages a minute for this address; retry in ${context.after}.`), { statusCode: 429, code: 'rate_limited' }),
    });
    await scope.register(portalRoutes, { shelf, pages: new PageCache(PAGE_TTL_MS), publicUrl: publicUrl(config) });
  });
}

export default fp(portal, { name: 'portal', fastify: '5.x', dependencies: ['errors', 'catalog', 'open', 'audit'] });
