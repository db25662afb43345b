/**
 * The benchmark upstream, in its own process so it never shares an event loop with the
 * gateway under test. `/small`: a 200-byte JSON answer. `/big`: a 1 MiB JSON document (the
 * token-scrubbing cost case). Prints `LISTENING <port>`.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const small = Buffer.from(JSON.stringify({ ok: true, items: [1, 2, 3], message: 'hello from the upstream', padding: 'x'.repeat(120) }));
const row = JSON.stringify({ id: 123456, name: 'item name', description: 'a reasonably ordinary description of an item', tags: ['a', 'b', 'c'] });
const rows: string[] = [];
let size = 2;
while (size < 1024 * 1024) {
  rows.push(row);
  size += row.length + 1;
}
const big = Buffer.from(`[${rows.join(',')}]`);

const server = createServer((req, res) => {
  const body = req.url?.startsWith('/big') ? big : small;
  req.resume();
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(`LISTENING ${(server.address() as AddressInfo).port}`);
});
process.on('SIGTERM', () => process.exit(0));
