import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Interaction, Provider } from 'oidc-provider';

export const OIDC_SCOPES = ['openid', 'profile', 'email', 'offline_access'] as const;
export const RESOURCE_SCOPES = ['api', 'orders.read'] as const;

export interface InteractionOptions {
  demoUser: string;
  demoPassword: string;
  audience: string;
  /** Further resource servers whose scope every grant also covers (see IdpOptions). */
  extraResources?: Array<{ audience: string; scope: string }>;
}

export type InteractionHandler = (req: IncomingMessage, res: ServerResponse, uid: string) => Promise<void>;

const escapeHtml = (value: string): string =>
  value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function sendHtml(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(html),
  });
  res.end(html);
}

function loginPage(uid: string, login: string, error?: string): string {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 22rem; margin: 3rem auto">
<h1>Sign in</h1>
${error ? `<p id="error" role="alert" style="color: #b00">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${encodeURIComponent(uid)}" autocomplete="off">
  <p><label for="login">Login</label><br><input id="login" name="login" value="${escapeHtml(login)}" autofocus></p>
  <p><label for="password">Password</label><br><input id="password" name="password" type="password"></p>
  <p><button id="login-submit" type="submit">Sign in</button></p>
</form>
</body></html>`;
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('interaction form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function asList(value: unknown): string[] {
  if (Array.isArray(value)) return value.map(String);
  return typeof value === 'string' && value ? [value] : [];
}

// Claims requested through the `claims` parameter must be granted explicitly, otherwise the
// consent prompt would come straight back after the interaction finishes.
function requestedClaims(raw: unknown): string[] {
  if (typeof raw !== 'string' || !raw) return [];
  try {
    const parsed = JSON.parse(raw) as Record<string, Record<string, unknown> | null | undefined>;
    return [...new Set([...Object.keys(parsed.id_token ?? {}), ...Object.keys(parsed.userinfo ?? {})])];
  } catch {
    return [];
  }
}

// Login and consent are finished in a single step, so the grant has to cover everything the
// authorization request asked for, not only what the (login) prompt reported as missing.
async function grantFor(provider: Provider, details: Interaction, accountId: string, opts: InteractionOptions): Promise<string> {
  const clientId = String(details.params.client_id);
  const existing = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
  const grant = existing && existing.accountId === accountId ? existing : new provider.Grant({ accountId, clientId });

  const requested = String(details.params.scope ?? '').split(' ').filter(Boolean);
  const oidcScopes = requested.filter((s) => (OIDC_SCOPES as readonly string[]).includes(s));
  if (oidcScopes.length) grant.addOIDCScope(oidcScopes.join(' '));

  const missing = details.prompt.details;
  const claims = [...requestedClaims(details.params.claims), ...asList(missing.missingOIDCClaims)];
  if (claims.length) grant.addOIDCClaims(claims);

  const resourceScopes = requested.filter((s) => (RESOURCE_SCOPES as readonly string[]).includes(s));
  const resources = asList(details.params.resource);
  for (const resource of resources.length ? resources : [opts.audience]) {
    if (resourceScopes.length) grant.addResourceScope(resource, resourceScopes.join(' '));
  }
  for (const extra of opts.extraResources ?? []) grant.addResourceScope(extra.audience, extra.scope);
  const missingResourceScopes = missing.missingResourceScopes as Record<string, string[]> | undefined;
  for (const [resource, scopes] of Object.entries(missingResourceScopes ?? {})) {
    grant.addResourceScope(resource, scopes.join(' '));
  }

  return grant.save();
}

export function createInteractionHandler(provider: Provider, opts: InteractionOptions): InteractionHandler {
  const finish = async (req: IncomingMessage, res: ServerResponse, details: Interaction, accountId: string) => {
    const grantId = await grantFor(provider, details, accountId, opts);
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId }, consent: { grantId } },
      { mergeWithLastSubmission: false },
    );
  };

  return async (req, res, uid) => {
    let details: Interaction;
    try {
      details = await provider.interactionDetails(req, res);
    } catch (err) {
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
      res.end(`interaction not found or expired: ${(err as Error).message}\n`);
      return;
    }
    if (details.uid !== uid) {
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('interaction cookie does not match the requested interaction\n');
      return;
    }

    const method = req.method ?? 'GET';
    let submitted: URLSearchParams | undefined;
    if (method === 'POST') {
      submitted = await readForm(req);
    } else if (method === 'GET') {
      const query = new URL(req.url ?? '/', 'http://idp.invalid').searchParams;
      if (query.has('login') && query.has('password')) submitted = query;
    } else {
      res.writeHead(405, { allow: 'GET, POST' }).end();
      return;
    }

    if (!submitted) {
      // Re-authentication is not needed when only consent is missing for a known session.
      const sessionAccount = details.session?.accountId;
      if (details.prompt.name !== 'login' && sessionAccount) {
        await finish(req, res, details, sessionAccount);
        return;
      }
      sendHtml(res, 200, loginPage(uid, opts.demoUser));
      return;
    }

    const login = (submitted.get('login') ?? '').trim();
    if (!login || submitted.get('password') !== opts.demoPassword) {
      sendHtml(res, 401, loginPage(uid, login || opts.demoUser, 'Invalid login or password.'));
      return;
    }
    await finish(req, res, details, login);
  };
}
