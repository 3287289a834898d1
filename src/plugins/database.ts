import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { sql } from 'drizzle-orm';
import { rowsOf, type Database, type Db } from '../db/index.js';
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
  /** The database, opened and migrated by the start-up sequence (src/startup.ts). */
  database: Database;
  /** Closed with the app (the server's own database), or left to the caller (tests sharing one). */
  owned: boolean;
  /**
   * How long the app's close may take (the shutdown grace), announced in the PGlite directory
   * lock when closing begins, so that a gateway started meanwhile waits that long for it.
   */
  closeWithinMs: number;
}

async function databasePlugin(app: FastifyInstance, { database, owned, closeWithinMs }: DatabasePluginOptions) {
  if (owned) {
    // Announced when close begins (preClose, before in-flight requests and background work end),
    // closed when the rest is done (onClose).
    app.addHook('preClose', () => database.closing(closeWithinMs));
    app.addHook('onClose', () => database.close());
  }
  app.decorate('database', database);
  app.decorate('db', database.db);

  const [row] = rowsOf<{ value: string }>(
    await database.db.execute(sql`select value from ${installation} where key = 'installation_id'`),
  );
  app.decorate('installationId', row?.value ?? '');
}

export default fp(databasePlugin, { name: 'database', fastify: '5.x' });
