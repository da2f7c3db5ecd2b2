// OP_REQ_CAPTURE at the server (in memory): authorized as the status is, with an audit line per
// decision; a granted capture streams pcapng until the client closes, and a client that sends
// anything more is cut off; a reader that does not keep up loses records, counted and logged,
// while the sessions it watches go on at full speed.
import { assert, assertEquals, assertRejects, assertStringIncludes } from "@std/assert";
import {
  type Connection,
  GadgetZero,
  memoryConnectionPair,
  OpStatus,
  type PeerInfo,
  UsbipServer,
} from "../../mod.ts";
import { liveCapture } from "../../lib/capture/live_capture.ts";
import { requestCapture } from "../../lib/client/usbip_client.ts";
import { GatewayRefusal } from "../../lib/client/gateway_requests.ts";
import { decodeOpRepCapture, encodeOpReqCapture } from "../../lib/protocol/op_messages.ts";
import { captureLogs } from "../server/_logs.ts";
import { eventually, importOver, setConfiguration } from "../server/_session_helpers.ts";
import { readCapture } from "./_pcapng.ts";

const UNIX: PeerInfo = { transport: "unix", address: "gw.sock", uid: 1000, gid: 1000, pid: 7 };

/** A server that lets `admit` peers capture, with Gadget Zero on 1-1. */
function captureServer(admit: (peer: PeerInfo) => boolean, limits = {}) {
  const server: UsbipServer = new UsbipServer({
    statusAccess: admit,
    liveCapture: liveCapture(() => server),
    sessionLimits: limits,
  });
  server.addDevice(new GadgetZero(), { busid: "1-1" });
  return server;
}

/** A connection to `server` from `peer`. */
function connect(server: UsbipServer, peer: PeerInfo): { client: Connection; done: Promise<void> } {
  const [client, end] = memoryConnectionPair();
  return { client, done: server.accept({ ...end, peer }) };
}

Deno.test("a capture request from a peer the status access refuses gets ST_NA and an audit line", async () => {
  const logs = captureLogs();
  try {
    const server = captureServer((peer) => peer.uid === 0);
    const { client, done } = connect(server, UNIX);
    const e = await assertRejects(() => requestCapture(client, ""), GatewayRefusal);
    assertEquals(e.status, OpStatus.ST_NA);
    assertStringIncludes(e.message, "Not allowed");
    await done;
    assertEquals(server.observers.active, false);
    const audit = logs.lines("audit").map(([, m]) => m);
    assert(
      audit.some((m) => /capture of every device refused: Not allowed/.test(m)),
      audit.join("\n"),
    );
    await server.close();
  } finally {
    logs.stop();
  }
});

Deno.test("a capture request is answered ST_ERROR without a capture handler or for a malformed bus id", async () => {
  const plain = new UsbipServer({ statusAccess: () => true });
  const a = connect(plain, UNIX);
  const none = await assertRejects(() => requestCapture(a.client, ""), GatewayRefusal);
  assertEquals(none.status, OpStatus.ST_ERROR);
  await a.done;
  await plain.close();
  const server = captureServer(() => true);
  const b = connect(server, UNIX);
  const bad = await assertRejects(() => requestCapture(b.client, "nonsense"), GatewayRefusal);
  assertEquals(bad.status, OpStatus.ST_ERROR);
  await b.done;
  await server.close();
});

Deno.test("a granted capture streams another session's traffic until the client closes it", async () => {
  const logs = captureLogs();
  try {
    const server = captureServer(() => true);
    const { client, done } = connect(server, UNIX);
    const stream = await requestCapture(client, "1-1", 32);
    const reader = stream.getReader();
    const chunks: Uint8Array[] = [];
    const reading = (async () => {
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
      }
    })();
    const gz = await importOver(server, "1-1");
    assertEquals((await setConfiguration(gz.channel, 3)).status, 0);
    await gz.channel.submit({ ep: 1, dirIn: true, length: 512 }).done;
    await gz.channel.close();
    await gz.done;
    await eventually(() => readCapture(concat(chunks)).events.some((e) => e.includes("released")));
    await reader.cancel();
    await reading.catch(() => {});
    await done;
    assertEquals(server.observers.active, false, "the capture left the observers");
    const { usb, events } = readCapture(concat(chunks));
    assertEquals(events[0], "usbipgw live capture of 1-1 started");
    const bulk = usb.find((r) => r.type === "C" && r.epnum === 0x81)!;
    assertEquals([bulk.length, bulk.lenCap], [512, 32], "the requested snap length");
    const audit = logs.lines("audit").map(([, m]) => m);
    assert(audit.some((m) => m.includes("capture of 1-1 granted")), audit.join("\n"));
    await server.close();
  } finally {
    logs.stop();
  }
});

Deno.test("a capture client that sends anything after its request is cut off", async () => {
  const server = captureServer(() => true);
  const { client, done } = connect(server, UNIX);
  const w = client.writable.getWriter();
  await w.write(encodeOpReqCapture(""));
  await w.write(new Uint8Array([0]));
  const bytes = new Uint8Array(await new Response(client.readable).arrayBuffer());
  await done;
  assertEquals(decodeOpRepCapture(bytes).status, OpStatus.ST_OK);
  assertEquals(server.observers.active, false);
  await server.close();
});

Deno.test("a capture reader that stops reading loses records, counted and logged; the session goes on", async () => {
  const logs = captureLogs();
  try {
    // maxBufferedBytes 1 MiB: the capture may queue half of it.
    const server = captureServer(() => true, { maxBufferedBytes: 1024 * 1024 });
    const [client, end] = memoryConnectionPair();
    // The server's writes to this client complete until the answer is out, then never.
    let writes = 0;
    const stalled: Connection = {
      ...end,
      peer: UNIX,
      writable: new WritableStream({
        async write(chunk) {
          if (writes++ > 0) await new Promise(() => {});
          const w = end.writable.getWriter();
          await w.write(chunk);
          w.releaseLock();
        },
      }),
    };
    const done = server.accept(stalled);
    const w = client.writable.getWriter();
    await w.write(encodeOpReqCapture(""));
    w.releaseLock();
    const gz = await importOver(server, "1-1");
    assertEquals((await setConfiguration(gz.channel, 3)).status, 0);
    for (let i = 0; i < 40; i++) {
      const r = await gz.channel.submit({ ep: 1, dirIn: true, length: 64 * 1024 }).done;
      assertEquals(r.actualLength, 64 * 1024);
    }
    const warnings = logs.lines("capture").filter(([level]) => level === "warning");
    assert(warnings.some(([, m]) => m.includes("dropping records")), warnings.join("\n"));
    const capture = server.sessions.find((s) => s.device === undefined)!;
    assert(capture.usage.bufferedBytes <= 512 * 1024 + 64, `${capture.usage.bufferedBytes} held`);
    await gz.channel.close();
    await gz.done;
    client.close();
    await done;
    await server.close();
  } finally {
    logs.stop();
  }
});

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
