/**
 * Token redaction for WebSocket messages. The relay receives whole messages (the `ws` library
 * reassembles fragments and inflates compressed ones, within the size cap), so a plain search
 * over each message's bytes finds every token — no carry-over between chunks as for bodies.
 * Text and binary alike: tokens are ASCII, so replacing them keeps valid UTF-8 valid.
 */
const REPLACEMENT = Buffer.from('[redacted]');

export type MessageRedactor = (data: Buffer) => Buffer;

export function messageRedactor(tokens: readonly string[]): MessageRedactor {
  // Longest first: when one token is a prefix of another, the longer one is replaced whole.
  const needles = [...new Set(tokens.filter((token) => token.length > 0))]
    .map((token) => Buffer.from(token))
    .sort((a, b) => b.length - a.length);
  if (needles.length === 0) return (data) => data;
  return (data) => {
    const parts: Buffer[] = [];
    let position = 0;
    for (;;) {
      let at = -1;
      let length = 0;
      for (const needle of needles) {
        const index = data.indexOf(needle, position);
        if (index !== -1 && (at === -1 || index < at)) {
          at = index;
          length = needle.length;
        }
      }
      if (at === -1) break;
      parts.push(data.subarray(position, at), REPLACEMENT);
      position = at + length;
    }
    // The common case, a message without a token, is passed on without a copy.
    if (position === 0) return data;
    parts.push(data.subarray(position));
    return Buffer.concat(parts);
  };
}
