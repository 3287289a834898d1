import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { openDatabase } from '../src/db/index.js';
import { projectRoot } from '../src/paths.js';
import { buildTestApp } from './helpers/app.js';
import { freePort } from './helpers/server.js';

t.test('closing the app finishes in-flight requests and refuses new connections', async (t) => {
  let arrived!: () => void;
  const slowArrived = new Promise<void>((resolve) => (arrived = resolve));
  const app = await buildTestApp(t, 'pglite', {
    extend(app) {
      app.get('/test/slow', async () => {
        arrived();
        await sleep(300);
        return { finished: true };
      });
    },
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as { port: number };

  const inFlight = fetch(`http://127.0.0.1:${port}/test/slow`);
  await slowArrived;
  const closing = app.close();
  const response = await inFlight;
  t.equal(response.status, 200);
  t.same(await response.json(), { finished: true });
  await closing;
  await t.rejects(fetch(`http://127.0.0.1:${port}/healthz`), 'no new connections after close');
});

// The compiled server, as npm start runs it (npm test builds first).
t.test('SIGTERM stops the server cleanly and releases the PGlite directory', async (t) => {
  const port = await freePort();
  const directory = join(t.testdir(), 'pglite');
  const child = spawn(process.execPath, ['dist/src/server.js'], {
    cwd: projectRoot,
    // Demo data on (villages loading in the background when SIGTERM comes); download files in the test's directory.
    env: { ...process.env, PORT: String(port), DATABASE_URL: directory, OPEN_DATA_DIR: join(t.testdir(), 'downloads'), LOG_PRETTY: 'false', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });

  let ready = false;
  for (let attempt = 0; attempt < 480 && !ready; attempt++) {
    await sleep(250);
    ready = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status === 200, () => false);
  }
  t.ok(ready, 'the server became ready');

  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  t.equal(code, 0, 'exit code 0');
  t.match(output, /"signal":"SIGTERM".*"msg":"shutting down"/);

  const reopened = await openDatabase(directory);
  await reopened.ping();
  await reopened.close();
});
