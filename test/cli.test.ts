import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import t from 'tap';
import { configTable, runCli } from '../src/cli.js';

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
