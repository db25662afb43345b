/**
 * The benchmark upstream, in its own process so it never shares an event loop with the
 * gateway under test. `/small`: a 200-byte JSON answer. `/big`: a 1 MiB JSON document (the
 * token-scrubbing cost case). Any path ending in `/300`: a 300-byte JSON answer (the
 * side-by-side bench). `GET /__bench/stats` (not counted itself): how many requests arrived
 * and how many of them carried `Authorization: Bearer …`, so a bench can check that every
 * request it sent through a proxy reached the upstream with a token. Prints `LISTENING <port>`.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const small = Buffer.from(JSON.stringify({ ok: true, items: [1, 2, 3], message: 'hello from the upstream', padding: 'x'.repeat(120) }));
const row = JSON.stringify({
  id: 123456,
  name: 'item name',
  description: 'a reasonably ordinary description of an item',
  tags: ['a', 'b', 'c'],
});
const rows: string[] = [];
let size = 2;
while (size < 1024 * 1024) {
  rows.push(row);
  size += row.length + 1;
}
const big = Buffer.from(`[${rows.join(',')}]`);
const base300 = JSON.stringify({ ok: true, items: [1, 2, 3], message: 'hello from the upstream', padding: '' });
const json300 = Buffer.from(
  JSON.stringify({ ok: true, items: [1, 2, 3], message: 'hello from the upstream', padding: 'x'.repeat(300 - base300.length) }),
);

let requests = 0;
let bearer = 0;

const server = createServer((req, res) => {
  req.resume();
  const url = req.url ?? '/';
  if (url === '/__bench/stats') {
    const stats = Buffer.from(JSON.stringify({ requests, bearer }));
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': stats.length, 'cache-control': 'no-store' });
    res.end(stats);
    return;
  }
  requests += 1;
  if (req.headers.authorization?.startsWith('Bearer ')) bearer += 1;
  const body = url.startsWith('/big') ? big : url.endsWith('/300') ? json300 : small;
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(`LISTENING ${(server.address() as AddressInfo).port}`);
});
process.on('SIGTERM', () => process.exit(0));
