// `serve --metrics`: the real gateway process, known traffic over TCP (N bulk IN URBs of K
// bytes, a stall, an unlink, refused imports), then /metrics scraped over HTTP and checked
// against that traffic and against the gateway's own status (OP_REQ_STATUS over its unix
// socket); the listener's refusals (other paths, other methods) and its loopback default.
import { assert, assertEquals, assertMatch, assertRejects } from "@std/assert";
import { importDevice, ImportRefusedError, requestStatus } from "../../lib/client/usbip_client.ts";
import { asServerStatus } from "../../lib/cli/status.ts";
import { OpStatus } from "../../lib/protocol/constants.ts";
import { connectTcp, connectUnix } from "../../lib/transport/mod.ts";
import { Request } from "../../mod.ts";
import { startGateway, tempDir } from "../e2e/_gateway.ts";
import { matching, parseExposition, promtoolCheck, promtoolProblem, sum } from "./_exposition.ts";

const N = 20;
const K = 512;

function setConfiguration(value: number) {
  return {
    bmRequestType: 0,
    bRequest: Request.SET_CONFIGURATION,
    wValue: value,
    wIndex: 0,
    wLength: 0,
  };
}

Deno.test("serve --metrics counts known traffic over HTTP, as the status does", async () => {
  const dir = await tempDir();
  const sock = `${dir.path}/gw.sock`;
  const gw = await startGateway([
    "--tcp",
    "127.0.0.1:0",
    "--unix",
    sock,
    "--metrics",
    "0", // a port alone: 127.0.0.1, any free port
    "--device",
    "gadget-zero:busid=1-1",
    "--device",
    "gadget-zero:busid=1-2",
    "--rule",
    "allow:transport=tcp,busid=1-1",
  ]);
  try {
    const line = await gw.waitFor(/Serving metrics on/);
    const url = /(http:\/\/\S+\/metrics)/.exec(line)?.[1];
    assertMatch(url ?? "", /^http:\/\/127\.0\.0\.1:\d+\/metrics$/, "bound to loopback");
    const tcp = () => connectTcp("127.0.0.1", gw.port);

    const gz = await importDevice(await tcp(), "1-1");
    assertEquals((await gz.control(setConfiguration(3))).status, 0);
    for (let i = 0; i < N; i++) {
      const r = await gz.submit({ ep: 1, dirIn: true, length: K }).done;
      assertEquals([r.status, r.actualLength], [0, K]);
    }
    // Pattern 0 wants zeros: anything else halts the sink (-EPIPE).
    const stalled = await gz.submit({ ep: 1, dirIn: false, data: new Uint8Array(64).fill(7) }).done;
    assertEquals(stalled.status, -32);
    // Loopback: an IN with nothing queued waits, and is cancelled; then an unlink too late.
    assertEquals((await gz.control(setConfiguration(2))).status, 0);
    const waiting = gz.submit({ ep: 1, dirIn: true, length: K });
    const cancelled = waiting.done.catch((e: Error) => e.name);
    assertEquals((await gz.unlink(waiting.seqnum)).status, -104);
    assertEquals(await cancelled, "AbortError");
    assertEquals((await gz.unlink(1)).status, 0);
    // One URB stays pending while the status and the metrics are read.
    const pending = gz.submit({ ep: 1, dirIn: true, length: K });
    pending.done.catch(() => {});

    for (const [busid, status] of [["1-1", 2], ["1-2", 1], ["9-9", 4]] as const) {
      const refused = await assertRejects(() => tcp().then((c) => importDevice(c, busid)));
      assert(refused instanceof ImportRefusedError && refused.status === status, String(refused));
    }
    assertEquals(OpStatus.ST_DEV_BUSY, 2);

    const status = asServerStatus(await requestStatus(await connectUnix(sock)));
    const response = await fetch(url!);
    assertEquals(response.status, 200);
    assertEquals(response.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const text = await response.text();
    const m = parseExposition(text);
    const gz1 = { busid: "1-1" };

    // The traffic as it was made.
    const urb = (labels: Record<string, string>) =>
      sum(m, "usbipgw_urbs_total", { ...gz1, ...labels });
    assertEquals(urb({ type: "bulk", direction: "in", status: "ok" }), N);
    assertEquals(
      sum(m, "usbipgw_urb_bytes_total", { ...gz1, type: "bulk", direction: "in", status: "ok" }),
      N * K,
    );
    assertEquals(urb({ type: "bulk", direction: "out", status: "EPIPE" }), 1);
    assertEquals(urb({ type: "control", direction: "out", status: "ok" }), 2);
    assertEquals(sum(m, "usbipgw_urbs_total"), N + 3);
    assertEquals(sum(m, "usbipgw_unlinks_total", { ...gz1, result: "cancelled" }), 1);
    assertEquals(sum(m, "usbipgw_unlinks_total", { ...gz1, result: "not_pending" }), 1);
    assertEquals(sum(m, "usbipgw_urbs_pending", gz1), 1);
    assertEquals(sum(m, "usbipgw_imports_total", { ...gz1, transport: "tcp" }), 1);
    for (const reason of ["busy", "policy", "no_device"]) {
      assertEquals(sum(m, "usbipgw_import_refusals_total", { reason }), 1, reason);
    }
    assertEquals(sum(m, "usbipgw_import_refusals_total"), 3);
    // Rule 1 allowed 1-1 twice (the import, then the busy one); nothing matched 1-2.
    const decisions = (labels: Record<string, string>) =>
      sum(m, "usbipgw_policy_decisions_total", { request: "import", ...labels });
    assertEquals(decisions({ rule: "1", effect: "allow" }), 2);
    assertEquals(decisions({ rule: "default", effect: "deny" }), 1);
    // Every completed URB is in the latency histogram of its device, below 10 s.
    const buckets = matching(m, "usbipgw_urb_latency_seconds_bucket", gz1);
    assertEquals(buckets.at(-1)?.labels.le, "+Inf");
    assertEquals(buckets.at(-1)?.value, N + 3);
    assertEquals(buckets.find((b) => b.labels.le === "10")?.value, N + 3);
    assertEquals(buckets[0]?.labels.le, "0.00005");
    assertEquals(sum(m, "usbipgw_urb_latency_seconds_count", gz1), N + 3);
    assert(sum(m, "usbipgw_urb_latency_seconds_sum", gz1) > 0);

    // The same as the status says.
    assertEquals(sum(m, "usbipgw_urbs_total"), status.totals.urbs);
    assertEquals(sum(m, "usbipgw_urb_bytes_total", { direction: "in" }), status.totals.bytesIn);
    assertEquals(sum(m, "usbipgw_urb_bytes_total", { direction: "out" }), status.totals.bytesOut);
    const errors = matching(m, "usbipgw_urbs_total")
      .filter((s) => s.labels.status !== "ok" && s.labels.status !== "ECONNRESET")
      .reduce((a, s) => a + s.value, 0);
    assertEquals(errors, status.totals.errors);
    // Sessions: the imports and refused imports over TCP, and the status request over unix.
    assertEquals(sum(m, "usbipgw_sessions_total"), status.totals.sessions);
    assertEquals(sum(m, "usbipgw_sessions_total", { transport: "tcp" }), 4);
    assertEquals(sum(m, "usbipgw_sessions_total", { transport: "unix" }), 1);
    assertEquals(sum(m, "usbipgw_connections_accepted_total"), status.totals.sessions);
    assertEquals(sum(m, "usbipgw_limit_closures_total"), status.totals.refusedConnections);
    const open = status.sessions.filter((s) => s.transport === "tcp");
    assertEquals(sum(m, "usbipgw_sessions_open", { transport: "tcp" }), open.length);
    assertEquals(open.map((s) => [s.busid, s.pendingUrbs]), [["1-1", 1]]);
    assertEquals(sum(m, "usbipgw_devices_exported", { origin: "emulated" }), status.devices.length);

    // The process.
    const started = sum(m, "process_start_time_seconds");
    assert(Math.abs(started - Date.now() / 1000) < 120, `start time ${started}`);
    assert(sum(m, "process_resident_memory_bytes") > 10 * 1024 * 1024);
    assert(sum(m, "process_open_fds") > 3);
    assert(sum(m, "process_cpu_seconds_total") > 0);

    if (promtoolProblem === undefined) {
      const check = await promtoolCheck(text);
      assertEquals(check, { code: 0, output: "" }, "promtool check metrics");
    } else {
      console.log(`%cpromtool check skipped: ${promtoolProblem}`, "color: yellow");
    }
    await gz.close();
  } finally {
    await gw.stop();
    await dir.remove();
  }
});

Deno.test("the metrics listener answers GET /metrics only, and reads no query", async () => {
  const gw = await startGateway(["--tcp", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
  try {
    const line = await gw.waitFor(/Serving metrics on/);
    const url = new URL(/(http:\/\/\S+)/.exec(line)![1]!);
    const status = async (path: string, init: RequestInit = {}) => {
      const r = await fetch(new URL(path, url), init);
      await r.body?.cancel();
      return [r.status, r.headers.get("allow")];
    };
    assertEquals(await status("/metrics"), [200, null]);
    assertEquals(await status("/metrics?name[]=x&debug=1"), [200, null]);
    assertEquals(await status("/"), [404, null]);
    assertEquals(await status("/metrics/"), [404, null]);
    assertEquals(await status("/debug/pprof"), [404, null]);
    assertEquals(await status("/metrics", { method: "POST", body: "x".repeat(100000) }), [
      405,
      "GET",
    ]);
    assertEquals(await status("/metrics", { method: "PUT" }), [405, "GET"]);
    assertEquals(await status("/metrics", { method: "DELETE" }), [405, "GET"]);
    // The gateway still serves USB/IP beside it.
    const conn = await connectTcp("127.0.0.1", gw.port);
    conn.close();
  } finally {
    const end = await gw.stop();
    assertEquals(end.code, 0);
  }
});

Deno.test("serve --metrics on an address in use fails the start with the address named", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    await assertRejects(
      () => startGateway(["--tcp", "127.0.0.1:0", "--metrics", `127.0.0.1:${taken.addr.port}`]),
      Error,
      `Cannot serve metrics on 127.0.0.1:${taken.addr.port}`,
    );
  } finally {
    taken.close();
  }
});
