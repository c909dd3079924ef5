import { dirname, resolve } from 'node:path';
import { SplinterError } from '@splintertree/errors';
import type { Descriptor, Target } from '@splintertree/oci';
import {
  attachLegacySignature,
  attachSignatureBundle,
  loadPrivateKey,
  loadPublicKey,
  type Signer,
  type TrustedKey,
} from '@splintertree/sign';
import { readKeyFile, readKeyRef } from './key-refs.js';
import { formatLocation, type Location } from './locations.js';
import type { SignatureFormat, SignatureRecord } from './types.js';

/**
 * A cosign private key by reference (a file, `env://VAR`, `k8s://NAMESPACE/NAME`; see key-refs.ts).
 * The password comes with a Kubernetes secret (`cosign.password`, as cosign does); otherwise
 * `password()` is asked, after the key was found, so a missing key costs no prompt.
 */
export async function loadSigningKeyRef(
  ref: string,
  password: () => Promise<string>,
  env?: Record<string, string | undefined>,
): Promise<Signer> {
  const key = await readKeyRef(ref, 'private', env);
  return loadPrivateKey(key.pem, key.password ?? (await password()));
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
  // Each --key is a reference as cosign's --key takes it: a file, env://VAR or k8s://NAMESPACE/NAME.
  for (const ref of input.keyFiles) keys.push(loadPublicKey((await readKeyRef(ref, 'public')).pem, ref));
  if (input.trustFile !== undefined) keys.push(...(await trustFileKeys(input.trustFile)));
  return keys;
}

const PEM_PUBLIC_KEY = /-----BEGIN PUBLIC KEY-----[\s\S]*?-----END PUBLIC KEY-----/g;

/** The PEM public keys in `text` (a stored mod trust policy), each named `source#n`. */
export function publicKeysFromPem(text: string, source: string): TrustedKey[] {
  return (text.match(PEM_PUBLIC_KEY) ?? []).map((pem, i) => loadPublicKey(pem, `${source}#${i + 1}`));
}

/** Keys as PEM text, one after another: what a trust file inlines and what a realm stores. */
export function publicKeysToPem(keys: TrustedKey[]): string {
  return keys.map((key) => key.keyObject.export({ type: 'spki', format: 'pem' }).toString()).join('');
}

async function trustFileKeys(trustFile: string): Promise<TrustedKey[]> {
  const text = await readKeyFile(trustFile);
  const keys = (text.match(PEM_PUBLIC_KEY) ?? []).map((pem, i) =>
    loadPublicKey(pem, `${trustFile}#${i + 1}`),
  );
  for (const line of text.replace(PEM_PUBLIC_KEY, '').split('\n')) {
    const entry = line.replace(/#.*/, '').trim();
    if (entry === '') continue;
    if (entry.startsWith('-----')) {
      throw new SplinterError('KEY_INVALID', `${trustFile}: only PEM public keys belong in a trust file`);
    }
    const file = resolve(dirname(trustFile), entry);
    keys.push(loadPublicKey(await readKeyFile(file), file));
  }
  if (keys.length === 0) throw new SplinterError('KEY_INVALID', `${trustFile} lists no public keys`);
  return keys;
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
