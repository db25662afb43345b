/**
 * Logger. JSON lines on stdout (pino). The rule (contract section 1): no line, at any level,
 * carries a token, a client secret, an authorization code or a session id. Three layers:
 * - request logs record method, path and a query string with sensitive parameters masked;
 * - pino `redact` removes known sensitive fields wherever a caller puts them;
 * - gateway code never logs records, token responses or cookies (tests capture every line of a
 *   full login + API call + logout and search them for the real values).
 */
import pino, { type Logger, type DestinationStream } from 'pino';

const SENSITIVE_QUERY = /([?&](?:code|state|sid|session_state|id_token_hint|logout_token|access_token|refresh_token|id_token|token|handoff)=)[^&#]*/gi;

export function maskUrl(url: string | undefined): string | undefined {
  return url?.replace(SENSITIVE_QUERY, '$1[redacted]');
}

const REDACT_PATHS = [
  'req.headers.cookie',
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  'headers.cookie',
  'headers.authorization',
  '*.accessToken',
  '*.refreshToken',
  '*.idToken',
  '*.access_token',
  '*.refresh_token',
  '*.id_token',
  '*.clientSecret',
  '*.client_secret',
  '*.code',
  '*.logout_token',
  'accessToken',
  'refreshToken',
  'idToken',
  'clientSecret',
];

export function createLogger(options: { level?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env.LOG_LEVEL ?? 'info',
      base: { service: 'bff-gateway' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      serializers: {
        err: pino.stdSerializers.err,
        req: (req: { method?: string; url?: string; id?: string }) => ({ id: req.id, method: req.method, url: maskUrl(req.url) }),
        res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode }),
      },
    },
    options.destination,
  );
}

export type { Logger };
