import type { Clock } from "../agent/clock.js";

/**
 * A clock that moves only when the test says so. `advance` fires the timers that fall due in
 * time order and lets the work each one starts settle before the next, so a loop of timers,
 * promises and callbacks runs as it would in real time, without the waiting.
 */
export class FakeClock implements Clock {
  private t: number;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; every?: number; fn: () => void }>();

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.t = start;
  }

  now = (): number => this.t;

  after = (ms: number, fn: () => void): (() => void) => this.add(ms, fn);

  every = (ms: number, fn: () => void): (() => void) => this.add(ms, fn, ms);

  sleep = (ms: number, signal: AbortSignal): Promise<void> =>
    new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const cancel = this.add(ms, () => resolve());
      signal.addEventListener("abort", () => (cancel(), resolve()), { once: true });
    });

  /** Timers still to fire (a pending renewal, a resync, a backoff sleep). */
  pending(): number {
    return this.timers.size;
  }

  /** Moves time forward by `ms`, firing what falls due on the way. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await settle();
      const next = [...this.timers.entries()].filter(([, x]) => x.at <= end).sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (!next) break;
      const [id, timer] = next;
      this.t = timer.at;
      if (timer.every) timer.at += timer.every;
      else this.timers.delete(id);
      timer.fn();
    }
    this.t = end;
    await settle();
  }

  private add(ms: number, fn: () => void, every?: number): () => void {
    const id = this.seq++;
    this.timers.set(id, { at: this.t + ms, fn, ...(every ? { every } : {}) });
    return () => void this.timers.delete(id);
  }
}

/** Lets every promise chain that is runnable now run to its end (or to its next timer). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
