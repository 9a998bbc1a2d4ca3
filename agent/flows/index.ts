import { mkdirSync } from "node:fs";
import type { Registry } from "prom-client";
import { openFlowEvents } from "../../shared/kernel/netlink/flow-events.js";
import type { Logger } from "../../shared/log.js";
import { errorMessage } from "../errors.js";
import { DROP_NFLOG_GROUP } from "../policy/compile.js";
import { FlowCollector, type FlowView } from "./collector.js";
import { matchesFilter, parseFlowFilter } from "./filter.js";
import { TokenBucket } from "./limiter.js";
import { createFlowMetrics } from "./metrics.js";
import { JsonLinesFile } from "./sink.js";
import { flowSocketPath, serveFlows } from "./socket.js";

export interface FlowsOptions {
  nodeName: string;
  stateDir: string;
  /** Append every flow here as JSON lines ("": no file). */
  flowLog: string;
  flowMetrics: boolean;
  flowsPerSecond: number;
  view(): FlowView;
  registry: Registry;
  logger: Logger;
}

/** Files of the flow log kept besides the one written, and the size that rotates it. */
const FLOW_LOG = { maxBytes: 10 * 1024 * 1024, keep: 5 };

/**
 * `twilld run`'s flows: the collector on this node's namespace (conntrack events and the
 * policy's nflog group) and the socket `twilld flows` asks. A flow log or flow metrics keep it
 * collecting; otherwise it reads the kernel only while someone follows.
 */
export async function startFlows(o: FlowsOptions): Promise<{ stop(): Promise<void> }> {
  const logger = o.logger.with({ component: "flows" });
  const collector = new FlowCollector({
    nodeName: o.nodeName,
    open: () => openFlowEvents({ netns: null, nflogGroup: DROP_NFLOG_GROUP, conntrack: true }),
    view: o.view,
    sink: o.flowLog ? new JsonLinesFile({ path: o.flowLog, ...FLOW_LOG }) : null,
    metrics: o.flowMetrics ? createFlowMetrics(o.registry) : null,
    limiter: new TokenBucket(o.flowsPerSecond, o.flowsPerSecond, Date.now),
    logger,
  });
  collector.start();
  const path = flowSocketPath(o.stateDir);
  // Without its socket the agent still runs; `twilld flows` then says no agent answers.
  const server = await (async () => {
    mkdirSync(o.stateDir, { recursive: true });
    return serveFlows(path, collector, (req) => {
      const filter = parseFlowFilter({ ...(req.pod ? { pod: req.pod } : {}), ...(req.verdict ? { verdict: req.verdict } : {}) });
      return (r) => matchesFilter(filter, r);
    }, logger);
  })().catch((err: unknown) => {
    logger.warn("Cannot serve flows; `twilld flows` will not answer", { socket: path, error: errorMessage(err) });
    return null;
  });
  return {
    stop: async () => {
      await server?.close();
      collector.stop();
    },
  };
}
