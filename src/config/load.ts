/**
 * Loading a configuration file: read, interpolate `${VAR}`, parse YAML, validate and derive
 * the runtime shape (both by the schema), freeze. Every problem is reported with its YAML path
 * (`routes[1].upstream: must be a URL`) and all of them at once.
 */
import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { interpolateEnv } from './interpolate.ts';
import { configSchema, type GatewayConfig } from './schema.ts';

export type { GatewayConfig, LimitsConfig, RedisConfig, RouteConfig, TokenMode } from './schema.ts';

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** `['routes', 1, 'upstream']` -> `routes[1].upstream` */
export function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, key) => {
    if (typeof key === 'number') return `${out}[${key}]`;
    return out ? `${out}.${String(key)}` : String(key);
  }, '');
}

type Issue = z.core.$ZodIssue;

/**
 * A failed union (e.g. "a secret or a list of secrets") reports one branch per alternative;
 * the useful one is the branch whose complaint is not merely "wrong type".
 */
function unionBranch(issue: Issue & { code: 'invalid_union' }): Issue[] {
  const branches = issue.errors ?? [];
  const specific = branches.find(
    (branch) => branch.length > 0 && !branch.some((inner) => inner.code === 'invalid_type' && inner.path.length === 0),
  );
  if (specific) return specific.map((inner) => ({ ...inner, path: [...issue.path, ...inner.path] }) as Issue);
  // No branch got past the type check: the union's own message says what is expected.
  const missing = issue.input === undefined || issue.input === null;
  return [{ code: 'custom', path: issue.path, message: missing ? 'is required' : issue.message } as Issue];
}

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping',
};

function typeMessage(issue: Issue & { code: 'invalid_type' }): string {
  if (issue.input === undefined || issue.input === null) return 'is required';
  // A message set on the schema (e.g. "must be a port number") beats the generic one.
  if (!issue.message.startsWith('Invalid input')) return issue.message;
  return `must be ${TYPE_NAMES[issue.expected] ?? issue.expected}`;
}

function zodProblems(issues: readonly Issue[]): string[] {
  const problems: string[] = [];
  for (const issue of issues) {
    if (issue.code === 'invalid_union') {
      problems.push(...zodProblems(unionBranch(issue)));
      continue;
    }
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) problems.push(`${formatPath([...issue.path, key])}: unknown key`);
      continue;
    }
    const path = formatPath(issue.path) || '(root)';
    const message = issue.code === 'invalid_type' ? typeMessage(issue) : issue.message;
    problems.push(`${path}: ${message}`);
  }
  return problems;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Buffer.isBuffer(value) && !(value instanceof URL) && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/** Validates an already-parsed configuration object. Throws ConfigError with every problem. */
export function buildConfig(input: unknown, missingVariables: readonly string[] = []): GatewayConfig {
  // `reportInput` lets a problem tell "missing" from "wrong type"; inputs are never printed.
  const parsed = configSchema.safeParse(input ?? {}, { reportInput: true });
  if (!parsed.success) {
    const problems = zodProblems(parsed.error.issues);
    for (const name of missingVariables) problems.push(`environment variable ${name} is not set (referenced as \${${name}})`);
    throw new ConfigError(problems);
  }
  return deepFreeze(parsed.data);
}

/** Parses YAML text (after `${VAR}` interpolation) into a validated configuration. */
export function parseConfigText(text: string, env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  const { text: interpolated, missing } = interpolateEnv(text, env);
  const document = parseDocument(interpolated, { prettyErrors: true, uniqueKeys: true });
  if (document.errors.length > 0) {
    throw new ConfigError(document.errors.map((err) => `YAML: ${err.message.split('\n')[0]}`));
  }
  return buildConfig(document.toJS(), missing);
}

export async function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): Promise<GatewayConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`${file}: cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  return parseConfigText(text, env);
}
