import { describe, expect, it } from "vitest";
import { HEAP_SPACE_METRICS, createMetrics } from "./metrics.js";

describe("createMetrics", () => {
  it("keeps the process metrics but the per-space heap gauges, which walk the heap on Bun", async () => {
    const text = await createMetrics(true).registry.metrics();
    const names = new Set([...text.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]));
    expect(names).toContain("process_cpu_seconds_total");
    expect(names).toContain("process_resident_memory_bytes");
    expect(names).toContain("nodejs_heap_size_used_bytes");
    expect(names).toContain("twill_reconcile_duration_seconds");
    for (const name of HEAP_SPACE_METRICS) expect(names).not.toContain(name);
  });

  it("has only twill's own metrics without process metrics", async () => {
    const text = await createMetrics(false).registry.metrics();
    const names = [...text.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1]!);
    expect(names.length).toBeGreaterThan(0);
    expect(names.filter((n) => !n.startsWith("twill_"))).toEqual([]);
  });
});
