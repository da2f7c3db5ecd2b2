// The op phase over real TCP (UsbipServer behind a TcpListener on 127.0.0.1): as Linux usbipd
// (tools/usb/usbip/src/usbipd.c), the server closes the connection once it has answered a
// device list or refused an import, so a client that reads to end of stream gets it at once
// rather than after the op-phase timeout (10 s). usbipgw's own OP_REQ_STATUS leaves the
// connection open for another request.
import { assert, assertEquals } from "@std/assert";
import {
  connectTcp,
  GadgetZero,
  importDevice,
  OpStatus,
  TcpListener,
  UsbipServer,
} from "../../mod.ts";
import {
  decodeOpHeader,
  decodeOpRepDevlist,
  encodeOpRepStatus,
  encodeOpReqDevlist,
  encodeOpReqImport,
  encodeOpReqStatus,
} from "../../protocol.ts";
import { ProbeDevice } from "../server/_probe_device.ts";
import { refusingServer } from "../server/_session_helpers.ts";

/** A bound on the wait for end of stream, far below the 10 s op-phase timeout. */
const EOF_WITHIN_MS = 1000;

/** Reads exactly `n` bytes, or fails at end of stream. */
async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await conn.read(out.subarray(got));
    if (r === null) throw new Error(`End of stream after ${got} of ${n} bytes`);
    got += r;
  }
  return out;
}

/**
 * Reads everything until the server closes the connection; returns the bytes and how long end
 * of stream took from `since`. Gives up (and fails) after 3 s.
 */
async function readToEof(conn: Deno.Conn, since: number) {
  const chunks: number[] = [];
  const buf = new Uint8Array(4096);
  let gaveUp = false;
  const timer = setTimeout(() => {
    gaveUp = true;
    closeQuietly(conn);
  }, 3000);
  try {
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(...buf.subarray(0, n));
    }
  } catch (e) {
    if (gaveUp) throw new Error("No end of stream within 3 s");
    throw e;
  } finally {
    clearTimeout(timer);
  }
  return { bytes: new Uint8Array(chunks), eofMs: performance.now() - since };
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** Sends `request` on a fresh connection and reads to end of stream. */
async function oneRequest(port: number, request: Uint8Array) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const since = performance.now();
    await conn.write(request);
    return await readToEof(conn, since);
  } finally {
    closeQuietly(conn);
  }
}

/** A server on an ephemeral port of 127.0.0.1 with Gadget Zero on 1-1. */
function serve(server: UsbipServer) {
  const listener = new TcpListener({ hostname: "127.0.0.1", port: 0 });
  const serving = server.listen(listener);
  return {
    port: listener.port,
    async stop() {
      await server.close();
      await serving;
    },
  };
}

Deno.test("over TCP, a device list ends with end of stream at once", async () => {
  const server = new UsbipServer();
  server.addDevice(new GadgetZero(), { busid: "1-1" });
  server.addDevice(new ProbeDevice(), { busid: "1-2" });
  const gw = serve(server);
  try {
    const { bytes, eofMs } = await oneRequest(gw.port, encodeOpReqDevlist());
    const list = decodeOpRepDevlist(bytes);
    assertEquals(list.devices.map((d) => d.busid), ["1-1", "1-2"]);
    assertEquals(bytes.length, 12 + 2 * (312 + 4), "the whole list, nothing after it");
    assert(eofMs < EOF_WITHIN_MS, `end of stream after ${eofMs.toFixed(0)} ms`);
  } finally {
    await gw.stop();
  }
});

Deno.test("over TCP, each refused import (NODEV, NA, DEV_BUSY, DEV_ERR) ends with end of stream at once", async () => {
  const { server, refusals } = refusingServer();
  const gw = serve(server);
  const holder = await importDevice(await connectTcp("127.0.0.1", gw.port), "1-1");
  try {
    for (const [busid, status] of refusals) {
      const { bytes, eofMs } = await oneRequest(gw.port, encodeOpReqImport(busid));
      assertEquals(bytes.length, 8, `${busid}: the header alone`);
      assertEquals(decodeOpHeader(bytes).status, status, busid);
      assert(eofMs < EOF_WITHIN_MS, `${busid}: end of stream after ${eofMs.toFixed(0)} ms`);
    }
    // The session holding 1-1 is not disturbed.
    const config = await holder.control({
      bmRequestType: 0x80,
      bRequest: 8,
      wValue: 0,
      wIndex: 0,
      wLength: 1,
    });
    assertEquals(config.status, 0);
  } finally {
    await holder.close();
    await gw.stop();
  }
});

Deno.test("over TCP, a status request, answered or refused, lets a following request through", async () => {
  let admit = true;
  const server = new UsbipServer({ statusAccess: () => admit });
  server.addDevice(new GadgetZero(), { busid: "1-1" });
  const gw = serve(server);
  try {
    for (const allowed of [true, false]) {
      admit = allowed;
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: gw.port });
      try {
        await conn.write(encodeOpReqStatus());
        const head = await readExactly(conn, 12);
        const length = new DataView(head.buffer).getUint32(8);
        const json = new TextDecoder().decode(await readExactly(conn, length));
        assertEquals(decodeOpHeader(head).status, allowed ? OpStatus.ST_OK : OpStatus.ST_NA);
        if (allowed) assertEquals(JSON.parse(json).devices[0].busid, "1-1");
        else assertEquals(head, encodeOpRepStatus(OpStatus.ST_NA));
        // The same connection still takes a request: a device list, then end of stream.
        const since = performance.now();
        await conn.write(encodeOpReqDevlist());
        const { bytes, eofMs } = await readToEof(conn, since);
        assertEquals(decodeOpRepDevlist(bytes).devices.map((d) => d.busid), ["1-1"]);
        assert(eofMs < EOF_WITHIN_MS, `end of stream after ${eofMs.toFixed(0)} ms`);
      } finally {
        closeQuietly(conn);
      }
    }
  } finally {
    await gw.stop();
  }
});
