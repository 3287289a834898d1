import { randomUUID } from 'node:crypto';
import { maxHeaderSize } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { problemTitles, problemType } from '../errors.js';
import { PROBLEM_CONTENT_TYPE } from './errors.js';

/** What Node's HTTP parser (llhttp) reports about a request it refuses. */
export interface ParserError extends Error {
  code?: string;
  /** llhttp's fixed wording of the fault ("Invalid char in url query"): never the client's bytes. */
  reason?: string;
  /** The bytes the parser was given (a Buffer): may hold tokens, so it is read here and never logged. */
  rawPacket?: unknown;
}

export interface ClientProblem {
  status: number;
  code: string;
  detail: string;
}

/** Whether the request line (the first line of the packet) holds bytes outside ASCII. */
function nonAsciiTarget(packet: unknown): boolean {
  if (!Buffer.isBuffer(packet)) return false;
  const end = packet.indexOf(0x0a);
  return packet.subarray(0, end === -1 ? packet.length : end).some((byte) => byte >= 0x80);
}

/** The problem a request refused by the HTTP parser is answered with. */
export function clientProblem(error: ParserError): ClientProblem {
  const reason = error.reason ?? error.message;
  switch (error.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, code: 'request_timeout', detail: 'The request did not arrive in full in time.' };
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, code: 'header_too_large', detail: `The request line and headers are larger than ${maxHeaderSize / 1024} KiB.` };
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return { status: 413, code: 'chunk_extensions_too_large', detail: 'The chunk extensions of the request body are too large.' };
    case 'HPE_INVALID_URL':
      return {
        status: 400,
        code: 'invalid_url',
        detail: nonAsciiTarget(error.rawPacket)
          ? "The URL holds characters that are not ASCII: percent-encode them as UTF-8 (RFC 3986), e.g. curl -G --data-urlencode 'q=行政区划' <url>."
          : `The URL holds a character that must be percent-encoded (RFC 3986): ${reason}.`,
      };
    case 'HPE_INVALID_CONTENT_LENGTH':
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
      return { status: 400, code: 'invalid_content_length', detail: `The Content-Length of the request is not valid: ${reason}.` };
    case 'HPE_INVALID_CHUNK_SIZE':
      return { status: 400, code: 'bad_chunked_encoding', detail: `The chunked body of the request is malformed: ${reason}.` };
    default:
      // llhttp reports a missing CRLF after chunk data as a strict-mode fault: its wording tells.
      if (/chunk/i.test(reason)) {
        return { status: 400, code: 'bad_chunked_encoding', detail: `The chunked body of the request is malformed: ${reason}.` };
      }
      return { status: 400, code: 'bad_request', detail: `The request is not valid HTTP/1.1: ${reason}.` };
  }
}

/**
 * A problem answered straight on a socket, for a connection that has no request Fastify could
 * answer (refused by the parser, or shed before it is read): problem+json with a request id of its
 * own and `Connection: close`, as the connection is closed after it.
 */
export function writeProblem(socket: Socket, { status, code, detail }: ClientProblem, requestId: string, headers: Record<string, string> = {}): void {
  const title = problemTitles[status] as string;
  const body = JSON.stringify({ type: problemType(code), title, status, detail, code, request_id: requestId });
  let extra = '';
  for (const [name, value] of Object.entries(headers)) extra += `${name}: ${value}\r\n`;
  socket.write(
    `HTTP/1.1 ${status} ${title}\r\n` +
      `Content-Type: ${PROBLEM_CONTENT_TYPE}; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'X-Content-Type-Options: nosniff\r\n' +
      `X-Request-Id: ${requestId}\r\n` +
      extra +
      'Connection: close\r\n' +
      `\r\n${body}`,
  );
}

/**
 * Fastify's clientErrorHandler: a request Node's HTTP parser refuses (bytes outside ASCII in the
 * URL, a malformed request line, too many header bytes, bad chunked encoding, a request that
 * never arrives in full) is answered as RFC 9457 problem+json with a stable code and a request
 * id of its own, then the connection is closed: the parser cannot find the next request on it.
 */
export function clientErrorHandler(this: FastifyInstance, error: ParserError, socket: Socket): void {
  // The peer is gone and the socket with it (https://nodejs.org/api/http.html#event-clienterror).
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const problem = clientProblem(error);
  const requestId = randomUUID();
  this.log.info({ request_id: requestId, code: problem.code, status: problem.status, parser_code: error.code }, 'request refused by the HTTP parser');
  // As Node's own answer does: nothing is written over an answer to this socket's earlier request
  // that has begun to go out.
  const answering = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  if (socket.writable && !answering?.headersSent) writeProblem(socket, problem, requestId);
  socket.destroy(error);
}

/** What Fastify's router refuses before any hook runs, and the problem each is answered with. */
const routerProblems: Record<string, Omit<ClientProblem, 'status'>> = {
  FST_ERR_BAD_URL: { code: 'invalid_url', detail: 'The path does not decode: percent-encode it as UTF-8 (RFC 3986).' },
  FST_ERR_MAX_PARAM_LENGTH: { code: 'uri_too_long', detail: 'A path parameter is longer than any this gateway takes.' },
};

/**
 * Fastify's frameworkErrors: a path that does not percent-decode, or a path parameter longer than
 * maxParamLength, is refused by the router before any hook (so before the one that sets
 * X-Request-Id); without this Fastify answers it as plain JSON of its own.
 */
export function routerErrorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 400;
  const { code, detail } = routerProblems[error.code] ?? { code: 'bad_request', detail: 'The request cannot be routed.' };
  request.log.info({ code, status }, 'request refused by the router');
  void reply
    .code(status)
    .header('x-request-id', request.id)
    .type(PROBLEM_CONTENT_TYPE)
    .send({ type: problemType(code), title: problemTitles[status] ?? 'Error', status, detail, code, request_id: request.id });
}
