/**
 * Writes `config/schema.json`: the configuration schema as JSON Schema, so editors (VS Code's
 * YAML extension, JetBrains) can complete and check gateway files. Generated from the same zod
 * schema the gateway validates with; a unit test regenerates it and fails if the committed
 * file has drifted. Run with `npm run schema`.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { configSchema } from '../src/config/schema.ts';

export const SCHEMA_ID = 'urn:bff-gateway:config';
export const SCHEMA_FILE = fileURLToPath(new URL('../config/schema.json', import.meta.url));

/** The file's exact text: deterministic, so a byte comparison detects drift. */
export function renderSchema(): string {
  // `input`: what a person writes (durations as strings or numbers, optional defaults), not
  // the parsed runtime shape. Transforms and refinements have no JSON Schema form: `any`.
  const generated = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  const { $schema, ...rest } = generated;
  const document = {
    $schema,
    $id: SCHEMA_ID,
    title: 'bff-gateway configuration',
    description:
      'The YAML configuration of bff-gateway. `${VAR}` and `${VAR:-default}` are replaced from the environment before validation.',
    ...rest,
  };
  return `${JSON.stringify(document, null, 2)}\n`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(SCHEMA_FILE, renderSchema());
  process.stdout.write(`wrote ${SCHEMA_FILE}\n`);
}
