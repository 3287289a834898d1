import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { writeProblem } from './client-errors.js';

export interface ConnectionLimitOptions {
  /** Open connections at most (MAX_CONNECTIONS); 0: no limit. */
  max: number;
}

/** Retry-After of a shed connection, as under-pressure's for shed requests (security.ts). */
const RETRY_AFTER_SECONDS = 10;
/** How long a shed connection may take to close after its answer (a peer that never reads or ends). */
const SHED_CLOSE_MS = 5000;
/** One warning per this long while connections are shed, with how many: a flood is not a log flood. */
const SHED_LOG_EVERY_MS = 10_000;

/**
 * At most `max` open connections. A connection beyond them is answered 503 `overloaded`
 * (problem+json, Retry-After, Connection: close) as soon as it is accepted, before a byte of its
 * request is parsed, and closed: answering it costs a write, so a flood of connections cannot
 * stall the event loop, and the connections already open are served. Node's own
 * `server.maxConnections` closes such a socket without a word, which a client cannot tell from a
 * network fault.
 */
async function connections(app: FastifyInstance, { max }: ConnectionLimitOptions) {
  if (max === 0) return;
  const server = app.server;
  // Node's HTTP server sets each connection up (its parser, its timeouts) in its own 'connection'
  // listener: the limit goes in front of it, so that a shed connection never reaches it.
  const setUp = server.listeners('connection') as Array<(socket: Socket) => void>;
  server.removeAllListeners('connection');
  let open = 0;
  let shed = 0;
  let loggedAt = 0;
  server.on('connection', (socket: Socket) => {
    if (open < max) {
      open += 1;
      socket.once('close', () => {
        open -= 1;
      });
      for (const listener of setUp) listener.call(server, socket);
      return;
    }
    shed += 1;
    if (Date.now() - loggedAt >= SHED_LOG_EVERY_MS) {
      app.log.warn({ max, shed }, 'connections over MAX_CONNECTIONS answered 503 overloaded');
      loggedAt = Date.now();
      shed = 0;
    }
    // A peer that is gone by now: nothing to answer.
    socket.on('error', () => socket.destroy());
    writeProblem(
      socket,
      { status: 503, code: 'overloaded', detail: `The gateway has ${max} connections open; retry after ${RETRY_AFTER_SECONDS} s.` },
      randomUUID(),
      { 'Retry-After': String(RETRY_AFTER_SECONDS) },
    );
    socket.end();
    // What the client sent is read and dropped: bytes left unread when the socket closes make
    // the kernel reset the connection, and a reset can lose the answer on the client's side.
    socket.resume();
    socket.once('end', () => socket.destroy());
    socket.setTimeout(SHED_CLOSE_MS, () => socket.destroy());
  });
}

export default fp(connections, { name: 'connections', fastify: '5.x' });
