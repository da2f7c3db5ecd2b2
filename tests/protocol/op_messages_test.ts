// Tests of the op-phase codecs: round trips, golden frames and rejections.
import { assertEquals, assertThrows } from "@std/assert";
import {
  decodeOpHeader,
  decodeOpRepBind,
  decodeOpRepDevlist,
  decodeOpRepImport,
  decodeOpRepUnbind,
  decodeOpRequest,
  encodeOpRepBind,
  encodeOpRepDevlist,
  encodeOpRepImport,
  encodeOpRepUnbind,
  encodeOpReqBind,
  encodeOpReqDevlist,
  encodeOpReqImport,
  encodeOpReqUnbind,
  MAX_BIND_MESSAGE_BYTES,
  OpStatus,
  type UsbipExportedDevice,
  UsbipProtocolError,
} from "../../lib/protocol/mod.ts";
import { golden } from "../testdata/golden.ts";

const GADGET_ZERO_RECORD: UsbipExportedDevice = {
  path: "/sys/devices/platform/usbipgw/usb1/1-1",
  busid: "1-1",
  busnum: 1,
  devnum: 2,
  speed: 3,
  idVendor: 0x0525,
  idProduct: 0xa4a0,
  bcdDevice: 0x0601,
  bDeviceClass: 0xff,
  bDeviceSubClass: 0,
  bDeviceProtocol: 0,
  bConfigurationValue: 3,
  bNumConfigurations: 2,
  bNumInterfaces: 1,
  interfaces: [{ bInterfaceClass: 0xff, bInterfaceSubClass: 0, bInterfaceProtocol: 0 }],
};

Deno.test("encodeOpReqImport() matches the kernel's layout", () => {
  assertEquals(encodeOpReqImport("1-1"), golden("op_req_import.hex"));
});

Deno.test("decodeOpRequest() reads OP_REQ_IMPORT and OP_REQ_DEVLIST", () => {
  assertEquals(decodeOpRequest(golden("op_req_import.hex")), {
    kind: "op_req_import",
    busid: "1-1",
  });
  assertEquals(decodeOpRequest(encodeOpReqDevlist()), { kind: "op_req_devlist" });
  assertEquals([...encodeOpReqDevlist()], [0x01, 0x11, 0x80, 0x05, 0, 0, 0, 0]);
});

Deno.test("encodeOpRepImport() matches the kernel's 320-byte layout", () => {
  const { interfaces: _, ...record } = GADGET_ZERO_RECORD;
  const bytes = encodeOpRepImport({ kind: "op_rep_import", status: 0, device: record });
  assertEquals(bytes.length, 320);
  assertEquals(bytes, golden("op_rep_import_gadget_zero.hex"));
  assertEquals(decodeOpRepImport(bytes), { kind: "op_rep_import", status: 0, device: record });
});

Deno.test("encodeOpRepImport() sends the header alone on failure", () => {
  const bytes = encodeOpRepImport({ kind: "op_rep_import", status: OpStatus.ST_DEV_BUSY });
  assertEquals([...bytes], [0x01, 0x11, 0x00, 0x03, 0, 0, 0, 2]);
  assertEquals(decodeOpRepImport(bytes), { kind: "op_rep_import", status: 2 });
});

Deno.test("encodeOpRepDevlist() matches the kernel's layout and round-trips", () => {
  const rep = { kind: "op_rep_devlist" as const, status: 0, devices: [GADGET_ZERO_RECORD] };
  const bytes = encodeOpRepDevlist(rep);
  assertEquals(bytes, golden("op_rep_devlist_gadget_zero.hex"));
  assertEquals(decodeOpRepDevlist(bytes), rep);
});

Deno.test("encodeOpRepDevlist() round-trips several devices with several interfaces", () => {
  const second: UsbipExportedDevice = {
    ...GADGET_ZERO_RECORD,
    busid: "2-1.4",
    busnum: 2,
    devnum: 7,
    bNumInterfaces: 2,
    interfaces: [
      { bInterfaceClass: 2, bInterfaceSubClass: 2, bInterfaceProtocol: 1 },
      { bInterfaceClass: 10, bInterfaceSubClass: 0, bInterfaceProtocol: 0 },
    ],
  };
  const rep = { kind: "op_rep_devlist" as const, status: 0, devices: [GADGET_ZERO_RECORD, second] };
  assertEquals(decodeOpRepDevlist(encodeOpRepDevlist(rep)), rep);
});

Deno.test("decodeOpHeader() rejects another protocol version, naming the field", () => {
  const bytes = encodeOpReqDevlist();
  bytes[1] = 0x06;
  const e = assertThrows(
    () => decodeOpHeader(bytes),
    UsbipProtocolError,
    "version is 0x0106, expected 0x0111",
  );
  assertEquals(e.field, "version");
});

Deno.test("decodeOpRequest() rejects an unknown op code and a short frame", () => {
  const bytes = encodeOpReqDevlist();
  bytes[2] = 0x80;
  bytes[3] = 0x99;
  assertEquals(assertThrows(() => decodeOpRequest(bytes), UsbipProtocolError).field, "code");
  assertEquals(
    assertThrows(
      () => decodeOpRequest(encodeOpReqImport("1-1").subarray(0, 20)),
      UsbipProtocolError,
    ).field,
    "length",
  );
});

Deno.test("decodeOpRepDevlist() rejects device and interface counts beyond the limits", () => {
  const bytes = encodeOpRepDevlist({
    kind: "op_rep_devlist",
    status: 0,
    devices: [GADGET_ZERO_RECORD],
  });
  const limits = { maxTransferBufferLength: 1, maxIsoPackets: 1, maxDevices: 0, maxInterfaces: 32 };
  assertEquals(
    assertThrows(() => decodeOpRepDevlist(bytes, limits), UsbipProtocolError).field,
    "ndev",
  );
  const tooMany = { ...limits, maxDevices: 10, maxInterfaces: 0 };
  assertEquals(
    assertThrows(() => decodeOpRepDevlist(bytes, tooMany), UsbipProtocolError).field,
    "bNumInterfaces",
  );
});

Deno.test("encodeOpReqImport() refuses a busid that does not fit 32 bytes", () => {
  assertThrows(() => encodeOpReqImport("1-" + "1".repeat(40)), RangeError, "busid");
});

Deno.test("encodeOpRepDevlist() refuses an interface list that disagrees with bNumInterfaces", () => {
  const bad = { ...GADGET_ZERO_RECORD, bNumInterfaces: 2 };
  assertThrows(
    () => encodeOpRepDevlist({ kind: "op_rep_devlist", status: 0, devices: [bad] }),
    RangeError,
  );
});

Deno.test("OP_REQ_BIND and OP_REQ_UNBIND: the header, then the bus id NUL-padded to 32 bytes", () => {
  for (
    const [encode, code, kind] of [[encodeOpReqBind, 0x80f1, "op_req_bind"], [
      encodeOpReqUnbind,
      0x80f2,
      "op_req_unbind",
    ]] as const
  ) {
    const bytes = encode("3-1.2");
    assertEquals(bytes.length, 40);
    assertEquals([...bytes.subarray(0, 8)], [0x01, 0x11, code >> 8, code & 0xff, 0, 0, 0, 0]);
    assertEquals([...bytes.subarray(8, 13)], [...new TextEncoder().encode("3-1.2")]);
    assertEquals(bytes.subarray(13).every((b) => b === 0), true, "NUL padding");
    // Laid out as OP_REQ_IMPORT but for the code.
    assertEquals(bytes.subarray(4), encodeOpReqImport("3-1.2").subarray(4));
    assertEquals(decodeOpRequest(bytes), { kind, busid: "3-1.2" });
    assertThrows(() => encode("1-" + "1".repeat(30)), RangeError, "busid");
    assertEquals(
      assertThrows(() => decodeOpRequest(bytes.subarray(0, 39)), UsbipProtocolError).field,
      "length",
    );
  }
});

Deno.test("OP_REP_BIND and OP_REP_UNBIND round-trip every status with its message", () => {
  for (const status of Object.values(OpStatus)) {
    for (const message of ["", "Exported 3-1.2", "déjà exporté ✓"]) {
      const bind = { kind: "op_rep_bind" as const, status, message };
      const bytes = encodeOpRepBind(bind);
      assertEquals(bytes.length, 12 + new TextEncoder().encode(message).length);
      assertEquals([...bytes.subarray(0, 4)], [0x01, 0x11, 0x00, 0xf1]);
      assertEquals(new DataView(bytes.buffer).getUint32(4), status);
      assertEquals(decodeOpRepBind(bytes), bind);
      const unbind = { kind: "op_rep_unbind" as const, status, message };
      const unbindBytes = encodeOpRepUnbind(unbind);
      assertEquals([...unbindBytes.subarray(0, 4)], [0x01, 0x11, 0x00, 0xf2]);
      assertEquals(decodeOpRepUnbind(unbindBytes), unbind);
    }
  }
});

Deno.test("OP_REP_BIND: a message over the limit is refused on both sides, as is the other code", () => {
  const most = "x".repeat(MAX_BIND_MESSAGE_BYTES);
  assertEquals(encodeOpRepBind({ kind: "op_rep_bind", status: 0, message: most }).length, 1036);
  assertThrows(
    () => encodeOpRepBind({ kind: "op_rep_bind", status: 0, message: most + "x" }),
    RangeError,
    `limit is ${MAX_BIND_MESSAGE_BYTES}`,
  );
  const bytes = encodeOpRepBind({ kind: "op_rep_bind", status: 0, message: "x".repeat(100) });
  const e = assertThrows(() => decodeOpRepBind(bytes, 99), UsbipProtocolError);
  assertEquals([e.field, e.message.includes("is 100 bytes, limit is 99")], ["length", true]);
  // A length that announces more than the frame holds is a short frame, not a read past it.
  const huge = bytes.slice();
  new DataView(huge.buffer).setUint32(8, 0xffffffff);
  assertEquals(assertThrows(() => decodeOpRepBind(huge), UsbipProtocolError).field, "length");
  assertEquals(
    assertThrows(() => decodeOpRepBind(bytes.subarray(0, 50)), UsbipProtocolError).field,
    "length",
  );
  assertEquals(assertThrows(() => decodeOpRepUnbind(bytes), UsbipProtocolError).field, "code");
});
