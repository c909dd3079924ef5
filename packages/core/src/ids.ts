import { SplinterError } from '@splintertree/errors';

declare const canonical: unique symbol;

/**
 * A row id in its one accepted spelling: decimal digits without a sign or leading zeros, within
 * PostgreSQL's bigint. The database casts `01` to `1`, so anything keyed on the text (caches, rate
 * limits) must only ever see this form, or one row gets many keys.
 */
export type CanonicalId = string & { readonly [canonical]: true };

const BIGINT_MAX = 9_223_372_036_854_775_807n;
const DECIMAL = /^(?:0|[1-9]\d{0,18})$/;

/** The id if `text` is already canonical, else undefined (never rewritten: `01` is not `1`). */
export function canonicalId(text: string): CanonicalId | undefined {
  return DECIMAL.test(text) && BigInt(text) <= BIGINT_MAX ? (text as CanonicalId) : undefined;
}

/** A patch id named by a caller; anything but the canonical spelling is a patch that does not exist. */
export function patchIdFrom(text: string): CanonicalId {
  const id = canonicalId(text);
  if (id === undefined) {
    throw new SplinterError(
      'PATCH_UNKNOWN',
      `no patch ${JSON.stringify(text)} (a patch id is a decimal number without leading zeros)`,
    );
  }
  return id;
}
