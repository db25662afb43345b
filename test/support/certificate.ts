/**
 * A throwaway self-signed certificate for loopback TLS in tests (openssl, one day), written as
 * `key.pem` and `cert.pem` into `dir`. Returns the certificate's PEM.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export function selfSignedCertificate(dir: string, names: { cn: string; altNames: string }): string {
  const made = spawnSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      `/CN=${names.cn}`,
      '-addext',
      `subjectAltName=${names.altNames}`,
      '-days',
      '1',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ],
    { encoding: 'utf8' },
  );
  if (made.status !== 0) throw new Error(`openssl req failed (is the openssl package installed?): ${made.error?.message ?? made.stderr}`);
  return readFileSync(join(dir, 'cert.pem'), 'utf8');
}
