import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { sql } from 'drizzle-orm';
import type { App } from '../../src/app.js';
import { rowsOf, type Driver } from '../../src/db/index.js';
import { DIVISIONS } from '../../src/demo/open.js';
import { qualified, recordTable } from '../../src/records/tables.js';
import { buildTestApp, forEachDriver, freshDatabase } from '../helpers/app.js';
import { assertProblem } from '../helpers/problem.js';
import { listen, parseRawResponse, rawRequest, requestBytes, type RawResponse } from '../helpers/raw-http.js';

// Timings are upper bounds with room to spare: the machine is shared and slow.
const REQUEST_TIMEOUT_MS = 2000;
const SLACK_MS = 3000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface RawClient {
  socket: Socket;
  connectedAt: number;
  received(): Buffer;
  closed: Promise<number>;
}

async function rawClient(port: number): Promise<RawClient> {
  const socket = connect(port, '127.0.0.1');
  // Writing to a socket the gateway has closed fails: what counts is what was read before.
  socket.on('error', () => {});
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  const closed = once(socket, 'close').then(() => performance.now());
  await once(socket, 'connect');
  return { socket, connectedAt: performance.now(), received: () => Buffer.concat(chunks), closed };
}

/** Send `head`, then one byte of `drip` every 200 ms until the gateway closes the connection. */
async function trickle(port: number, head: string, drip: string): Promise<{ ms: number; response: RawResponse | undefined; received: Buffer }> {
  const client = await rawClient(port);
  client.socket.write(head);
  let sent = 0;
  const timer = setInterval(() => {
    if (client.socket.writable) client.socket.write(drip[sent++ % drip.length] as string);
  }, 200);
  const closedAt = await client.closed;
  clearInterval(timer);
  return { ms: closedAt - client.connectedAt, response: parseRawResponse(client.received()), received: client.received() };
}

/** A problem written straight to the socket: status line, problem+json, its own request id, closed. */
function assertRawProblem(t: Test, response: RawResponse | undefined, status: number, code: string) {
  if (!response) return t.fail('no answer before the connection closed');
  const problem = assertProblem(t, response, status, code);
  t.equal(response.headers.connection, 'close');
  t.equal(Number(response.headers['content-length']), Buffer.byteLength(response.body));
  t.match(response.headers['x-request-id'], UUID);
  return problem;
}

// Header and body size limits, slow requests and floods touch no database: one driver is enough.
t.test('slow and oversized requests', async (t) => {
  const app = await buildTestApp(t, 'pglite', {
    env: { REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS), BODY_LIMIT: '2048' },
    extend(app) {
      // A route whose handler may take long (as a stream does): only Node's request timeout applies.
      app.post('/test/upload', { handlerTimeout: 60_000 }, async (request) => ({ received: JSON.stringify(request.body).length }));
    },
  });
  const port = await listen(app);

  await t.test('slowloris: headers trickled a byte every 200 ms are cut at REQUEST_TIMEOUT_MS with 408 request_timeout', async (t) => {
    const { ms, response } = await trickle(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ', 'a');
    assertRawProblem(t, response, 408, 'request_timeout');
    t.ok(ms >= REQUEST_TIMEOUT_MS - 100, `not before the timeout (${Math.round(ms)} ms)`);
    t.ok(ms <= REQUEST_TIMEOUT_MS + SLACK_MS, `cut within REQUEST_TIMEOUT_MS + ${SLACK_MS} ms (${Math.round(ms)} ms)`);
  });

  await t.test('a slow body (Content-Length 1000, a byte every 200 ms) is cut at REQUEST_TIMEOUT_MS with 408 request_timeout', async (t) => {
    const head = 'POST /test/upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n';
    const { ms, response, received } = await trickle(port, head, '["a",');
    assertRawProblem(t, response, 408, 'request_timeout');
    t.equal(received.toString('latin1').match(/HTTP\/1\.1 /g)?.length, 1, 'one answer');
    t.ok(ms >= REQUEST_TIMEOUT_MS - 100, `not before the timeout (${Math.round(ms)} ms)`);
    t.ok(ms <= REQUEST_TIMEOUT_MS + SLACK_MS, `cut within REQUEST_TIMEOUT_MS + ${SLACK_MS} ms (${Math.round(ms)} ms)`);
  });

  await t.test('a slow body to a route with a handler time limit: one problem answer at REQUEST_TIMEOUT_MS, then the connection is closed', async (t) => {
    const head = 'POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n';
    const { ms, response, received } = await trickle(port, head, 'grant_type=client_credentials&');
    // Node's 408 request_timeout, or the handler's own limit (REQUEST_TIMEOUT_MS too, src/app.ts)
    // when it comes first: 503 timeout. Either closes the connection; nothing is answered after it.
    const [status, code] = response?.statusCode === 503 ? [503, 'timeout'] : [408, 'request_timeout'];
    assertRawProblem(t, response, status, code);
    t.equal(received.toString('latin1').match(/HTTP\/1\.1 /g)?.length, 1, 'one answer');
    t.ok(ms >= REQUEST_TIMEOUT_MS - 100, `not before the timeout (${Math.round(ms)} ms)`);
    t.ok(ms <= REQUEST_TIMEOUT_MS + SLACK_MS, `cut within REQUEST_TIMEOUT_MS + ${SLACK_MS} ms (${Math.round(ms)} ms)`);
  });

  // Headers over 16 KiB (431 header_too_large) and chunk extensions over the parser's limit (413
  // chunk_extensions_too_large) are shown on a socket in test/client-errors.test.ts.
  await t.test('a body over BODY_LIMIT: 413 payload_too_large, announced or chunked', async (t) => {
    const json = [`POST /v1/open/datasets/${DIVISIONS.provinces.code}/terms HTTP/1.1`, 'Host: x', 'Content-Type: application/json', 'Connection: close'];
    const body = JSON.stringify({ sha256: '0'.repeat(64), purpose: 'a'.repeat(4096) });
    const announced = await rawRequest(port, requestBytes([...json, `Content-Length: ${body.length}`], body));
    assertProblem(t, announced, 413, 'payload_too_large');
    const chunk = (text: string) => `${text.length.toString(16)}\r\n${text}\r\n`;
    const chunked = await rawRequest(port, requestBytes([...json, 'Transfer-Encoding: chunked'], `${chunk(body.slice(0, 2000))}${chunk(body.slice(2000))}0\r\n\r\n`));
    assertProblem(t, chunked, 413, 'payload_too_large');
    const healthy = await rawRequest(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    t.equal(healthy.statusCode, 200, 'and the gateway carries on');
  });
});

t.test('a flood of connections over MAX_CONNECTIONS: the extra ones get 503 overloaded at once, the others are served', async (t) => {
  const MAX = 20;
  const FLOOD = 60;
  const app = await buildTestApp(t, 'pglite', { env: { MAX_CONNECTIONS: String(MAX) } });
  const port = await listen(app);
  const clients = await Promise.all(Array.from({ length: FLOOD }, () => rawClient(port)));
  // The connections over the limit are answered before they send a byte.
  const shedOnes = () => clients.filter((client) => client.received().length > 0);
  for (let i = 0; i < 100 && shedOnes().length < FLOOD - MAX; i++) await sleep(50);
  const shed = shedOnes();
  t.equal(shed.length, FLOOD - MAX, `${FLOOD - MAX} connections answered unasked`);
  const served = clients.filter((client) => !shed.includes(client));
  for (const client of served) client.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  await Promise.all(clients.map((client) => client.closed));

  for (const client of shed) {
    const response = parseRawResponse(client.received());
    const problem = assertRawProblem(t, response, 503, 'overloaded');
    t.equal(response?.statusLine, 'HTTP/1.1 503 Service Unavailable');
    t.equal(response?.headers['retry-after'], '10');
    t.equal(problem?.request_id, response?.headers['x-request-id']);
  }
  t.same(
    served.map((client) => parseRawResponse(client.received())?.statusCode),
    served.map(() => 200),
    `the ${MAX} connections within the limit are answered`,
  );
  const started = performance.now();
  const healthy = await rawRequest(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  t.equal(healthy.statusCode, 200, '/healthz right after');
  t.ok(performance.now() - started < SLACK_MS, 'promptly');
});

// A download the client stops reading: big enough to fill every socket buffer on the way.
const PROVINCES = DIVISIONS.provinces.code;
const ROWS = 20_000;
const NAME_CHARS = 1000; // 3,000 bytes of UTF-8 a row: some 60 MB a download
const STALL_TIMEOUT_MS = 1000;

/** The gateway's side of each connection, by the client's port. */
function serverSockets(app: App): Map<number, Socket> {
  const sockets = new Map<number, Socket>();
  app.server.on('connection', (socket: Socket) => sockets.set(socket.remotePort as number, socket));
  return sockets;
}

/** Backends of this database doing anything (a cursor, a COPY), but the one asking. */
async function busyBackends(app: App): Promise<Array<{ state: string; application_name: string; query: string }>> {
  return rowsOf(
    await app.db.execute(sql`select state, application_name, left(query, 60) as query from pg_stat_activity
      where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend' and state <> 'idle'`),
  );
}

forEachDriver(t, 'a download reader that stops reading: a bounded buffer, dropped after the idle timeout, the database released', async (t: Test, driver: Driver) => {
  const database = await freshDatabase(t, driver);
  const app = await buildTestApp(t, driver, {
    database,
    env: { REQUEST_TIMEOUT_MS: String(STALL_TIMEOUT_MS), OPEN_FETCH_ROWS: '100', RATE_LIMIT_ANONYMOUS_PER_MINUTE: '100000' },
  });
  await database.db.execute(
    sql.raw(`insert into ${qualified(recordTable(PROVINCES))} (code, name)
      select lpad(g::text, 12, '0'), repeat('长', ${NAME_CHARS}) from generate_series(1, ${ROWS}) as g`),
  );
  const fullSize = ROWS * NAME_CHARS * 3;
  const sockets = serverSockets(app);
  const port = await listen(app);

  // CSV: COPY on PostgreSQL, keyset batches on PGlite; NDJSON: a cursor on PostgreSQL.
  for (const format of ['csv', 'ndjson'] as const) {
    await t.test(`download.${format}`, async (t) => {
      const client = await rawClient(port);
      client.socket.write(`GET /v1/open/datasets/${PROVINCES}/download.${format} HTTP/1.1\r\nHost: x\r\n\r\n`);
      // Read a little, then stop.
      for (let i = 0; i < 200 && client.received().length < 64 * 1024; i++) await sleep(25);
      client.socket.pause();
      const pausedAt = performance.now();
      t.match(client.received().toString('latin1'), /^HTTP\/1\.1 200 OK\r\n/, 'the download began');
      const server = sockets.get(client.socket.localPort as number) as Socket;
      t.ok(server, "the gateway's side of the connection");

      // The gateway fills the socket buffers, then writes no more: its bytesWritten (which counts
      // what the socket still holds) stops growing.
      let written = server.bytesWritten;
      let settledAt = performance.now();
      for (let i = 0; i < 40; i++) {
        await sleep(250);
        if (server.bytesWritten === written) break;
        written = server.bytesWritten;
        settledAt = performance.now();
      }
      const busy = driver === 'postgres' ? await busyBackends(app) : [];
      await sleep(500);
      t.ok(!server.destroyed, 'still open while the idle timeout runs');
      t.equal(server.bytesWritten, written, `the gateway writes no more (${written} bytes written)`);
      t.ok(written < fullSize / 4, `far less than the download (${written} of ${fullSize} bytes)`);
      t.ok(server.writableLength <= 2 * 1024 * 1024, `the socket holds ${server.writableLength} bytes`);
      if (driver === 'postgres') {
        const reading = format === 'csv' ? busy.filter((backend) => backend.application_name.endsWith('-copy')) : busy;
        t.ok(reading.length >= 1, `the ${format === 'csv' ? 'COPY' : 'cursor'} is open meanwhile: ${JSON.stringify(busy)}`);
      }

      // Dropped once the socket has been idle for the connection timeout (Fastify's
      // connectionTimeout, from REQUEST_TIMEOUT_MS). Node lets a first expiry pass when some of
      // the queued bytes left since the last write, so a stalled download goes within twice it.
      const idleMs = app.server.timeout;
      const closedAt = server.destroyed ? performance.now() : await once(server, 'close').then(() => performance.now());
      t.ok(closedAt - pausedAt >= idleMs - 100, `not before the idle timeout of ${idleMs} ms (${Math.round(closedAt - pausedAt)} ms after the client stopped)`);
      t.ok(closedAt - settledAt <= 2 * idleMs + SLACK_MS, `dropped within twice the idle timeout + ${SLACK_MS} ms of the last write (${Math.round(closedAt - settledAt)} ms)`);

      // The client, reading again, gets what was on the way and then the end: a chunked body with
      // no last chunk, which no HTTP client takes for a whole download.
      client.socket.resume();
      await client.closed;
      const received = client.received();
      t.ok(received.length < fullSize / 4, `the client got ${received.length} bytes, then the end`);
      t.notOk(received.subarray(-5).equals(Buffer.from('0\r\n\r\n')), 'no last chunk: the download is visibly cut');

      // The database is released: no cursor or COPY left behind, and the next download is served.
      if (driver === 'postgres') {
        let left = await busyBackends(app);
        for (let i = 0; i < 50 && left.length > 0; i++) {
          await sleep(100);
          left = await busyBackends(app);
        }
        t.same(left, [], 'no backend of the database is busy any more');
      }
      const next = await app.inject({ url: `/v1/open/datasets/${PROVINCES}/download.${format}?select=code` });
      t.equal(next.statusCode, 200, 'the next download is served');
      t.equal(next.rawPayload.toString('utf8').split('\n').filter(Boolean).length, format === 'csv' ? ROWS + 1 : ROWS, 'whole');
    });
  }
});
