/**
 * `returnTo` with `error=<code>` appended, for logins that come back to the app without a new
 * session (docs/frontend.md#errors). The app's own query and fragment keep their exact bytes;
 * an `error` parameter already in `returnTo` is dropped so the app reads one value only. `code`
 * is a token-charset string (checked by the caller), so it needs no encoding.
 */
export function withError(returnTo: string, code: string): string {
  const hashAt = returnTo.indexOf('#');
  const hash = hashAt === -1 ? '' : returnTo.slice(hashAt);
  const beforeHash = hashAt === -1 ? returnTo : returnTo.slice(0, hashAt);
  const queryAt = beforeHash.indexOf('?');
  const path = queryAt === -1 ? beforeHash : beforeHash.slice(0, queryAt);
  const kept =
    queryAt === -1
      ? []
      : beforeHash
          .slice(queryAt + 1)
          .split('&')
          .filter((part) => part !== '' && !/^error(?:=|$)/.test(part));
  return `${path}?${[...kept, `error=${code}`].join('&')}${hash}`;
}
