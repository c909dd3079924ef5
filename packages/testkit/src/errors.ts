import { isSplinterError } from '@splintertree/errors';

/** The code of the SplinterError a promise rejects with; anything else (or no rejection) fails the test. */
export async function errorCodeOf(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isSplinterError(error)) throw new Error(`expected a SplinterError, got ${String(error)}`);
  return error.code;
}
