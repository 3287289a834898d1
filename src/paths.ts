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
    if (existsSync(manifest) && existsSync(join(dir, 'src')) && readManifest(manifest).name === 'govdata-gateway') {
      return dir;
    }
    /* c8 ignore next -- only reached when the code runs outside its own package */
    if (dirname(dir) === dir) throw new Error(`govdata-gateway's package.json not found above ${start}`);
  }
}

function readManifest(path: string): { name?: string; version: string; description: string } {
  return JSON.parse(readFileSync(path, 'utf8'));
}

/** Our package.json, read at run time (not imported, so that the build does not copy it). */
export const packageInfo = readManifest(join(projectRoot, 'package.json'));

export const migrationsFolder = join(projectRoot, 'src', 'db', 'migrations');
