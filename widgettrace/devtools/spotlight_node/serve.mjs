// Starts Spotlight's sidecar for widgettrace's tests, bound to 127.0.0.1 only.
//
// Uses the package's exported setup (`setupSpotlight` from "@spotlightjs/spotlight") rather than the
// stock CLI, which listens on every interface and starts its own Sentry telemetry client
// (dist/run.js imports dist/instrument.js; the exported setup does not).
//
// Usage: node serve.mjs [port]   (port 0 or absent: any free port)
// Prints one JSON line {"port": N, "host": "127.0.0.1"} on stdout once listening; SIGTERM stops it.
import net from "node:net";

import { setupSpotlight } from "@spotlightjs/spotlight";

const HOST = "127.0.0.1";
const port = Number.parseInt(process.argv[2] ?? "0", 10);

// setupSpotlight() -> @hono/node-server serve() calls server.listen(port, undefined, cb): no host
// option reaches it, so bind the loopback address at the one place every listen goes through.
const originalListen = net.Server.prototype.listen;
net.Server.prototype.listen = function listenOnLoopback(...args) {
  if (typeof args[0] === "number" && (args[1] === undefined || typeof args[1] === "function")) {
    if (typeof args[1] === "function") {
      args.splice(1, 0, HOST);
    } else {
      args[1] = HOST;
    }
  }
  return originalListen.apply(this, args);
};

const quiet = { info() {}, debug() {}, warn: (m) => console.error(m), error: (m) => console.error(m) };

const server = await setupSpotlight({ port, isStandalone: true, logger: quiet });
if (!server) {
  console.error("Spotlight did not start (another sidecar on that port?)");
  process.exit(1);
}
const address = server.address();
if (!address || typeof address === "string" || address.address !== HOST) {
  console.error(`Spotlight bound to an unexpected address: ${JSON.stringify(address)}`);
  process.exit(1);
}
process.stdout.write(`${JSON.stringify({ port: address.port, host: address.address })}\n`);
