import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from "node:fs";
import { dirname } from "node:path";

/**
 * Writes a file so readers see either the old or the new content, never a torn one:
 * write a temporary file beside it, fsync, rename over. `durable: false` skips the fsync for
 * files that can be rebuilt from others after a crash (it costs milliseconds per call).
 */
export function writeFileAtomic(path: string, data: string, mode = 0o600, durable = true): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  const fd = openSync(tmp, "w", mode);
  try {
    writeSync(fd, data);
    if (durable) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
