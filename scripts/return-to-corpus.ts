/**
 * Writes `test/fixtures/return-to-corpus.json`: open-redirect payloads for `returnTo`. A JSON
 * array (not a text file) so NUL, CR/LF and tabs survive exactly. Systematic part: every way of
 * opening a second slash or a scheme, times every spelling (raw, percent-encoded, double-encoded,
 * upper/lower hex), times target hosts; then hand-written payloads from published bypass lists.
 * Deterministic; run `node --import tsx scripts/return-to-corpus.ts` to regenerate.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const HOSTS = [
  'evil.com',
  'evil.com@app.example.com',
  'app.example.com.evil.com',
  '127.0.0.1',
  '0x7f.1',
  '[::1]',
  'evil。com',
  'evil%E3%80%82com',
];

/** Ways to make a browser read what follows as an authority or a scheme. */
const OPENERS = [
  '//',
  '///',
  '////',
  '/\\',
  '\\/',
  '\\\\',
  '/\\/',
  '/./',
  '/.//',
  '/%2e//',
  '/\t/',
  '/\n/',
  '/\r\n/',
  '/\0/',
  '/ /',
  '\t//',
  ' //',
  '/\u2215',
  '/\uFF0F',
  '\uFF0F\uFF0F',
  '/\u2044',
  '/\u29F8',
  '/\uFE68',
  '/\u200B/',
  '/\u00A0/',
  'https://',
  'http://',
  'https:',
  'http:/',
  'https:/\\',
  'HTTPS://',
  '//\\',
  '/%0d%0a/',
];

function encodeAll(text: string, upper: boolean): string {
  return [...Buffer.from(text, 'utf8')]
    .map((byte) => `%${byte.toString(16).padStart(2, '0')}`)
    .map((hex) => (upper ? hex.toUpperCase() : hex))
    .join('');
}

/** Percent-encodes everything after the first character: the shape most filters miss. */
function encodeTail(text: string, upper: boolean): string {
  return text.slice(0, 1) + encodeAll(text.slice(1), upper);
}

function doubleEncode(text: string): string {
  return encodeAll(text, false).replace(/%/g, '%25');
}

function systematic(): string[] {
  const out: string[] = [];
  for (const opener of OPENERS) {
    for (const host of HOSTS.slice(0, 4)) {
      const payload = `${opener}${host}/path`;
      out.push(payload, encodeTail(payload, true), doubleEncode(payload));
    }
    for (const host of HOSTS.slice(4)) out.push(`${opener}${host}`);
    out.push(encodeAll(`${opener}evil.com`, false));
  }
  for (const scheme of ['javascript', 'JaVaScRiPt', 'data', 'vbscript', 'file', 'blob', 'https', 'ftp']) {
    out.push(
      `${scheme}:alert(1)`,
      `${scheme}://evil.com`,
      ` ${scheme}:x`,
      `\t${scheme}:x`,
      `${scheme}%3a//evil.com`,
      `/${scheme}:x`,
      `%2F${scheme}:x`,
    );
  }
  return out;
}

const HAND_WRITTEN = [
  '//google.com/%2f..',
  '//www.whitelisted.com@evil.com/%2f..',
  '///google.com/%2f..',
  '/%2f%2fevil.com',
  '/%2F%2Fevil.com',
  '/%252f%252fevil.com',
  '/%25252f%25252fevil.com',
  '/%5cevil.com',
  '/%5Cevil.com',
  '/%255cevil.com',
  '/%09/evil.com',
  '/%0a/evil.com',
  '/%0d/evil.com',
  '/%00/evil.com',
  '/%20/evil.com',
  '/%e2%80%8b/evil.com',
  '/%c0%af/evil.com',
  '/%c0%ae%c0%ae/evil.com',
  '/%e2%88%95evil.com',
  '/%ef%bc%8fevil.com',
  '/..//evil.com',
  '/../evil.com',
  '/..%2fevil.com',
  '/..%5cevil.com',
  '/.%2e/evil.com',
  '/%2e%2e//evil.com',
  '/;//evil.com',
  '/;@evil.com',
  '/@evil.com',
  '/\\@evil.com',
  '@evil.com',
  '://evil.com',
  ':/evil.com',
  '.evil.com',
  'evil.com',
  'evil.com/path',
  '\\evil.com',
  '/\\evil.com',
  '/\\/\\/evil.com',
  '\\\\evil.com\\path',
  '/ \\evil.com',
  '/\t\\evil.com',
  '\u0000//evil.com',
  '//evil.com\u0000',
  '/x\u0000',
  '/x\r\nSet-Cookie: a=b',
  '/x%0d%0aSet-Cookie:%20a=b',
  '/x%250d%250aLocation:%20//evil.com',
  '/x\u2028y',
  '/\u202Emoc.live//',
  '/\u180E/evil.com',
  '/\uFEFF/evil.com',
  '/%E3%80%82/evil.com',
  '\u3002\u3002/evil.com',
  '/\u3002/evil.com',
  '/\uFF0E\uFF0E/evil.com',
  '/\u2024\u2024/evil.com',
  '%2F',
  '%2F%2Fevil.com',
  '%252F%252Fevil.com',
  'https:evil.com',
  'https:/evil.com',
  'https:\\\\evil.com',
  'http:\\/\\/evil.com',
  'javascript:alert(document.domain)',
  'javascript://%0aalert(1)',
  'javascript:/x/%0aalert(1)',
  'java%0ascript:alert(1)',
  'java\tscript:alert(1)',
  'data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==',
  '/\u0009/evil.com',
  '/\u000B/evil.com',
  '/\u000C/evil.com',
  '/\u001F/evil.com',
  '/\u007F/evil.com',
  '?next=//evil.com',
  '#//evil.com',
  '/#//evil.com',
  '/?//evil.com',
  '/x#\\evil.com',
  '/%',
  '/%zz',
  '/%E0%A4%A',
  '/\uD800',
  `/${'a'.repeat(3000)}`,
  `/${'%2e%2e/'.repeat(600)}evil`,
  `//${'a'.repeat(5000)}.evil.com`,
  `/${'/'.repeat(100)}evil.com`,
];

export function buildCorpus(): string[] {
  return [...new Set([...systematic(), ...HAND_WRITTEN])];
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = fileURLToPath(new URL('../test/fixtures/return-to-corpus.json', import.meta.url));
  const corpus = buildCorpus();
  writeFileSync(file, `${JSON.stringify(corpus, null, 1)}\n`);
  process.stdout.write(`wrote ${corpus.length} payloads to ${file}\n`);
}
