import { resolve } from 'node:path';
import { generateKeyPair, writeKeyPair } from '@splintertree/sign';

/** `splinter key generate`: PREFIX.key (encrypted, 0600) and PREFIX.pub, as cosign generate-key-pair writes. */
export async function generateKeyPairFiles(
  prefix: string,
  password: string,
): Promise<{ privateKeyFile: string; publicKeyFile: string }> {
  const pair = await generateKeyPair(password);
  await writeKeyPair(prefix, pair);
  return { privateKeyFile: resolve(`${prefix}.key`), publicKeyFile: resolve(`${prefix}.pub`) };
}
