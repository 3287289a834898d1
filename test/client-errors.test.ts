import { once } from 'node:events';
import { connect } from 'node:net';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { clientProblem } from '../src/plugins/client-errors.js';
import { buildTestApp, LogCapture } from './helpers/app.js';
import { assertProblem } from './helpers/problem.js';
import { listen, rawRequest, requestBytes, type RawResponse } from './helpers/raw-http.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SECRET = 'eyJhbGciOiJFZERTQSJ9.secret-token-never-logged';

// No database is touched before the parser gives up: one driver is enough.
const logs = new LogCapture();
const app = await buildTestApp(t, 'pglite', {
  logs,
  env: { REQUEST_TIMEOUT_MS: '1000' },
  extend(app) {
    // An answer whose headers go out at once and whose body takes a while.
    app.get('/test/slow', async (_request, reply) => {
      const body = new Readable({ read() {} });
      body.push('first part\n');
      setTimeout(() => body.push(null), 1000).unref();
      return reply.type('text/plain').send(body);
    });
  },
});
// Node looks for requests that are late every 30 s by default (the createServer option
// connectionsCheckingInterval, read when the server starts listening); the test cannot wait that long.
(app.server as typeof app.server & { connectionsCheckingInterval: number }).connectionsCheckingInterval = 100;
const port = await listen(app);

/** A problem answer written by the client-error handler: status line, headers, body, closed. */
function assertClientProblem(t: Test, response: RawResponse, status: number, reasonPhrase: string, code: string) {
  t.equal(response.statusLine, `HTTP/1.1 ${status} ${reasonPhrase}`);
  t.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8');
  t.equal(response.headers.connection, 'close');
  t.equal(Number(response.headers['content-length']), Buffer.byteLength(response.body));
  t.match(response.headers['x-request-id'], UUID);
  const problem = assertProblem(t, response, status, code);
  t.equal(problem.title, reasonPhrase);
  return problem;
}

t.test('raw UTF-8 in the URL (curl with an unencoded query): 400 invalid_url saying how to encode it', async (t) => {
  const response = await rawRequest(
    port,
    requestBytes([Buffer.from('GET /v1/catalog/resources?q=行政区划&limit=2 HTTP/1.1'), 'Host: 127.0.0.1', `Authorization: Bearer ${SECRET}`]),
  );
  const problem = assertClientProblem(t, response, 400, 'Bad Request', 'invalid_url');
  t.match(problem.detail, /percent-encode them/);
  t.match(problem.detail, /curl -G --data-urlencode 'q=行政区划'/);

  const cut = await rawRequest(port, Buffer.from('GET /v1/catalog/resources?q=行政'));
  t.match(assertClientProblem(t, cut, 400, 'Bad Request', 'invalid_url').detail, /percent-encode them/, 'also when the line never ends');

  const control = await rawRequest(port, 'GET /v1/catalog/\x01resources HTTP/1.1\r\nHost: x\r\n\r\n');
  t.match(assertClientProblem(t, control, 400, 'Bad Request', 'invalid_url').detail, /^The URL holds a character that must be percent-encoded \(RFC 3986\): Invalid char in url path\.$/);
});

t.test('a malformed request line: 400 bad_request', async (t) => {
  for (const line of ['HELLO', 'GET /healthz HTTP/9', 'GET /a b HTTP/1.1']) {
    const problem = assertClientProblem(t, await rawRequest(port, `${line}\r\nHost: x\r\n\r\n`), 400, 'Bad Request', 'bad_request');
    t.match(problem.detail, /^The request is not valid HTTP\/1\.1: /, line);
  }
});

t.test('a header block over 16 KiB: 431 header_too_large', async (t) => {
  const response = await rawRequest(port, requestBytes(['GET /healthz HTTP/1.1', 'Host: x', `X-Padding: ${'a'.repeat(17_000)}`]));
  const problem = assertClientProblem(t, response, 431, 'Request Header Fields Too Large', 'header_too_large');
  t.equal(problem.detail, 'The request line and headers are larger than 16 KiB.');
});

t.test('bad chunked encoding: 400 bad_chunked_encoding', async (t) => {
  const chunked = (body: string) =>
    requestBytes(['POST /oauth/token HTTP/1.1', 'Host: x', 'Content-Type: application/x-www-form-urlencoded', 'Transfer-Encoding: chunked'], body);
  const badSize = await rawRequest(port, chunked('zz\r\nabc\r\n0\r\n\r\n'));
  t.match(assertClientProblem(t, badSize, 400, 'Bad Request', 'bad_chunked_encoding').detail, /chunk size/);
  const overlong = await rawRequest(port, chunked('3\r\nabcdef\r\n0\r\n\r\n'));
  t.match(assertClientProblem(t, overlong, 400, 'Bad Request', 'bad_chunked_encoding').detail, /after chunk data/);
  const extensions = await rawRequest(port, chunked(`3;${'x'.repeat(20_000)}\r\nabc\r\n0\r\n\r\n`));
  assertClientProblem(t, extensions, 413, 'Content Too Large', 'chunk_extensions_too_large');
});

t.test('a Content-Length that is no number: 400 invalid_content_length', async (t) => {
  const response = await rawRequest(port, requestBytes(['POST /oauth/token HTTP/1.1', 'Host: x', 'Content-Length: abc']));
  assertClientProblem(t, response, 400, 'Bad Request', 'invalid_content_length');
});

t.test('a request that never arrives in full: 408 request_timeout', async (t) => {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
  // A header line now and then: the connection is never idle, the request never complete.
  const trickle = setInterval(() => socket.write('X-Slow: 1\r\n'), 200);
  await once(socket, 'close');
  clearInterval(trickle);
  const text = Buffer.concat(chunks).toString();
  t.match(text, /^HTTP\/1\.1 408 Request Timeout\r\n/);
  t.match(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)), { status: 408, code: 'request_timeout' });
});

t.test('a connection reset by the client: nothing is written, the gateway carries on', async (t) => {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
  await sleep(50);
  socket.resetAndDestroy();
  await once(socket, 'close');
  await sleep(50);
  const healthy = await rawRequest(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  t.equal(healthy.statusCode, 200);
});

t.test('garbage after a request whose answer has begun: that answer is not corrupted by a second status line', async (t) => {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => {
    if (chunks.length === 0) socket.write('HELLO\r\n\r\n');
    chunks.push(chunk);
  });
  socket.write('GET /test/slow HTTP/1.1\r\nHost: x\r\n\r\n');
  await once(socket, 'close');
  const text = Buffer.concat(chunks).toString();
  t.match(text, /^HTTP\/1\.1 200 OK\r\n/);
  t.notMatch(text, /HTTP\/1\.1 400/);
});

t.test('each refusal is logged at info with its code, never with the packet', async (t) => {
  const refusals = logs.lines.filter((line) => line.msg === 'request refused by the HTTP parser');
  t.ok(refusals.length >= 10);
  for (const line of refusals) {
    t.equal(line.level, 30);
    t.type(line.code, 'string');
    t.match(line.request_id, UUID);
  }
  t.match(refusals, [{ code: 'invalid_url', status: 400, parser_code: 'HPE_INVALID_URL' }]);
  t.notOk(logs.text().includes(SECRET), 'the token in the refused packet is not in the log');
  t.notOk(logs.text().includes('rawPacket'));
});

t.test('clientProblem without the packet or llhttp wording', async (t) => {
  t.match(clientProblem(Object.assign(new Error('Parse Error'), { code: 'HPE_INVALID_URL' })), {
    code: 'invalid_url',
    detail: 'The URL holds a character that must be percent-encoded (RFC 3986): Parse Error.',
  });
  t.match(clientProblem(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' })), { status: 400, code: 'bad_request' });
});
