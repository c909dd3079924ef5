import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { SplinterError } from '@splinter/errors';
import type { Descriptor, Target } from '@splinter/oci';
import {
  attachLegacySignature,
  attachSignatureBundle,
  loadPrivateKey,
  loadPublicKey,
  type Signer,
  type TrustedKey,
} from '@splinter/sign';
import { formatLocation, type Location } from './locations.js';
import type { SignatureFormat, SignatureRecord } from './types.js';

/** Loads a cosign private key file (`cosign generate-key-pair`, `splinter key generate`) as a Signer. */
export async function loadSigningKey(file: string, password: string): Promise<Signer> {
  return loadPrivateKey(await readKeyFile(file), password);
}

/**
 * Public keys to trust: each `--key` file, and every key a trust file lists. A trust file holds PEM
 * public keys inline and/or lines naming `.pub` files (relative to the trust file); `#` starts a comment.
 */
export async function loadTrustedKeys(input: {
  keyFiles: string[];
  trustFile?: string | undefined;
}): Promise<TrustedKey[]> {
  const keys: TrustedKey[] = [];
  for (const file of input.keyFiles) keys.push(loadPublicKey(await readKeyFile(file), file));
  if (input.trustFile !== undefined) {
    const text = await readKeyFile(input.trustFile);
    const pems = text.match(/-----BEGIN PUBLIC KEY-----[\s\S]*?-----END PUBLIC KEY-----/g) ?? [];
    pems.forEach((pem, i) => {
      keys.push(loadPublicKey(pem, `${input.trustFile}#${i + 1}`));
    });
    const rest = text.replace(/-----BEGIN PUBLIC KEY-----[\s\S]*?-----END PUBLIC KEY-----/g, '');
    for (const line of rest.split('\n')) {
      const entry = line.replace(/#.*/, '').trim();
      if (entry === '') continue;
      if (entry.startsWith('-----')) {
        throw new SplinterError(
          'KEY_INVALID',
          `${input.trustFile}: only PEM public keys belong in a trust file`,
        );
      }
      const file = resolve(dirname(input.trustFile), entry);
      keys.push(loadPublicKey(await readKeyFile(file), file));
    }
    if (pems.length === 0 && keys.length === input.keyFiles.length) {
      throw new SplinterError('KEY_INVALID', `${input.trustFile} lists no public keys`);
    }
  }
  return keys;
}

async function readKeyFile(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new SplinterError(
      'KEY_INVALID',
      `cannot read key file ${file}: ${(error as NodeJS.ErrnoException).code}`,
    );
  }
}

/** Signs a manifest digest in the chosen cosign formats; returns where each signature went. */
export async function signManifest(
  target: Target,
  subject: Descriptor,
  signer: Signer,
  format: SignatureFormat,
  location: Location,
): Promise<SignatureRecord[]> {
  const repository: Location = { ...location };
  delete repository.tag;
  delete repository.digest;
  const signatures: SignatureRecord[] = [];
  if (format === 'legacy' || format === 'both') {
    const { tag } = await attachLegacySignature(target, subject, signer, formatLocation(repository));
    signatures.push({ format: 'legacy', location: formatLocation({ ...repository, tag }) });
  }
  if (format === 'bundle' || format === 'both') {
    const { digest } = await attachSignatureBundle(target, subject, signer);
    signatures.push({ format: 'bundle', location: formatLocation({ ...repository, digest }) });
  }
  return signatures;
}
