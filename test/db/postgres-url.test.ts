import { existsSync } from 'node:fs';
import t from 'tap';
import { sql } from 'drizzle-orm';
import { openDatabase, rowsOf } from '../../src/db/index.js';
import { DEFAULT_SOCKET_DIRECTORY, postgresTarget } from '../../src/db/postgres-url.js';
import { freshDatabaseUrl, testDrivers } from '../helpers/app.js';

t.test('a URL with a host is handed over as it is', async (t) => {
  t.same(postgresTarget('postgres://gw:pw@db.internal:5433/gov?sslmode=require', {}), { url: 'postgres://gw:pw@db.internal:5433/gov?sslmode=require' });
});

t.test('libpq-style socket URLs become a placeholder host plus the socket directory', async (t) => {
  t.same(postgresTarget('postgres://gw@/gov?host=/var/run/postgresql', {}), { url: 'postgres://gw@localhost/gov', host: '/var/run/postgresql' });
  t.same(postgresTarget('postgresql://gw:pw@/gov?host=%2Ftmp&port=5433&application_name=x', {}), {
    url: 'postgresql://gw:pw@localhost/gov?application_name=x',
    host: '/tmp',
    port: 5433,
  });
  t.same(postgresTarget('postgres:///gov', { PGHOST: '/run/pg' }), { url: 'postgres://localhost/gov', host: '/run/pg' }, 'PGHOST when the URL names none');
  t.same(postgresTarget('postgres:///gov', {}), { url: 'postgres://localhost/gov', host: DEFAULT_SOCKET_DIRECTORY }, 'else the default directory');
  t.same(postgresTarget('postgres://gw@db/gov?host=/sock', {}), { url: 'postgres://gw@localhost/gov', host: '/sock' }, 'a host parameter wins, as in libpq');
});

const socket = `${DEFAULT_SOCKET_DIRECTORY}/.s.PGSQL.5432`;
const onPostgres = testDrivers().includes('postgres');
t.test(
  'the gateway reaches PostgreSQL over its Unix socket',
  { skip: !onPostgres ? 'needs DATABASE_URL=postgres://… (PostgreSQL tests are off)' : !existsSync(socket) ? `no PostgreSQL socket at ${socket}` : false },
  async (t) => {
    const name = new URL(await freshDatabaseUrl('postgres')).pathname.slice(1);
    const user = new URL(process.env.DATABASE_URL as string).username || 'postgres';
    const database = await openDatabase(`postgres://${user}@/${name}?host=${DEFAULT_SOCKET_DIRECTORY}`);
    t.teardown(() => database.close());
    await database.migrate();
    const [row] = rowsOf<{ address: string | null; db: string }>(await database.db.execute(sql`select inet_client_addr()::text as address, current_database() as db`));
    t.equal(row?.db, name);
    t.equal(row?.address, null, 'no client address: the connection is a Unix socket, not TCP');
    t.equal(database.location, `postgres://${user}@/${name}?host=${DEFAULT_SOCKET_DIRECTORY}`, 'the location is shown as given');
  },
);
