/**
 * What Node's own HTTP parser makes of some bytes: the requests (method and target) it would
 * hand to a server, in order, up to the first parse error. The gateway runs on that parser
 * with its defaults, so this is the list of requests the gateway itself received from a client;
 * an upstream that parses any other request was sent one the gateway never accepted.
 *
 * A loopback `node:http` server with default options; every request's body is read in full and
 * answered with 204, a parse error ends the connection.
 */
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { sleep } from './time.ts';

export interface ParsedRequestLine {
  method: string;
  url: string;
}

export interface ReferenceParser {
  parse(bytes: string): Promise<ParsedRequestLine[]>;
  close(): Promise<void>;
}

export async function startReferenceParser(): Promise<ReferenceParser> {
  const byClientPort = new Map<number, ParsedRequestLine[]>();
  let events = 0;
  const server: Server = createServer((req, res) => {
    byClientPort.get(req.socket.remotePort ?? 0)?.push({ method: req.method ?? '', url: req.url ?? '' });
    events++;
    req.resume();
    req.once('end', () => {
      events++;
      res.writeHead(204).end();
    });
  });
  server.on('clientError', (_err, socket) => {
    events++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    async parse(bytes) {
      const socket = connect(port, '127.0.0.1');
      await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      const requests: ParsedRequestLine[] = [];
      const localPort = socket.localPort ?? 0;
      byClientPort.set(localPort, requests);
      let closed = false;
      socket.on('data', () => events++);
      socket.on('error', () => {});
      socket.once('close', () => {
        closed = true;
      });
      socket.write(Buffer.from(bytes, 'latin1'));
      // Until the server closes, or nothing has happened for a while (bounded).
      let seen = -1;
      for (let round = 0; round < 100 && !closed && seen !== events; round++) {
        seen = events;
        await sleep(40);
      }
      socket.destroy();
      byClientPort.delete(localPort);
      return requests;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
