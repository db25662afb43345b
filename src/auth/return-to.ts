/**
 * `returnTo` (and any other redirect target taken from a request) must be a same-origin
 * relative path. The variants that broke peers — `//evil`, `/\evil`, `/%09/evil`,
 * `/%2F%2Fevil`, `\/evil`, `https:evil`, `/@evil`, control characters, unicode tricks — all
 * fail one of these rules, applied to the raw value *and* to every percent-decoding of it:
 *   1. starts with exactly one `/`, followed by something other than `/` or `\`;
 *   2. contains no backslash, no control or whitespace character;
 *   3. resolved against a dummy origin, it stays on that origin.
 * The value returned is the parser's normalised form, so what we check is what we emit.
 */
const MAX_LENGTH = 2048;
const PROBE_ORIGIN = 'https://returnto.invalid';

/**
 * \p{Cc}/\p{Cf}: control and format characters (tab, CR/LF, NUL, RTL marks), which browsers
 * strip or act on. A raw value may not contain any space either; a decoded one may (`%20`).
 */
function safeShape(value: string, raw: boolean): boolean {
  if (!/^\/(?![/\\])/.test(value)) return false;
  if (/[\\\p{Cc}\p{Cf}]/u.test(value)) return false;
  return !(raw && /\p{Z}/u.test(value));
}

export function safeReturnTo(value: string | undefined, fallback = '/'): string | undefined {
  if (value === undefined || value === '') return fallback;
  if (value.length > MAX_LENGTH) return undefined;
  let current = value;
  for (let round = 0; round < 4; round += 1) {
    if (!safeShape(current, round === 0)) return undefined;
    let decoded: string;
    try {
      decoded = decodeURIComponent(current);
    } catch {
      return undefined;
    }
    if (decoded === current) break;
    current = decoded;
  }
  let url: URL;
  try {
    url = new URL(value, PROBE_ORIGIN);
  } catch {
    return undefined;
  }
  if (url.origin !== PROBE_ORIGIN) return undefined;
  const path = `${url.pathname}${url.search}${url.hash}`;
  return safeShape(path, true) ? path : undefined;
}
