import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { parse } from 'yaml';
import { generateOpenapi } from '../src/cli.js';
import { projectRoot } from '../src/paths.js';

const generated = await generateOpenapi();

t.test('openapi.yaml is what the routes generate (run `npm run openapi` when this fails)', async (t) => {
  const committed = await readFile(join(projectRoot, 'openapi.yaml'), 'utf8');
  t.equal(committed, generated);
});

t.test('every route is tagged and answers with declared schemas', async (t) => {
  const document = parse(generated) as {
    openapi: string;
    paths: Record<string, Record<string, { tags?: string[]; responses?: Record<string, unknown> }>>;
  };
  t.equal(document.openapi, '3.1.0');
  const operations = Object.entries(document.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({ name: `${method.toUpperCase()} ${path}`, operation })),
  );
  t.ok(operations.length > 0);
  for (const { name, operation } of operations) {
    t.ok(operation.tags?.length, `${name} has tags`);
    t.ok(Object.keys(operation.responses ?? {}).some((status) => status.startsWith('2')), `${name} declares a 2xx`);
  }
});

t.test('every error answer is declared as application/problem+json, as it is sent', async (t) => {
  const document = parse(generated) as {
    paths: Record<string, Record<string, { responses?: Record<string, { content?: Record<string, { schema?: { $ref?: string } }> }> }>>;
  };
  let declared = 0;
  for (const [path, methods] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      for (const [status, response] of Object.entries(operation.responses ?? {})) {
        if (Number(status) < 400) continue;
        const types = Object.keys(response.content ?? {});
        t.ok(types.includes('application/problem+json') && !types.includes('application/json'), `${method.toUpperCase()} ${path} ${status}: ${types.join(', ')}`);
        declared += 1;
      }
    }
  }
  t.ok(declared > 50, `${declared} error answers declared`);
});
