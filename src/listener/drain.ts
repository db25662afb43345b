/**
 * Draining the public listener on shutdown without losing a request. Once draining starts:
 *   - every answer still to be written carries `Connection: close` (`shouldKeepAlive = false`
 *     covers fastify replies and the proxy's raw writes alike), so a load balancer never
 *     sends another request down a connection that is about to go away;
 *   - an answer whose headers already went out with keep-alive closes its connection when done;
 *   - idle kept-alive connections are closed at once;
 *   - `active` tells the onRequest hook to refuse anything that still arrives with the
 *     gateway's own 503 `shutting_down` (fastify's built-in 503 has another shape).
 */
import type { Server, ServerResponse } from 'node:http';

export class Drain {
  private draining = false;
  private readonly inFlight = new Set<ServerResponse>();
  private readonly server: Server;

  constructor(server: Server) {
    this.server = server;
    // Before fastify's own listener, so even a response fastify writes synchronously is covered.
    server.prependListener('request', (_req, res: ServerResponse) => this.track(res));
  }

  get active(): boolean {
    return this.draining;
  }

  start(): void {
    if (this.draining) return;
    this.draining = true;
    for (const res of this.inFlight) this.closeAfter(res);
    this.inFlight.clear();
    this.server.closeIdleConnections();
  }

  private track(res: ServerResponse): void {
    if (this.draining) {
      this.closeAfter(res);
      return;
    }
    this.inFlight.add(res);
    res.once('close', () => this.inFlight.delete(res));
  }

  private closeAfter(res: ServerResponse): void {
    if (!res.headersSent) {
      res.shouldKeepAlive = false;
      return;
    }
    // Too late to say so in the headers: close the connection as soon as it is idle again
    // (a request already pipelined behind this one keeps it busy and still gets its answer).
    res.once('finish', () => setImmediate(() => this.server.closeIdleConnections()));
  }
}
