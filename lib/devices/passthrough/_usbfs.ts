/**
 * Linux usbfs through libc and Deno FFI: the symbol table, the ioctl numbers and structs of
 * `<linux/usbdevice_fs.h>` (x86_64 layout), and errno handling (drivers/usb/core/devio.c).
 * Private to the passthrough device.
 *
 * @module
 */

import { ERRNO_LOCATION, errnoAt, lazyLibc } from "../../ffi/libc.ts";
import type { TransferStatus } from "../usb_device.ts";

const SYMBOLS = {
  // int open(const char *pathname, int flags, mode_t mode);
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  // int close(int fd);
  close: { parameters: ["i32"], result: "i32" },
  // int ioctl(int fd, unsigned long request, void *arg);  (variadic in C; one pointer here)
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  // int poll(struct pollfd *fds, nfds_t nfds, int timeout);  blocks: runs on a worker thread
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  // int eventfd(unsigned int initval, int flags);
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  // ssize_t read(int fd, void *buf, size_t count);
  read: { parameters: ["i32", "buffer", "u64"], result: "i64" },
  // ssize_t write(int fd, const void *buf, size_t count);
  write: { parameters: ["i32", "buffer", "u64"], result: "i64" },
  ...ERRNO_LOCATION,
} as const satisfies Deno.ForeignLibraryInterface;

/** The libc symbols, opened on first use so that FFI permission is needed only here. */
export const lib: () => Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] = lazyLibc(SYMBOLS);

/** errno values used here (asm-generic/errno-base.h, errno.h). */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EBUSY: 16,
  EXDEV: 18,
  ENODEV: 19,
  EINVAL: 22,
  ENOTTY: 25,
  EPIPE: 32,
  ENODATA: 61,
  ETIME: 62,
  ENOSR: 63,
  ECOMM: 70,
  EPROTO: 71,
  EOVERFLOW: 75,
  EILSEQ: 84,
  ECONNRESET: 104,
  ESHUTDOWN: 108,
  ETIMEDOUT: 110,
  EHOSTUNREACH: 113,
  EINPROGRESS: 115,
  EREMOTEIO: 121,
} as const;

const ERRNO_NAMES = new Map<number, string>(Object.entries(Errno).map(([k, v]) => [v, k]));

/** The symbolic name of an errno value, e.g. `EPIPE`, or `errno N`. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(Math.abs(errno)) ?? `errno ${Math.abs(errno)}`;
}

/** usbfs ioctl request numbers on x86_64 (`<linux/usbdevice_fs.h>`). */
export const Ioctl = {
  USBDEVFS_CONTROL: 0xc0185500,
  USBDEVFS_BULK: 0xc0185502,
  USBDEVFS_SETINTERFACE: 0x80085504,
  USBDEVFS_SETCONFIGURATION: 0x80045505,
  USBDEVFS_SUBMITURB: 0x8038550a,
  USBDEVFS_DISCARDURB: 0x550b,
  USBDEVFS_REAPURB: 0x4008550c,
  USBDEVFS_REAPURBNDELAY: 0x4008550d,
  USBDEVFS_CLAIMINTERFACE: 0x8004550f,
  USBDEVFS_RELEASEINTERFACE: 0x80045510,
  USBDEVFS_CONNECTINFO: 0x40085511,
  USBDEVFS_IOCTL: 0xc0105512,
  USBDEVFS_RESET: 0x5514,
  USBDEVFS_CLEAR_HALT: 0x80045515,
  USBDEVFS_DISCONNECT: 0x5516,
  USBDEVFS_CONNECT: 0x5517,
  USBDEVFS_GET_CAPABILITIES: 0x8004551a,
  USBDEVFS_DISCONNECT_CLAIM: 0x8108551b,
  USBDEVFS_GET_SPEED: 0x551f,
} as const;

/** `usbdevfs_urb.type`. */
export const UrbType = { ISO: 0, INTERRUPT: 1, CONTROL: 2, BULK: 3 } as const;

/** `usbdevfs_urb.flags`. */
export const UrbFlags = {
  SHORT_NOT_OK: 0x01,
  ISO_ASAP: 0x02,
  BULK_CONTINUATION: 0x04,
  NO_FSBR: 0x20,
  ZERO_PACKET: 0x40,
  NO_INTERRUPT: 0x80,
} as const;

/** `usbdevfs_disconnect_claim.flags`. */
export const DisconnectClaimFlags = { IF_DRIVER: 0x01, EXCEPT_DRIVER: 0x02 } as const;

/** `struct pollfd` event bits (poll.h). */
export const PollEvents = {
  POLLIN: 0x001,
  POLLOUT: 0x004,
  POLLERR: 0x008,
  POLLHUP: 0x010,
  POLLNVAL: 0x020,
  POLLWRNORM: 0x100,
} as const;

/** open(2) and eventfd(2) flags. */
export const OpenFlags = {
  O_RDWR: 0x2,
  O_CLOEXEC: 0x80000,
  EFD_NONBLOCK: 0x800,
  EFD_CLOEXEC: 0x80000,
} as const;

/** Size of `struct usbdevfs_urb` without its ISO packet descriptors. */
export const URB_SIZE = 56;
/** Size of one `struct usbdevfs_iso_packet_desc`. */
export const ISO_PACKET_DESC_SIZE = 12;
/** Size of `struct usbdevfs_ctrltransfer`. */
export const CTRLTRANSFER_SIZE = 24;
/** Size of `struct usbdevfs_disconnect_claim` (two u32 and a 256-byte driver name). */
export const DISCONNECT_CLAIM_SIZE = 264;
/** Size of `struct usbdevfs_ioctl`. */
export const USBDEVFS_IOCTL_SIZE = 16;

/** The fields of a `struct usbdevfs_urb` we fill in. */
export interface UsbdevfsUrb {
  type: number;
  endpoint: number;
  flags: number;
  /** The data buffer's address (0 for none). */
  buffer: bigint;
  bufferLength: number;
  numberOfPackets: number;
  usercontext: bigint;
  /** ISO packet lengths; `numberOfPackets` of them. */
  isoPacketLengths?: readonly number[];
}

/** The fields of a `struct usbdevfs_urb` the kernel writes back when the URB is reaped. */
export interface ReapedUrb {
  status: number;
  actualLength: number;
  startFrame: number;
  errorCount: number;
  usercontext: bigint;
  isoPackets: { length: number; actualLength: number; status: number }[];
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * Encodes a `struct usbdevfs_urb` with its ISO packet descriptors (56 bytes + 12 per packet):
 * type@0, endpoint@1, status@4, flags@8, buffer@16, buffer_length@24, actual_length@28,
 * start_frame@32, number_of_packets@36 (a union with stream_id), error_count@40, signr@44,
 * usercontext@48, iso_frame_desc@56.
 */
export function encodeUrb(u: UsbdevfsUrb): Uint8Array {
  const packets = u.type === UrbType.ISO ? u.numberOfPackets : 0;
  const b = new Uint8Array(URB_SIZE + packets * ISO_PACKET_DESC_SIZE);
  const v = view(b);
  b[0] = u.type;
  b[1] = u.endpoint;
  v.setUint32(8, u.flags, true);
  v.setBigUint64(16, u.buffer, true);
  v.setInt32(24, u.bufferLength, true);
  v.setInt32(36, u.numberOfPackets, true);
  v.setBigUint64(48, u.usercontext, true);
  for (let i = 0; i < packets; i++) {
    v.setUint32(URB_SIZE + i * ISO_PACKET_DESC_SIZE, u.isoPacketLengths?.[i] ?? 0, true);
  }
  return b;
}

/** Decodes what the kernel wrote back into a reaped `struct usbdevfs_urb`. */
export function decodeReapedUrb(b: Uint8Array): ReapedUrb {
  if (b.length < URB_SIZE) {
    throw new RangeError(`Cannot decode usbdevfs_urb: ${b.length} bytes, expected ${URB_SIZE}`);
  }
  const v = view(b);
  const type = b[0];
  const n = type === UrbType.ISO ? v.getInt32(36, true) : 0;
  const isoPackets = [];
  for (let i = 0; i < n && URB_SIZE + (i + 1) * ISO_PACKET_DESC_SIZE <= b.length; i++) {
    const o = URB_SIZE + i * ISO_PACKET_DESC_SIZE;
    isoPackets.push({
      length: v.getUint32(o, true),
      actualLength: v.getUint32(o + 4, true),
      status: v.getInt32(o + 8, true),
    });
  }
  return {
    status: v.getInt32(4, true),
    actualLength: v.getInt32(28, true),
    startFrame: v.getInt32(32, true),
    errorCount: v.getInt32(40, true),
    usercontext: v.getBigUint64(48, true),
    isoPackets,
  };
}

/**
 * Encodes a `struct usbdevfs_ctrltransfer` (24 bytes): bRequestType@0, bRequest@1, wValue@2,
 * wIndex@4, wLength@6, timeout@8 (ms), data@16 (address).
 */
export function encodeCtrlTransfer(c: {
  bRequestType: number;
  bRequest: number;
  wValue: number;
  wIndex: number;
  wLength: number;
  timeout: number;
  data: bigint;
}): Uint8Array {
  const b = new Uint8Array(CTRLTRANSFER_SIZE);
  const v = view(b);
  b[0] = c.bRequestType;
  b[1] = c.bRequest;
  v.setUint16(2, c.wValue, true);
  v.setUint16(4, c.wIndex, true);
  v.setUint16(6, c.wLength, true);
  v.setUint32(8, c.timeout, true);
  v.setBigUint64(16, c.data, true);
  return b;
}

/**
 * Encodes a `struct usbdevfs_disconnect_claim` (264 bytes): interface@0, flags@4,
 * driver@8 (NUL-terminated, at most 255 bytes).
 */
export function encodeDisconnectClaim(ifnum: number, flags = 0, driver = ""): Uint8Array {
  const name = new TextEncoder().encode(driver);
  if (name.length > 255) {
    throw new RangeError(
      `Cannot encode usbdevfs_disconnect_claim: driver name is ${name.length} bytes, limit is 255`,
    );
  }
  const b = new Uint8Array(DISCONNECT_CLAIM_SIZE);
  const v = view(b);
  v.setUint32(0, ifnum, true);
  v.setUint32(4, flags, true);
  b.set(name, 8);
  return b;
}

/**
 * Encodes a `struct usbdevfs_ioctl` (16 bytes): ifno@0, ioctl_code@4, data@8 (address), which
 * USBDEVFS_IOCTL passes to one interface (USBDEVFS_DISCONNECT and USBDEVFS_CONNECT).
 */
export function encodeUsbdevfsIoctl(ifno: number, ioctlCode: number, data = 0n): Uint8Array {
  const b = new Uint8Array(USBDEVFS_IOCTL_SIZE);
  const v = view(b);
  v.setInt32(0, ifno, true);
  v.setInt32(4, ioctlCode, true);
  v.setBigUint64(8, data, true);
  return b;
}

/** A 4-byte `unsigned int` argument, as SETCONFIGURATION, CLAIMINTERFACE, CLEAR_HALT take. */
export function encodeUint(value: number): Uint8Array {
  const b = new Uint8Array(4);
  view(b).setUint32(0, value >>> 0, true);
  return b;
}

/** A `struct usbdevfs_setinterface` (8 bytes): interface@0, altsetting@4. */
export function encodeSetInterface(ifnum: number, alt: number): Uint8Array {
  const b = new Uint8Array(8);
  const v = view(b);
  v.setUint32(0, ifnum, true);
  v.setUint32(4, alt, true);
  return b;
}

/** A `struct pollfd` array: fd@0, events@4, revents@6, 8 bytes each. */
export function encodePollFds(fds: readonly { fd: number; events: number }[]): Uint8Array {
  const b = new Uint8Array(8 * fds.length);
  const v = view(b);
  fds.forEach((f, i) => {
    v.setInt32(i * 8, f.fd, true);
    v.setInt16(i * 8 + 4, f.events, true);
  });
  return b;
}

/** The `revents` of entry `i` of a `struct pollfd` array. */
export function pollRevents(b: Uint8Array, i: number): number {
  return view(b).getUint16(i * 8 + 6, true);
}

/** The address of a buffer, for a pointer field inside a struct (0 for an empty buffer). */
export function addressOf(b: Uint8Array): bigint {
  if (b.byteLength === 0) return 0n;
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));
}

/**
 * How a URB's completion status (0 or a negative errno in `usbdevfs_urb.status`) becomes a
 * transfer status. -EREMOTEIO (a short IN transfer with SHORT_NOT_OK) becomes "ok" with the
 * short data, since the session itself answers short SHORT_NOT_OK transfers with -EREMOTEIO.
 * -ENODEV and -ESHUTDOWN (the URB was killed because the device or its endpoint went away)
 * are both "nodev": client drivers treat the two alike and do not resubmit.
 */
export function urbStatus(status: number): TransferStatus {
  switch (-status) {
    case 0:
    case Errno.EREMOTEIO:
      return "ok";
    case Errno.EPIPE:
      return "stall";
    case Errno.ENODEV:
    case Errno.ESHUTDOWN:
      return "nodev";
    case Errno.EOVERFLOW:
      return "overflow";
    case Errno.ECONNRESET:
    case Errno.ENOENT:
      return "cancelled";
    default:
      // EPROTO, EILSEQ, ETIME, ETIMEDOUT, ENOSR, ECOMM, EXDEV, ...
      return "error";
  }
}

/**
 * How an errno from a failed usbfs ioctl on behalf of a transfer becomes its status:
 * ENODEV/ESHUTDOWN "nodev" (the device is gone), EPIPE "stall", EINVAL/ENOENT "stall"
 * (the kernel refused the request, as a device refuses one it does not know), else "error".
 */
export function errnoStatus(errno: number): TransferStatus {
  switch (Math.abs(errno)) {
    case Errno.ENODEV:
    case Errno.ESHUTDOWN:
      return "nodev";
    case Errno.EPIPE:
    case Errno.EINVAL:
    case Errno.ENOENT:
      return "stall";
    case Errno.ECONNRESET:
      return "cancelled";
    case Errno.EOVERFLOW:
      return "overflow";
    default:
      return "error";
  }
}

/** Whether an errno says the device is gone. */
export function isGone(errno: number): boolean {
  const e = Math.abs(errno);
  return e === Errno.ENODEV || e === Errno.ESHUTDOWN;
}

/** A failed usbfs call, with its errno. */
export class UsbfsError extends Error {
  /** The errno value (positive). */
  readonly errno: number;
  /** The symbolic errno name, e.g. `EBUSY`. */
  readonly code: string;
  /** What was attempted, e.g. `USBDEVFS_DISCONNECT_CLAIM interface 0`. */
  readonly operation: string;

  /** Builds the error for `operation` failing with `errno`. */
  constructor(operation: string, errno: number) {
    const code = errnoName(errno);
    super(`Cannot ${operation}: ${code}`);
    this.name = "UsbfsError";
    this.errno = Math.abs(errno);
    this.code = code;
    this.operation = operation;
  }
}

/** The calling thread's errno, read right after a synchronous call. */
export function errno(): number {
  return errnoAt(lib().__errno_location());
}

/** Calls ioctl(2) synchronously; returns its result, or `-errno` when it failed. */
export function ioctl(fd: number, request: number, arg: Uint8Array | null): number {
  const r = lib().ioctl(fd, BigInt(request), arg);
  return r < 0 ? -errno() : r;
}

/** Opens a device node read-write; throws {@linkcode UsbfsError}. */
export function openDevice(path: string): number {
  const fd = lib().open(
    new TextEncoder().encode(path + "\0"),
    OpenFlags.O_RDWR | OpenFlags.O_CLOEXEC,
    0,
  );
  if (fd < 0) throw new UsbfsError(`open ${path}`, errno());
  return fd;
}

/**
 * The system calls a usbfs device makes, so that tests can stand a fake kernel in for libc.
 * `ioctl` returns the call's result or `-errno`.
 */
export interface UsbfsOps {
  /** Opens a device node read-write; throws {@linkcode UsbfsError}. */
  open(path: string): number;
  /** ioctl(2) with `request` and its argument struct (null for none): the result or `-errno`. */
  ioctl(fd: number, request: number, arg: Uint8Array | null): number;
  /** poll(2) on a `struct pollfd` array; runs off the main thread. */
  poll(fds: Uint8Array, nfds: number, timeoutMs: number): Promise<number>;
  /** A nonblocking eventfd to wake the poll; `-errno` on failure. */
  eventfd(): number;
  /** Makes the eventfd readable. */
  wake(fd: number): void;
  /** Empties the eventfd. */
  drain(fd: number): void;
  /** Closes a descriptor that `open` or `eventfd` gave. */
  close(fd: number): void;
}

/** The real system calls through libc. */
export const LIBC_OPS: UsbfsOps = {
  open: openDevice,
  ioctl,
  poll: (fds, nfds, timeoutMs) => lib().poll(fds, BigInt(nfds), timeoutMs),
  eventfd: () => {
    const fd = lib().eventfd(0, OpenFlags.EFD_CLOEXEC | OpenFlags.EFD_NONBLOCK);
    return fd < 0 ? -errno() : fd;
  },
  wake: (fd) => {
    const one = new Uint8Array(8);
    one[0] = 1;
    lib().write(fd, one, 8n);
  },
  drain: (fd) => {
    lib().read(fd, new Uint8Array(8), 8n);
  },
  close: (fd) => {
    lib().close(fd);
  },
};
