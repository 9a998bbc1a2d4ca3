// TCP traffic that an upgrade must not break, run inside a pod's network namespace
// (scripts/upgrade-test enters it with nsenter, so the sockets are the pod's and the program
// is not something the upgrade can restart):
//
//   node traffic.mjs serve --port 7000
//       an echo server on every address of the pod (IPv4 and IPv6)
//   node traffic.mjs client --hold NAME=HOST:PORT:COUNT ... --dial NAME=HOST:PORT ... [--interval-ms 100]
//       --hold keeps COUNT connections open and sends a numbered line on each every interval,
//       expecting it back; --dial opens one new connection per interval, sends a line, reads it
//       back and closes. Every failure is a JSON line on stdout with its time; on SIGTERM the
//       summary per flow is the last line.
//   node traffic.mjs probe --dial NAME=HOST:PORT ...
//       one connection to each target, as --dial makes them; a JSON line per target, and exit
//       status 1 when any failed (scripts/fault-test checks a new pod's reach with it).
//
// A held connection that errors or closes is a reset (the upgrade must cause none); it is
// opened again after a second so the flow keeps measuring. A held connection whose echo is
// late by more than a second is a stall (packets lost, not a reset). A dial that fails or
// times out (1 s) is a failure; consecutive failures make one outage window.
import net from "node:net";

const INTERVAL_DEFAULT = 100;
const TIMEOUT_MS = 1000;

const [mode, ...rest] = process.argv.slice(2);
const now = () => Date.now();
const iso = (t) => new Date(t).toISOString();
const emit = (event) => process.stdout.write(`${JSON.stringify({ t: iso(now()), ...event })}\n`);

function parseArgs(args) {
  const out = { hold: [], dial: [], port: 7000, intervalMs: INTERVAL_DEFAULT };
  for (let i = 0; i < args.length; i += 2) {
    const [flag, value] = [args[i], args[i + 1]];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--port") out.port = Number(value);
    else if (flag === "--interval-ms") out.intervalMs = Number(value);
    else if (flag === "--hold" || flag === "--dial") {
      const [name, target] = value.split(/=(.*)/s);
      // HOST may be an IPv6 address: the port (and count) are the last fields.
      const parts = target.split(":");
      const count = flag === "--hold" ? Number(parts.pop()) : 1;
      const port = Number(parts.pop());
      const host = parts.join(":").replace(/^\[|\]$/g, "");
      (flag === "--hold" ? out.hold : out.dial).push({ name, host, port, count });
    } else throw new Error(`unknown flag ${flag}`);
  }
  return out;
}

function serve({ port }) {
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    socket.on("error", () => {});
    socket.pipe(socket);
  });
  server.listen({ port, host: "::", ipv6Only: false }, () => emit({ event: "listening", port }));
  process.on("SIGTERM", () => process.exit(0));
}

/** A held connection: one line out per tick, the same line expected back. */
function holdOne(flow, index, stats) {
  let socket;
  let seq = 0;
  let lastEcho = now();
  let buffered = "";
  let stalled = false;
  let alive = false;
  const open = () => {
    buffered = "";
    const mine = net.connect({ host: flow.host, port: flow.port });
    socket = mine;
    socket.setNoDelay(true);
    socket.on("connect", () => {
      alive = true;
      lastEcho = now();
      stats.opened++;
    });
    socket.on("data", (chunk) => {
      buffered += chunk.toString();
      let nl;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        buffered = buffered.slice(nl + 1);
        const gap = now() - lastEcho;
        if (gap > stats.maxEchoGapMs) stats.maxEchoGapMs = gap;
        lastEcho = now();
        stats.echoes++;
        if (stalled) {
          stalled = false;
          emit({ event: "stall-end", flow: flow.name, conn: index, gapMs: gap });
        }
      }
    });
    const lost = (why) => {
      // Each socket is lost once (error, then close); the next one is another socket.
      if (mine !== socket || mine.lostOnce) return;
      mine.lostOnce = true;
      const wasAlive = alive;
      alive = false;
      socket.destroy();
      if (wasAlive) stats.resets++;
      else stats.connectFailures++;
      emit({ event: wasAlive ? "reset" : "connect-failed", flow: flow.name, conn: index, why });
      setTimeout(open, 1000);
    };
    socket.on("error", (err) => lost(err.code ?? err.message));
    socket.on("close", () => lost("close"));
  };
  open();
  return () => {
    if (!alive) return;
    if (!stalled && now() - lastEcho > TIMEOUT_MS) {
      stalled = true;
      stats.stalls++;
      emit({ event: "stall", flow: flow.name, conn: index });
    }
    socket.write(`${flow.name} ${index} ${seq++}\n`);
  };
}

/** One new connection: connect, a line out, the line back, close; within TIMEOUT_MS. */
function dialOnce(flow) {
  return new Promise((resolve) => {
    const started = now();
    const socket = net.connect({ host: flow.host, port: flow.port });
    let got = "";
    const done = (error) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ error, ms: now() - started });
    };
    const timer = setTimeout(() => done("timeout"), TIMEOUT_MS);
    socket.on("connect", () => socket.write("ping\n"));
    socket.on("data", (chunk) => {
      got += chunk.toString();
      if (got.includes("\n")) done(null);
    });
    socket.on("error", (err) => done(err.code ?? err.message));
    socket.on("close", () => done("closed before the echo"));
  });
}

function dialLoop(flow, intervalMs, stats) {
  let window = null;
  const tick = async () => {
    const t = now();
    stats.attempts++;
    const { error, ms } = await dialOnce(flow);
    if (error) {
      stats.failures++;
      emit({ event: "dial-failed", flow: flow.name, why: error, ms });
      if (!window) window = { from: iso(t), fromMs: t, failures: 0 };
      window.failures++;
    } else if (window) {
      stats.windows.push({ from: window.from, to: iso(t), ms: t - window.fromMs, failures: window.failures });
      emit({ event: "dial-recovered", flow: flow.name, afterMs: t - window.fromMs, failures: window.failures });
      window = null;
    }
    setTimeout(tick, Math.max(0, intervalMs - (now() - t)));
  };
  tick();
  return () => {
    if (window) stats.windows.push({ from: window.from, to: null, ms: now() - window.fromMs, failures: window.failures });
    window = null;
  };
}

function client({ hold, dial, intervalMs }) {
  const summary = { started: iso(now()), hold: {}, dial: {} };
  const ticks = [];
  for (const flow of hold) {
    const stats = (summary.hold[flow.name] = { target: `${flow.host}:${flow.port}`, connections: flow.count, opened: 0, resets: 0, connectFailures: 0, stalls: 0, echoes: 0, maxEchoGapMs: 0 });
    for (let i = 0; i < flow.count; i++) ticks.push(holdOne(flow, i, stats));
  }
  const closers = [];
  for (const flow of dial) {
    const stats = (summary.dial[flow.name] = { target: `${flow.host}:${flow.port}`, attempts: 0, failures: 0, windows: [] });
    closers.push(dialLoop(flow, intervalMs, stats));
  }
  setInterval(() => ticks.forEach((tick) => tick()), intervalMs);
  emit({ event: "started", hold: hold.map((f) => f.name), dial: dial.map((f) => f.name) });
  process.on("SIGTERM", () => {
    closers.forEach((close) => close());
    summary.stopped = iso(now());
    process.stdout.write(`${JSON.stringify({ t: iso(now()), event: "summary", summary })}\n`, () => process.exit(0));
  });
}

async function probe({ dial }) {
  let failed = 0;
  for (const flow of dial) {
    const { error, ms } = await dialOnce(flow);
    if (error) failed++;
    emit({ event: error ? "probe-failed" : "probe-ok", flow: flow.name, target: `${flow.host}:${flow.port}`, ms, ...(error ? { why: error } : {}) });
  }
  process.exit(failed ? 1 : 0);
}

const args = parseArgs(rest);
if (mode === "serve") serve(args);
else if (mode === "client") client(args);
else if (mode === "probe") probe(args);
else {
  process.stderr.write("usage: traffic.mjs serve --port P | client --hold NAME=HOST:PORT:COUNT --dial NAME=HOST:PORT | probe --dial NAME=HOST:PORT\n");
  process.exit(2);
}
