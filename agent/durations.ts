/** Durations as flags take them ("500ms", "10s", "5m", "1h", "1h30m"; a bare number is seconds). */
export function parseDuration(text: string | number, flag: string): number {
  if (typeof text === "number" && Number.isFinite(text) && text > 0) return text * 1000;
  const s = String(text).trim();
  if (/^\d+(\.\d+)?$/.test(s) && Number(s) > 0) return Number(s) * 1000;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const parts = [...s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  const total = parts.reduce((sum, m) => sum + Number(m[1]) * unit[m[2]!]!, 0);
  if (parts.length === 0 || parts.map((m) => m[0]).join("") !== s || total <= 0) {
    throw new Error(`${flag} ${JSON.stringify(text)} is not a duration (e.g. 500ms, 10s, 5m, 1h)`);
  }
  return total;
}

/** 42s, 5m3s, 2h5m, 3d4h: kubectl's style of age. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const two = (big: number, bigUnit: string, small: number, smallUnit: string) => `${big}${bigUnit}${small ? `${small}${smallUnit}` : ""}`;
  if (s < 60) return `${s}s`;
  if (s < 3600) return two(Math.floor(s / 60), "m", s % 60, "s");
  if (s < 86400) return two(Math.floor(s / 3600), "h", Math.floor((s % 3600) / 60), "m");
  return two(Math.floor(s / 86400), "d", Math.floor((s % 86400) / 3600), "h");
}
