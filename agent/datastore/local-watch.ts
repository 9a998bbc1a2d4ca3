import { watch, type FSWatcher } from "node:fs";
import { SETTLE_MS } from "./local-view.js";

/**
 * How the local store follows its directories: inotify (fs.watch) names the files that changed;
 * a file being written is named again on a timer, as its writer's next write may send no event
 * (an event can be lost: a full inotify queue, a watch being restarted); and the whole store is
 * read again every `rescanMs`, and after a watcher error (the watchers start again then), to
 * catch anything inotify missed. What a name means is the store's business.
 */

/** The first re-read of a file being written; each next one waits twice as long, until SETTLE_MS has passed. */
const SETTLE_RETRY_MS = 5;
const DEFAULT_RESCAN_MS = 60_000;

export interface DirectoryFollowerOptions<K extends string> {
  /** The directories followed, each under a key that `changed` names it by. */
  dirs: Record<K, string>;
  rescanMs?: number;
  /** Makes the directories exist, before any watcher starts. */
  prepare(): Promise<void>;
  /** Reads the whole store again; the watchers are running by then, so no change is missed. */
  rescan(): Promise<void>;
  /** A file in `dirs[dir]` changed (or is being written, and may have since). */
  changed(dir: K, name: string): void;
  onError(err: unknown): void;
}

export class DirectoryFollower<K extends string> {
  private stopped = false;
  private watchers: FSWatcher[] = [];
  private rescanTimer: NodeJS.Timeout | undefined;
  private settleTimer: NodeJS.Timeout | undefined;
  private settleDelay = 0;

  constructor(private readonly o: DirectoryFollowerOptions<K>) {}

  /** Starts following: the first full read at once. */
  start(): void {
    void this.rescanLoop();
  }

  /**
   * Names the files being written (per directory) again after a while, in case no event
   * follows their last write; waits twice as long each time, and starts over once none is.
   */
  rereadSettling(names: Record<K, readonly string[]>): void {
    const files = (Object.entries(names) as [K, readonly string[]][]).flatMap(([dir, list]) => list.map((name) => [dir, name] as const));
    if (files.length === 0) {
      clearTimeout(this.settleTimer);
      this.settleTimer = undefined;
      this.settleDelay = 0;
      return;
    }
    if (this.stopped || this.settleTimer !== undefined) return;
    this.settleDelay = this.settleDelay === 0 ? SETTLE_RETRY_MS : Math.min(this.settleDelay * 2, SETTLE_MS);
    this.settleTimer = setTimeout(() => {
      this.settleTimer = undefined;
      for (const [dir, name] of files) this.o.changed(dir, name);
    }, this.settleDelay);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.rescanTimer);
    clearTimeout(this.settleTimer);
    for (const w of this.watchers.splice(0)) w.close();
  }

  private async rescanLoop(): Promise<void> {
    try {
      await this.o.prepare();
      if (this.watchers.length === 0) this.startWatchers();
      await this.o.rescan();
    } catch (err) {
      this.o.onError(err);
    }
    if (!this.stopped) this.rescanTimer = setTimeout(() => void this.rescanLoop(), this.o.rescanMs ?? DEFAULT_RESCAN_MS);
  }

  private startWatchers(): void {
    for (const [dir, path] of Object.entries(this.o.dirs) as [K, string][]) {
      try {
        const w = watch(path, { persistent: false }, (_event, name) => {
          if (name !== null) this.o.changed(dir, name.toString());
        });
        w.on("error", (err) => {
          // The directory went away or the watch broke: start over on the next rescan.
          this.o.onError(err);
          for (const x of this.watchers.splice(0)) x.close();
        });
        this.watchers.push(w);
      } catch (err) {
        this.o.onError(err);
      }
    }
  }
}
