import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { projectRoot } from '../../src/paths.js';
import type { Caller } from '../../src/plugins/auth.js';
import { TokenProblem } from '../../src/plugins/auth.js';
import type { App } from '../../src/app.js';

/** A writable copy of the shipped catalog, for tests that change files and sync again. */
export function copyCatalog(t: Test): string {
  const dir = join(t.testdir(), 'catalog');
  cpSync(join(projectRoot, 'catalog'), dir, { recursive: true });
  return dir;
}

/** Edit one catalog file in place with a text replacement (the test fails if nothing changes). */
export function editCatalogFile(dir: string, file: string, from: string | RegExp, to: string) {
  const path = join(dir, file);
  const before = readFileSync(path, 'utf8');
  const after = before.replace(from, to);
  if (after === before) throw new Error(`${file}: ${String(from)} not found`);
  writeFileSync(path, after);
}

export function removeCatalogFile(dir: string, file: string) {
  rmSync(join(dir, file));
}

/**
 * Callers by bearer token, for tests that need an identity before the identity domain verifies
 * real tokens: the verifier is the seam that domain fills in.
 */
export const testCallers: Record<string, Caller> = {
  'edu-catalog': { kind: 'agency', clientId: 'edu-1', agency: 'zj-edu', scopes: new Set(['catalog:read']) },
  'edu-records': { kind: 'agency', clientId: 'edu-2', agency: 'zj-edu', scopes: new Set(['records:read']) },
  admin: { kind: 'agency', clientId: 'ops-1', agency: 'zj-stats', scopes: new Set(['admin', 'catalog:read']) },
  citizen: { kind: 'citizen', person: 'p-1', issuer: 'https://id.example' },
};

export function installTestVerifier(app: App) {
  app.setTokenVerifier(async (token) => {
    const caller = testCallers[token];
    if (!caller) throw new TokenProblem('token_expired', 'The token has expired.');
    return caller;
  });
}
