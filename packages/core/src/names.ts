import { SplinterError } from '@splintertree/errors';

// Realms and mod names become repository path components; versions become tags.
const NAME = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const VERSION = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

export function validateName(kind: 'realm' | 'mod name', value: string): string {
  if (!NAME.test(value) || value.length > 64) {
    throw new SplinterError(
      'INVALID_ARGUMENT',
      `${kind} ${JSON.stringify(value)} must be lowercase letters and digits, separated by '.', '_' or '-' (at most 64)`,
    );
  }
  return value;
}

export function validateVersion(value: string): string {
  if (!VERSION.test(value)) {
    throw new SplinterError(
      'INVALID_ARGUMENT',
      `version ${JSON.stringify(value)} must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127} (it becomes a registry tag)`,
    );
  }
  return value;
}
