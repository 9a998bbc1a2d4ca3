import { closeSync, constants, fstatSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { errorMessage } from "../errors.js";

export interface JsonLinesFileOptions {
  path: string;
  /** Rotate before a batch would take the file past this; default 10 MiB. */
  maxBytes?: number;
  /** Rotated files kept: path.1 (the newest) … path.N; default 3. */
  keep?: number;
}

export const FLOW_LOG_MAX_BYTES = 10 * 1024 * 1024;
export const FLOW_LOG_KEEP = 3;

/**
 * A JSON-lines file for flow records (for a log shipper, or jq): a line per record, appended,
 * rotated the way logrotate numbers (path.1 the newest old file) when it would pass `maxBytes`.
 * A batch is one write of whole lines, so a crash leaves at most the last batch out, never half
 * a line a reader chokes on; a batch is never split across two files. The directory is made
 * 0700 and the file 0600: flows say which pod talks to which.
 */
export class JsonLinesFile {
  readonly path: string;
  private readonly maxBytes: number;
  private readonly keep: number;
  private fd: number | null = null;
  private size = 0;

  constructor(o: JsonLinesFileOptions) {
    this.path = o.path;
    this.maxBytes = o.maxBytes ?? FLOW_LOG_MAX_BYTES;
    this.keep = o.keep ?? FLOW_LOG_KEEP;
    if (!(this.maxBytes > 0)) throw new RangeError(`flow log size must be positive, not ${this.maxBytes}`);
    if (!Number.isInteger(this.keep) || this.keep < 0) throw new RangeError(`flow log files kept must be a whole number, not ${this.keep}`);
  }

  /** Appends a line per record, synchronously; throws naming the file and what failed. */
  write(records: readonly unknown[]): void {
    if (records.length === 0) return;
    const data = Buffer.from(records.map((r) => JSON.stringify(r) + "\n").join(""));
    try {
      let fd = this.fd ?? this.open();
      if (this.size > 0 && this.size + data.length > this.maxBytes) {
        this.rotate();
        fd = this.open();
      }
      // One write; a regular file takes it whole, and the loop is only for the short write
      // a full disk gives before it fails.
      for (let done = 0; done < data.length; ) done += writeSync(fd, data, done);
      this.size += data.length;
    } catch (err) {
      // Where a failed write left the file is read again on the next one.
      this.close();
      throw new Error(`failed to write flow log "${this.path}": ${errorMessage(err)}`);
    }
  }

  close(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    closeSync(fd);
  }

  private open(): number {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    // Never through a link planted under the name.
    const fd = openSync(this.path, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_NOFOLLOW, 0o600);
    this.fd = fd;
    this.size = fstatSync(fd).size;
    return fd;
  }

  /** path.N-1 → path.N … path → path.1, the oldest over `keep` gone. */
  private rotate(): void {
    this.close();
    if (this.keep === 0) {
      unlinkSync(this.path);
      return;
    }
    for (let i = this.keep - 1; i >= 1; i--) {
      try {
        renameSync(`${this.path}.${i}`, `${this.path}.${i + 1}`);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      }
    }
    renameSync(this.path, `${this.path}.1`);
  }
}
