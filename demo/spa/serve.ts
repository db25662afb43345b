/**
 * A tiny static server for the demo SPA, standing in for whatever serves an app's files in
 * production (a CDN, nginx, a dev server). It serves a fixed list of files, so no request path
 * can reach anything else on disk, and sends a strict Content-Security-Policy: the page runs
 * only its own script and talks only to its own origin (the gateway).
 */
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
  // The package's own client module, served as it ships (client/bff-client.js).
  '/bff-client.js': { file: '../../client/bff-client.js', type: 'text/javascript; charset=utf-8' },
};

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

export interface SpaServer {
  url: string;
  close(): Promise<void>;
}

export async function startSpaServer(port = 0): Promise<SpaServer> {
  const root = new URL('./', import.meta.url);
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://spa.invalid').pathname;
    const entry = FILES[path];
    if (!entry || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS }).end('not found\n');
      return;
    }
    readFile(new URL(entry.file, root)).then(
      (body) => {
        res.writeHead(200, { 'content-type': entry.type, 'content-length': body.length, 'cache-control': 'no-cache', ...SECURITY_HEADERS });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      () => res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('cannot read file\n'),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
