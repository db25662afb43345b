/**
 * config/gateway.example.yaml is the reference operators copy from: it must stay valid, keep
 * its secrets in the environment, and mention every key the schema accepts.
 */
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { expect, test } from 'vitest';
import { ConfigError, parseConfigText } from '../../src/config/load.ts';

const example = readFileSync(new URL('../../config/gateway.example.yaml', import.meta.url), 'utf8');
const schema = JSON.parse(readFileSync(new URL('../../config/schema.json', import.meta.url), 'utf8')) as JsonSchema;

interface JsonSchema {
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
}

const env = {
  OIDC_CLIENT_SECRET: 'example-client-secret',
  SESSION_SECRET: randomBytes(36).toString('base64url'),
  SESSION_KEY: randomBytes(32).toString('base64'),
};

function schemaKeys(node: JsonSchema | undefined, prefix = ''): string[] {
  if (!node) return [];
  const keys: string[] = [];
  for (const [name, child] of Object.entries(node.properties ?? {})) {
    const path = prefix ? `${prefix}.${name}` : name;
    keys.push(path, ...schemaKeys(child, path));
  }
  keys.push(...schemaKeys(node.items, `${prefix}[]`));
  for (const branch of [...(node.anyOf ?? []), ...(node.oneOf ?? []), ...(node.allOf ?? [])]) keys.push(...schemaKeys(branch, prefix));
  return [...new Set(keys)];
}

test('the example configuration is valid once its environment variables are set', () => {
  const config = parseConfigText(example, env);
  expect(config.publicUrl).toBe('https://app.example.com');
  expect(config.oidc.clientSecret).toBe(env.OIDC_CLIENT_SECRET);
  expect(config.session.store).toBe('redis');
  expect(config.session.redis.url).toBe('redis://127.0.0.1:6379/0');
  expect(config.session.cookieName).toBe('__Host-Http-bff-session');
  expect(config.routes.map((route) => [route.path, route.token])).toEqual([
    ['/api', 'user'],
    ['/reports', 'client'],
    ['/', 'none'],
  ]);
});

test('the example takes its secrets from the environment, not from the file', () => {
  let problems: string[] = [];
  try {
    parseConfigText(example, {});
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems = err.problems;
  }
  expect(problems.join('\n')).toMatch(/OIDC_CLIENT_SECRET/);
  expect(problems.join('\n')).toMatch(/SESSION_SECRET/);
  expect(problems.join('\n')).toMatch(/SESSION_KEY/);
});

test('the example mentions every key of the configuration schema', () => {
  const keys = schemaKeys(schema);
  expect(keys.length).toBeGreaterThan(40);
  const missing = keys.filter((path) => {
    const leaf = path.split('.').at(-1)?.replace(/\[\]$/, '') as string;
    return !new RegExp(`(^|[\\s{,#.])${leaf}:`, 'm').test(example);
  });
  expect(missing).toEqual([]);
});
