// The one rule that turns a device's result into RET_SUBMIT (lib/server/ret_submit.ts), row by
// row: Documentation/driver-api/usb/error-codes.rst for the statuses, stub_tx.c for the data.
import { assert, assertEquals } from "@std/assert";
import {
  DescriptorType,
  Request,
  RequestType,
  type TransferResult,
  UrbStatus,
  UsbDevice,
} from "../../mod.ts";
import {
  retSubmitOf,
  type SubmittedTransfer,
  type UrbCompletion,
  urbCompletion,
} from "../../lib/server/ret_submit.ts";

const bytes = (...b: number[]) => new Uint8Array(b);
const none = new Uint8Array(0);

function urb(o: Partial<SubmittedTransfer> & Pick<SubmittedTransfer, "dirIn" | "length">) {
  return { type: "bulk" as const, shortNotOk: false, isoPackets: [], ...o };
}

const iso = (dirIn: boolean) =>
  urb({
    dirIn,
    type: "isochronous",
    length: 24,
    isoPackets: [{ offset: 0, length: 8 }, { offset: 8, length: 8 }, { offset: 16, length: 8 }],
  });

/** A packet descriptor of `iso()`'s packet `i`. */
const packet = (i: number, actualLength: number, status: number = UrbStatus.OK) => ({
  offset: i * 8,
  length: 8,
  actualLength,
  status,
});

/** IN data for `iso()`: packet i holds bytes 10*i+1, 10*i+2, ... at offset 8*i. */
const isoData = new Uint8Array(24).map((_, k) => 10 * Math.floor(k / 8) + (k % 8) + 1);

const plain = (status: number, actualLength: number, data = none): UrbCompletion => ({
  status,
  actualLength,
  errorCount: 0,
  data,
  isoPackets: [],
});

const ROWS: [string, SubmittedTransfer, TransferResult, UrbCompletion][] = [
  // OUT: actual_length is what the device took, never more than was sent; no data go back.
  ["OUT, all taken", urb({ dirIn: false, length: 8 }), { status: "ok" }, plain(0, 8)],
  [
    "OUT, part taken",
    urb({ dirIn: false, length: 8 }),
    { status: "ok", actualLength: 3 },
    plain(0, 3),
  ],
  [
    "OUT, the device claims more than was sent",
    urb({ dirIn: false, length: 8 }),
    { status: "ok", actualLength: 9 },
    plain(0, 8),
  ],
  [
    "OUT, the device returns data: ignored",
    urb({ dirIn: false, length: 2 }),
    { status: "ok", data: bytes(1, 2) },
    plain(0, 2),
  ],
  // IN: the device's data up to the buffer.
  [
    "IN shorter",
    urb({ dirIn: true, length: 8 }),
    { status: "ok", data: bytes(1, 2, 3) },
    plain(0, 3, bytes(1, 2, 3)),
  ],
  [
    "IN shorter with URB_SHORT_NOT_OK: -EREMOTEIO",
    urb({ dirIn: true, length: 8, shortNotOk: true }),
    { status: "ok", data: bytes(1, 2, 3) },
    plain(UrbStatus.EREMOTEIO, 3, bytes(1, 2, 3)),
  ],
  [
    "IN exact",
    urb({ dirIn: true, length: 4, shortNotOk: true }),
    { status: "ok", data: bytes(1, 2, 3, 4) },
    plain(0, 4, bytes(1, 2, 3, 4)),
  ],
  [
    "IN longer than the buffer: cut, -EOVERFLOW (babble)",
    urb({ dirIn: true, length: 4 }),
    { status: "ok", data: bytes(1, 2, 3, 4, 5, 6) },
    plain(UrbStatus.EOVERFLOW, 4, bytes(1, 2, 3, 4)),
  ],
  [
    "control IN longer than the buffer: the same rule",
    urb({ dirIn: true, type: "control", length: 2 }),
    { status: "ok", data: bytes(18, 1, 0, 2) },
    plain(UrbStatus.EOVERFLOW, 2, bytes(18, 1)),
  ],
  [
    "IN longer with an error status: cut, the status stays",
    urb({ dirIn: true, length: 2 }),
    { status: "stall", data: bytes(1, 2, 3) },
    plain(UrbStatus.EPIPE, 2, bytes(1, 2)),
  ],
  // Zero-length.
  ["zero-length OUT", urb({ dirIn: false, length: 0 }), { status: "ok" }, plain(0, 0)],
  ["zero-length IN", urb({ dirIn: true, length: 0 }), { status: "ok" }, plain(0, 0)],
  [
    "zero-length IN with URB_SHORT_NOT_OK: not short",
    urb({ dirIn: true, length: 0, shortNotOk: true }),
    { status: "ok", data: none },
    plain(0, 0),
  ],
  [
    "zero-length IN answered with data: babble",
    urb({ dirIn: true, length: 0 }),
    { status: "ok", data: bytes(1) },
    plain(UrbStatus.EOVERFLOW, 0),
  ],
  [
    "IN with no data and URB_SHORT_NOT_OK: -EREMOTEIO",
    urb({ dirIn: true, length: 8, shortNotOk: true }),
    { status: "ok" },
    plain(UrbStatus.EREMOTEIO, 0),
  ],
  // Stall and error statuses.
  ["IN stall", urb({ dirIn: true, length: 8 }), { status: "stall" }, plain(UrbStatus.EPIPE, 0)],
  [
    "OUT stall: nothing taken",
    urb({ dirIn: false, length: 8 }),
    { status: "stall" },
    plain(UrbStatus.EPIPE, 0),
  ],
  [
    "OUT error after 2 bytes",
    urb({ dirIn: false, length: 8 }),
    { status: "error", actualLength: 2 },
    plain(UrbStatus.EPROTO, 2),
  ],
  [
    "IN stall with URB_SHORT_NOT_OK: the stall, not -EREMOTEIO",
    urb({ dirIn: true, length: 8, shortNotOk: true }),
    { status: "stall", data: bytes(1) },
    plain(UrbStatus.EPIPE, 1, bytes(1)),
  ],
  ["device gone", urb({ dirIn: true, length: 8 }), { status: "nodev" }, plain(UrbStatus.ENODEV, 0)],
  [
    "shut down",
    urb({ dirIn: false, length: 8 }),
    { status: "shutdown" },
    plain(UrbStatus.ESHUTDOWN, 0),
  ],
  [
    "overflow the device reports",
    urb({ dirIn: true, length: 8, type: "interrupt" }),
    { status: "overflow", data: bytes(1, 2) },
    plain(UrbStatus.EOVERFLOW, 2, bytes(1, 2)),
  ],
  // Cancelled: -ECONNRESET, with what had arrived.
  [
    "cancelled IN",
    urb({ dirIn: true, length: 8 }),
    { status: "cancelled" },
    plain(UrbStatus.ECONNRESET, 0),
  ],
  [
    "cancelled IN after 2 bytes",
    urb({ dirIn: true, length: 8 }),
    { status: "cancelled", data: bytes(7, 8) },
    plain(UrbStatus.ECONNRESET, 2, bytes(7, 8)),
  ],
  [
    "cancelled OUT",
    urb({ dirIn: false, length: 8 }),
    { status: "cancelled" },
    plain(UrbStatus.ECONNRESET, 0),
  ],
  // Isochronous: per packet, data back to back without the gaps (stub_tx.c).
  [
    "ISO IN: full, short, and a packet without a result",
    iso(true),
    {
      status: "ok",
      data: isoData,
      isoPackets: [{ actualLength: 8, status: "ok" }, { actualLength: 3, status: "ok" }],
    },
    {
      status: 0,
      actualLength: 11,
      errorCount: 0,
      data: bytes(1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 13),
      isoPackets: [packet(0, 8), packet(1, 3), packet(2, 0)],
    },
  ],
  [
    "ISO IN: a packet longer than its length is cut, -EOVERFLOW in its own status",
    iso(true),
    {
      status: "ok",
      data: isoData,
      isoPackets: [
        { actualLength: 2, status: "ok" },
        { actualLength: 9, status: "ok" },
        { actualLength: 1, status: "error" },
      ],
    },
    {
      status: 0,
      actualLength: 11,
      errorCount: 2,
      data: bytes(1, 2, 11, 12, 13, 14, 15, 16, 17, 18, 21),
      isoPackets: [packet(0, 2), packet(1, 8, UrbStatus.EOVERFLOW), packet(2, 1, UrbStatus.EPROTO)],
    },
  ],
  [
    "ISO IN: data too short for a packet at its offset: -EPROTO, nothing sent",
    iso(true),
    {
      status: "ok",
      data: isoData.subarray(0, 12),
      isoPackets: [{ actualLength: 8, status: "ok" }, { actualLength: 8, status: "ok" }],
    },
    {
      status: UrbStatus.EPROTO,
      actualLength: 0,
      errorCount: 0,
      data: none,
      isoPackets: [packet(0, 0), packet(1, 0), packet(2, 0)],
    },
  ],
  [
    "ISO OUT: packets taken, one overflowing as the device says; clamped to the packet",
    iso(false),
    {
      status: "ok",
      isoPackets: [
        { actualLength: 8, status: "ok" },
        { actualLength: 8, status: "overflow" },
        { actualLength: 12, status: "ok" },
      ],
    },
    {
      status: 0,
      actualLength: 24,
      errorCount: 1,
      data: none,
      isoPackets: [packet(0, 8), packet(1, 8, UrbStatus.EOVERFLOW), packet(2, 8)],
    },
  ],
  [
    "ISO cancelled without packet results: every packet gets the URB's status",
    iso(true),
    { status: "cancelled" },
    {
      status: UrbStatus.ECONNRESET,
      actualLength: 0,
      errorCount: 3,
      data: none,
      isoPackets: [0, 1, 2].map((i) => packet(i, 0, UrbStatus.ECONNRESET)),
    },
  ],
  [
    "ISO IN, the device gone: -ENODEV in the URB and every packet",
    iso(true),
    { status: "nodev" },
    {
      status: UrbStatus.ENODEV,
      actualLength: 0,
      errorCount: 3,
      data: none,
      isoPackets: [0, 1, 2].map((i) => packet(i, 0, UrbStatus.ENODEV)),
    },
  ],
  [
    "isochronous without packets: as a plain transfer",
    urb({ dirIn: true, type: "isochronous", length: 4 }),
    { status: "ok", data: bytes(1, 2) },
    plain(0, 2, bytes(1, 2)),
  ],
];

for (const [name, transfer, result, expected] of ROWS) {
  Deno.test(`urbCompletion: ${name}`, () => {
    assertEquals(urbCompletion(transfer, result), expected);
  });
}

Deno.test("urbCompletion passes IN data on without a copy, cut as a view", () => {
  const data = bytes(1, 2, 3, 4, 5, 6);
  assert(urbCompletion(urb({ dirIn: true, length: 6 }), { status: "ok", data }).data === data);
  const cut = urbCompletion(urb({ dirIn: true, length: 4 }), { status: "ok", data }).data;
  assert(cut.buffer === data.buffer && cut.byteOffset === 0);
});

Deno.test("a device cuts a control IN to wLength only; a smaller buffer is the rule's babble", async () => {
  class Blank extends UsbDevice {}
  const dev = new Blank({
    device: {
      bcdUSB: 0x200,
      bDeviceClass: 0,
      bDeviceSubClass: 0,
      bDeviceProtocol: 0,
      bMaxPacketSize0: 64,
      idVendor: 0x1234,
      idProduct: 0x5678,
      bcdDevice: 0x100,
    },
    configurations: [],
  }, 2);
  // GET_DESCRIPTOR(DEVICE) with wLength 18 into an 8-byte buffer (a kernel client never sends
  // this: usb_submit_urb refuses wLength != transfer_buffer_length with -EBADR).
  const transfer = {
    endpoint: 0,
    dirIn: true,
    type: "control" as const,
    length: 8,
    setup: {
      bmRequestType: RequestType.DIR_IN,
      bRequest: Request.GET_DESCRIPTOR,
      wValue: DescriptorType.DEVICE << 8,
      wIndex: 0,
      wLength: 18,
    },
    data: none,
    shortNotOk: false,
    zeroPacket: false,
    isoPackets: [],
    signal: new AbortController().signal,
  };
  const r = await dev.submit(transfer);
  assertEquals(r.data?.length, 18);
  const c = urbCompletion(transfer, r);
  assertEquals([c.status, c.actualLength, c.data.length], [UrbStatus.EOVERFLOW, 8, 8]);
});

Deno.test("retSubmitOf answers with devid, direction and ep 0, as stub_tx.c", () => {
  const taken = { actualLength: 8, status: "ok" as const };
  const c = urbCompletion(iso(false), { status: "ok", isoPackets: [taken, taken, taken] });
  assertEquals(retSubmitOf(9, c), {
    kind: "ret_submit",
    seqnum: 9,
    devid: 0,
    direction: 0,
    ep: 0,
    status: 0,
    actualLength: 24,
    startFrame: 0,
    numberOfPackets: 3,
    errorCount: 0,
    data: none,
    isoPackets: [packet(0, 8), packet(1, 8), packet(2, 8)],
  });
});
