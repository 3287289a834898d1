import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readFileSync } from 'node:fs';
import t, { type Test } from 'tap';
import { projectRoot } from '../src/paths.js';
import { readmeCommands, runReadmeCommands } from './helpers/readme.js';
import type { DemoPerson } from '../src/demo/people.js';
import { csrfOf, signInAt, visit } from './helpers/people.js';
import { freePort, startGateway } from './helpers/server.js';

// A first start on a fresh directory loads the demo, and the villages follow in the background.
t.setTimeout(400_000);

const README = join(projectRoot, 'README.md');
const VILLAGES = '330000-STATS-00005';
const commands = readmeCommands(README);

/** The demo people the first start wrote to data/demo-credentials.json, with their passwords. */
function demoPeople(cwd: string): DemoPerson[] {
  return (JSON.parse(readFileSync(join(cwd, 'data', 'demo-credentials.json'), 'utf8')) as { people: DemoPerson[] }).people;
}

/**
 * The README's walk-through over HTTP, as a browser would do it (the browser itself, with axe, is
 * test/supervision/browser.test.ts): after the README's verifications, on the gateway `npm start` runs.
 */
async function walkThrough(t: Test, cwd: string, base: string) {
  const people = demoPeople(cwd);
  const who = (role: DemoPerson['role']) => people.find((person) => person.role === role) as DemoPerson;
  t.same(people.map((person) => person.role).sort(), ['citizen', 'consumer', 'provider', 'supervisor'], 'the four demo people with their passwords');

  // The README's last example streamed 620,573 villages: a gateway still that busy sheds requests
  // with 503 overloaded (Retry-After), as a browser would be told too. Wait until it takes them.
  for (let tries = 0; tries < 60 && (await fetch(`${base}/login`, { redirect: 'manual' })).status === 503; tries++) await sleep(500);
  const supervisor = await signInAt(base, who('supervisor'));
  t.equal(supervisor.landedAt, '/supervision');
  const dashboard = await (await visit(supervisor, `${base}/supervision`)).text();
  t.match(dashboard, /已逾期 \d+ 天/, 'the supervisor sees an overdue application');
  const verified = await visit(supervisor, `${base}/supervision/verify`, { form: { _csrf: csrfOf(dashboard) } });
  t.equal(verified.status, 303, '立即完整验证');
  t.match(await (await visit(supervisor, `${base}/supervision`)).text(), /(\d+)\/\1 条链验证通过/, 'and the chain status: N/N chains verify');

  const provider = await signInAt(base, who('provider'));
  const list = await (await visit(provider, `${base}/supervision/applications?status=pending`)).text();
  // A row: <tr data-application="ap_…">, then its resource's name and code on the next line.
  const id = /data-application="(ap_[^"]+)">\s*<th[^\n]*330000-EDU-00001/.exec(list)?.[1];
  t.ok(id, 'the provider finds the pending student-record application');
  const page = await (await visit(provider, `${base}/supervision/applications/${id}`)).text();
  const approved = await visit(provider, `${base}/supervision/applications/${id}/decision`, {
    form: { _csrf: csrfOf(page), decision: 'approve', fields: ['student_id', 'school', 'status'] },
  });
  t.equal(approved.status, 303, 'approved from the page, narrowed to three fields');
  t.match(await (await visit(provider, `${base}/supervision/applications/${id}`)).text(), /已批准/);

  const citizen = await signInAt(base, who('citizen'));
  t.equal(citizen.landedAt, '/me');
  t.match(await (await visit(citizen, `${base}/me`)).text(), /就业补贴资格审核/, 'the citizen sees the verification with its Chinese purpose');
}

t.test('every curl example in the README shows the status it answers', async (t) => {
  t.ok(commands.filter((c) => c.calls).length >= 15, `${commands.filter((c) => c.calls).length} curl examples found`);
  for (const command of commands.filter((c) => c.calls)) {
    t.ok(command.status, `README.md:${command.line} is followed by "# <status> …": ${command.text.split('\n')[0]}`);
  }
});

// The README's main command on a fresh machine: `npm start` in a fresh folder, on PGlite with the
// demo. Download files are not prebuilt here (OPEN_PREBUILD=false): they are 250 MB of disk and a
// minute of CPU that no example needs, and downloads are the same bytes streamed.
t.test('the README examples run as printed against `npm start` with the demo data', async (t) => {
  const cwd = t.testdir();
  const gateway = startGateway(t, cwd, { OPEN_PREBUILD: 'false' }, await freePort());
  t.ok(await gateway.ready(), 'the gateway became ready');
  // The open-data examples query the villages, which load after ready.
  const until = Date.now() + 240_000;
  let villages = 0;
  while (villages !== 620_573 && Date.now() < until) {
    await sleep(1000);
    villages = await fetch(`${gateway.url}/v1/open/datasets/${VILLAGES}`).then(async (r) => ((await r.json()) as { row_count: number }).row_count, () => 0);
  }
  t.equal(villages, 620_573, 'the villages are in');

  const results = await runReadmeCommands(commands, cwd, gateway.port);
  t.equal(results.length, commands.length, 'every command ran');
  for (const result of results) {
    const { command } = result;
    const where = `README.md:${command.line}`;
    t.equal(result.exit, 0, `${where} exits 0: ${command.text.split('\n')[0]}`);
    t.same(result.curlExits.filter((code) => code !== 0), [], `${where}: curl reports no error`);
    if (command.status) {
      t.ok(result.statuses.length > 0, `${where}: curl was called`);
      t.same(result.statuses.filter((status) => status !== command.status), [], `${where}: every answer is ${command.status}`);
    }
    for (const pair of command.shows) t.ok(result.stdout.includes(pair), `${where} prints ${pair}`);
  }

  await t.test('the walk-through of the supervision pages: each demo person signs in and does what their role does', (t) => walkThrough(t, cwd, gateway.url));

  const log = gateway.output();
  t.notMatch(log, /gws_[A-Za-z0-9_-]{20,}/, 'no client secret in the log');
  for (const person of demoPeople(cwd)) t.notOk(log.includes(person.password), `no password of ${person.username} in the log`);
  gateway.child.kill('SIGTERM');
  t.equal(await gateway.exited, 0, 'the gateway stops cleanly');
});
