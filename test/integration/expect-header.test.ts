/**
 * `Expect` with anything but `100-continue`: Node would answer a bare 417 by itself (no body, no
 * `cache-control`, no security headers). Both listeners answer the gateway's JSON error
 * instead — 417 `expectation_failed`, `no-store`, the security headers — and close the
 * connection; nothing reaches a route or the upstream. Raw sockets, so the bytes are exactly
 * what was sent and what came back. `Expect: 100-continue` keeps working on both.
 */
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERRORS } from '../../src/errors.ts';
import { Wire, type WireResponse } from '../support/wire.ts';
import { startWorld, type World } from '../support/world.ts';

let world: World;
let adminPort: number;

beforeAll(async () => {
  world = await startWorld({ config: { admin: { host: '127.0.0.1', port: 0 } } });
  const admin = world.gateway.gateway.admin!;
  await admin.listen({ host: '127.0.0.1', port: 0 });
  adminPort = (admin.server.address() as AddressInfo).port;
});
afterAll(() => world?.close());

function field(response: WireResponse, name: string): string | undefined {
  return response.fields.find(([key]) => key.toLowerCase() === name)?.[1];
}

function expectGatewayError(response: WireResponse): void {
  expect(response.status).toBe(417);
  expect(field(response, 'content-type')).toMatch(/^application\/json/);
  expect(field(response, 'cache-control')).toBe('no-store');
  expect(field(response, 'x-content-type-options')).toBe('nosniff');
  expect(field(response, 'content-security-policy')).toBe("frame-ancestors 'none'");
  expect(field(response, 'x-frame-options')).toBe('DENY');
  expect(field(response, 'connection')).toBe('close');
  expect(JSON.parse(response.body.toString('utf8'))).toEqual({ error: 'expectation_failed', message: ERRORS.expectation_failed.message });
}

const listeners = (): Array<[string, number, string]> => [
  ['public listener, an /auth path', world.gateway.port, '/auth/user'],
  ['public listener, a proxied path', world.gateway.port, '/site/x'],
  ['admin listener', adminPort, '/healthz'],
];

describe('Expect other than 100-continue', () => {
  it.each(['foo', '200-ok', 'continue'])('Expect: %s is the JSON 417 on every listener, and the connection closes', async (value) => {
    for (const [where, port, path] of listeners()) {
      const wire = await Wire.open(port);
      try {
        wire.write(`POST ${path} HTTP/1.1\r\nhost: localhost\r\nexpect: ${value}\r\ncontent-length: 2\r\n\r\n`);
        const response = await wire.next({ timeoutMs: 5_000 });
        expect({ where, status: response.status }).toEqual({ where, status: 417 });
        expectGatewayError(response);
        expect(await wire.waitClosed(5_000), where).toBe(true);
      } finally {
        wire.destroy();
      }
    }
  });

  it('the public listener answers it with a request id, like every other answer', async () => {
    const wire = await Wire.open(world.gateway.port);
    try {
      wire.write('GET /auth/user HTTP/1.1\r\nhost: localhost\r\nexpect: foo\r\n\r\n');
      const response = await wire.next({ timeoutMs: 5_000 });
      expectGatewayError(response);
      expect(field(response, 'x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    } finally {
      wire.destroy();
    }
  });
});

describe('Expect: 100-continue still works', () => {
  it.each<[string, () => number, string, number]>([
    ['public', () => world.gateway.port, '/auth/logout', 200],
    ['admin', () => adminPort, '/healthz', 404],
  ])('%s listener: 100 Continue, then the answer', async (_which, port, path, status) => {
    const wire = await Wire.open(port());
    try {
      wire.write(
        `POST ${path} HTTP/1.1\r\nhost: localhost\r\nx-csrf: 1\r\nexpect: 100-continue\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n`,
      );
      const interim = await wire.next({ timeoutMs: 5_000 });
      expect(interim.status).toBe(100);
      wire.write('{}');
      const response = await wire.next({ timeoutMs: 5_000 });
      expect(response.status).toBe(status);
    } finally {
      wire.destroy();
    }
  });
});
