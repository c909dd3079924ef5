import type { Buckets } from './limit-store.js';

/**
 * Failed authentications, counted per client address and per token id. Past either budget a failure
 * is answered 429 instead of 401. Only failures are counted and only failures are refused: a valid
 * token is never turned away because others failed from its address (behind a proxy every player
 * may share one) or against its id.
 */
export class AuthFailures {
  constructor(private readonly buckets: Buckets) {}

  /**
   * Counts one failure; returns the seconds to wait if the address or the token named (`token:ID`
   * or `player:ISS#SUB`) is over its budget, else 0.
   */
  async charge(address: string, named: string | undefined): Promise<number> {
    const waits = [this.buckets.take(`address:${address}`)];
    if (named !== undefined) waits.push(this.buckets.take(named));
    return Math.max(...(await Promise.all(waits)));
  }

  close(): void {
    this.buckets.close();
  }
}
