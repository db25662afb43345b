/** The `limits` block: listener deadlines, buffering and concurrency caps. */
import { describe, expect, test } from 'vitest';
import { buildConfig, parseConfigText } from '../../src/config/load.ts';
import { KEY, minimal, problems, SECRET } from '../fixtures/config-inputs.ts';

describe('limits', () => {
  test('defaults when the block is absent', () => {
    expect(buildConfig(minimal()).limits).toEqual({
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 300_000,
      bodyIdleTimeoutMs: 15_000,
      keepAliveTimeoutMs: 5_000,
      sendIdleTimeoutMs: 30_000,
      maxBufferedBytes: 33_554_432,
      perClientRequests: 64,
      upstreamConnections: 256,
      perClientWebSockets: 32,
      webSocketIdleTimeoutMs: 600_000,
    });
  });

  test('every key is read from YAML, durations in any documented form', () => {
    const yaml = `
publicUrl: https://app.example.com
oidc: { issuer: https://idp.example.com, clientId: spa, clientSecret: shh }
session: { store: memory, secret: ${SECRET}, encryptionKey: ${KEY} }
limits:
  headersTimeout: 2s
  requestTimeout: 90
  bodyIdleTimeout: 750ms
  keepAliveTimeout: 1m
  sendIdleTimeout: 45s
  maxBufferedBytes: \${MAX_BUF:-1048576}
  perClientRequests: 8
  upstreamConnections: 32
  perClientWebSockets: 4
  webSocketIdleTimeout: 90s
`;
    expect(parseConfigText(yaml, {}).limits).toEqual({
      headersTimeoutMs: 2_000,
      requestTimeoutMs: 90_000,
      bodyIdleTimeoutMs: 750,
      keepAliveTimeoutMs: 60_000,
      sendIdleTimeoutMs: 45_000,
      maxBufferedBytes: 1_048_576,
      perClientRequests: 8,
      upstreamConnections: 32,
      perClientWebSockets: 4,
      webSocketIdleTimeoutMs: 90_000,
    });
  });

  test('a partial block keeps the other defaults', () => {
    const limits = buildConfig(minimal((raw) => Object.assign(raw, { limits: { perClientRequests: 4 } }))).limits;
    expect(limits.perClientRequests).toBe(4);
    expect(limits.headersTimeoutMs).toBe(10_000);
    expect(limits.upstreamConnections).toBe(256);
  });

  test('bad values are reported with their path, all at once', () => {
    const limits = {
      headersTimeout: 'soon',
      bodyIdleTimeout: 0,
      keepAliveTimeout: '30d',
      maxBufferedBytes: -1,
      perClientRequests: 1.5,
      upstreamConnections: 'many',
      burst: 3,
    };
    expect(problems(minimal((raw) => Object.assign(raw, { limits })))).toEqual(
      expect.arrayContaining([
        'limits.headersTimeout: must be a duration such as 500ms, 30s, 15m, 2h, 7d or a number of seconds',
        'limits.maxBufferedBytes: must be a positive whole number',
        'limits.perClientRequests: must be a positive whole number',
        'limits.upstreamConnections: must be a positive whole number',
        'limits.burst: unknown key',
      ]),
    );
  });

  test('the WebSocket idle timeout must bound something and fit a Node timer; the WebSocket cap is a positive whole number', () => {
    expect(problems(minimal((raw) => Object.assign(raw, { limits: { webSocketIdleTimeout: 0, perClientWebSockets: 0 } })))).toEqual([
      'limits.perClientWebSockets: must be a positive whole number',
      'limits.webSocketIdleTimeout: must be longer than 0',
    ]);
    expect(problems(minimal((raw) => Object.assign(raw, { limits: { webSocketIdleTimeout: '30d' } })))).toEqual([
      'limits.webSocketIdleTimeout: must be at most 24d',
    ]);
  });

  test('deadlines must bound something and fit a Node timer', () => {
    expect(problems(minimal((raw) => Object.assign(raw, { limits: { bodyIdleTimeout: 0, keepAliveTimeout: '30d' } })))).toEqual([
      'limits.bodyIdleTimeout: must be longer than 0',
      'limits.keepAliveTimeout: must be at most 24d',
    ]);
  });

  test('headersTimeout may not exceed requestTimeout (Node refuses that pair)', () => {
    expect(problems(minimal((raw) => Object.assign(raw, { limits: { headersTimeout: '2m', requestTimeout: '1m' } })))).toEqual([
      'limits.headersTimeout: must not be longer than requestTimeout',
    ]);
    expect(
      buildConfig(minimal((raw) => Object.assign(raw, { limits: { headersTimeout: '1m', requestTimeout: '1m' } }))).limits.headersTimeoutMs,
    ).toBe(60_000);
  });

  test('a boolean is not a count', () => {
    expect(problems(minimal((raw) => Object.assign(raw, { limits: { perClientRequests: true } })))).toEqual([
      'limits.perClientRequests: must be a positive whole number',
    ]);
  });
});
