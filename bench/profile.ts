// Where the gateway's time goes on one URB case: starts `main.ts serve` with V8's inspector,
// samples its CPU through the Chrome DevTools Protocol (Profiler domain) while this process
// drives the case, and prints the functions with the most time of their own and with their callees
// (bench/_cpu_profile.ts).
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
import { type CpuProfile, profileTable } from "./_cpu_profile.ts";

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
  const { profile } = await call("Profiler.stop") as { profile: CpuProfile };
  conn.close();
  inspector.close();
  console.log(
    `${dir} ${sizeText} B, ${depthText} in flight, ${transport}: ${Math.round(rate)} URB/s; ` +
      `sampled for ${SECONDS} s`,
  );
  console.log(profileTable(profile, 30));
} finally {
  gateway.kill("SIGTERM");
  await gateway.status;
  await Deno.remove(tmp, { recursive: true });
}
