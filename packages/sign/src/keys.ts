import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  scrypt,
  sign,
} from 'node:crypto';
import { open } from 'node:fs/promises';
import { SplinterError } from '@splintertree/errors';
import nacl from 'tweetnacl';

/** cosign's PEM labels: new keys are SIGSTORE; cosign before 2.0.1 wrote COSIGN. Both load. */
export const PRIVATE_KEY_LABELS = ['ENCRYPTED SIGSTORE PRIVATE KEY', 'ENCRYPTED COSIGN PRIVATE KEY'] as const;
const ACCEPTED_SCRYPT_N = new Set([32768, 65536, 131072]);
const WRITTEN_SCRYPT_N = 65536;

/** Signs bytes; a KMS or HSM implementation can stand in for the key-file one. */
export interface Signer {
  readonly publicKeyPem: string;
  /** base64(sha256(SPKI DER)): cosign's key hint. */
  readonly keyId: string;
  /** ECDSA P-256 over SHA-256 of `data`, ASN.1 DER. */
  sign(data: Uint8Array): Promise<Uint8Array>;
}

export interface TrustedKey {
  keyObject: KeyObject;
  keyId: string;
  /** Where the key came from (a file path), for reports. */
  source: string;
}

interface EncryptedKeyBody {
  kdf: { name: string; params: { N: number; r: number; p: number }; salt: string };
  cipher: { name: string; nonce: string };
  ciphertext: string;
}

export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('base64');
}

function scryptKey(password: string, salt: Buffer, N: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(
      Buffer.from(password, 'utf8'),
      salt,
      32,
      { N, r, p, maxmem: 256 * N * r + 64 * 1024 * 1024 },
      (error, key) => (error ? reject(error) : resolve(key)),
    ),
  );
}

function pemOf(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

function parsePem(pem: string): { label: string; body: Buffer } {
  const match = /-----BEGIN ([A-Z0-9 ]+)-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END \1-----/.exec(pem);
  if (!match) throw new SplinterError('KEY_INVALID', 'not a PEM file');
  return { label: match[1]!, body: Buffer.from(match[2]!.replace(/\s+/g, ''), 'base64') };
}

/** A new P-256 key pair in cosign's formats (scrypt N=65536, r=8, p=1; nacl secretbox; PKCS#8 inside). */
export async function generateKeyPair(
  password: string,
): Promise<{ privateKeyPem: string; publicKeyPem: string }> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const salt = randomBytes(32);
  const nonce = randomBytes(24);
  const secret = await scryptKey(password, salt, WRITTEN_SCRYPT_N, 8, 1);
  const plaintext = privateKey.export({ type: 'pkcs8', format: 'der' });
  const ciphertext = Buffer.from(nacl.secretbox(plaintext, nonce, secret));
  // Key order and compact JSON exactly as Go's encoding/json writes cosign's struct.
  const body = JSON.stringify({
    kdf: { name: 'scrypt', params: { N: WRITTEN_SCRYPT_N, r: 8, p: 1 }, salt: salt.toString('base64') },
    cipher: { name: 'nacl/secretbox', nonce: nonce.toString('base64') },
    ciphertext: ciphertext.toString('base64'),
  });
  return {
    privateKeyPem: pemOf(PRIVATE_KEY_LABELS[0], Buffer.from(body)),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** Writes PREFIX.key (0600) and PREFIX.pub (0644), refusing to overwrite either. */
export async function writeKeyPair(
  prefix: string,
  pair: { privateKeyPem: string; publicKeyPem: string },
): Promise<void> {
  for (const [path, text, mode] of [
    [`${prefix}.key`, pair.privateKeyPem, 0o600],
    [`${prefix}.pub`, pair.publicKeyPem, 0o644],
  ] as const) {
    const handle = await open(path, 'wx', mode).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'EEXIST')
        throw new SplinterError('OUTPUT_EXISTS', `${path} already exists; not overwriting a key`);
      throw error;
    });
    try {
      await handle.writeFile(text);
    } finally {
      await handle.close();
    }
  }
}

/** Loads a cosign private key file; each way it can fail has its own code and message. */
export async function loadPrivateKey(pem: string, password: string): Promise<Signer> {
  const { label, body } = parsePem(pem);
  if (!(PRIVATE_KEY_LABELS as readonly string[]).includes(label)) {
    throw new SplinterError(
      'KEY_INVALID',
      `unsupported PEM label "${label}": expected ${PRIVATE_KEY_LABELS.join(' or ')}`,
    );
  }
  let parsed: EncryptedKeyBody;
  try {
    parsed = JSON.parse(body.toString('utf8')) as EncryptedKeyBody;
  } catch {
    throw new SplinterError('KEY_INVALID', 'the key body is not cosign JSON (kdf, cipher, ciphertext)');
  }
  const { N, r, p } = parsed.kdf?.params ?? { N: 0, r: 0, p: 0 };
  if (parsed.kdf?.name !== 'scrypt' || parsed.cipher?.name !== 'nacl/secretbox') {
    throw new SplinterError(
      'KEY_UNSUPPORTED',
      `unsupported key encryption ${parsed.kdf?.name}/${parsed.cipher?.name}`,
    );
  }
  if (!ACCEPTED_SCRYPT_N.has(N) || r !== 8 || p !== 1) {
    throw new SplinterError('KEY_UNSUPPORTED', `unsupported scrypt parameters N=${N} r=${r} p=${p}`);
  }
  const secret = await scryptKey(password, Buffer.from(parsed.kdf.salt, 'base64'), N, r, p);
  const opened = nacl.secretbox.open(
    Buffer.from(parsed.ciphertext, 'base64'),
    Buffer.from(parsed.cipher.nonce, 'base64'),
    secret,
  );
  if (!opened) throw new SplinterError('KEY_PASSWORD_WRONG', 'wrong password for this private key');
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: Buffer.from(opened), format: 'der', type: 'pkcs8' });
  } catch {
    throw new SplinterError(
      'KEY_UNSUPPORTED',
      'the decrypted key is not PKCS#8 (a SEC1 EC key inside?); cosign requires PKCS#8',
    );
  }
  if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new SplinterError(
      'KEY_UNSUPPORTED',
      `only ECDSA P-256 keys are supported (got ${privateKey.asymmetricKeyType})`,
    );
  }
  const publicKey = createPublicKey(privateKey);
  return {
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyId: keyIdOf(publicKey),
    sign: async (data) => sign('sha256', data, privateKey),
  };
}

export function loadPublicKey(pem: string, source = 'inline'): TrustedKey {
  let keyObject: KeyObject;
  try {
    keyObject = createPublicKey(pem);
  } catch (error) {
    throw new SplinterError('KEY_INVALID', `${source} is not a PEM public key: ${(error as Error).message}`);
  }
  return { keyObject, keyId: keyIdOf(keyObject), source };
}
