import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { sql } from 'drizzle-orm';
import { openDatabase, rowsOf, type Database, type Db } from '../db/index.js';
import { installation } from '../db/schema.js';

declare module 'fastify' {
  interface FastifyInstance {
    database: Database;
    db: Db;
    /** Made on the first start and kept in the database: tells one installation from another. */
    installationId: string;
  }
}

export interface DatabasePluginOptions {
  url: string;
  poolMax: number;
  /** An already open database (tests that run two apps on one PGlite); the caller closes it. */
  database?: Database;
  /**
   * How long the app's close may take (the shutdown grace), announced in the PGlite directory
   * lock when closing begins, so that a gateway started meanwhile waits that long for it.
   */
  closeWithinMs: number;
}

async function databasePlugin(app: FastifyInstance, options: DatabasePluginOptions) {
  const database = options.database ?? (await openDatabase(options.url, { poolMax: options.poolMax, logger: app.log }));
  if (!options.database) {
    // Announced when close begins (preClose, before in-flight requests and background work end),
    // closed when the rest is done (onClose).
    app.addHook('preClose', () => database.closing(options.closeWithinMs));
    app.addHook('onClose', () => database.close());
  }
  app.decorate('database', database);
  app.decorate('db', database.db);

  const status = await database.migrate();
  app.log.info({ driver: database.driver, location: database.location, ...status }, 'database ready');

  await database.db
    .insert(installation)
    .values({ key: 'installation_id', value: crypto.randomUUID() })
    .onConflictDoNothing();
  const [row] = rowsOf<{ value: string }>(
    await database.db.execute(sql`select value from ${installation} where key = 'installation_id'`),
  );
  app.decorate('installationId', row?.value ?? '');
}

export default fp(databasePlugin, { name: 'database', fastify: '5.x' });
