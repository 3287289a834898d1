import { join } from 'node:path';
import t from 'tap';
import { openDatabase } from '../src/db/index.js';
import { KeyDecryptionError } from '../src/identity/index.js';
import { openGateway } from '../src/startup.js';
import { LogCapture, testConfig } from './helpers/app.js';

// The start-up sequence in process, on PGlite directories of the tests' own (the server's stops
// and restarts are test/startup.test.ts).
const env = (directory: string, extra: Record<string, string> = {}) => testConfig({ DATABASE_URL: directory, ...extra });

/** The directory is free again: another open takes its lock at once. */
async function directoryFree(directory: string): Promise<boolean> {
  const database = await openDatabase(directory);
  await database.close();
  return true;
}

t.test('the steps run in order: migrations, the plugins, the catalog sync, then ready', async (t) => {
  const directory = join(t.testdir(), 'pglite');
  const logs = new LogCapture();
  const app = await openGateway(env(directory), { logger: logs.logger });
  t.teardown(() => app.close());
  const messages = logs.lines.map((line) => line.msg);
  const migrated = messages.indexOf('database ready');
  const synced = messages.indexOf('catalog synced');
  t.ok(migrated >= 0 && synced > migrated, 'database ready, then catalog synced');
  t.match(logs.lines[synced], { created: Number, sync_id: Number }, 'the sync reports what it made');
  t.ok((logs.lines[synced]?.created as number) > 0, 'a fresh database gets the whole catalog');
  const ready = await app.inject({ url: '/readyz' });
  t.equal(ready.statusCode, 200);
  t.match(ready.json(), { status: 'ready', installation_id: /^[0-9a-f-]{36}$/ });
});

t.test('without the catalog sync at start the gateway serves but is not ready on a fresh database', async (t) => {
  const directory = join(t.testdir(), 'pglite');
  const logs = new LogCapture();
  const app = await openGateway(env(directory, { CATALOG_SYNC_ON_START: 'false' }), { logger: logs.logger });
  t.teardown(() => app.close());
  t.notOk(logs.lines.some((line) => line.msg === 'catalog synced'), 'no sync');
  const ready = await app.inject({ url: '/readyz' });
  t.equal(ready.statusCode, 503);
  t.match(ready.json(), { code: 'not_ready' });
  t.match(ready.body, /catalog/);
});

t.test('a stop before the first step closes the database it opened and throws', async (t) => {
  const directory = join(t.testdir(), 'pglite');
  const stopping = new AbortController();
  stopping.abort();
  await t.rejects(openGateway(env(directory), { logger: new LogCapture().logger, signal: stopping.signal }), { name: 'AbortError' });
  t.ok(await directoryFree(directory), 'the directory lock is released');
});

t.test('a step that fails (keys the configured key cannot decrypt) closes what was opened', async (t) => {
  const directory = join(t.testdir(), 'pglite');
  const first = await openGateway(env(directory), { logger: new LogCapture().logger });
  await first.close();
  const otherKey = Buffer.alloc(32, 9).toString('base64url');
  await t.rejects(openGateway(env(directory, { KEY_ENCRYPTION_KEY: otherKey }), { logger: new LogCapture().logger }), KeyDecryptionError);
  t.ok(await directoryFree(directory), 'the directory lock is released');
  const again = await openGateway(env(directory), { logger: new LogCapture().logger });
  t.equal((await again.inject({ url: '/readyz' })).statusCode, 200, 'the right key starts it again');
  await again.close();
});
