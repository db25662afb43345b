/**
 * The shape of one proxied request, and the place where per-request steps plug in.
 *
 * A proxied request is served straight from Node's `http` server (server.ts dispatches every
 * path that is not a fastify route, such as `/auth/*`, to the proxy), in this order:
 *
 *   listener guards (drain 503, TRACE/TRACK 405, 414) -> route match -> method rule ->
 *   per-client limit -> [steps: onRoute] -> CSRF -> framing rule -> session + token ->
 *   [steps: onCredentials] -> forward (+ the headers steps added) -> response -> [steps: onDone]
 *   -> one access-log line and one `bff_requests_total` increment
 *
 * A step is an object with up to three callbacks, registered once in server.ts (the
 * `proxySteps` list). Steps run in registration order; a step that throws a GatewayError ends
 * the request with that error's JSON answer (`onRoute`/`onCredentials` only). Examples of what
 * belongs here: request ids and trace spans (`onRoute` + `onDone`), route authorization rules
 * and identity headers (`onCredentials`, which sees the session record). Steps must stay cheap:
 * they run on every API call of every user, and a step without a callback costs nothing.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RouteConfig } from '../config/load.ts';
import type { GatewayError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Credentials } from './credentials.ts';

export interface ProxyExchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** `performance.now()` when the request reached the gateway. */
  readonly started: number;
  /** The request id logged with every line about this request. */
  readonly id: string;
  /** Where this request's log lines go (lines carry `reqId` themselves: no child logger per request). */
  readonly log: Logger;
  /** `log` already binds `reqId` (a fastify request logger); otherwise lines add it themselves. */
  readonly bound: boolean;
  /** The matched route, once known. */
  route: RouteConfig | undefined;
  /** The normalised request path (what goes upstream, before `stripPrefix`), once known. */
  path: string | undefined;
  /** What the request carries upstream, once known (after `onRoute`). */
  credentials: Credentials | undefined;
  /** Headers steps add to the upstream request (identity headers, `traceparent`, a request id). */
  readonly upstreamHeaders: Record<string, string>;
  /** The error the request was answered with, if any (for `onDone`). */
  error: GatewayError | undefined;
}

export interface ProxyStep {
  /** For logs and profiles. */
  readonly name: string;
  /** After the route is matched, before the session is read. */
  onRoute?(exchange: ProxyExchange): void | Promise<void>;
  /** After the session and the token are known, before anything is sent upstream. */
  onCredentials?(exchange: ProxyExchange): void | Promise<void>;
  /** Once the response is finished or the connection has closed; must not throw. */
  onDone?(exchange: ProxyExchange): void;
}

export function newExchange(req: IncomingMessage, res: ServerResponse, id: string, log: Logger, bound = false): ProxyExchange {
  return {
    req,
    res,
    started: performance.now(),
    id,
    log,
    bound,
    route: undefined,
    path: undefined,
    credentials: undefined,
    upstreamHeaders: {},
    error: undefined,
  };
}
