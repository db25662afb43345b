/**
 * A minimal reverse proxy built with one of the candidate libraries, identical options for
 * each: keep-alive agent, no response rewriting. Usage: library-proxy.ts <http-proxy|http-proxy-3|httpxy> <upstream-port>.
 * Prints `LISTENING <port>`.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const [library, upstreamPort] = process.argv.slice(2);
const target = `http://127.0.0.1:${upstreamPort}`;
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

type Web = (req: http.IncomingMessage, res: http.ServerResponse, options: object, callback: (err: Error) => void) => void;

async function createWeb(): Promise<Web> {
  if (library === 'http-proxy') {
    const { default: httpProxy } = await import('http-proxy');
    const proxy = httpProxy.createProxyServer({ agent });
    return (req, res, options, callback) => proxy.web(req, res, options, callback);
  }
  if (library === 'http-proxy-3') {
    const { createProxyServer } = await import('http-proxy-3');
    const proxy = createProxyServer({ agent });
    return (req, res, options, callback) => proxy.web(req, res, options, callback);
  }
  if (library === 'httpxy') {
    const { createProxyServer } = await import('httpxy');
    const proxy = createProxyServer({ agent });
    return (req, res, options, callback) => {
      proxy.web(req, res, options).catch(callback);
    };
  }
  throw new Error(`unknown library ${library}`);
}

const web = await createWeb();
const server = http.createServer((req, res) => {
  web(req, res, { target }, () => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => console.log(`LISTENING ${(server.address() as AddressInfo).port}`));
process.on('SIGTERM', () => process.exit(0));
