import { createHash } from 'node:crypto';

/** The ASCII string that seeds the gear table. Part of the format: changing it moves every cut point. */
const GEAR_SEED = 'splinter cdc gear v1';

/**
 * The gear table of the rolling hash: `GEAR[b]` is the first 4 bytes, read big-endian as a 32-bit
 * two's-complement integer, of SHA-256 over the 20 ASCII bytes of "splinter cdc gear v1" followed by
 * the single byte `b` (0..255). Computed once at module load so that the rule, not a 256-entry list,
 * is what the format specification states.
 */
export const GEAR: Int32Array = buildGear();

function buildGear(): Int32Array {
  const table = new Int32Array(256);
  const seed = Buffer.from(GEAR_SEED, 'ascii');
  for (let byte = 0; byte < 256; byte++) {
    const digest = createHash('sha256').update(seed).update(Uint8Array.of(byte)).digest();
    table[byte] = digest.readInt32BE(0);
  }
  return table;
}
