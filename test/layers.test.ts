import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import madge from 'madge';
import ts from 'typescript';
import { projectRoot } from '../src/paths.js';

/**
 * The layers of src/, lowest first (STYLE.md "Layers point down"): a module imports only from its
 * own layer or one below it, and nothing imports in a circle. A new folder or root file must be
 * placed here before it can be imported.
 */
const LAYERS: string[][] = [
  ['commands.ts', 'config.ts', 'errors.ts', 'logger.ts', 'pagination.ts', 'paths.ts', 'spreadsheet.ts', 'model', 'db', 'plugins'],
  ['records'],
  ['catalog', 'identity', 'audit'],
  ['exchange', 'open', 'sharing'],
  ['portal', 'supervision'],
  ['demo'],
  ['app.ts', 'startup.ts', 'server.ts', 'cluster.ts', 'cli.ts'],
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

/** Longest a function in src/ may be: past this, it holds more than one idea (issue 15). */
const MAX_FUNCTION_LINES = 120;

t.test(`no function in src/ is longer than ${MAX_FUNCTION_LINES} lines`, async (t) => {
  const long: string[] = [];
  for (const module of Object.keys(graph.obj())) {
    const file = join(projectRoot, 'src', module);
    const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
    const visit = (node: ts.Node) => {
      if (ts.isFunctionLike(node) && 'body' in node && node.body) {
        const first = source.getLineAndCharacterOfPosition(node.getStart()).line;
        const last = source.getLineAndCharacterOfPosition(node.getEnd()).line;
        if (last - first + 1 > MAX_FUNCTION_LINES) long.push(`${module}:${first + 1} (${last - first + 1} lines)`);
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  t.same(long, [], 'every function fits');
});
