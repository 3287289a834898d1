import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The project's root folder, found by walking up to our package.json, so that `src/…` run by tsx
 * and `dist/src/…` run by node both find `catalog/`, `schemas/` and the migrations.
 */
export const projectRoot: string = findProjectRoot(dirname(fileURLToPath(import.meta.url)));

function findProjectRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, 'utf8')).name === 'govdata-gateway') return dir;
    /* c8 ignore next -- only reached when the code runs outside its own package */
    if (dirname(dir) === dir) throw new Error(`govdata-gateway's package.json not found above ${start}`);
  }
}

export const migrationsFolder = join(projectRoot, 'src', 'db', 'migrations');
