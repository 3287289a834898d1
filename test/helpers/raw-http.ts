import { connect } from 'node:net';
import type { App } from '../../src/app.js';

/** An HTTP/1.1 answer read off a socket, in the shape tests read `app.inject` answers in. */
export interface RawResponse {
  statusLine: string;
  statusCode: number;
  headers: Record<string, string>;
  body: string;
  json(): any;
}

/** Listen on a random loopback port (closed with the app) and say which. */
export async function listen(app: App): Promise<number> {
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('not listening on TCP');
  return address.port;
}

/** The parts of a request, joined as they go on the wire: lines with CRLF, a blank line, then the body. */
export function requestBytes(lines: Array<string | Buffer>, body: string | Buffer = ''): Buffer {
  const parts: Buffer[] = [];
  for (const line of lines) parts.push(Buffer.isBuffer(line) ? line : Buffer.from(line, 'latin1'), Buffer.from('\r\n'));
  parts.push(Buffer.from('\r\n'), Buffer.isBuffer(body) ? body : Buffer.from(body));
  return Buffer.concat(parts);
}

/** A header line whose value goes out as the bytes given (raw UTF-8, stray bytes, anything). */
export function headerLine(name: string, value: Buffer | string): Buffer {
  return Buffer.concat([Buffer.from(`${name}: `), Buffer.isBuffer(value) ? value : Buffer.from(value)]);
}

function dechunk(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', at);
    const size = Number.parseInt(body.subarray(at, lineEnd).toString('latin1'), 16);
    if (!size) return Buffer.concat(parts);
    parts.push(body.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
}

/** One HTTP/1.1 answer as it came off a socket (a chunked body is put together); undefined without a whole head. */
export function parseRawResponse(raw: Buffer): RawResponse | undefined {
  const headEnd = raw.indexOf('\r\n\r\n');
  if (headEnd === -1) return undefined;
  const [statusLine, ...headerLines] = raw.subarray(0, headEnd).toString('latin1').split('\r\n') as [string, ...string[]];
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body: Buffer = raw.subarray(headEnd + 4);
  if (headers['transfer-encoding'] === 'chunked') body = dechunk(body);
  const text = body.toString('utf8');
  return { statusLine, statusCode: Number(statusLine.split(' ')[1]), headers, body: text, json: () => JSON.parse(text) };
}

/**
 * Write these bytes to the port as they are and read the answer until the server closes the
 * connection (send `Connection: close`, or a request the server refuses). Nothing rewrites the
 * bytes on the way, unlike fetch, which refuses header values that are not latin1.
 */
export function rawRequest(port: number, bytes: Buffer | string): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes));
    socket.setTimeout(30_000, () => socket.destroy(new Error('no answer within 30 s')));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      const raw = Buffer.concat(chunks);
      const response = parseRawResponse(raw);
      if (!response) return reject(new Error(`no answer: ${JSON.stringify(raw.toString('latin1'))}`));
      resolve(response);
    });
  });
}
