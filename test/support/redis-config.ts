/**
 * The runtime Redis settings for a store under test, derived from YAML-shaped input the way an
 * operator's file is (defaults, renames and checks included).
 */
import { randomBytes } from 'node:crypto';
import { buildConfig, type RedisConfig } from '../../src/config/load.ts';

export function redisConfig(redis: Record<string, unknown>): RedisConfig {
  return buildConfig({
    publicUrl: 'https://app.example.com',
    oidc: { issuer: 'https://idp.example.com', clientId: 'spa', clientSecret: 'x' },
    session: {
      store: 'redis',
      redis: { commandTimeout: '500ms', ...redis },
      secret: 'redis-store-test-secret-0123456789abcdef',
      encryptionKey: randomBytes(32).toString('base64'),
    },
  }).session.redis;
}
