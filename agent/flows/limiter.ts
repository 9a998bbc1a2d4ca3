/**
 * A token bucket on an injected clock: `burst` records at once, then `ratePerSecond` on
 * average. What is over the rate is counted, not kept: a pod scanning its neighbours makes a
 * flow per port, and the agent must not spend its memory or the sink's disk on them.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  /** Records refused since the start. */
  refused = 0;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly now: () => number,
  ) {
    if (!(ratePerSecond > 0) || !Number.isFinite(ratePerSecond)) throw new RangeError(`flow rate must be a positive number, not ${ratePerSecond}`);
    if (!Number.isInteger(burst) || burst < 1) throw new RangeError(`flow burst must be a whole number of at least 1, not ${burst}`);
    this.tokens = burst;
    this.last = now();
  }

  /** Takes a token: true when the record may pass, false (and counted) when over the rate. */
  take(): boolean {
    const t = this.now();
    // A clock stepped back refills nothing; the next reading after it counts from there.
    if (t > this.last) this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) * this.ratePerSecond) / 1000);
    this.last = t;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    this.refused++;
    return false;
  }
}
