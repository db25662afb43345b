/**
 * Upstreams may be https, with certificate verification (docs/configuration.md): a token must
 * never be handed to an upstream that cannot prove who it is. An upstream with a self-signed
 * certificate is refused with 502 bad_gateway, and the request — with its bearer token — never
 * reaches it; the same upstream over plain http works, so the route itself is fine.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { login } from '../support/login.ts';
import { apiHeaders, startWorld, type World } from '../support/world.ts';
import { selfSignedCertificate } from '../support/certificate.ts';

let world: World;
let tlsServer: Server;
let plainServer: Server;
const received: string[] = [];
const dir = mkdtempSync(join(tmpdir(), 'bff-tls-'));

function handler(req: IncomingMessage, res: ServerResponse): void {
  received.push(`${req.method} ${req.url} ${req.headers.authorization ? 'with-token' : 'no-token'}`);
  res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  selfSignedCertificate(dir, { cn: '127.0.0.1', altNames: 'IP:127.0.0.1' });
  tlsServer = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, handler);
  plainServer = createHttpServer(handler);
  const [tls, plain] = await Promise.all([listen(tlsServer), listen(plainServer)]);
  world = await startWorld({
    routes: () => [
      { path: '/secure', upstream: `https://${tls}`, token: 'user' },
      { path: '/plain', upstream: `http://${plain}`, token: 'user' },
    ],
  });
});

afterAll(async () => {
  await world?.close();
  await Promise.all([tlsServer, plainServer].map((server) => new Promise((resolve) => server?.close(resolve))));
  rmSync(dir, { recursive: true, force: true });
});

test('an https upstream whose certificate does not verify gets nothing: 502 bad_gateway', async () => {
  const session = await login(world.url);
  const before = received.length;
  const res = await fetch(`${world.url}/secure/data`, { headers: apiHeaders(session.cookieHeader) });
  expect(res.status).toBe(502);
  expect(await res.json()).toMatchObject({ error: 'bad_gateway' });
  expect(received.length).toBe(before);

  // Control: the same handler behind plain http receives the request and its token.
  const plain = await fetch(`${world.url}/plain/data`, { headers: apiHeaders(session.cookieHeader) });
  expect(plain.status).toBe(200);
  expect(received.at(-1)).toBe('GET /plain/data with-token');
});
