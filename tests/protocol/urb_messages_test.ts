// Tests of the URB-phase codecs: round trips, golden frames and rejections.
import { assertEquals, assertThrows } from "@std/assert";
import {
  type CmdSubmit,
  decodeCmdSubmit,
  decodeCmdUnlink,
  decodeRetSubmit,
  decodeRetUnlink,
  encodeCmdSubmit,
  encodeCmdUnlink,
  encodeRetSubmit,
  encodeRetUnlink,
  packIsoData,
  type RetSubmit,
  UsbipProtocolError,
} from "../../protocol.ts";
import { golden } from "../testdata/golden.ts";

const BULK_OUT: CmdSubmit = {
  kind: "cmd_submit",
  seqnum: 42,
  devid: 0x00010002,
  direction: 0,
  ep: 1,
  transferFlags: 0,
  transferBufferLength: 4,
  startFrame: 0,
  numberOfPackets: 0,
  interval: 0,
  setup: new Uint8Array(8),
  data: new Uint8Array([0xde, 0xad, 0xbe, 0xef]),
  isoPackets: [],
};

const ISO_OUT: CmdSubmit = {
  kind: "cmd_submit",
  seqnum: 9,
  devid: 0x00010001,
  direction: 0,
  ep: 2,
  transferFlags: 2,
  transferBufferLength: 5,
  startFrame: 0,
  numberOfPackets: 2,
  interval: 4,
  setup: new Uint8Array(8),
  data: new Uint8Array([1, 2, 3, 4, 5]),
  isoPackets: [
    { offset: 0, length: 3, actualLength: 0, status: 0 },
    { offset: 3, length: 2, actualLength: 0, status: 0 },
  ],
};

// devid, direction and ep are 0 in replies, as the kernel's stub sends them (stub_tx.c).
const ISO_IN_RET: RetSubmit = {
  kind: "ret_submit",
  seqnum: 11,
  devid: 0,
  direction: 0,
  ep: 0,
  status: 0,
  actualLength: 4,
  startFrame: 0,
  numberOfPackets: 2,
  errorCount: 0,
  data: new Uint8Array([0xaa, 0xbb, 0xcc, 0xdd]),
  isoPackets: [
    { offset: 0, length: 4, actualLength: 3, status: 0 },
    { offset: 4, length: 4, actualLength: 1, status: 0 },
  ],
};

const withView = (b: Uint8Array, f: (v: DataView) => void) => {
  const copy = b.slice();
  f(new DataView(copy.buffer));
  return copy;
};

Deno.test("encodeCmdSubmit() matches the kernel's layout for a bulk OUT", () => {
  assertEquals(encodeCmdSubmit(BULK_OUT), golden("cmd_submit_bulk_out.hex"));
  assertEquals(decodeCmdSubmit(golden("cmd_submit_bulk_out.hex"), false), BULK_OUT);
});

Deno.test("decodeCmdSubmit() reads a control IN with its little-endian setup packet", () => {
  const cmd = decodeCmdSubmit(golden("cmd_submit_control_in.hex"), false);
  assertEquals(cmd.ep, 0);
  assertEquals(cmd.direction, 1);
  assertEquals(cmd.transferFlags, 0x201);
  assertEquals(cmd.transferBufferLength, 18);
  assertEquals([...cmd.setup], [0x80, 6, 0, 1, 0, 0, 18, 0]);
  assertEquals(cmd.data.length, 0);
  assertEquals(cmd.isoPackets, []);
});

Deno.test("encodeCmdSubmit() matches the kernel's layout for an isochronous OUT", () => {
  assertEquals(encodeCmdSubmit(ISO_OUT), golden("cmd_submit_iso_out.hex"));
  assertEquals(decodeCmdSubmit(golden("cmd_submit_iso_out.hex"), true), ISO_OUT);
});

Deno.test("decodeCmdSubmit() ignores number_of_packets for non-isochronous endpoints", () => {
  for (const garbage of [0, 0xffffffff, 12345]) {
    const bytes = withView(encodeCmdSubmit(BULK_OUT), (v) => v.setUint32(0x20, garbage));
    const cmd = decodeCmdSubmit(bytes, false);
    assertEquals(cmd.data, BULK_OUT.data);
    assertEquals(cmd.isoPackets, []);
  }
});

Deno.test("encodeRetSubmit() matches the kernel's layout for an isochronous IN", () => {
  assertEquals(encodeRetSubmit(ISO_IN_RET), golden("ret_submit_iso_in.hex"));
  const urb = { dirIn: true, isochronous: true, transferBufferLength: 8 };
  assertEquals(decodeRetSubmit(golden("ret_submit_iso_in.hex"), urb), ISO_IN_RET);
});

Deno.test("encodeRetSubmit() writes a negative status as two's complement", () => {
  const ret: RetSubmit = {
    ...ISO_IN_RET,
    seqnum: 5,
    status: -32,
    actualLength: 0,
    numberOfPackets: 0,
    data: new Uint8Array(0),
    isoPackets: [],
  };
  assertEquals(encodeRetSubmit(ret), golden("ret_submit_stall.hex"));
  assertEquals(
    decodeRetSubmit(golden("ret_submit_stall.hex"), {
      dirIn: true,
      isochronous: false,
      transferBufferLength: 64,
    }),
    ret,
  );
});

Deno.test("CMD_UNLINK and RET_UNLINK match the kernel's layout and round-trip", () => {
  const cmd = {
    kind: "cmd_unlink" as const,
    seqnum: 43,
    devid: 0x10002,
    direction: 0,
    ep: 1,
    unlinkSeqnum: 42,
  };
  assertEquals(encodeCmdUnlink(cmd), golden("cmd_unlink.hex"));
  assertEquals(decodeCmdUnlink(golden("cmd_unlink.hex")), cmd);
  const ret = {
    kind: "ret_unlink" as const,
    seqnum: 43,
    devid: 0,
    direction: 0,
    ep: 0,
    status: -104,
  };
  assertEquals(encodeRetUnlink(ret), golden("ret_unlink.hex"));
  assertEquals(decodeRetUnlink(golden("ret_unlink.hex")), ret);
});

Deno.test("packIsoData() packs each packet's actual bytes without gaps", () => {
  const buffer = new Uint8Array([1, 2, 3, 9, 4, 5, 9, 9]);
  const packed = packIsoData(buffer, [
    { offset: 0, length: 4, actualLength: 3, status: 0 },
    { offset: 4, length: 4, actualLength: 2, status: 0 },
  ]);
  assertEquals([...packed], [1, 2, 3, 4, 5]);
});

Deno.test("decodeCmdSubmit() rejects an unknown command, naming the field", () => {
  const bytes = withView(encodeCmdSubmit(BULK_OUT), (v) => v.setUint32(0, 0x99));
  assertEquals(
    assertThrows(() => decodeCmdSubmit(bytes, false), UsbipProtocolError).field,
    "command",
  );
});

Deno.test("decodeCmdSubmit() rejects a direction other than 0 or 1 and an ep above 15", () => {
  const dir = withView(encodeCmdSubmit(BULK_OUT), (v) => v.setUint32(0x0c, 2));
  assertEquals(
    assertThrows(() => decodeCmdSubmit(dir, false), UsbipProtocolError).field,
    "direction",
  );
  const ep = withView(encodeCmdSubmit(BULK_OUT), (v) => v.setUint32(0x10, 16));
  assertEquals(assertThrows(() => decodeCmdSubmit(ep, false), UsbipProtocolError).field, "ep");
});

Deno.test("decodeCmdSubmit() rejects transfer_buffer_length beyond the limit before reading data", () => {
  const bytes = withView(encodeCmdSubmit(BULK_OUT), (v) => v.setUint32(0x18, 0xffffffff));
  const e = assertThrows(
    () => decodeCmdSubmit(bytes, false),
    UsbipProtocolError,
    "limit is 16777216",
  );
  assertEquals(e.field, "transfer_buffer_length");
});

Deno.test("decodeCmdSubmit() rejects an isochronous number_of_packets of 0 or beyond the limit", () => {
  for (const n of [0, 1025, 0xffffffff]) {
    const bytes = withView(encodeCmdSubmit(ISO_OUT), (v) => v.setUint32(0x20, n));
    assertEquals(
      assertThrows(() => decodeCmdSubmit(bytes, true), UsbipProtocolError).field,
      "number_of_packets",
    );
  }
});

Deno.test("decodeCmdSubmit() rejects an ISO packet outside the buffer and lengths that add up to more", () => {
  const outside = withView(encodeCmdSubmit(ISO_OUT), (v) => v.setUint32(0x30 + 5 + 16, 4));
  assertEquals(
    assertThrows(() => decodeCmdSubmit(outside, true), UsbipProtocolError).field,
    "iso_packet_desc[1]",
  );
  const overlap = withView(encodeCmdSubmit(ISO_OUT), (v) => {
    v.setUint32(0x30 + 5 + 16, 0);
    v.setUint32(0x30 + 5 + 20, 5);
  });
  assertEquals(
    assertThrows(() => decodeCmdSubmit(overlap, true), UsbipProtocolError).field,
    "iso_packet_desc",
  );
});

Deno.test("decodeCmdSubmit() rejects a body shorter than announced", () => {
  const bytes = encodeCmdSubmit(BULK_OUT).subarray(0, 50);
  assertEquals(
    assertThrows(() => decodeCmdSubmit(bytes, false), UsbipProtocolError).field,
    "length",
  );
});

Deno.test("decodeRetSubmit() rejects actual_length beyond transfer_buffer_length", () => {
  const urb = { dirIn: true, isochronous: true, transferBufferLength: 3 };
  const e = assertThrows(
    () => decodeRetSubmit(golden("ret_submit_iso_in.hex"), urb),
    UsbipProtocolError,
  );
  assertEquals(e.field, "actual_length");
});

Deno.test("decodeRetSubmit() rejects ISO actual lengths that do not add up or exceed a packet", () => {
  const urb = { dirIn: true, isochronous: true, transferBufferLength: 8 };
  // actual_length 3 with 3 data bytes, but the descriptors still say 3 + 1.
  const three = withView(golden("ret_submit_iso_in.hex"), (v) => v.setUint32(0x18, 3));
  const fixed = new Uint8Array([...three.subarray(0, 0x33), ...three.subarray(0x34)]);
  assertEquals(
    assertThrows(() => decodeRetSubmit(fixed, urb), UsbipProtocolError).field,
    "iso_packet_desc",
  );
  const over = withView(golden("ret_submit_iso_in.hex"), (v) => v.setUint32(0x30 + 4 + 8, 5));
  assertEquals(
    assertThrows(() => decodeRetSubmit(over, urb), UsbipProtocolError).field,
    "iso_packet_desc[0].actual_length",
  );
});

Deno.test("encodeCmdSubmit() refuses data that disagrees with transfer_buffer_length", () => {
  assertThrows(() => encodeCmdSubmit({ ...BULK_OUT, transferBufferLength: 5 }), RangeError);
});
