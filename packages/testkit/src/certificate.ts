import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
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
  selfSign(requireTool('openssl'), keyPath, certificatePath, options.commonName, [
    ...(options.ipAddress ? ['-addext', `subjectAltName=IP:${options.ipAddress}`] : []),
  ]);
  return {
    keyPath,
    certificatePath,
    key: readFileSync(keyPath, 'utf8'),
    certificate: readFileSync(certificatePath, 'utf8'),
  };
}

export interface CertificateAuthority {
  /** The CA's certificate (PEM file): what a client is given as `--ca-file`. */
  certificatePath: string;
  certificate: string;
  /**
   * A server certificate signed by this CA for the given names (`subjectAltName` DNS entries) and IP
   * addresses, written as `<name>-key.pem` and `<name>-cert.pem` into the CA's folder.
   */
  issue(options: { name: string; dnsNames?: string[]; ipAddresses?: string[] }): SelfSignedCertificate;
}

/**
 * A private certificate authority, made with the openssl CLI: a P-256 CA certificate
 * (`basicConstraints=CA:TRUE`) and leaf certificates it signs, as a studio's own registry CA would be.
 */
export function certificateAuthority(options: { dir: string; commonName?: string }): CertificateAuthority {
  const openssl = requireTool('openssl');
  const caKey = join(options.dir, 'ca-key.pem');
  const caCert = join(options.dir, 'ca-cert.pem');
  selfSign(openssl, caKey, caCert, options.commonName ?? 'splinter-test-ca', [
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return {
    certificatePath: caCert,
    certificate: readFileSync(caCert, 'utf8'),
    issue({ name, dnsNames = [], ipAddresses = [] }) {
      const keyPath = join(options.dir, `${name}-key.pem`);
      const csrPath = join(options.dir, `${name}.csr`);
      const certificatePath = join(options.dir, `${name}-cert.pem`);
      const extPath = join(options.dir, `${name}.ext`);
      const names = [...dnsNames.map((d) => `DNS:${d}`), ...ipAddresses.map((ip) => `IP:${ip}`)];
      writeFileSync(
        extPath,
        [
          `subjectAltName=${names.join(',')}`,
          'basicConstraints=CA:FALSE',
          'keyUsage=critical,digitalSignature',
          'extendedKeyUsage=serverAuth',
          '',
        ].join('\n'),
      );
      execFileSync(
        openssl,
        [
          'req',
          '-new',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:P-256',
          '-nodes',
          '-keyout',
          keyPath,
          '-out',
          csrPath,
          '-subj',
          `/CN=${dnsNames[0] ?? ipAddresses[0] ?? name}`,
        ],
        { stdio: 'ignore' },
      );
      execFileSync(
        openssl,
        [
          'x509',
          '-req',
          '-in',
          csrPath,
          '-CA',
          caCert,
          '-CAkey',
          caKey,
          '-CAcreateserial',
          '-out',
          certificatePath,
          '-days',
          '2',
          '-extfile',
          extPath,
        ],
        { stdio: 'ignore' },
      );
      return {
        keyPath,
        certificatePath,
        key: readFileSync(keyPath, 'utf8'),
        certificate: readFileSync(certificatePath, 'utf8'),
      };
    },
  };
}

/** A fresh P-256 key at `keyPath` and a two-day self-signed certificate for it at `certificatePath`. */
function selfSign(
  openssl: string,
  keyPath: string,
  certificatePath: string,
  commonName: string,
  extra: string[],
): void {
  execFileSync(
    openssl,
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
      `/CN=${commonName}`,
      ...extra,
    ],
    { stdio: 'ignore' },
  );
}
