import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { packageInfo as pkg } from '../paths.js';

export interface DocsOptions {
  publicUrl: string;
}

export const openapiInfo = {
  title: 'Government data exchange and open-data gateway',
  version: pkg.version,
  description:
    'One gateway for government data: the resource catalog, sharing between agencies (applications, ' +
    'grants, exchange and verification), open data downloads, and a tamper-evident audit trail. ' +
    'Errors are RFC 9457 problem+json with a stable `code`.',
  license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
};

type Content = Record<string, { schema?: { $ref?: string } }>;
interface OpenApiDocument {
  paths?: Record<string, Record<string, { responses?: Record<string, { content?: Content }> }>>;
}

/** Every response whose schema is the Problem is declared as application/problem+json. */
export function problemsAsProblemJson<T extends OpenApiDocument>(document: T): T {
  for (const operations of Object.values(document.paths ?? {})) {
    for (const operation of Object.values(operations)) {
      for (const response of Object.values(operation.responses ?? {})) {
        const json = response.content?.['application/json'];
        if (!response.content || json?.schema?.$ref !== '#/components/schemas/Problem') continue;
        const { 'application/json': _json, ...others } = response.content;
        response.content = { 'application/problem+json': json, ...others };
      }
    }
  }
  return document;
}

/** The OpenAPI document is generated from the route schemas: GET /openapi.json, the UI at /docs. */
async function docs(app: FastifyInstance, { publicUrl }: DocsOptions) {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: openapiInfo,
      servers: [{ url: publicUrl }],
      tags: [
        { name: 'catalog', description: 'The resource catalog (政务信息资源目录): resources, data items, agencies' },
        { name: 'oauth', description: 'OAuth 2.0: tokens, revocation, metadata and keys' },
        { name: 'sharing', description: 'Applications (共享申请), decisions (审核) and grants (授权)' },
        { name: 'exchange', description: 'Shared records (共享交换): read, query and verify (核验), cut to the grant' },
        { name: 'audit', description: 'The tamper-evident audit trail (交换日志), its statistics, and citizens\' access log' },
        { name: 'admin', description: 'Operator actions (scope admin)' },
        { name: 'operations', description: 'Health, readiness, metrics and documentation' },
      ],
      components: {
        securitySchemes: {
          bearer: {
            type: 'http',
            scheme: 'bearer',
            bearerFormat: 'JWT',
            description: 'A gateway access token (OAuth 2.0 client credentials) or a trusted issuer\'s token.',
          },
        },
      },
    },
    // Error answers are sent as application/problem+json (RFC 9457 §3): say so in the document,
    // while each route's schema stays the one Fastify serialises with.
    transformObject: (document) =>
      'openapiObject' in document ? problemsAsProblemJson(document.openapiObject as OpenApiDocument) : document.swaggerObject,
    refResolver: {
      // Shared schemas keep their $id as the component name (#/components/schemas/Problem).
      buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`),
    },
  });
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    uiConfig: { docExpansion: 'list', deepLinking: true },
    staticCSP: true,
    transformSpecification: (spec) => spec,
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}

export default fp(docs, { name: 'docs', fastify: '5.x' });
