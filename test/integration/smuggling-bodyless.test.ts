/**
 * Request smuggling to the upstream, bodies where the method defines none and clients trying to
 * strip framing through `Connection` (the real CLI, a recording upstream, a logged-in victim on
 * the same upstream connection; see test/support/smuggling-harness.ts for the invariants):
 * - `Transfer-Encoding: chunked` on GET, HEAD, DELETE and OPTIONS with a whole request in the
 *   chunked body: refused or framed, never written to the upstream unframed;
 * - GET, HEAD, DELETE and OPTIONS with a Content-Length body: forwarded with that length or
 *   refused, never cut to `content-length: 0` with the body following;
 * - `Connection` nominating `content-length`, `transfer-encoding` or `host`: framing unchanged;
 * - `Expect: 100-continue`: the body still goes up framed, once;
 * each through the `none`, `optional`, `user` and `client` routes, with and without a session.
 */
import { BODYLESS_AND_CONNECTION } from '../support/smuggling-cases.ts';
import { smugglingSuite } from '../support/smuggling-suite.ts';

smugglingSuite(BODYLESS_AND_CONNECTION);
