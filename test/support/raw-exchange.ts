/**
 * One raw TCP conversation with a server: bytes written exactly as given, answers parsed from
 * exactly the bytes that came back. For smuggling tests, where the client's framing is the
 * attack and several answers (or none) may arrive on one connection.
 *
 * The reader stops when the server closes, when the expected number of answers has arrived and
 * nothing more came for a short while (a server may legitimately keep the connection open), or
 * at a hard cap, so every wait is bounded.
 */
import { connect } from 'node:net';

export interface RawAnswer {
  status: number;
  /** Status line and header lines as received (latin1), without the blank line. */
  head: string;
  body: Buffer;
  /** First value of a header (case-insensitive). */
  get(name: string): string | undefined;
}

export interface RawConversation {
  answers: RawAnswer[];
  /** Bytes after the last complete answer (a truncated answer, or garbage). */
  leftover: string;
  /** The server closed the connection. */
  closed: boolean;
}

export interface ConversationOptions {
  /** Answers the request bytes call for when the server frames them as intended. */
  expected?: number;
  /** Answers (by position) to a HEAD request: headers only, whatever Content-Length says. */
  head?: ReadonlySet<number>;
  quietMs?: number;
  capMs?: number;
}

function answer(status: number, head: string, body: Buffer): RawAnswer {
  const fields = head
    .split('\r\n')
    .slice(1)
    .map((line) => [line.slice(0, line.indexOf(':')).trim().toLowerCase(), line.slice(line.indexOf(':') + 1).trim()] as const);
  return { status, head, body, get: (name) => fields.find(([key]) => key === name.toLowerCase())?.[1] };
}

/** De-chunks a chunked body starting at `from`; undefined while incomplete. */
function dechunk(bytes: Buffer, from: number): { body: Buffer; end: number } | undefined {
  const parts: Buffer[] = [];
  let pos = from;
  for (;;) {
    const lineEnd = bytes.indexOf('\r\n', pos, 'latin1');
    if (lineEnd === -1) return undefined;
    const size = Number.parseInt(bytes.toString('latin1', pos, lineEnd).split(';')[0] ?? '', 16);
    if (!Number.isFinite(size)) return undefined;
    if (size === 0) {
      const trailersEnd = bytes.indexOf('\r\n', lineEnd + 2, 'latin1');
      // Trailer fields are not expected from the servers under test: an empty trailer section only.
      if (trailersEnd !== lineEnd + 2) return undefined;
      return { body: Buffer.concat(parts), end: trailersEnd + 2 };
    }
    if (bytes.length < lineEnd + 2 + size + 2) return undefined;
    parts.push(bytes.subarray(lineEnd + 2, lineEnd + 2 + size));
    pos = lineEnd + 2 + size + 2;
  }
}

/** Parses consecutive HTTP/1.x answers; interim (1xx) answers are skipped. */
export function parseAnswers(
  bytes: Buffer,
  closed: boolean,
  head: ReadonlySet<number> = new Set(),
): { answers: RawAnswer[]; leftover: Buffer } {
  const answers: RawAnswer[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const headEnd = bytes.indexOf('\r\n\r\n', pos, 'latin1');
    if (headEnd === -1) break;
    const headText = bytes.toString('latin1', pos, headEnd);
    const match = /^HTTP\/1\.[01] (\d{3})/.exec(headText);
    if (!match) break;
    const status = Number(match[1]);
    const bodyStart = headEnd + 4;
    if (status < 200) {
      pos = bodyStart;
      continue;
    }
    const parsed = answer(status, headText, Buffer.alloc(0));
    // A HEAD answer carries the GET answer's Content-Length but no body. Some servers write a
    // body anyway when refusing a request they could not parse: take it when bytes follow that
    // are not the next status line.
    const headOnly =
      status === 204 ||
      status === 304 ||
      (head.has(answers.length) && (bodyStart === bytes.length || bytes.toString('latin1', bodyStart, bodyStart + 7) === 'HTTP/1.'));
    const length = parsed.get('content-length');
    let end: number;
    if (headOnly) {
      end = bodyStart;
    } else if (/chunked/i.test(parsed.get('transfer-encoding') ?? '')) {
      const chunked = dechunk(bytes, bodyStart);
      if (!chunked) break;
      parsed.body = chunked.body;
      end = chunked.end;
    } else if (length !== undefined) {
      end = bodyStart + Number(length);
      if (end > bytes.length) break;
      parsed.body = bytes.subarray(bodyStart, end);
    } else {
      // Delimited by the close of the connection.
      if (!closed) break;
      end = bytes.length;
      parsed.body = bytes.subarray(bodyStart);
    }
    answers.push(parsed);
    pos = end;
  }
  return { answers, leftover: bytes.subarray(pos) };
}

/** Writes `bytes` (latin1) to 127.0.0.1:`port` and collects the answers. */
export function converse(port: number, bytes: string, options: ConversationOptions = {}): Promise<RawConversation> {
  const expected = options.expected ?? 1;
  const quietMs = options.quietMs ?? 100;
  const capMs = options.capMs ?? 5_000;
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const started = Date.now();
    let lastData = started;
    let closed = false;
    const finish = () => {
      clearInterval(poll);
      socket.destroy();
      const { answers, leftover } = parseAnswers(Buffer.concat(chunks), closed, options.head);
      resolve({ answers, leftover: leftover.toString('latin1'), closed });
    };
    const poll = setInterval(() => {
      const now = Date.now();
      if (closed || now - started >= capMs) return finish();
      if (now - lastData >= quietMs && parseAnswers(Buffer.concat(chunks), false, options.head).answers.length >= expected) finish();
    }, 25);
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      lastData = Date.now();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      closed = true;
    });
    socket.write(Buffer.from(bytes, 'latin1'));
  });
}
