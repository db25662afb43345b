/**
 * Attacker framings for the smuggling suite, as raw bytes. Every case is written for a target:
 * a path under one of the gateway's routes, the attacker's own header lines (session cookie,
 * x-csrf), and `inner`, the request an attacker wants the upstream to parse on its own: a POST
 * whose Content-Length is exactly one victim request, so the next request on that upstream
 * connection (with its Authorization header) would become the body of the attacker's request.
 *
 * Node's parser refuses many of these at the gateway's door (400): that is a pass as long as
 * the invariants hold. The cases exist so that whatever the gateway accepts is shown to reach
 * the upstream framed exactly once.
 */
import type { Attack } from './smuggling-harness.ts';

export interface Target {
  /** e.g. /none/x */
  path: string;
  /** Header lines, each ending in CRLF. */
  lines: string;
  /** The smuggled request (head only; its body is whatever comes next on the connection). */
  inner: string;
}

export interface SmugglingCase {
  name: string;
  build(target: Target): Attack;
}

export function innerRequest(victimRequestLength: number): string {
  return `POST /comments HTTP/1.1\r\nhost: upstream\r\ncontent-type: text/plain\r\ncontent-length: ${victimRequestLength}\r\n\r\n`;
}

/** One chunk carrying `data`, in the size spelling given. */
export function chunk(data: string, size: (length: number) => string = (length) => length.toString(16), eol = '\r\n'): string {
  return `${size(data.length)}${eol}${data}${eol}`;
}

const LAST = '0\r\n\r\n';
const HEAD = new Set([0]);

const te = (method: string, teLines: string): SmugglingCase => ({
  name: `${method} with ${JSON.stringify(teLines.replace(/\r\n$/, ''))} and a chunked body carrying a request`,
  build: ({ path, lines, inner }) => ({
    bytes: `${method} ${path} HTTP/1.1\r\nhost: x\r\n${lines}${teLines}\r\n${chunk(inner)}${LAST}`,
    ...(method === 'HEAD' ? { head: HEAD } : {}),
  }),
});

const sized = (method: string, extra = ''): SmugglingCase => ({
  name: `${method} with a Content-Length body carrying a request${extra ? ` and ${JSON.stringify(extra.trim())}` : ''}`,
  build: ({ path, lines, inner }) => ({
    bytes: `${method} ${path} HTTP/1.1\r\nhost: x\r\n${lines}${extra}content-length: ${inner.length}\r\n\r\n${inner}`,
    ...(method === 'HEAD' ? { head: HEAD } : {}),
  }),
});

/** Raw request with its framing header lines given verbatim and the body written as is. */
const framed = (name: string, method: string, framing: (inner: string) => { headers: string; body: string }): SmugglingCase => ({
  name,
  build: ({ path, lines, inner }) => {
    const { headers, body } = framing(inner);
    return { bytes: `${method} ${path} HTTP/1.1\r\nhost: x\r\n${lines}${headers}\r\n${body}` };
  },
});

/** Bodies on methods without body semantics, and clients trying to remove framing via Connection. */
export const BODYLESS_AND_CONNECTION: SmugglingCase[] = [
  te('GET', 'transfer-encoding: chunked\r\n'),
  te('HEAD', 'transfer-encoding: chunked\r\n'),
  te('DELETE', 'transfer-encoding: chunked\r\n'),
  te('OPTIONS', 'transfer-encoding: chunked\r\n'),
  sized('GET'),
  sized('HEAD'),
  sized('DELETE'),
  sized('OPTIONS'),
  sized('POST', 'connection: content-length\r\n'),
  sized('GET', 'connection: content-length\r\n'),
  sized('DELETE', 'connection: keep-alive, Content-Length\r\n'),
  sized('POST', 'connection: host\r\n'),
  te('POST', 'connection: transfer-encoding\r\ntransfer-encoding: chunked\r\n'),
  te('PUT', 'connection: keep-alive, transfer-encoding, content-length\r\ntransfer-encoding: chunked\r\n'),
  sized('POST', 'expect: 100-continue\r\n'),
  sized('OPTIONS', 'expect: 100-continue\r\n'),
  te('GET', 'expect: 100-continue\r\ntransfer-encoding: chunked\r\n'),
];

/** Obfuscated Transfer-Encoding and Content-Length spellings. */
export const TE_AND_CL_SPELLINGS: SmugglingCase[] = [
  te('POST', 'transfer-encoding: chunked \r\n'),
  te('POST', 'transfer-encoding: chunked\t\r\n'),
  te('POST', 'transfer-encoding: Chunked\r\n'),
  te('GET', 'transfer-encoding: CHUNKED\r\n'),
  te('POST', 'transfer-encoding: xchunked\r\n'),
  te('POST', 'transfer-encoding: chunked, identity\r\n'),
  te('POST', 'transfer-encoding: identity, chunked\r\n'),
  te('DELETE', 'transfer-encoding: identity, chunked\r\n'),
  te('POST', 'transfer-encoding: chunked\r\ntransfer-encoding: identity\r\n'),
  te('POST', 'transfer-encoding: identity\r\ntransfer-encoding: chunked\r\n'),
  te('OPTIONS', 'transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n'),
  te('POST', 'te: chunked\r\n'),
  te('GET', 'te: chunked, identity\r\n'),
  sized('POST', 'te: chunked\r\n'),
  framed('GET with Content-Length: 0 and Transfer-Encoding: chunked', 'GET', (inner) => ({
    headers: 'content-length: 0\r\ntransfer-encoding: chunked\r\n',
    body: `${chunk(inner)}${LAST}`,
  })),
  framed('POST with two identical Content-Lengths', 'POST', (inner) => ({
    headers: `content-length: ${inner.length}\r\ncontent-length: ${inner.length}\r\n`,
    body: inner,
  })),
  framed('POST with Content-Length 0 then the real length', 'POST', (inner) => ({
    headers: `content-length: 0\r\ncontent-length: ${inner.length}\r\n`,
    body: inner,
  })),
  framed('GET with the real length then Content-Length 0', 'GET', (inner) => ({
    headers: `content-length: ${inner.length}\r\ncontent-length: 0\r\n`,
    body: inner,
  })),
  framed('POST with Content-Length "n, n"', 'POST', (inner) => ({
    headers: `content-length: ${inner.length}, ${inner.length}\r\n`,
    body: inner,
  })),
  framed('POST with Content-Length "+n"', 'POST', (inner) => ({ headers: `content-length: +${inner.length}\r\n`, body: inner })),
  framed('POST with Content-Length "000n"', 'POST', (inner) => ({ headers: `content-length: 000${inner.length}\r\n`, body: inner })),
  framed('DELETE with Content-Length "000n"', 'DELETE', (inner) => ({ headers: `content-length: 000${inner.length}\r\n`, body: inner })),
  framed('POST with Content-Length surrounded by spaces and tabs', 'POST', (inner) => ({
    headers: `content-length: \t ${inner.length} \t\r\n`,
    body: inner,
  })),
  framed('POST with a space before the Content-Length colon', 'POST', (inner) => ({
    headers: `content-length : ${inner.length}\r\n`,
    body: inner,
  })),
  framed('POST with Content-Length in hex (0x)', 'POST', (inner) => ({
    headers: `content-length: 0x${inner.length.toString(16)}\r\n`,
    body: inner,
  })),
  framed('GET with Content-Length -1', 'GET', (inner) => ({ headers: 'content-length: -1\r\n', body: inner })),
];

/** Chunk syntax, line endings, folded headers and pipelining. */
export const SYNTAX_AND_PIPELINING: SmugglingCase[] = [
  framed('POST chunked with a chunk extension "5;ext=x"', 'POST', (inner) => ({
    headers: 'transfer-encoding: chunked\r\n',
    body: `${chunk(inner, (n) => `${n.toString(16)};ext=x`)}${LAST}`,
  })),
  framed('POST chunked with a bare ";" extension', 'POST', (inner) => ({
    headers: 'transfer-encoding: chunked\r\n',
    body: `${chunk(inner, (n) => `${n.toString(16)};`)}${LAST}`,
  })),
  framed('POST chunked with a 6 KB chunk extension', 'POST', (inner) => ({
    headers: 'transfer-encoding: chunked\r\n',
    body: `${chunk(inner, (n) => `${n.toString(16)};x=${'a'.repeat(6000)}`)}${LAST}`,
  })),
  framed('POST chunked with an extension on the last chunk and a trailer', 'POST', (inner) => ({
    headers: 'transfer-encoding: chunked\r\n',
    body: `${chunk(inner)}0;last=1\r\nx-trailer: 1\r\n\r\n`,
  })),
  framed('POST chunked with leading zeros in the chunk size', 'POST', (inner) => ({
    headers: 'transfer-encoding: chunked\r\n',
    body: `${chunk(inner, (n) => `0000${n.toString(16)}`)}${LAST}`,
  })),
  framed('POST chunked with a 0x chunk size', 'POST', (inner) => ({
    headers: 'transfer-encoding: chunked\r\n',
    body: `${chunk(inner, (n) => `0x${n.toString(16)}`)}${LAST}`,
  })),
  framed('POST chunked with a space after the chunk size', 'POST', (inner) => ({
    headers: 'transfer-encoding: chunked\r\n',
    body: `${chunk(inner, (n) => `${n.toString(16)} `)}${LAST}`,
  })),
  framed('POST chunked with bare LF chunk lines', 'POST', (inner) => ({
    headers: 'transfer-encoding: chunked\r\n',
    body: `${chunk(inner, undefined, '\n')}0\n\n`,
  })),
  {
    name: 'GET with bare LF line endings and a chunked body',
    build: ({ path, lines, inner }) => ({
      bytes: `GET ${path} HTTP/1.1\nhost: x\n${lines.replace(/\r\n/g, '\n')}transfer-encoding: chunked\n\n${chunk(inner)}${LAST}`,
    }),
  },
  {
    name: 'POST with bare LF line endings and a Content-Length body',
    build: ({ path, lines, inner }) => ({
      bytes: `POST ${path} HTTP/1.1\nhost: x\n${lines.replace(/\r\n/g, '\n')}content-length: ${inner.length}\n\n${inner}`,
    }),
  },
  framed('GET with Transfer-Encoding folded (obs-fold) onto another header', 'GET', (inner) => ({
    headers: 'x-folded: a\r\n transfer-encoding: chunked\r\n',
    body: `${chunk(inner)}${LAST}`,
  })),
  framed('POST with Transfer-Encoding continued by obs-fold', 'POST', (inner) => ({
    headers: 'transfer-encoding: identity\r\n chunked\r\n',
    body: `${chunk(inner)}${LAST}`,
  })),
  framed('DELETE with Content-Length continued by obs-fold', 'DELETE', (inner) => ({
    headers: `content-length: 0\r\n ${inner.length}\r\n`,
    body: inner,
  })),
  {
    name: 'two pipelined GETs on one connection',
    build: ({ path, lines }) => ({
      bytes: `GET ${path} HTTP/1.1\r\nhost: x\r\n${lines}\r\nGET ${path}/second HTTP/1.1\r\nhost: x\r\n${lines}\r\n`,
      expected: 2,
    }),
  },
  {
    name: 'a POST whose body is longer than its Content-Length, the rest a pipelined request',
    build: ({ path, lines }) => ({
      bytes: `POST ${path} HTTP/1.1\r\nhost: x\r\n${lines}content-length: 5\r\n\r\nhelloGET ${path}/second HTTP/1.1\r\nhost: x\r\n${lines}\r\n`,
      expected: 2,
    }),
  },
  {
    name: 'a chunked GET pipelined with a HEAD',
    build: ({ path, lines, inner }) => ({
      bytes: `GET ${path} HTTP/1.1\r\nhost: x\r\n${lines}transfer-encoding: chunked\r\n\r\n${chunk(inner)}${LAST}HEAD ${path}/second HTTP/1.1\r\nhost: x\r\n${lines}\r\n`,
      expected: 2,
      head: new Set([1]),
    }),
  },
];
