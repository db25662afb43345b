import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { renderSchema, SCHEMA_FILE } from '../../scripts/write-schema.ts';

test('config/schema.json is what the zod schema generates (run `npm run schema` after changing it)', () => {
  expect(readFileSync(SCHEMA_FILE, 'utf8')).toBe(renderSchema());
});

test('the JSON Schema rejects unknown keys and describes every section of the contract', () => {
  const schema = JSON.parse(renderSchema()) as { $id: string; title: string; additionalProperties: boolean; required: string[]; properties: Record<string, { properties?: Record<string, unknown>; additionalProperties?: boolean }> };
  expect(schema.$id).toBeTruthy();
  expect(schema.title).toBe('bff-gateway configuration');
  expect(schema.additionalProperties).toBe(false);
  expect(schema.required.sort()).toEqual(['oidc', 'publicUrl', 'session']);
  expect(Object.keys(schema.properties)).toEqual(expect.arrayContaining(['listen', 'publicUrl', 'trustProxy', 'shutdownGrace', 'admin', 'oidc', 'session', 'tokens', 'csrf', 'scrub', 'routes']));
  expect(Object.keys(schema.properties.session?.properties ?? {})).toEqual(
    expect.arrayContaining(['store', 'redis', 'cookieName', 'sameSite', 'secret', 'encryptionKey', 'idleTimeout', 'absoluteTimeout']),
  );
  expect(schema.properties.session?.additionalProperties).toBe(false);
});
