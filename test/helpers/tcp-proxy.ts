import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';

/**
 * A TCP relay on loopback in front of a server on loopback (PostgreSQL, Redis), which a test can
 * take down and bring back: the outage a restart of that server is, without touching the server
 * that other tests share. `down()` drops every relayed connection and refuses new ones (the port
 * stops listening, so a connect gets ECONNREFUSED, as from a server that is restarting);
 * `up()` listens again on the same port.
 */
export class TcpProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;
  /** Connections relayed since the start. */
  accepted = 0;

  constructor(
    private readonly targetPort: number,
    private readonly targetHost = '127.0.0.1',
  ) {}

  async up(): Promise<this> {
    const server = createServer((client) => {
      this.accepted += 1;
      const upstream = createConnection({ host: this.targetHost, port: this.targetPort });
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
        socket.on('error', () => {});
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    server.listen(this.port, '127.0.0.1');
    await once(server, 'listening');
    this.port = (server.address() as { port: number }).port;
    this.server = server;
    return this;
  }

  /** Every connection dropped at once, and the port closed until up(). */
  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Connections open through the relay now (each counted once, client side). */
  get open(): number {
    return this.sockets.size / 2;
  }
}
