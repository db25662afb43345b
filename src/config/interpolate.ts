/**
 * `${VAR}` and `${VAR:-default}` substitution on the raw YAML text, before parsing, as
 * docs/configuration.md says (shell semantics: an unset or empty variable takes the default). A variable
 * with neither a value nor a default becomes empty, and its name is remembered so that a
 * validation failure can point at the real cause ("SESSION_SECRET is not set").
 */
const REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

export interface InterpolationResult {
  text: string;
  missing: string[];
}

export function interpolateEnv(text: string, env: NodeJS.ProcessEnv): InterpolationResult {
  const missing: string[] = [];
  const out = text.replace(REFERENCE, (_whole, name: string, fallback: string | undefined) => {
    const value = env[name];
    if (value !== undefined && value !== '') return value;
    if (fallback !== undefined) return fallback;
    missing.push(name);
    return '';
  });
  return { text: out, missing: [...new Set(missing)] };
}
