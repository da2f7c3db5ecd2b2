// Where the gateway's time goes on one URB case: starts `main.ts serve` with V8's inspector,
// samples its CPU through the Chrome DevTools Protocol (Profiler domain) while this process
// drives the case, and prints the functions with the most samples of their own.
// Usage: deno run -A bench/profile.ts [in|out] [SIZE] [DEPTH] [tcp|unix] [-- SERVE-ARGS...]
// (default: in 64 1 tcp; BENCH_SECONDS sets the seconds sampled; arguments after `--` are added
// to the gateway's, e.g. `-- --capture /tmp/p.pcapng`).
import {
  connectTo,
  freePort,
  importGadgetZero,
  openInspector,
  SECONDS,
  splitServeArgs,
  urbRequest,
} from "./_common.ts";
import { drive } from "./_urb.ts";

const { own, serve: serveExtra } = splitServeArgs(Deno.args);
const [dir = "in", sizeText = "64", depthText = "1", transport = "tcp"] = own;
const inspectPort = freePort();
const tmp = await Deno.makeTempDir({ prefix: "usbipgw-profile-" });
const tcpPort = freePort();
const unixPath = `${tmp}/gw.sock`;
const gateway = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "-A",
    `--inspect=127.0.0.1:${inspectPort}`,
    new URL("../main.ts", import.meta.url).pathname,
    "serve",
    "--tcp",
    `127.0.0.1:${tcpPort}`,
    "--unix",
    unixPath,
    "--log-level",
    "warning",
    "--rule",
    "allow:transport=tcp",
    "--device",
    "gadget-zero:busid=1-1",
    ...serveExtra,
  ],
  stdout: "null",
  stderr: "null",
}).spawn();

/** The first answer of `fn` that does not throw, retried for 10 s. */
async function retry<T>(fn: () => Promise<T>): Promise<T> {
  const end = Date.now() + 10_000;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > end) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

try {
  const inspector = await retry(() => openInspector(inspectPort));
  const call = inspector.call;
  const ep = { tcpPort, unixPath };
  const conn = await retry(() => connectTo(ep, transport as "tcp" | "unix"));
  const devid = await importGadgetZero(conn, "1-1");
  await call("Profiler.enable");
  await call("Profiler.setSamplingInterval", { interval: 100 });
  await call("Profiler.start");
  const rate = await drive(
    conn,
    urbRequest(devid, dir === "in", Number(sizeText)),
    Number(depthText),
  );
  const { profile } = await call("Profiler.stop") as { profile: { nodes: ProfileNode[] } };
  conn.close();
  inspector.close();
  const self = new Map<string, number>();
  let total = 0;
  for (const n of profile.nodes) {
    const hits = n.hitCount ?? 0;
    total += hits;
    const f = n.callFrame;
    const file = f.url.replace(/^.*\/(main|lib|ext|node)\//, "$1/");
    const key = `${f.functionName || "(anonymous)"} ${file}:${f.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + hits);
  }
  console.log(
    `${dir} ${sizeText} B, ${depthText} in flight, ${transport}: ${Math.round(rate)} URB/s; ` +
      `${total} samples in ${SECONDS} s`,
  );
  for (const [key, hits] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 30)) {
    console.log(`${(100 * hits / total).toFixed(1).padStart(5)}%  ${key}`);
  }
} finally {
  gateway.kill("SIGTERM");
  await gateway.status;
  await Deno.remove(tmp, { recursive: true });
}
