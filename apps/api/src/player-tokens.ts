import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { type ErrorCode, SplinterError } from '@splintertree/errors';
import { createRemoteJWKSet, customFetch, decodeJwt, errors, type JWTVerifyGetKey, jwtVerify } from 'jose';

/** Asymmetric algorithms only: a player token is never checked with a shared secret. */
export const DEFAULT_JWT_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
];

/** Largest JWKS document read; a larger one is refused (JWKS_UNAVAILABLE) before it is parsed. */
const JWKS_MAX_BYTES = 256 * 1024;

/** Verified tokens kept (about 1 KiB each with the token text). */
const VERIFIED_MAX = 100_000;

export interface PlayerTokenConfig {
  /** Where the identity provider publishes its keys, or… */
  jwksUrl?: string | undefined;
  /** …a PEM file holding its one public key. */
  publicKeyFile?: string | undefined;
  issuer: string;
  audience: string;
  /** The claim naming the player's realm (a string that must equal the realm asked for). */
  realmClaim: string;
  /** Seconds of clock skew forgiven on exp and nbf. */
  clockTolerance: number;
  algorithms: string[];
  /** Time allowed for one JWKS fetch, in ms. */
  jwksTimeout: number;
}

/** A player authenticated by a JWT: who (issuer and subject) and the realm the token is for. */
export interface Player {
  /** `iss` and `sub` together: the key rate and failure limits are kept under. */
  id: string;
  subject: string;
  realm: string;
}

/**
 * Verifies players' JWTs: signature against the JWKS (fetched with a timeout and a size limit,
 * cached by jose, fetched again for an unknown key id at most every 30 s) or the PEM key, then issuer,
 * audience, expiry (with the clock tolerance), subject and the realm claim. Each refusal has its
 * own code.
 */
export class PlayerTokens {
  /**
   * Tokens already verified, until their exp: a launcher sends the same JWT with every poll, and a
   * signature check (2,000-5,000 a second per core) costs more than the rest of an answer.
   * Oldest first; at most VERIFIED_MAX.
   */
  private readonly verified = new Map<string, { player: Player; exp: number }>();
  private verifications = 0;

  private constructor(
    private readonly config: PlayerTokenConfig,
    /** The verification key: the JWKS's, chosen by the token's header, or always the PEM key. */
    private readonly key: JWTVerifyGetKey,
  ) {}

  static async open(config: PlayerTokenConfig): Promise<PlayerTokens> {
    if (config.publicKeyFile !== undefined) {
      let key: KeyObject;
      try {
        key = createPublicKey(await readFile(config.publicKeyFile, 'utf8'));
      } catch (error) {
        throw new SplinterError(
          'INVALID_CONFIG',
          `--jwt-public-key ${config.publicKeyFile}: not a readable PEM public key (${(error as Error).message})`,
          { cause: error },
        );
      }
      return new PlayerTokens(config, async () => key);
    }
    const url = new URL(config.jwksUrl!);
    const jwks = createRemoteJWKSet(url, {
      timeoutDuration: config.jwksTimeout,
      [customFetch]: limitedFetch,
    });
    return new PlayerTokens(config, jwks);
  }

  /** True when `token` has the shape of a JWT (three base64url parts): it is this verifier's to judge. */
  static looksLikeJwt(token: string): boolean {
    return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token);
  }

  /** The subject a token names, unverified, for charging its failures (never for granting anything). */
  static claimedSubject(token: string): string | undefined {
    try {
      const { sub, iss } = decodeJwt(token);
      return typeof sub === 'string' && sub.length <= 256 ? `${String(iss).slice(0, 256)}#${sub}` : undefined;
    } catch {
      return undefined;
    }
  }

  /** Signatures checked so far (answers from the verified-token cache aside). */
  signaturesChecked(): number {
    return this.verifications;
  }

  async verify(token: string): Promise<Player> {
    const { config } = this;
    const known = this.verified.get(token);
    if (known) {
      if (Date.now() / 1000 <= known.exp + config.clockTolerance) return known.player;
      this.verified.delete(token);
    }
    this.verifications += 1;
    // jose refuses an algorithm not listed before it looks for a key (JOSEAlgNotAllowed).
    const { payload } = await jwtVerify(token, this.key, {
      issuer: config.issuer,
      audience: config.audience,
      algorithms: config.algorithms,
      clockTolerance: config.clockTolerance,
      requiredClaims: ['exp', 'sub'],
    }).catch((error: unknown) => {
      throw refusal(error, config.algorithms);
    });
    const realm = payload[config.realmClaim];
    if (typeof realm !== 'string' || realm.length === 0) {
      throw refused('TOKEN_INVALID', `player token has no ${config.realmClaim} claim naming its realm`);
    }
    const subject = payload.sub!;
    const player = { id: `${payload.iss}#${subject}`, subject, realm };
    if (this.verified.size >= VERIFIED_MAX) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(token, { player, exp: payload.exp! });
    return player;
  }
}

function refused(code: ErrorCode, message: string, cause?: unknown): SplinterError {
  return new SplinterError(code, message, { cause });
}

/** The refusal a jose failure stands for, one code each (a SplinterError is passed on as it is). */
function refusal(error: unknown, algorithms: string[]): SplinterError {
  if (error instanceof SplinterError) return error;
  if (error instanceof errors.JWTExpired) return refused('TOKEN_EXPIRED', 'player token has expired', error);
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'iss')
      return refused('TOKEN_ISSUER_INVALID', 'player token is from another issuer', error);
    if (error.claim === 'aud')
      return refused('TOKEN_AUDIENCE_INVALID', 'player token is for another audience', error);
    return refused('TOKEN_INVALID', `player token claim ${error.claim} is invalid: ${error.reason}`, error);
  }
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) {
    return refused(
      'TOKEN_KEY_UNKNOWN',
      'player token is signed by a key the identity provider does not publish',
      error,
    );
  }
  if (error instanceof errors.JOSEAlgNotAllowed) {
    return refused(
      'TOKEN_ALGORITHM_REFUSED',
      `player token algorithm is not accepted: only ${algorithms.join(', ')} are`,
      error,
    );
  }
  if (error instanceof errors.JWKSTimeout) {
    return refused('JWKS_UNAVAILABLE', 'the identity provider did not send its keys (JWKS) in time', error);
  }
  if (
    error instanceof errors.JWSSignatureVerificationFailed ||
    error instanceof errors.JWSInvalid ||
    error instanceof errors.JWTInvalid ||
    error instanceof errors.JOSENotSupported
  ) {
    return refused('TOKEN_INVALID', 'player token is malformed or its signature does not verify', error);
  }
  if (error instanceof errors.JOSEError) {
    // What is left comes from fetching the JWKS: not 200, not JSON, not a key set.
    return refused(
      'JWKS_UNAVAILABLE',
      `the identity provider's keys (JWKS) are unusable: ${error.message}`,
      error,
    );
  }
  if (error instanceof TypeError && /key/i.test(error.message)) {
    // A token whose algorithm does not fit the configured key (an RSA alg against an EC key, ...).
    return refused('TOKEN_INVALID', `player token does not fit the configured key: ${error.message}`, error);
  }
  return refused(
    'JWKS_UNAVAILABLE',
    `the identity provider's keys (JWKS) could not be fetched: ${(error as Error).message}`,
    error,
  );
}

/** fetch for the JWKS that reads at most JWKS_MAX_BYTES of the answer. */
async function limitedFetch(url: string, init: RequestInit): Promise<Response> {
  const response = await fetch(url, init);
  const declared = Number(response.headers.get('content-length') ?? 0);
  if (declared > JWKS_MAX_BYTES) {
    await response.body?.cancel();
    throw tooLarge(declared);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (response.body) {
    for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
      total += chunk.byteLength;
      if (total > JWKS_MAX_BYTES) {
        await response.body.cancel().catch(() => undefined);
        throw tooLarge(total);
      }
      chunks.push(chunk);
    }
  }
  return new Response(Buffer.concat(chunks), { status: response.status, headers: response.headers });
}

function tooLarge(bytes: number): SplinterError {
  return new SplinterError(
    'JWKS_UNAVAILABLE',
    `the identity provider's keys (JWKS) are over ${JWKS_MAX_BYTES} bytes (${bytes} read): refused`,
  );
}
