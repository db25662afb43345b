/**
 * Query parameters for the auth endpoints. A parameter given twice is ambiguous (and a known
 * trick to make two components read different values), so it is treated as malformed.
 */
export function queryOf(url: string): URLSearchParams {
  const index = url.indexOf('?');
  return new URLSearchParams(index === -1 ? '' : url.slice(index + 1));
}

/** The parameter's value; undefined when absent; null when it appears more than once. */
export function singleQueryValue(url: string, name: string): string | undefined | null {
  const values = queryOf(url).getAll(name);
  if (values.length > 1) return null;
  return values[0];
}

export function hasDuplicates(params: URLSearchParams, names: readonly string[]): boolean {
  return names.some((name) => params.getAll(name).length > 1);
}
