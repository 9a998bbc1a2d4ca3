import type { Readable } from "node:stream";

/**
 * Hands each JSON line a stream carries to `on`, as it comes: a chunk may end inside a line,
 * which waits for the rest (what `twilld flows -f -o json` prints, read by the tests).
 */
export function onJsonLines<T>(stream: Readable, on: (item: T) => void): void {
  let partial = "";
  stream.on("data", (b: Buffer) => {
    const lines = (partial + b.toString("utf8")).split("\n");
    partial = lines.pop()!;
    for (const l of lines) if (l.trim() !== "") on(JSON.parse(l) as T);
  });
}
