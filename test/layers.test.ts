import { join } from 'node:path';
import t from 'tap';
import madge from 'madge';
import { projectRoot } from '../src/paths.js';

/**
 * The layers of src/, lowest first (STYLE.md "Layers point down"): a module imports only from its
 * own layer or one below it, and nothing imports in a circle. A new folder or root file must be
 * placed here before it can be imported.
 */
const LAYERS: string[][] = [
  ['commands.ts', 'config.ts', 'errors.ts', 'logger.ts', 'pagination.ts', 'paths.ts', 'model', 'db', 'plugins'],
  ['records'],
  ['catalog', 'identity', 'audit'],
  ['exchange', 'open', 'sharing'],
  ['demo'],
  ['app.ts', 'startup.ts', 'server.ts', 'cli.ts'],
];

const layerOf = (module: string) => LAYERS.findIndex((layer) => layer.includes(module.split('/')[0] as string));

const graph = await madge(join(projectRoot, 'src'), { fileExtensions: ['ts'], tsConfig: join(projectRoot, 'tsconfig.json') });

t.test('src/ has no import cycle', async (t) => {
  t.same(graph.circular(), [], 'madge --circular finds none');
});

t.test('every module of src/ imports only from its layer or those below it', async (t) => {
  const modules = Object.entries(graph.obj());
  t.ok(modules.length > 50, `${modules.length} modules read`);
  const upward: string[] = [];
  for (const [module, imports] of modules) {
    const layer = layerOf(module);
    t.not(layer, -1, `${module} belongs to a layer`);
    for (const imported of imports) if (layerOf(imported) > layer) upward.push(`${module} -> ${imported}`);
  }
  t.same(upward, [], 'no import points up');
});
