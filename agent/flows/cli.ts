import { renderFlow } from "./render.js";
import { flowSocketPath, readFlows, type FlowRequest } from "./socket.js";

export interface FlowsCommand extends FlowRequest {
  stateDir: string;
  output: "table" | "json";
}

/**
 * `twilld flows`: asks this node's running agent for the flows of its pods, and prints them
 * as they come (--follow) or those it keeps. A line per flow; `-o json` a JSON object per
 * line, for jq and log shippers. What to do when no agent answers, or when the agent keeps
 * no flows (collection on demand), goes to stderr.
 */
export async function printFlows(o: FlowsCommand, write: (s: string) => void, warn: (s: string) => void, signal?: AbortSignal): Promise<boolean> {
  const req: FlowRequest = { follow: o.follow, ...(o.pod ? { pod: o.pod } : {}), ...(o.verdict ? { verdict: o.verdict } : {}) };
  let ok = true;
  let shown = 0;
  let onDemand = false;
  await readFlows(
    flowSocketPath(o.stateDir),
    req,
    (line) => {
      if ("error" in line) {
        warn(`twilld refused the request: ${line.error}\n`);
        ok = false;
      } else if ("hello" in line) {
        onDemand = line.hello.collecting === "on-demand";
      } else if ("flow" in line) {
        shown++;
        write(o.output === "json" ? JSON.stringify(line.flow) + "\n" : renderFlow(line.flow) + "\n");
      }
    },
    signal,
  );
  if (ok && !o.follow && shown === 0 && onDemand) {
    warn("No flows kept: this agent collects flows only while someone follows them. Use --follow, or run twilld with --flow-log FILE or --flow-metrics to keep the recent ones.\n");
  }
  return ok;
}
