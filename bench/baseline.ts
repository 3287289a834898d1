/**
 * The baselines the bench measures the gateway against, each its own process like the gateway:
 *   hello  — a bare Fastify hello-world;
 *   naive  — Fastify and the database driver doing the same indexed select the gateway does for a
 *            resident (no token, no grant, no audit, no schema): what the data costs on its own.
 *
 *   node dist/bench/baseline.js hello|naive <port>   (DATABASE_URL: postgres://… or a PGlite directory)
 *
 * WORKERS=N runs N processes on the port with node:cluster, as `gateway serve --workers N` does, so
 * that the ratios compare like with like.
 */
import cluster from 'node:cluster';
import Fastify from 'fastify';
import { openDatabase, rowsOf } from '../src/db/index.js';
import { sql } from 'drizzle-orm';

const [mode, port] = process.argv.slice(2);
const workers = Number(process.env.WORKERS ?? 1) || 1;

if (cluster.isPrimary && workers > 1) {
  let ready = 0;
  for (let i = 0; i < workers; i++) {
    cluster.fork().on('message', (message: string) => {
      if (message === 'ready' && ++ready === workers) process.stdout.write('ready\n');
    });
  }
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
      let left = workers;
      cluster.on('exit', () => --left === 0 && process.exit(0));
    });
  }
} else {
  await serve();
}

async function serve() {
  const app = Fastify({ logger: false });

  if (mode === 'hello') {
    app.get('/', async () => ({ hello: 'world' }));
  } else if (mode === 'naive') {
    const database = await openDatabase(process.env.DATABASE_URL as string, { poolMax: 10 });
    app.addHook('onClose', () => database.close());
    app.get('/lookup/:id', async (request, reply) => {
      const { id } = request.params as { id: string };
      const [row] = rowsOf<Record<string, unknown>>(
        await database.db.execute(sql`select id_number, name, region_code from records.r_330000_psb_00001 where id_number = ${id}`),
      );
      // The same answer the gateway's verify gives, from the same row.
      return row ? { verdict: row.name ? 'match' : 'mismatch' } : reply.code(200).send({ verdict: 'not_found' });
    });
  } else {
    throw new Error('usage: baseline.js hello|naive <port>');
  }

  await app.listen({ port: Number(port), host: '127.0.0.1' });
  if (cluster.isWorker) process.send?.('ready');
  else process.stdout.write('ready\n');
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      void app.close().then(() => process.exit(0));
    });
  }
}
