/**
 * The `bff.session.load` span: the read of the session behind a request's cookie (in-process
 * cache or store, and the ended-session marker when the record is gone), as a child of the
 * request's span. Given to RequestSessions as its `wrapLoad` hook by the composition root
 * (src/services.ts) only while tracing is on, so the session layer imports nothing from here
 * and a gateway without tracing does not even call this.
 *
 * Attributes: `bff.session.outcome` (`active`, `expired`: found past its idle or absolute
 * timeout and ended now, `none`: no record — unknown, logged out or dropped by the store's TTL)
 * and `bff.session.cached` (served by the session cache without a store read). Never the
 * session's id, handle, cookie or tokens. A failed read (store unreachable) ends the span with
 * the error's code.
 */
import { trace } from '@opentelemetry/api';
import type { LoadResult } from '../session/sessions.ts';
import { inSpan } from './tracing.ts';

const OUTCOME = { active: 'active', ended: 'expired', none: 'none' } as const;
const NO_ATTRIBUTES = {};

function outcome(result: LoadResult): Record<string, string | boolean> {
  return {
    'bff.session.outcome': OUTCOME[result.state],
    'bff.session.cached': result.state === 'active' && result.cached === true,
  };
}

/**
 * Runs `load` inside a `bff.session.load` span under the request's span. A read with no request
 * span around it (a WebSocket upgrade's session check, which is not traced) makes no span: a
 * lone session span would be a trace of its own.
 */
export function traceSessionLoad(load: () => Promise<LoadResult>): Promise<LoadResult> {
  if (trace.getActiveSpan() === undefined) return load();
  return inSpan('bff.session.load', NO_ATTRIBUTES, load, outcome);
}
