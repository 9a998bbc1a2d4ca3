import type { Logger } from "../../shared/log.js";

/**
 * ADD's way back: every step that changed something registers how to take it back, and when a
 * later step fails the steps run in reverse order. A failing undo is logged and the rest still
 * run; the caller reports the original error, not the undo's.
 */
export class Undo {
  private readonly steps: { what: string; fn: () => Promise<unknown> }[] = [];

  constructor(private readonly log: Logger) {}

  push(what: string, fn: () => Promise<unknown>): void {
    this.steps.push({ what, fn });
  }

  async run(): Promise<void> {
    while (this.steps.length > 0) {
      const step = this.steps.pop()!;
      try {
        await step.fn();
      } catch (err) {
        this.log.warn("Undo step failed", { step: step.what, error: err });
      }
    }
  }
}
