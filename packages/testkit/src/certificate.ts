import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireTool } from './tools.js';

export interface SelfSignedCertificate {
  keyPath: string;
  certificatePath: string;
  /** PEM texts of the two files. */
  key: string;
  certificate: string;
}

/**
 * A fresh P-256 key and a self-signed certificate for it, made with the openssl CLI into `dir` as
 * `<name>-key.pem` and `<name>-cert.pem`. `ipAddress` adds it as a subjectAltName, which a TLS client
 * needs to accept the certificate for that address.
 */
export function selfSignedCertificate(options: {
  dir: string;
  name: string;
  commonName: string;
  ipAddress?: string;
}): SelfSignedCertificate {
  const keyPath = join(options.dir, `${options.name}-key.pem`);
  const certificatePath = join(options.dir, `${options.name}-cert.pem`);
  execFileSync(
    requireTool('openssl'),
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      keyPath,
      '-out',
      certificatePath,
      '-days',
      '2',
      '-subj',
      `/CN=${options.commonName}`,
      ...(options.ipAddress ? ['-addext', `subjectAltName=IP:${options.ipAddress}`] : []),
    ],
    { stdio: 'ignore' },
  );
  return {
    keyPath,
    certificatePath,
    key: readFileSync(keyPath, 'utf8'),
    certificate: readFileSync(certificatePath, 'utf8'),
  };
}
