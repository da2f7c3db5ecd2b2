// ServerMetrics in-process, over in-memory connections: every refusal reason (device_error
// included), limits, attach and detach outcomes, an interrupt IN and a URB answered -ENODEV,
// counting that starts after an import, bounded labels (a bus id a client made up never
// appears), and the warning of a metrics listener on a non-loopback address.
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import {
  GadgetZero,
  importDevice,
  memoryConnectionPair,
  OpStatus,
  UsbipServer,
} from "../../mod.ts";
import { requestAttach, requestDetach } from "../../lib/client/gateway_requests.ts";
import { ServerMetrics } from "../../lib/metrics/server_metrics.ts";
import { serveMetrics } from "../../lib/metrics/serve_metrics.ts";
import { ProbeDevice } from "../server/_probe_device.ts";
import { importOver, refusingServer, setConfiguration } from "../server/_session_helpers.ts";
import { captureLogs } from "../server/_logs.ts";
import { parseExposition, sum } from "./_exposition.ts";

Deno.test("every import refusal is counted by its reason, never by the bus id asked for", async () => {
  const { server, refusals } = refusingServer();
  const metrics = new ServerMetrics(server);
  const held = await importOver(server, "1-1");
  for (const [busid, status] of refusals) {
    const [client, end] = memoryConnectionPair();
    const done = server.accept(end);
    await importDevice(client, busid).then(
      () => assert(false, `${busid} was imported`),
      (e) => assertEquals(e.status, status),
    );
    await done;
  }
  const text = metrics.render();
  const m = parseExposition(text);
  for (const reason of ["no_device", "policy", "busy", "device_error"]) {
    assertEquals(sum(m, "usbipgw_import_refusals_total", { reason }), 1, reason);
  }
  assert(!text.includes("9-9"), "a bus id no device has is no label");
  assertEquals(sum(m, "usbipgw_imports_total", { busid: "1-1", transport: "memory" }), 1);
  assertEquals(sum(m, "usbipgw_sessions_total", { transport: "memory" }), 5);
  assertEquals(sum(m, "usbipgw_sessions_open", { transport: "memory" }), 1);
  assertEquals(
    sum(m, "usbipgw_policy_decisions_total", { request: "import", rule: "1", effect: "deny" }),
    1,
  );
  await held.channel.close();
  await held.done;
  metrics.close();
  await server.close();
});

Deno.test("connections refused for a limit are counted by the limit's name", async () => {
  const server = new UsbipServer({ sessionLimits: { maxConnections: 1 } });
  const metrics = new ServerMetrics(server);
  const [a, aEnd] = memoryConnectionPair();
  const first = server.accept(aEnd);
  const [b, bEnd] = memoryConnectionPair();
  await server.accept(bEnd);
  const m = parseExposition(metrics.render());
  assertEquals(sum(m, "usbipgw_limit_closures_total", { limit: "maxConnections" }), 1);
  assertEquals(sum(m, "usbipgw_connections_accepted_total", { transport: "memory" }), 2);
  assertEquals(sum(m, "usbipgw_sessions_total", { transport: "memory" }), 1);
  assertEquals(server.refusedConnections, 1);
  a.close();
  b.close();
  await first;
  metrics.close();
  await server.close();
});

Deno.test("attach and detach requests are counted by kind and outcome", async () => {
  const server = new UsbipServer({
    localAttach: {
      attach: () => Promise.resolve({ status: OpStatus.ST_OK, vhciPort: 3, message: "done" }),
      detach: () => Promise.resolve({ status: OpStatus.ST_ERROR, message: "not yours" }),
    },
  });
  const metrics = new ServerMetrics(server);
  const ask = async (
    peer: { transport: "unix"; address: string; uid: number } | undefined,
    f: (c: Parameters<typeof requestDetach>[0]) => Promise<unknown>,
  ) => {
    const [client, end] = memoryConnectionPair();
    const done = server.accept(peer ? { ...end, peer } : end);
    await f(client);
    await done;
  };
  const user = { transport: "unix" as const, address: "usbipgw.sock", uid: 1000 };
  await ask(user, (c) => requestAttach(c, { kind: "local", busid: "1-1" }));
  await ask(
    undefined,
    (c) => requestAttach(c, { kind: "remote", host: "gw", port: 3240, busid: "1-1" }),
  );
  await ask(user, (c) => requestDetach(c, 3));
  const m = parseExposition(metrics.render());
  assertEquals(sum(m, "usbipgw_attach_requests_total", { kind: "local", outcome: "ok" }), 1);
  assertEquals(
    sum(m, "usbipgw_attach_requests_total", { kind: "remote", outcome: "not_allowed" }),
    1,
  );
  assertEquals(sum(m, "usbipgw_detach_requests_total", { outcome: "error" }), 1);
  metrics.close();
  await server.close();
});

Deno.test("counting that starts after an import still counts that session's URBs", async () => {
  const server = new UsbipServer();
  const probe = new ProbeDevice();
  server.addDevice(probe, { busid: "1-1" });
  const { channel, done } = await importOver(server, "1-1");
  const metrics = new ServerMetrics(server);
  assertEquals((await setConfiguration(channel, 1)).status, 0);
  const interrupt = channel.submit({ ep: 2, dirIn: true, length: 8 });
  await probe.waitHeld(1);
  probe.held[0]!.complete({ status: "ok", data: new Uint8Array(3) });
  assertEquals((await interrupt.done).actualLength, 3);
  // A URB pending when the device goes is answered -ENODEV, and counted so.
  const left = channel.submit({ ep: 1, dirIn: true, length: 64 });
  await probe.waitHeld(2);
  probe.disconnect();
  assertEquals((await left.done).status, -19);
  await done;
  const m = parseExposition(metrics.render());
  const gz = { busid: "1-1" };
  assertEquals(sum(m, "usbipgw_urbs_total", { ...gz, type: "interrupt", direction: "in" }), 1);
  assertEquals(sum(m, "usbipgw_urb_bytes_total", { ...gz, type: "interrupt" }), 3);
  assertEquals(sum(m, "usbipgw_urbs_total", { ...gz, type: "bulk", status: "ENODEV" }), 1);
  assertEquals(sum(m, "usbipgw_urb_latency_seconds_count", gz), 3);
  assertEquals(sum(m, "usbipgw_imports_total"), 0, "the import came before the counting");
  assertEquals(server.status().totals.urbs, sum(m, "usbipgw_urbs_total"));
  metrics.close();
  await server.close();
});

Deno.test("a metrics listener on a non-loopback address warns; on loopback it does not", async () => {
  const logs = captureLogs();
  try {
    const server = new UsbipServer();
    server.addDevice(new GadgetZero(), { busid: "1-1" });
    const local = serveMetrics(server, { hostname: "127.0.0.1", port: 0 });
    assertEquals(logs.lines("metrics").map(([level]) => level), ["info"]);
    // Bound to every address; scraped over loopback only.
    const open = serveMetrics(server, { hostname: "0.0.0.0", port: 0 });
    const [warning] = logs.lines("metrics").slice(1);
    assertEquals(warning?.[0], "warning");
    assertStringIncludes(warning?.[1] ?? "", "without authentication");
    const port = new URL(open.url).port;
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assertStringIncludes(text, 'usbipgw_urbs_pending{busid="1-1"} 0');
    await open.close();
    await local.close();
    await server.close();
  } finally {
    logs.stop();
  }
});
