/**
 * Raw HTTP/1.1 over a socket: fetch and node:http refuse to send malformed request lines and
 * header values, and attackers do not. One request per connection (`Connection: close`), the
 * whole response read as latin1 so every byte is inspectable.
 */
import { connect } from 'node:net';

export interface RawResponse {
  status: number;
  raw: string;
}

const TIMEOUT_MS = 5_000;

/** Header values are sanitised only as far as the protocol needs (no CR/LF injection by accident). */
function line(value: string): string {
  return value.replace(/[\r\n]/g, ' ');
}

export function rawRequest(
  port: number,
  method: string,
  target: string,
  headers: Record<string, string>,
  body?: string,
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no response within ${TIMEOUT_MS}ms for ${method} ${target}`));
    }, TIMEOUT_MS);
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      const raw = Buffer.concat(chunks).toString('latin1');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(raw)?.[1] ?? 0);
      // A connection closed without any response is a crash or a hang-up, never acceptable.
      if (status === 0) reject(new Error(`connection closed without a response for ${method} ${JSON.stringify(target)}`));
      else resolve({ status, raw });
    });
    const payload = body === undefined ? '' : body;
    const lines = [`${method} ${line(target)} HTTP/1.1`, 'host: 127.0.0.1', 'connection: close'];
    for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${line(value)}`);
    if (body !== undefined) lines.push(`content-length: ${Buffer.byteLength(payload, 'latin1')}`);
    // No half-close: `Connection: close` makes the server end the connection after answering.
    socket.write(Buffer.from(`${lines.join('\r\n')}\r\n\r\n${payload}`, 'latin1'));
  });
}
