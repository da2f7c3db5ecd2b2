// Tests of the client's bind and unbind requests (usbipgw's OP_REQ_BIND and OP_REQ_UNBIND):
// what goes on the wire, what comes back, bounded replies, and the connection closed after;
// and of importDevice() refusing an OP_REP_IMPORT for another device than it asked for.
import { assertEquals, assertRejects } from "@std/assert";
import {
  type Connection,
  importDevice,
  memoryConnectionPair,
  OpStatus,
  Speed,
  UsbipServer,
} from "../../mod.ts";
import {
  decodeOpRequest,
  encodeOpRepBind,
  encodeOpRepImport,
  encodeOpRepStatus,
  encodeOpRepUnbind,
  FrameReader,
  UsbipProtocolError,
} from "../../protocol.ts";
import { requestBind, requestUnbind } from "../../lib/client/usbip_client.ts";

/**
 * A stand-in gateway on `end`: reads one 40-byte request, answers `reply`, then reports what it
 * read and whether the client closed the connection afterwards.
 */
async function fakeGateway(end: Connection, reply: Uint8Array) {
  const reader = new FrameReader(end.readable);
  const request = decodeOpRequest((await reader.readExact(40))!);
  const w = end.writable.getWriter();
  await w.write(reply).catch(() => {});
  w.releaseLock();
  const closedByClient = (await reader.readExact(1)) === null;
  return { request, closedByClient };
}

Deno.test("requestBind() and requestUnbind() send the bus id and return the status and message", async () => {
  const server = new UsbipServer({
    statusAccess: () => true,
    manageHostDevice: (action, busid) =>
      Promise.resolve(
        action === "bind"
          ? { ok: true, message: `Exported ${busid}` }
          : { ok: false, message: `${busid} is in use` },
      ),
  });
  for (
    const [request, expected] of [
      [requestBind, { status: OpStatus.ST_OK, message: "Exported 3-1.2" }],
      [requestUnbind, { status: OpStatus.ST_ERROR, message: "3-1.2 is in use" }],
    ] as const
  ) {
    const [client, end] = memoryConnectionPair();
    const done = server.accept(end);
    assertEquals(await request(client, "3-1.2"), expected);
    await done;
  }
  await server.close();
});

Deno.test("requestBind() and requestUnbind() put the right request on the wire and close after", async () => {
  for (
    const [request, kind, reply] of [
      [
        requestBind,
        "op_req_bind",
        encodeOpRepBind({ kind: "op_rep_bind", status: OpStatus.ST_NA, message: "no" }),
      ],
      [
        requestUnbind,
        "op_req_unbind",
        encodeOpRepUnbind({ kind: "op_rep_unbind", status: OpStatus.ST_OK, message: "gone" }),
      ],
    ] as const
  ) {
    const [client, end] = memoryConnectionPair();
    const gateway = fakeGateway(end, reply);
    const answer = await request(client, "2-4");
    assertEquals(answer.status, kind === "op_req_bind" ? OpStatus.ST_NA : OpStatus.ST_OK);
    assertEquals(await gateway, { request: { kind, busid: "2-4" }, closedByClient: true });
  }
});

Deno.test("requestBind() refuses a reply over the message limit or of another kind, and closes", async () => {
  const tooLong = encodeOpRepBind({ kind: "op_rep_bind", status: 0, message: "" });
  new DataView(tooLong.buffer).setUint32(8, 1025);
  for (
    const [reply, text] of [
      [tooLong, "is 1025 bytes, limit is 1024"],
      [encodeOpRepStatus(OpStatus.ST_NA), "expected 0x00f1"],
      [
        encodeOpRepUnbind({ kind: "op_rep_unbind", status: 0, message: "" }),
        "expected 0x00f1",
      ],
    ] as const
  ) {
    const [client, end] = memoryConnectionPair();
    const gateway = fakeGateway(end, reply);
    await assertRejects(() => requestBind(client, "1-1"), UsbipProtocolError, text);
    assertEquals((await gateway).closedByClient, true);
  }
});

Deno.test("requestBind() refuses a bus id over 31 bytes before sending anything", async () => {
  const [client, end] = memoryConnectionPair();
  await assertRejects(() => requestBind(client, "1-" + "1".repeat(30)), RangeError, "busid");
  assertEquals(await new FrameReader(end.readable).readExact(1), null, "closed, nothing sent");
});

Deno.test("importDevice() refuses a reply for another bus id than it asked for, and closes", async () => {
  // As the kernel's usbip tool does (tools/usb/usbip/src/usbip_attach.c, query_import_device:
  // "recv different busid"): the URBs that follow would go to a device nobody chose.
  const record = {
    path: "/sys/devices/platform/vhci/usb1/1-2",
    busid: "1-2",
    busnum: 1,
    devnum: 3,
    speed: Speed.HIGH,
    idVendor: 0x0525,
    idProduct: 0xa4a0,
    bcdDevice: 0x0100,
    bDeviceClass: 0xff,
    bDeviceSubClass: 0,
    bDeviceProtocol: 0,
    bConfigurationValue: 0,
    bNumConfigurations: 1,
    bNumInterfaces: 1,
  };
  const reply = encodeOpRepImport({
    kind: "op_rep_import",
    status: OpStatus.ST_OK,
    device: record,
  });
  const [client, end] = memoryConnectionPair();
  const gateway = fakeGateway(end, reply);
  await assertRejects(
    () => importDevice(client, "1-1"),
    Error,
    "Cannot import 1-1: the server answered for 1-2",
  );
  assertEquals(await gateway, {
    request: { kind: "op_req_import", busid: "1-1" },
    closedByClient: true,
  });
  // The same reply to a request for 1-2 is an import.
  const [client2, end2] = memoryConnectionPair();
  const gateway2 = fakeGateway(end2, reply);
  const channel = await importDevice(client2, "1-2");
  assertEquals([channel.device.busid, channel.devid], ["1-2", 0x10003]);
  await channel.close();
  assertEquals((await gateway2).closedByClient, true);
});
