import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { renderSchema, SCHEMA_FILE } from '../../scripts/write-schema.ts';

test('config/schema.json is what the zod schema generates (run `npm run schema` after changing it)', () => {
  expect(readFileSync(SCHEMA_FILE, 'utf8')).toBe(renderSchema());
});

test('the JSON Schema rejects unknown keys and describes every section of the configuration', () => {
  const schema = JSON.parse(renderSchema()) as {
    $id: string;
    title: string;
    additionalProperties: boolean;
    required: string[];
    properties: Record<string, { properties?: Record<string, unknown>; additionalProperties?: boolean }>;
  };
  expect(schema.$id).toBeTruthy();
  expect(schema.title).toBe('bff-gateway configuration');
  expect(schema.additionalProperties).toBe(false);
  expect(schema.required.sort()).toEqual(['oidc', 'publicUrl', 'session']);
  expect(Object.keys(schema.properties)).toEqual(
    expect.arrayContaining([
      'listen',
      'publicUrl',
      'trustProxy',
      'shutdownGrace',
      'admin',
      'oidc',
      'session',
      'tokens',
      'csrf',
      'scrub',
      'routes',
    ]),
  );
  expect(Object.keys(schema.properties.session?.properties ?? {})).toEqual(
    expect.arrayContaining(['store', 'redis', 'cookieName', 'sameSite', 'secret', 'encryptionKey', 'idleTimeout', 'absoluteTimeout']),
  );
  expect(schema.properties.session?.additionalProperties).toBe(false);
});

test('the JSON Schema describes what a person writes, not the runtime shape', () => {
  type Node = {
    properties?: Record<string, Node>;
    enum?: string[];
    type?: string | string[];
    anyOf?: Node[];
    default?: unknown;
    description?: string;
  };
  const schema = JSON.parse(renderSchema()) as Node;
  const oidc = schema.properties?.oidc?.properties ?? {};
  const session = schema.properties?.session?.properties ?? {};
  // `auto` is the runtime reading of an unset clientAuth, not something to write.
  expect(oidc.clientAuth?.enum).toEqual(['client_secret_basic', 'client_secret_post', 'private_key_jwt']);
  expect(Object.keys(oidc)).toEqual(expect.arrayContaining(['timeout', 'dpop']));
  expect(Object.keys(oidc)).not.toEqual(expect.arrayContaining(['timeoutMs']));
  expect(oidc.timeout?.type).toEqual(['string', 'number']);
  expect(Object.keys(session)).not.toContain('encryptionKeys');
  // The idle timeout's default depends on absoluteTimeout: said in words, not as a fixed default.
  expect(session.idleTimeout?.default).toBeUndefined();
  expect(session.idleTimeout?.description).toMatch(/absoluteTimeout/);
  expect(session.absoluteTimeout?.default).toBe('12h');
});
