/**
 * The request headers that carry the user's identity upstream — every route's claim headers
 * and the assertion header — belong to the gateway alone. A client's own copies are removed on
 * every route (also routes that send none), before anything is forwarded: in any letter case
 * (Node lower-cases names), repeated (Node joins repeats into one value, removed as one), and in
 * underscore spellings (`X_User_Email`), which CGI-style stacks (PHP, Python WSGI, nginx's
 * `underscores_in_headers`) fold into the same variable as the real name.
 */
export class IdentityHeaderNames {
  private readonly names: ReadonlySet<string>;

  constructor(names: Iterable<string>) {
    this.names = new Set([...names].map((name) => IdentityHeaderNames.canonical(name)));
  }

  /** Lower case, `_` as `-`: the spelling every variant of a name folds into. */
  static canonical(name: string): string {
    return name.toLowerCase().replace(/_/g, '-');
  }

  get size(): number {
    return this.names.size;
  }

  has(name: string): boolean {
    return this.names.has(IdentityHeaderNames.canonical(name));
  }

  /** Removes every spelling of a reserved name from headers about to go upstream (in place). */
  strip<T extends Record<string, unknown>>(headers: T): T {
    if (this.names.size === 0) return headers;
    for (const name of Object.keys(headers)) if (this.has(name)) delete headers[name];
    return headers;
  }
}
