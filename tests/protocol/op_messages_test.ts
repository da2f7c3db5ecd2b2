// Tests of the op-phase codecs: round trips, golden frames and rejections.
import { assertEquals, assertThrows } from "@std/assert";
import {
  type AttachRequest,
  decodeOpHeader,
  decodeOpRepAttach,
  decodeOpRepAttachHead,
  decodeOpRepBind,
  decodeOpRepDetach,
  decodeOpRepDevlist,
  decodeOpRepImport,
  decodeOpRepUnbind,
  decodeOpRequest,
  encodeOpRepAttach,
  encodeOpRepBind,
  encodeOpRepDetach,
  encodeOpRepDevlist,
  encodeOpRepImport,
  encodeOpRepUnbind,
  encodeOpReqAttach,
  encodeOpReqBind,
  encodeOpReqDetach,
  encodeOpReqDevlist,
  encodeOpReqImport,
  encodeOpReqUnbind,
  MAX_BIND_MESSAGE_BYTES,
  OpCode,
  OpStatus,
  type UsbipExportedDevice,
  UsbipProtocolError,
  VHCI_PORT_NONE,
  VHCI_PORT_SEND_SOCKET,
} from "../../protocol.ts";
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

/** Bytes of `text` NUL-padded to `size`. */
function padded(text: string, size: number): number[] {
  const bytes = [...new TextEncoder().encode(text)];
  return [...bytes, ...new Array(size - bytes.length).fill(0)];
}

Deno.test("OP_REQ_ATTACH: the header, kind, reserved, port, busid[32] and host[256] of each kind", () => {
  const header = [0x01, 0x11, 0x80, 0xf3, 0, 0, 0, 0];
  const remote = encodeOpReqAttach({
    kind: "remote",
    host: "gw.example",
    port: 3241,
    busid: "1-2",
  });
  assertEquals(remote.length, 300);
  assertEquals([...remote], [
    ...header,
    1,
    0,
    0x0c,
    0xa9,
    ...padded("1-2", 32),
    ...padded("gw.example", 256),
  ]);
  assertEquals([...encodeOpReqAttach({ kind: "local", busid: "3-1.2" })], [
    ...header,
    0,
    0,
    0,
    0,
    ...padded("3-1.2", 32),
    ...new Array(256).fill(0),
  ]);
  assertEquals([...encodeOpReqAttach({ kind: "stream", busid: "1-1" })], [
    ...header,
    2,
    0,
    0,
    0,
    ...padded("1-1", 32),
    ...new Array(256).fill(0),
  ]);
});

Deno.test("OP_REQ_ATTACH round-trips every kind, the longest fields and UTF-8", () => {
  const requests: AttachRequest[] = [
    { kind: "local", busid: "1-1" },
    { kind: "local", busid: "1-" + "1".repeat(29) },
    { kind: "remote", host: "192.0.2.9", port: 3240, busid: "2-1.4" },
    { kind: "remote", host: "fe80::1%eth0", port: 1, busid: "1-1" },
    { kind: "remote", host: "h".repeat(255), port: 65535, busid: "é" },
    { kind: "stream", busid: "usbip-büs" },
  ];
  for (const request of requests) {
    assertEquals(decodeOpRequest(encodeOpReqAttach(request)), { kind: "op_req_attach", request });
  }
});

Deno.test("OP_REQ_ATTACH: a remote port of 0 on the wire means 3240", () => {
  const bytes = encodeOpReqAttach({ kind: "remote", host: "gw", port: 9, busid: "1-1" });
  bytes[10] = 0;
  bytes[11] = 0;
  assertEquals(decodeOpRequest(bytes), {
    kind: "op_req_attach",
    request: { kind: "remote", host: "gw", port: 3240, busid: "1-1" },
  });
});

Deno.test("decodeOpRequest() refuses every malformed OP_REQ_ATTACH body, naming the field", () => {
  const local = () => encodeOpReqAttach({ kind: "local", busid: "1-1" });
  const remote = () => encodeOpReqAttach({ kind: "remote", host: "gw", port: 3240, busid: "1-1" });
  const BUSID = 12;
  const HOST = 44;
  const cases: [string, Uint8Array, string, string][] = [];
  const add = (
    what: string,
    make: () => Uint8Array,
    edit: (b: Uint8Array) => void,
    field: string,
    detail: string,
  ) => {
    const b = make();
    edit(b);
    cases.push([what, b, field, detail]);
  };
  /**
   * The refusals of text field `field`, NUL-terminated in `size` bytes at `at` of what `make`
   * encodes: all `fill`, all zeros, a byte at `strayAt` after the NUL, `notUtf8` first.
   */
  const addText = (
    field: string,
    make: () => Uint8Array,
    at: number,
    size: number,
    { fill, strayAt, notUtf8 }: { fill: number; strayAt: number; notUtf8: number },
  ) => {
    const unterminated = `is not NUL-terminated in ${size} bytes`;
    add(`a ${field} without NUL`, make, (b) => b.fill(fill, at, at + size), field, unterminated);
    add(`an empty ${field}`, make, (b) => b.fill(0, at, at + size), field, "is empty");
    const after = "has bytes after its NUL terminator";
    add(`bytes after the ${field}'s NUL`, make, (b) => b[strayAt] = 0x41, field, after);
    add(`a ${field} that is not UTF-8`, make, (b) => b[at] = notUtf8, field, "is not UTF-8");
  };
  add(
    "kind 3",
    local,
    (b) => b[8] = 3,
    "kind",
    "is 3, expected 0 (local), 1 (remote) or 2 (stream)",
  );
  add("kind 255", local, (b) => b[8] = 255, "kind", "is 255");
  add("a reserved byte", local, (b) => b[9] = 1, "reserved", "is 1, expected 0");
  addText("busid", local, BUSID, 32, { fill: 0x31, strayAt: BUSID + 20, notUtf8: 0xff });
  add(
    "a truncated UTF-8 busid",
    local,
    (b) => b.set([0x31, 0xc3, 0], BUSID),
    "busid",
    "is not UTF-8",
  );
  add(
    "a host for kind local",
    local,
    (b) => b[HOST] = 0x68,
    "host",
    "is given for kind local, expected all zeros",
  );
  add(
    "a stray host byte for kind stream",
    () => encodeOpReqAttach({ kind: "stream", busid: "1-1" }),
    (b) => b[299] = 1,
    "host",
    "is given for kind stream",
  );
  add("a port for kind local", local, (b) => b[11] = 1, "port", "is 1, expected 0 for kind local");
  addText("host", remote, HOST, 256, { fill: 0x68, strayAt: 299, notUtf8: 0xc0 });
  for (const [what, bytes, field, detail] of cases) {
    const e = assertThrows(() => decodeOpRequest(bytes), UsbipProtocolError, detail, what);
    assertEquals([what, e.field, e.frame], [what, field, "OP_REQ_ATTACH"]);
  }
  const short = assertThrows(() => decodeOpRequest(local().subarray(0, 299)), UsbipProtocolError);
  assertEquals(short.field, "length");
});

Deno.test("encodeOpReqAttach() refuses what the decoder would refuse", () => {
  const refused: [string, AttachRequest, string][] = [
    ["a 32-byte busid", { kind: "local", busid: "1-" + "1".repeat(30) }, "busid"],
    ["an empty busid", { kind: "stream", busid: "" }, "busid"],
    ["a NUL in the busid", { kind: "local", busid: "1-1\0x" }, "busid"],
    ["a 256-byte host", { kind: "remote", host: "h".repeat(256), port: 1, busid: "1-1" }, "host"],
    ["an empty host", { kind: "remote", host: "", port: 1, busid: "1-1" }, "host"],
    ["port 0", { kind: "remote", host: "gw", port: 0, busid: "1-1" }, "port 0"],
    ["port 65536", { kind: "remote", host: "gw", port: 65536, busid: "1-1" }, "port 65536"],
    ["port 1.5", { kind: "remote", host: "gw", port: 1.5, busid: "1-1" }, "port 1.5"],
    ["kind usb", { kind: "usb", busid: "1-1" } as unknown as AttachRequest, "kind"],
    ["kind toString", { kind: "toString", busid: "1-1" } as unknown as AttachRequest, "kind"],
  ];
  for (const [what, request, field] of refused) {
    assertThrows(() => encodeOpReqAttach(request), RangeError, field, what);
  }
});

Deno.test("OP_REQ_DETACH: the header and vhciPort u32; refused outside 32 bits", () => {
  const bytes = encodeOpReqDetach(0x01020304);
  assertEquals([...bytes], [0x01, 0x11, 0x80, 0xf4, 0, 0, 0, 0, 1, 2, 3, 4]);
  for (const vhciPort of [0, 7, 0xffffffff]) {
    assertEquals(decodeOpRequest(encodeOpReqDetach(vhciPort)), { kind: "op_req_detach", vhciPort });
  }
  for (const bad of [-1, 2 ** 32, 1.5, NaN]) {
    assertThrows(() => encodeOpReqDetach(bad), RangeError, "vhciPort");
  }
  assertEquals(
    assertThrows(() => decodeOpRequest(bytes.subarray(0, 11)), UsbipProtocolError).field,
    "length",
  );
});

Deno.test("OP_REP_ATTACH: the header, vhciPort, length and message; the intermediate answer", () => {
  const rep = { kind: "op_rep_attach" as const, status: 0, vhciPort: 9, message: "ok ✓" };
  const bytes = encodeOpRepAttach(rep);
  assertEquals([...bytes], [
    0x01,
    0x11,
    0x00,
    0xf3,
    0,
    0,
    0,
    0, // header, status 0
    0,
    0,
    0,
    9, // vhciPort
    0,
    0,
    0,
    6, // length
    ...new TextEncoder().encode("ok ✓"),
  ]);
  assertEquals(decodeOpRepAttach(bytes), rep);
  assertEquals(decodeOpRepAttachHead(bytes.subarray(0, 16)), { status: 0, vhciPort: 9, length: 6 });
  const sendSocket = encodeOpRepAttach({
    kind: "op_rep_attach",
    status: OpStatus.ST_OK,
    vhciPort: VHCI_PORT_SEND_SOCKET,
    message: "",
  });
  assertEquals([...sendSocket], [
    0x01,
    0x11,
    0x00,
    0xf3,
    0,
    0,
    0,
    0,
    0xff,
    0xff,
    0xff,
    0xfe,
    0,
    0,
    0,
    0,
  ]);
  for (const status of Object.values(OpStatus)) {
    const refused = {
      kind: "op_rep_attach" as const,
      status,
      vhciPort: VHCI_PORT_NONE,
      message: "no",
    };
    assertEquals(decodeOpRepAttach(encodeOpRepAttach(refused)), refused);
  }
  assertThrows(
    () => encodeOpRepAttach({ ...rep, vhciPort: -1 }),
    RangeError,
    "vhciPort -1 is not a 32-bit unsigned integer",
  );
});

Deno.test("OP_REP_DETACH is laid out as OP_REP_BIND but for the code", () => {
  for (const status of Object.values(OpStatus)) {
    const rep = { kind: "op_rep_detach" as const, status, message: "Detached port 3" };
    const bytes = encodeOpRepDetach(rep);
    assertEquals([...bytes.subarray(0, 4)], [0x01, 0x11, 0x00, 0xf4]);
    assertEquals(
      bytes.subarray(4),
      encodeOpRepBind({ kind: "op_rep_bind", status, message: rep.message }).subarray(4),
    );
    assertEquals(decodeOpRepDetach(bytes), rep);
  }
});

Deno.test("OP_REP_ATTACH and OP_REP_DETACH: a message over the limit is refused on both sides", () => {
  const most = "x".repeat(MAX_BIND_MESSAGE_BYTES);
  const attach = { kind: "op_rep_attach" as const, status: 0, vhciPort: 1, message: most };
  const detach = { kind: "op_rep_detach" as const, status: 0, message: most };
  assertEquals(encodeOpRepAttach(attach).length, 16 + MAX_BIND_MESSAGE_BYTES);
  assertEquals(encodeOpRepDetach(detach).length, 12 + MAX_BIND_MESSAGE_BYTES);
  assertThrows(
    () => encodeOpRepAttach({ ...attach, message: most + "x" }),
    RangeError,
    `Cannot encode OP_REP_ATTACH: the message is 1025 bytes, limit is ${MAX_BIND_MESSAGE_BYTES}`,
  );
  assertThrows(
    () => encodeOpRepDetach({ ...detach, message: "é".repeat(513) }),
    RangeError,
    "Cannot encode OP_REP_DETACH: the message is 1026 bytes",
  );
  // A length announced over the limit is refused from the head alone.
  const head = encodeOpRepAttach({ ...attach, message: "" });
  new DataView(head.buffer).setUint32(12, MAX_BIND_MESSAGE_BYTES + 1);
  const e = assertThrows(() => decodeOpRepAttachHead(head), UsbipProtocolError);
  assertEquals([e.frame, e.field], ["OP_REP_ATTACH", "length"]);
  assertEquals(e.message, "Cannot decode OP_REP_ATTACH: length is 1025 bytes, limit is 1024");
  const small = encodeOpRepDetach({ ...detach, message: "x".repeat(100) });
  assertThrows(() => decodeOpRepDetach(small, 99), UsbipProtocolError, "is 100 bytes, limit is 99");
  // A length that announces more than the frame holds is a short frame, not a read past it.
  const short = encodeOpRepAttach({ ...attach, message: "abc" }).subarray(0, 18);
  assertEquals(assertThrows(() => decodeOpRepAttach(short), UsbipProtocolError).field, "length");
  // The other codes are refused.
  const bind = encodeOpRepBind({ kind: "op_rep_bind", status: 0, message: "" });
  assertThrows(() => decodeOpRepDetach(bind), UsbipProtocolError, "expected 0x00f4");
  assertThrows(
    () => decodeOpRepAttach(encodeOpRepDetach(detach)),
    UsbipProtocolError,
    "expected 0x00f3",
  );
  assertEquals(OpCode.OP_REP_ATTACH | 0x8000, OpCode.OP_REQ_ATTACH);
});
