/**
 * Claim values as header values an upstream can read back exactly and that can never split or
 * smuggle a header (docs/authorization.md#claim-headers):
 *   - strings as they are, numbers and booleans as JSON writes them, lists element by element
 *     joined with `,`, objects as JSON text;
 *   - then percent-encoded (UTF-8, `%XX`) except letters, digits and `-._~!$&'()*+;=:@/`, so CR,
 *     LF, NUL, spaces, quotes, `%`, `,` and every non-ASCII byte are encoded: any URI decoder
 *     (`decodeURIComponent`, `urllib.parse.unquote`) restores the value, and a `,` left in the
 *     header always separates list items;
 *   - a value longer than MAX_CLAIM_HEADER_LENGTH once encoded is not sent at all: a cut
 *     address or group list would name someone or something else.
 */
export const MAX_CLAIM_HEADER_LENGTH = 4096;

const KEEP = /[A-Za-z0-9\-._~!$&'()*+;=:@/]/;

function encodePart(text: string): string {
  let out = '';
  for (const char of text) {
    if (KEEP.test(char)) {
      out += char;
      continue;
    }
    // Lone surrogates have no UTF-8 form: U+FFFD, as TextEncoder writes them.
    for (const byte of Buffer.from(char, 'utf8')) out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function textOf(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return JSON.stringify(value);
  if (value !== null && typeof value === 'object') return JSON.stringify(value);
  return undefined;
}

/** The header value for a claim, or undefined when the claim is absent, null or too long. */
export function claimHeaderValue(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  const parts = Array.isArray(value) ? value.map(textOf).filter((part): part is string => part !== undefined) : [textOf(value)];
  if (parts.some((part) => part === undefined)) return undefined;
  const encoded = (parts as string[]).map(encodePart).join(',');
  return encoded.length <= MAX_CLAIM_HEADER_LENGTH ? encoded : undefined;
}
