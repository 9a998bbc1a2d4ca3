// A tiny TCP echo for the testbed, run with Node (or Bun) inside a pod namespace:
//   serve PORT                 echo every byte back, forever
//   probe HOST:PORT ...        connect to each, send a line, wait for it back; one JSON line each
import { connect, createServer } from "node:net";

const [mode, ...args] = process.argv.slice(2);
if (mode === "serve") {
  const server = createServer((sock) => {
    sock.on("error", () => sock.destroy());
    sock.pipe(sock);
  });
  server.listen({ port: Number(args[0]), host: "::", ipv6Only: false }, () => process.stdout.write("listening\n"));
} else if (mode === "probe") {
  // The first connection of a process pays the runtime's lazy set-up: one untimed exchange.
  if (args.length) await probe(...hostPort(args[0]));
  for (const target of args) {
    process.stdout.write(JSON.stringify({ target, ...(await probe(...hostPort(target))) }) + "\n");
  }
} else {
  process.stderr.write("usage: tcp-echo.mjs serve PORT | probe HOST:PORT...\n");
  process.exit(2);
}

function hostPort(target) {
  const i = target.lastIndexOf(":");
  return [target.slice(0, i).replace(/^\[|\]$/g, ""), Number(target.slice(i + 1))];
}

function probe(host, port) {
  return new Promise((resolve) => {
    const start = process.hrtime.bigint();
    const message = `twill-echo ${host} ${Date.now()}\n`;
    let received = "";
    const sock = connect({ host, port });
    const done = (result) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done({ ok: false, error: "timeout after 3000 ms" }), 3000);
    sock.on("connect", () => sock.write(message));
    sock.on("data", (b) => {
      received += b.toString();
      if (received === message) done({ ok: true, ms: Number(process.hrtime.bigint() - start) / 1e6 });
    });
    sock.on("error", (e) => done({ ok: false, error: e.code ?? e.message }));
  });
}
