/**
 * How many proxied requests one client may have in flight at once (`limits.perClientRequests`).
 * Upstream connections per origin are bounded (`limits.upstreamConnections`); without a bound
 * per client, one client holding slow requests open could take all of them and starve everyone
 * else. Past the limit the client gets 429 `too_many_requests`.
 *
 * The client is the peer address, or with `trustProxy` the address the trusted front saw: the
 * last `X-Forwarded-For` entry, which the front appended itself (entries before it are whatever
 * the client claimed, so they cannot be the key).
 */
import type { IncomingMessage } from 'node:http';

export function clientAddress(req: IncomingMessage, trustProxy: boolean): string {
  if (trustProxy) {
    const forwarded = [req.headers['x-forwarded-for']].flat().join(',');
    const last = forwarded.slice(forwarded.lastIndexOf(',') + 1).trim();
    if (last) return last;
  }
  return req.socket.remoteAddress ?? 'unknown';
}

export class ClientLimit {
  private readonly inFlight = new Map<string, number>();

  constructor(private readonly limit: number) {}

  /** Counts a request for `client`; false (and nothing counted) when it is over the limit. */
  acquire(client: string): boolean {
    const count = this.inFlight.get(client) ?? 0;
    if (count >= this.limit) return false;
    this.inFlight.set(client, count + 1);
    return true;
  }

  release(client: string): void {
    const count = (this.inFlight.get(client) ?? 1) - 1;
    if (count <= 0) this.inFlight.delete(client);
    else this.inFlight.set(client, count);
  }
}
