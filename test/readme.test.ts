import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { projectRoot } from '../src/paths.js';
import { readmeCommands, runReadmeCommands } from './helpers/readme.js';
import { freePort, startGateway } from './helpers/server.js';

// A first start on a fresh directory loads the demo, and the villages follow in the background.
t.setTimeout(400_000);

const README = join(projectRoot, 'README.md');
const VILLAGES = '330000-STATS-00005';
const commands = readmeCommands(README);

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

  const log = gateway.output();
  t.notMatch(log, /gws_[A-Za-z0-9_-]{20,}/, 'no client secret in the log');
  gateway.child.kill('SIGTERM');
  t.equal(await gateway.exited, 0, 'the gateway stops cleanly');
});
