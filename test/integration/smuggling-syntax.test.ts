/**
 * Request smuggling to the upstream through message syntax and pipelining (the real CLI, a
 * recording upstream, a logged-in victim on the same upstream connection; see
 * test/support/smuggling-harness.ts for the invariants):
 * - chunk extensions (`5;ext=x`, a bare `;`, a 6 KB extension, on the last chunk with a
 *   trailer), chunk sizes with leading zeros, `0x` or a trailing space;
 * - bare LF line endings in the head and in the chunked framing;
 * - obs-fold continuation lines hiding or continuing Transfer-Encoding and Content-Length;
 * - pipelined requests on one client connection, including a body longer than its
 *   Content-Length whose rest is the next request;
 * each through the `none`, `optional`, `user` and `client` routes, with and without a session.
 */
import { SYNTAX_AND_PIPELINING } from '../support/smuggling-cases.ts';
import { smugglingSuite } from '../support/smuggling-suite.ts';

smugglingSuite(SYNTAX_AND_PIPELINING);
