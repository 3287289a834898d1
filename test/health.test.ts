import t from 'tap';
import { sql } from 'drizzle-orm';
import { openDatabase } from '../src/db/index.js';
import { buildTestApp, forEachDriver, freshDatabaseUrl } from './helpers/app.js';
import { assertProblem } from './helpers/problem.js';

forEachDriver(t, 'liveness and readiness', async (t, driver) => {
  const app = await buildTestApp(t, driver);

  const live = await app.inject({ url: '/healthz' });
  t.equal(live.statusCode, 200);
  t.same(live.json(), { status: 'ok' });

  const ready = await app.inject({ url: '/readyz' });
  t.equal(ready.statusCode, 200);
  t.match(ready.json(), { status: 'ready', checks: { database: 'ok', migrations: 'ok' } });
  t.equal(ready.json().installation_id, app.installationId);
});

forEachDriver(t, 'readyz is 503 while a migration is missing', async (t, driver) => {
  const database = await openDatabase(await freshDatabaseUrl(driver));
  t.teardown(() => database.close());
  const app = await buildTestApp(t, driver, { database });

  // Pretend the last migration was never applied: readiness must notice.
  await database.db.execute(sql`delete from drizzle.__drizzle_migrations where id = (select max(id) from drizzle.__drizzle_migrations)`);
  const response = await app.inject({ url: '/readyz' });
  const body = assertProblem(t, response, 503, 'not_ready');
  t.equal(response.headers['retry-after'], '5');
  const { expected } = await database.migrationStatus();
  t.match(body.checks, { database: 'ok', migrations: `${expected - 1} of ${expected} migrations applied` });
});

forEachDriver(t, 'readyz is 503 when the database does not answer', async (t, driver) => {
  const database = await openDatabase(await freshDatabaseUrl(driver));
  const app = await buildTestApp(t, driver, { database });
  await database.close();

  const response = await app.inject({ url: '/readyz' });
  const body = assertProblem(t, response, 503, 'not_ready');
  t.equal(body.checks.database, 'unavailable');
  t.match(body.detail, /database unavailable/);
  const live = await app.inject({ url: '/healthz' });
  t.equal(live.statusCode, 200, 'still alive');
});
