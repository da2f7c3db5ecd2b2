// Tests of the usbfs struct codecs, ioctl numbers and errno mapping (<linux/usbdevice_fs.h>,
// x86_64 layout of include/uapi/linux/usbdevice_fs.h).
import { assertEquals, assertThrows } from "@std/assert";
import { DescriptorType, Request, RequestType } from "../../../mod.ts";
import {
  CTRLTRANSFER_SIZE,
  decodeReapedUrb,
  DISCONNECT_CLAIM_SIZE,
  encodeCtrlTransfer,
  encodeDisconnectClaim,
  encodePollFds,
  encodeSetInterface,
  encodeUint,
  encodeUrb,
  encodeUsbdevfsIoctl,
  Errno,
  errnoName,
  errnoStatus,
  Ioctl,
  isGone,
  pollRevents,
  URB_SIZE,
  UrbFlags,
  urbStatus,
  UrbType,
  UsbfsError,
} from "../../../lib/devices/passthrough/_usbfs.ts";

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// _IOC(dir, 'U', nr, size) from asm-generic/ioctl.h: dir 0 none, 1 write, 2 read.
const ioc = (dir: number, nr: number, size: number) =>
  ((dir << 30) | (size << 16) | (0x55 << 8) | nr) >>> 0;

Deno.test("the ioctl numbers are the _IOC encodings of usbdevice_fs.h", () => {
  assertEquals(Ioctl, {
    USBDEVFS_CONTROL: ioc(3, 0, CTRLTRANSFER_SIZE),
    USBDEVFS_BULK: ioc(3, 2, 24),
    USBDEVFS_SETINTERFACE: ioc(2, 4, 8),
    USBDEVFS_SETCONFIGURATION: ioc(2, 5, 4),
    USBDEVFS_SUBMITURB: ioc(2, 10, URB_SIZE),
    USBDEVFS_DISCARDURB: ioc(0, 11, 0),
    USBDEVFS_REAPURB: ioc(1, 12, 8),
    USBDEVFS_REAPURBNDELAY: ioc(1, 13, 8),
    USBDEVFS_CLAIMINTERFACE: ioc(2, 15, 4),
    USBDEVFS_RELEASEINTERFACE: ioc(2, 16, 4),
    USBDEVFS_CONNECTINFO: ioc(1, 17, 8),
    USBDEVFS_IOCTL: ioc(3, 18, 16),
    USBDEVFS_RESET: ioc(0, 20, 0),
    USBDEVFS_CLEAR_HALT: ioc(2, 21, 4),
    USBDEVFS_DISCONNECT: ioc(0, 22, 0),
    USBDEVFS_CONNECT: ioc(0, 23, 0),
    USBDEVFS_GET_CAPABILITIES: ioc(2, 26, 4),
    USBDEVFS_DISCONNECT_CLAIM: ioc(2, 27, DISCONNECT_CLAIM_SIZE),
    USBDEVFS_GET_SPEED: ioc(0, 31, 0),
  });
  // The values _IOR/_IOW make on x86_64 (include/uapi/asm-generic/ioctl.h), as strace prints them.
  assertEquals(Ioctl.USBDEVFS_SUBMITURB, 0x8038550a);
  assertEquals(Ioctl.USBDEVFS_DISCONNECT_CLAIM, 0x8108551b);
});

Deno.test("encodeUrb() lays out a bulk URB at the kernel's offsets", () => {
  const b = encodeUrb({
    type: UrbType.BULK,
    endpoint: 0x81,
    flags: UrbFlags.SHORT_NOT_OK,
    buffer: 0x1122334455667788n,
    bufferLength: 512,
    numberOfPackets: 0,
    usercontext: 7n,
  });
  assertEquals(
    hex(b),
    "0381" + "0000" + "00000000" + // type, endpoint, pad, status
      "01000000" + "00000000" + // flags, pad
      "8877665544332211" + // buffer
      "00020000" + "00000000" + // buffer_length, actual_length
      "00000000" + "00000000" + // start_frame, number_of_packets
      "00000000" + "00000000" + // error_count, signr
      "0700000000000000", // usercontext
  );
});

Deno.test("encodeUrb() appends the ISO packet descriptors", () => {
  const b = encodeUrb({
    type: UrbType.ISO,
    endpoint: 0x82,
    flags: UrbFlags.ISO_ASAP,
    buffer: 0n,
    bufferLength: 384,
    numberOfPackets: 2,
    usercontext: 1n,
    isoPacketLengths: [192, 192],
  });
  assertEquals(b.length, URB_SIZE + 2 * 12);
  assertEquals(b[0], 0);
  assertEquals(new DataView(b.buffer).getInt32(36, true), 2);
  assertEquals(
    hex(b.subarray(56)),
    "c0000000" + "0000000000000000" + "c0000000" + "0000000000000000",
  );
});

Deno.test("decodeReapedUrb() reads what the kernel writes back", () => {
  const b = encodeUrb({
    type: UrbType.ISO,
    endpoint: 0x81,
    flags: 0,
    buffer: 0n,
    bufferLength: 200,
    numberOfPackets: 2,
    usercontext: 42n,
    isoPacketLengths: [100, 100],
  });
  const v = new DataView(b.buffer);
  v.setInt32(4, -Errno.EXDEV, true);
  v.setInt32(28, 150, true);
  v.setInt32(32, 1234, true);
  v.setInt32(40, 1, true);
  v.setUint32(56 + 4, 100, true);
  v.setUint32(68 + 4, 50, true);
  v.setInt32(68 + 8, -Errno.EPROTO, true);
  assertEquals(decodeReapedUrb(b), {
    status: -18,
    actualLength: 150,
    startFrame: 1234,
    errorCount: 1,
    usercontext: 42n,
    isoPackets: [
      { length: 100, actualLength: 100, status: 0 },
      { length: 100, actualLength: 50, status: -71 },
    ],
  });
  assertThrows(() => decodeReapedUrb(new Uint8Array(10)), RangeError, "expected 56");
});

Deno.test("encodeCtrlTransfer() lays out the 24-byte struct", () => {
  const b = encodeCtrlTransfer({
    bRequestType: RequestType.DIR_IN,
    bRequest: Request.GET_DESCRIPTOR,
    wValue: DescriptorType.DEVICE << 8,
    wIndex: 0,
    wLength: 18,
    timeout: 1000,
    data: 0xdeadbeefn,
  });
  assertEquals(
    hex(b),
    "8006" + "0001" + "0000" + "1200" + "e8030000" + "00000000" + "efbeadde00000000",
  );
});

Deno.test("encodeDisconnectClaim(), encodeUsbdevfsIoctl() and the small args", () => {
  const dc = encodeDisconnectClaim(2, 0x02, "usbfs");
  assertEquals(dc.length, 264);
  assertEquals(hex(dc.subarray(0, 14)), "02000000" + "02000000" + "757362667300");
  assertEquals(dc.subarray(14).every((x) => x === 0), true);
  assertThrows(() => encodeDisconnectClaim(0, 0, "x".repeat(256)), RangeError, "limit is 255");
  assertEquals(
    hex(encodeUsbdevfsIoctl(1, Ioctl.USBDEVFS_CONNECT)),
    "01000000" + "17550000" + "0000000000000000",
  );
  assertEquals(hex(encodeUint(0x81)), "81000000");
  assertEquals(hex(encodeSetInterface(1, 2)), "0100000002000000");
  const fds = encodePollFds([{ fd: 5, events: 0x104 }, { fd: 6, events: 1 }]);
  assertEquals(hex(fds), "05000000" + "0401" + "0000" + "06000000" + "0100" + "0000");
  fds[7] = 0x10;
  assertEquals(pollRevents(fds, 0), 0x1000);
  assertEquals(pollRevents(fds, 1), 0);
});

Deno.test("urbStatus() maps URB completion codes to transfer statuses", () => {
  const cases: [number, string][] = [
    [0, "ok"],
    [-Errno.EREMOTEIO, "ok"],
    [-Errno.EPIPE, "stall"],
    [-Errno.ENODEV, "nodev"],
    [-Errno.ESHUTDOWN, "nodev"],
    [-Errno.EOVERFLOW, "overflow"],
    [-Errno.ECONNRESET, "cancelled"],
    [-Errno.ENOENT, "cancelled"],
    [-Errno.EPROTO, "error"],
    [-Errno.EILSEQ, "error"],
    [-Errno.ETIME, "error"],
    [-Errno.ETIMEDOUT, "error"],
  ];
  for (const [status, expected] of cases) assertEquals(urbStatus(status), expected, `${status}`);
});

Deno.test("errnoStatus() maps ioctl failures; isGone() tells a device that is gone", () => {
  assertEquals(errnoStatus(Errno.ENODEV), "nodev");
  assertEquals(errnoStatus(-Errno.ESHUTDOWN), "nodev");
  assertEquals(errnoStatus(Errno.EPIPE), "stall");
  assertEquals(errnoStatus(Errno.EINVAL), "stall");
  assertEquals(errnoStatus(Errno.ENOMEM), "error");
  assertEquals(isGone(Errno.ENODEV) && isGone(-Errno.ESHUTDOWN), true);
  assertEquals(isGone(Errno.EBUSY), false);
});

Deno.test("UsbfsError names the operation and the errno", () => {
  const e = new UsbfsError("claim interface 0", 16);
  assertEquals(e.message, "Cannot claim interface 0: EBUSY");
  assertEquals([e.errno, e.code, e.name], [16, "EBUSY", "UsbfsError"]);
  assertEquals(errnoName(-999), "errno 999");
});
