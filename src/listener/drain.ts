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
    // Too late to say so in the headers: end the connection once this answer is out, unless a
    // request pipelined behind it already has its (Connection: close) answer queued there.
    const socket = res.socket;
    res.once('finish', () =>
      setImmediate(() => {
        const queued = (socket as { _httpMessage?: unknown } | null)?._httpMessage;
        // destroySoon, not destroy: whatever is still buffered for the client goes out first.
        if (socket && !socket.destroyed && !queued) socket.destroySoon();
      }),
    );
  }
}
