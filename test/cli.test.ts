import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import t from 'tap';
import { configTable, runCli } from '../src/cli.js';
import { projectRoot } from '../src/paths.js';
import { copyCatalog, editCatalogFile } from './helpers/catalog.js';

function io(env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { env, stdout: (s: string) => void out.push(s), stderr: (s: string) => void err.push(s) } };
}

t.test('gateway config lists every variable with its default', async (t) => {
  const run = io();
  t.equal(await runCli(['config'], run.io), 0);
  const table = run.out.join('');
  t.equal(table, configTable());
  t.match(table, /\| `DATABASE_URL` \| `\.\/data\/pglite` \|/);
  t.match(table, /\| `PORT` \| `3000` \|/);
  t.ok(readFileSync(join(projectRoot, 'README.md'), 'utf8').includes(table), "the README's Configuration table is this one");
});

t.test('an unknown subcommand fails with usage', async (t) => {
  const run = io();
  t.equal(await runCli(['frobnicate'], run.io), 1);
  t.match(run.err.join(''), /unknown command 'frobnicate'/);
});

t.test('a bad environment stops a command with one line', async (t) => {
  const run = io({ DATABASE_URL: 'mysql://nope' });
  t.equal(await runCli(['migrate'], run.io), 1);
  t.equal(run.err.join(''), 'gateway: DATABASE_URL: has the wrong form\n');
});

t.test('gateway openapi --check tells a stale file from a current one', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'openapi.yaml');
  const write = io();
  t.equal(await runCli(['openapi', '--out', file], write.io), 0);
  t.same(write.out, [`wrote ${file}\n`]);

  const current = io();
  t.equal(await runCli(['openapi', '--out', file, '--check'], current.io), 0);

  await writeFile(file, 'openapi: 3.1.0\n');
  const stale = io();
  t.equal(await runCli(['openapi', '--out', file, '--check'], stale.io), 1);
  t.equal(stale.err.join(''), `gateway: ${file} is stale: run npm run openapi\n`);

  const missingOut = io();
  t.equal(await runCli(['openapi', '--check'], missingOut.io), 1);

  const toStdout = io();
  t.equal(await runCli(['openapi'], toStdout.io), 0);
  t.match(toStdout.out.join(''), /^openapi: 3\.1\.0/);
});

t.test('gateway catalog validate: the shipped catalog passes, a broken copy fails with file and pointer', async (t) => {
  const good = io();
  t.equal(await runCli(['catalog', 'validate'], good.io), 0);
  t.match(good.out.join(''), /catalog: valid, 9 agencies, 37 resources\n$/);

  const dir = copyCatalog(t);
  editCatalogFile(dir, 'zj-edu/330000-EDU-00001.yaml', /^theme: education$/m, 'theme: cooking');
  editCatalogFile(dir, 'zj-psb/330000-PSB-00001.yaml', /^record_key: .*$/m, 'record_key: [passport]');
  const bad = io();
  t.equal(await runCli(['catalog', 'validate', dir], bad.io), 1);
  const lines = bad.err.join('').trim().split('\n');
  t.match(lines[0], /^zj-edu\/330000-EDU-00001\.yaml#\/theme: .* \[schema\]$/);
  t.match(lines[1], /^zj-psb\/330000-PSB-00001\.yaml#\/record_key\/0: .*passport.* \[unknown_key_item\]$/);
  t.match(lines[2], /^gateway: .*catalog: 2 error\(s\)$/);
});

t.test('gateway catalog sync: one transaction, a report, nothing synced when invalid', async (t) => {
  const dir = copyCatalog(t);
  const env = { DATABASE_URL: join(dir, '..', 'pglite') };
  const first = io(env);
  t.equal(await runCli(['catalog', 'sync', dir], first.io), 0);
  t.match(first.out.at(-1), /^sync 1: 46 created, 0 updated, 0 retired, 0 unchanged\n$/);
  t.ok(first.out.includes('created resource 330000-EDU-00001 v1\n'));

  editCatalogFile(dir, 'zj-amr/330000-AMR-00002.yaml', /^summary: .*$/m, 'summary: 行政处罚信息，已更新。');
  const second = io(env);
  t.equal(await runCli(['catalog', 'sync', dir, '--json'], second.io), 0);
  t.match(JSON.parse(second.out.join('')), {
    sync_id: 2,
    updated: 1,
    unchanged: 45,
    changes: [{ code: '330000-AMR-00002', change: 'updated', version: 2, fields: ['summary'] }],
  });

  editCatalogFile(dir, 'zj-amr/330000-AMR-00002.yaml', /^provider: zj-amr$/m, 'provider: zj-nobody');
  const invalid = io(env);
  t.equal(await runCli(['catalog', 'sync', dir], invalid.io), 1);
  t.match(invalid.err.join(''), /\[unknown_provider\][\s\S]*nothing was synced/);
});
