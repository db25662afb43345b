/**
 * Request smuggling to the upstream with obfuscated framing headers (the real CLI, a recording
 * upstream, a logged-in victim on the same upstream connection; see
 * test/support/smuggling-harness.ts for the invariants):
 * - Transfer-Encoding spellings: trailing space or tab, `Chunked`/`CHUNKED`, `xchunked`,
 *   `chunked, identity`, `identity, chunked`, two Transfer-Encoding headers, and the `TE` header
 *   standing in for it;
 * - Content-Length and Transfer-Encoding together on a GET;
 * - Content-Length duplicated (identical and different), as a list, with `+`, leading zeros,
 *   surrounding whitespace, a space before the colon, in hex, negative;
 * each through the `none`, `optional`, `user` and `client` routes, with and without a session.
 * Whatever the gateway accepts reaches the upstream framed exactly once; the rest is refused.
 */
import { TE_AND_CL_SPELLINGS } from '../support/smuggling-cases.ts';
import { smugglingSuite } from '../support/smuggling-suite.ts';

smugglingSuite(TE_AND_CL_SPELLINGS);
