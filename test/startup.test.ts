import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { openDatabase } from '../src/db/index.js';
import { DEMO_PARTIES, readDemoCredentials, type DemoCredentials } from '../src/demo/clients.js';
import { DIVISIONS, STATIONS } from '../src/demo/open.js';
import { DEMO_RESOURCES, demoSizes, recordCount } from '../src/demo/seed.js';
import { freePort, startGateway, type GatewayProcess } from './helpers/server.js';

// Three starts of the compiled server on one fresh directory, the last until the villages are in.
t.setTimeout(400_000);

const GRACE_MS = 10_000;
const VILLAGE_ROWS = 620_573;
/** What the first start loads before it listens: every demo resource but the villages. */
const BEFORE_READY: Record<string, number> = {
  [DEMO_RESOURCES.residents]: demoSizes.small.residents,
  [DEMO_RESOURCES.students]: demoSizes.small.students,
  [DEMO_RESOURCES.enterprises]: demoSizes.small.enterprises,
  [DIVISIONS.provinces.code]: 31,
  [DIVISIONS.cities.code]: 342,
  [DIVISIONS.counties.code]: 2978,
  [DIVISIONS.towns.code]: 41_352,
  [STATIONS]: 132,
};

async function stop(t: Test, gateway: GatewayProcess, what: string) {
  const started = Date.now();
  gateway.child.kill('SIGTERM');
  t.equal(await gateway.exited, 0, `${what}: exit code 0`);
  const took = Date.now() - started;
  t.ok(took < GRACE_MS, `${what}: stopped in ${took} ms, within SHUTDOWN_GRACE_MS (${GRACE_MS} ms)`);
  t.match(gateway.output(), /"signal":"SIGTERM".*"msg":"shutting down"/, `${what}: says it is shutting down`);
}

async function token(url: string, client: { client_id: string; client_secret: string }): Promise<string> {
  const response = await fetch(`${url}/oauth/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials',
  });
  if (response.status !== 200) throw new Error(`token: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { access_token: string }).access_token;
}

t.test('stopped during its first start and right after ready, the gateway starts again whole', async (t) => {
  const cwd = t.testdir();
  const directory = join(cwd, 'data', 'pglite');
  const credentialsFile = join(cwd, 'data', 'demo-credentials.json');
  const env = { OPEN_PREBUILD: 'false', SHUTDOWN_GRACE_MS: String(GRACE_MS) };

  // 1. SIGTERM while the first start loads the demo data.
  const first = startGateway(t, cwd, env, await freePort());
  await first.logged('catalog synced');
  await stop(t, first, 'stopped while loading the demo');

  // 2. Start again: ready with everything; then SIGTERM while the villages load in the background.
  const second = startGateway(t, cwd, env, await freePort());
  t.ok(await second.ready(), 'the second start becomes ready');
  t.equal(statSync(credentialsFile).mode & 0o777, 0o600, 'the credentials file is readable by its owner alone');
  const logged = await second.logged(/^demo clients/);
  t.equal(logged.file, credentialsFile, 'the log says where the credentials are');
  await sleep(500);
  await stop(t, second, 'stopped while the villages load');

  // Nothing half-done: every resource loaded whole or not at all, each once.
  const database = await openDatabase(directory);
  for (const [code, rows] of Object.entries(BEFORE_READY)) t.equal(await recordCount(database, code), rows, `${code}: ${rows} records`);
  const villages = await recordCount(database, DIVISIONS.villages.code);
  t.ok(villages === 0 || villages === VILLAGE_ROWS, `the villages are all there or none (${villages})`);
  const credentials = (await readDemoCredentials(database, credentialsFile)) as DemoCredentials;
  t.ok(credentials, 'the credentials name active clients');
  t.same(Object.keys(DEMO_PARTIES).map((role) => credentials[role as keyof typeof DEMO_PARTIES].agency), ['zj-hrss', 'zj-edu', 'zj-dsj', 'zj-dsj']);
  await database.close();

  // 3. The third start finishes the villages; the demo clients work as the file says.
  const third = startGateway(t, cwd, env, await freePort());
  t.ok(await third.ready(), 'the third start becomes ready');
  const consumer = await token(third.url, credentials.consumer);
  const verify = await fetch(`${third.url}/v1/resources/${DEMO_RESOURCES.students}/verify`, {
    method: 'POST',
    headers: { authorization: `Bearer ${consumer}`, 'x-purpose': 'startup test', 'content-type': 'application/json' },
    body: JSON.stringify({ subject: { name: '孙思远', id_number: '331022201110043439', school: '三门县第2初级中学' } }),
  });
  t.same(await verify.json(), { verdict: 'match', fields: { name: 'match', id_number: 'match', school: 'match' } }, 'the consumer verifies a student');
  const supervisor = await token(third.url, credentials.supervisor);
  const events = await fetch(`${third.url}/v1/audit/events?agency=zj-hrss&limit=5`, { headers: { authorization: `Bearer ${supervisor}` } });
  t.equal(events.status, 200, 'the supervisor reads another agency’s trail (zj-dsj is a supervisor in the demo)');
  const until = Date.now() + 240_000;
  let rows = 0;
  while (rows !== VILLAGE_ROWS && Date.now() < until) {
    await sleep(1000);
    rows = await fetch(`${third.url}/v1/open/datasets/${DIVISIONS.villages.code}`).then(async (r) => ((await r.json()) as { row_count: number }).row_count, () => 0);
  }
  t.equal(rows, VILLAGE_ROWS, 'the villages are loaded after the interrupted start');
  await stop(t, third, 'stopped once loaded');

  const secrets = Object.keys(DEMO_PARTIES).map((role) => credentials[role as keyof typeof DEMO_PARTIES].client_secret);
  for (const gateway of [first, second, third]) {
    for (const secret of secrets) t.notOk(gateway.output().includes(secret), 'no demo secret in the log');
  }
  t.match(JSON.parse(readFileSync(credentialsFile, 'utf8')), { consumer: { agency: 'zj-hrss', scope: /records:verify/ } });
});
