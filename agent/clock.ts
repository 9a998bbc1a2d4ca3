import { setTimeout as sleep } from "node:timers/promises";

/**
 * Time as the agent loop sees it: the acquire backoff, the renewal and the resync timers and
 * lease expiry. Injected, so a test can run hours of the loop on plain data in milliseconds.
 */
export interface Clock {
  /** Unix ms. */
  now(): number;
  /** Calls `fn` once after `ms`; the returned function cancels it. */
  after(ms: number, fn: () => void): () => void;
  /** Calls `fn` every `ms`; the returned function cancels it. */
  every(ms: number, fn: () => void): () => void;
  /** Resolves after `ms`, or as soon as `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  after: (ms, fn) => {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
  every: (ms, fn) => {
    const t = setInterval(fn, ms);
    return () => clearInterval(t);
  },
  sleep: (ms, signal) => sleep(ms, undefined, { signal }).catch(() => {}),
};
