/**
 * Op-phase messages: OP_REQ/REP_DEVLIST and OP_REQ/REP_IMPORT with the 312-byte device record
 * and 4-byte interface records, big-endian as in usbip_protocol.rst and usbip_network.h; and
 * usbipgw's own OP_REQ/REP_STATUS, OP_REQ/REP_BIND, OP_REQ/REP_UNBIND, OP_REQ/REP_ATTACH,
 * OP_REQ/REP_DETACH and OP_REQ/REP_CAPTURE in the same framing.
 *
 * @module
 */

import {
  AttachKind,
  DEFAULT_LIMITS,
  MAX_BIND_MESSAGE_BYTES,
  OpCode,
  USBIP_PORT,
  USBIP_VERSION,
  type UsbipLimits,
  WireSize,
} from "./constants.ts";
import { UsbipProtocolError } from "./protocol_error.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Refuses bytes that are not UTF-8, for fields a decoder must not guess at. */
const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** The 8-byte header of every op-phase message. */
export interface OpHeader {
  /** Protocol version, 0x0111. */
  version: number;
  /** One of {@linkcode OpCode}. */
  code: number;
  /** One of `OpStatus` (0 for requests). */
  status: number;
}

/**
 * The exported-device record: `struct usbip_usb_device` of tools/usb/usbip/libsrc/usbip_common.h,
 * 312 bytes, big-endian.
 */
export interface UsbipDeviceRecord {
  /** sysfs path of the device; informational only. */
  path: string;
  /** Bus id such as `1-1`; at most 31 bytes. */
  busid: string;
  /** `busnum` (u32): the device's bus number on the server; `devid` is `busnum << 16 | devnum`. */
  busnum: number;
  /** `devnum` (u32): the device's address on its bus, the low 16 bits of `devid`. */
  devnum: number;
  /** One of `Speed`. */
  speed: number;
  /** `idVendor` (u16): the vendor ID, as in the device descriptor (USB 2.0 table 9-8). */
  idVendor: number;
  /** `idProduct` (u16): the product ID, as in the device descriptor (USB 2.0 table 9-8). */
  idProduct: number;
  /** `bcdDevice` (u16): the device release number in BCD (USB 2.0 table 9-8). */
  bcdDevice: number;
  /** `bDeviceClass` (u8): the class code; 0 when the interfaces name theirs (USB 2.0 table 9-8). */
  bDeviceClass: number;
  /** `bDeviceSubClass` (u8): the subclass code, qualified by `bDeviceClass` (USB 2.0 table 9-8). */
  bDeviceSubClass: number;
  /** `bDeviceProtocol` (u8): the protocol code, qualified by class and subclass (table 9-8). */
  bDeviceProtocol: number;
  /** `bConfigurationValue` (u8): the current configuration (usbipgw: the first if unconfigured). */
  bConfigurationValue: number;
  /** `bNumConfigurations` (u8): how many configurations the device has (USB 2.0 table 9-8). */
  bNumConfigurations: number;
  /** `bNumInterfaces` (u8): the configuration's interfaces; OP_REP_DEVLIST has a record each. */
  bNumInterfaces: number;
}

/**
 * One interface of an exported device in OP_REP_DEVLIST: `struct usbip_usb_interface` of
 * tools/usb/usbip/libsrc/usbip_common.h, 4 bytes (the last is padding).
 */
export interface UsbipInterfaceRecord {
  /** `bInterfaceClass` (u8): the interface's class code (USB 2.0 table 9-12). */
  bInterfaceClass: number;
  /** `bInterfaceSubClass` (u8): the subclass code, qualified by the class (USB 2.0 table 9-12). */
  bInterfaceSubClass: number;
  /** `bInterfaceProtocol` (u8): the protocol code, qualified by class and subclass (table 9-12). */
  bInterfaceProtocol: number;
}

/** A device as OP_REP_DEVLIST lists it: the record followed by its interfaces. */
export interface UsbipExportedDevice extends UsbipDeviceRecord {
  /** Exactly `bNumInterfaces` entries. */
  interfaces: UsbipInterfaceRecord[];
}

/** OP_REQ_DEVLIST: asks for the list of exported devices. */
export interface OpReqDevlist {
  /** Tells the requests apart: OP_REQ_DEVLIST, code 0x8005, no body. */
  kind: "op_req_devlist";
}

/** OP_REQ_IMPORT: asks to import the device with `busid`. */
export interface OpReqImport {
  /** Tells the requests apart: OP_REQ_IMPORT, code 0x8003. */
  kind: "op_req_import";
  /** The bus id to import, such as `1-1`; at most 31 bytes (32 on the wire, NUL-padded). */
  busid: string;
}

/** OP_REQ_STATUS (usbipgw's extension): asks for the gateway's status. */
export interface OpReqStatus {
  /** Tells the requests apart: OP_REQ_STATUS, code 0x80f0, no body. */
  kind: "op_req_status";
}

/** OP_REQ_BIND (usbipgw's extension): asks to export the host device with `busid`. */
export interface OpReqBind {
  /** Tells the requests apart: OP_REQ_BIND, code 0x80f1. */
  kind: "op_req_bind";
  /** The host bus id, such as `1-1.2`; at most 31 bytes. */
  busid: string;
}

/** OP_REQ_UNBIND (usbipgw's extension): asks to withdraw the host device with `busid`. */
export interface OpReqUnbind {
  /** Tells the requests apart: OP_REQ_UNBIND, code 0x80f2. */
  kind: "op_req_unbind";
  /** The host bus id, such as `1-1.2`; at most 31 bytes. */
  busid: string;
}

/**
 * What OP_REQ_ATTACH (usbipgw's extension) asks a gateway to attach into this machine's kernel;
 * `kind` is {@linkcode AttachKind} on the wire.
 */
export type AttachRequest =
  /** A device of this gateway, by its bus id. */
  | { kind: "local"; busid: string }
  /** The device `busid` of the USB/IP server at `host` (a name or an address) and `port`. */
  | { kind: "remote"; host: string; port: number; busid: string }
  /** The device `busid` served over a connected socket the requester hands over. */
  | { kind: "stream"; busid: string };

/** OP_REQ_ATTACH (usbipgw's extension): asks to attach a device into the local kernel. */
export interface OpReqAttach {
  /** Tells the requests apart: OP_REQ_ATTACH, code 0x80f3. */
  kind: "op_req_attach";
  /** What to attach: the body's `kind`, `port`, `busid` and `host` fields. */
  request: AttachRequest;
}

/** OP_REQ_DETACH (usbipgw's extension): asks to detach the device on a vhci port. */
export interface OpReqDetach {
  /** Tells the requests apart: OP_REQ_DETACH, code 0x80f4. */
  kind: "op_req_detach";
  /** The vhci port, as OP_REP_ATTACH named it. */
  vhciPort: number;
}

/** OP_REQ_CAPTURE (usbipgw's extension): asks for the traffic as a pcapng stream. */
export interface OpReqCapture {
  /** Tells the requests apart: OP_REQ_CAPTURE, code 0x80f5. */
  kind: "op_req_capture";
  /** The device to capture, such as `1-1`; empty for every device. At most 31 bytes. */
  busid: string;
  /** The most data bytes kept per record; 0 for all of them. */
  snaplen: number;
}

/** A request a server reads in the op phase. */
export type OpRequest =
  | OpReqDevlist
  | OpReqImport
  | OpReqStatus
  | OpReqBind
  | OpReqUnbind
  | OpReqAttach
  | OpReqDetach
  | OpReqCapture;

/** OP_REP_DEVLIST: the status and the exported devices. */
export interface OpRepDevlist {
  /** Tells the replies apart: OP_REP_DEVLIST, code 0x0005. */
  kind: "op_rep_devlist";
  /** The header's `OpStatus`; usbipgw always sends ST_OK (0). */
  status: number;
  /** The exported devices, `ndev` (u32) of them, each record followed by its interfaces. */
  devices: UsbipExportedDevice[];
}

/** OP_REP_IMPORT: on success the device record, otherwise only a non-zero status. */
export interface OpRepImport {
  /** Tells the replies apart: OP_REP_IMPORT, code 0x0003. */
  kind: "op_rep_import";
  /** The header's `OpStatus`; encoding ST_OK (0) without `device` sends ST_NA (1) instead. */
  status: number;
  /** The imported device's record, present only with ST_OK. */
  device?: UsbipDeviceRecord;
}

/** OP_REP_BIND (usbipgw's extension): an `OpStatus` and a short message for people. */
export interface OpRepBind {
  /** Tells the replies apart: OP_REP_BIND, code 0x00f1. */
  kind: "op_rep_bind";
  /** The header's `OpStatus`: ST_OK when the device was exported. */
  status: number;
  /** At most {@linkcode MAX_BIND_MESSAGE_BYTES} bytes of UTF-8; may be empty. */
  message: string;
}

/** OP_REP_UNBIND (usbipgw's extension): an `OpStatus` and a short message for people. */
export interface OpRepUnbind {
  /** Tells the replies apart: OP_REP_UNBIND, code 0x00f2. */
  kind: "op_rep_unbind";
  /** The header's `OpStatus`: ST_OK when the device was withdrawn. */
  status: number;
  /** At most {@linkcode MAX_BIND_MESSAGE_BYTES} bytes of UTF-8; may be empty. */
  message: string;
}

/**
 * OP_REP_ATTACH (usbipgw's extension): an `OpStatus`, the vhci port, and a short message for
 * people. `vhciPort` is `VHCI_PORT_NONE` when nothing was attached, and
 * `VHCI_PORT_SEND_SOCKET` (with ST_OK) in the intermediate answer of a stream attach.
 */
export interface OpRepAttach {
  /** Tells the replies apart: OP_REP_ATTACH, code 0x00f3. */
  kind: "op_rep_attach";
  /** The header's `OpStatus`: ST_OK when attached, or in the intermediate "send the socket". */
  status: number;
  /** `vhciPort` (u32): the vhci port attached to, or one of the two special values above. */
  vhciPort: number;
  /** At most {@linkcode MAX_BIND_MESSAGE_BYTES} bytes of UTF-8; may be empty. */
  message: string;
}

/**
 * OP_REP_CAPTURE (usbipgw's extension): an `OpStatus` and a short message for people; with
 * ST_OK, the pcapng stream follows.
 */
export interface OpRepCapture {
  /** Tells the replies apart: OP_REP_CAPTURE, code 0x00f5. */
  kind: "op_rep_capture";
  /** The header's `OpStatus`: ST_OK when the stream follows. */
  status: number;
  /** At most {@linkcode MAX_BIND_MESSAGE_BYTES} bytes of UTF-8; may be empty. */
  message: string;
}

/** OP_REP_DETACH (usbipgw's extension): an `OpStatus` and a short message for people. */
export interface OpRepDetach {
  /** Tells the replies apart: OP_REP_DETACH, code 0x00f4. */
  kind: "op_rep_detach";
  /** The header's `OpStatus`: ST_OK when the port was detached. */
  status: number;
  /** At most {@linkcode MAX_BIND_MESSAGE_BYTES} bytes of UTF-8; may be empty. */
  message: string;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function writeFixedString(out: Uint8Array, offset: number, size: number, s: string, name: string) {
  const bytes = encoder.encode(s);
  if (bytes.length >= size) {
    throw new RangeError(
      `Cannot encode ${name}: "${s}" is ${bytes.length} bytes, limit is ${size - 1}`,
    );
  }
  out.set(bytes, offset);
}

function readFixedString(b: Uint8Array, offset: number, size: number): string {
  const field = b.subarray(offset, offset + size);
  const nul = field.indexOf(0);
  return decoder.decode(nul < 0 ? field : field.subarray(0, nul));
}

function expectLength(b: Uint8Array, frame: string, length: number) {
  if (b.length < length) {
    throw new UsbipProtocolError(frame, "length", `is ${b.length} bytes, expected ${length}`);
  }
}

/** Encodes an op header into `out` at `offset` (8 bytes). */
function putOpHeader(out: Uint8Array, code: number, status: number) {
  const v = view(out);
  v.setUint16(0, USBIP_VERSION);
  v.setUint16(2, code);
  v.setUint32(4, status);
}

/**
 * Decodes and checks an 8-byte op header: the version must be 0x0111.
 *
 * @example Reading a header
 * ```ts
 * import { decodeOpHeader } from "./op_messages.ts";
 * const h = decodeOpHeader(new Uint8Array([0x01, 0x11, 0x80, 0x05, 0, 0, 0, 0]));
 * console.assert(h.code === 0x8005);
 * ```
 */
export function decodeOpHeader(b: Uint8Array): OpHeader {
  expectLength(b, "op header", WireSize.OP_HEADER);
  const v = view(b);
  const version = v.getUint16(0);
  if (version !== USBIP_VERSION) {
    throw new UsbipProtocolError(
      "op header",
      "version",
      `is 0x${version.toString(16).padStart(4, "0")}, expected 0x0111`,
    );
  }
  return { version, code: v.getUint16(2), status: v.getUint32(4) };
}

/** The number of bytes that follow an op request header with this code, or a protocol error. */
export function opRequestBodyLength(code: number): number {
  switch (code) {
    case OpCode.OP_REQ_DEVLIST:
    case OpCode.OP_REQ_STATUS:
      return 0;
    case OpCode.OP_REQ_IMPORT:
    case OpCode.OP_REQ_BIND:
    case OpCode.OP_REQ_UNBIND:
      return WireSize.BUSID;
    case OpCode.OP_REQ_ATTACH:
      return ATTACH_BODY;
    case OpCode.OP_REQ_DETACH:
      return 4;
    case OpCode.OP_REQ_CAPTURE:
      return WireSize.BUSID + 4;
    default:
      throw new UsbipProtocolError(
        "op request",
        "code",
        `is 0x${
          code.toString(16).padStart(4, "0")
        }, expected OP_REQ_DEVLIST, OP_REQ_IMPORT, OP_REQ_STATUS, OP_REQ_BIND, OP_REQ_UNBIND, OP_REQ_ATTACH, OP_REQ_DETACH or OP_REQ_CAPTURE`,
      );
  }
}

/** Encodes OP_REQ_DEVLIST (8 bytes). */
export function encodeOpReqDevlist(): Uint8Array {
  const out = new Uint8Array(WireSize.OP_HEADER);
  putOpHeader(out, OpCode.OP_REQ_DEVLIST, 0);
  return out;
}

/** Encodes a request that is the header and a 32-byte, NUL-padded bus id (40 bytes). */
function busidRequest(code: number, busid: string): Uint8Array {
  const out = new Uint8Array(WireSize.OP_HEADER + WireSize.BUSID);
  putOpHeader(out, code, 0);
  writeFixedString(out, WireSize.OP_HEADER, WireSize.BUSID, busid, "busid");
  return out;
}

/** Encodes OP_REQ_IMPORT (40 bytes). Throws `RangeError` for a bus id over 31 bytes. */
export function encodeOpReqImport(busid: string): Uint8Array {
  return busidRequest(OpCode.OP_REQ_IMPORT, busid);
}

/**
 * Encodes OP_REQ_BIND (40 bytes; usbipgw's extension): the header and the host bus id, laid
 * out as in OP_REQ_IMPORT. Throws `RangeError` for a bus id over 31 bytes.
 *
 * @example Round trip
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { decodeOpRequest, encodeOpReqBind } from "./op_messages.ts";
 * const bytes = encodeOpReqBind("3-1.2");
 * assertEquals(bytes.length, 40);
 * assertEquals(decodeOpRequest(bytes), { kind: "op_req_bind", busid: "3-1.2" });
 * ```
 */
export function encodeOpReqBind(busid: string): Uint8Array {
  return busidRequest(OpCode.OP_REQ_BIND, busid);
}

/**
 * Encodes OP_REQ_UNBIND (40 bytes; usbipgw's extension), laid out as OP_REQ_BIND. Throws
 * `RangeError` for a bus id over 31 bytes.
 */
export function encodeOpReqUnbind(busid: string): Uint8Array {
  return busidRequest(OpCode.OP_REQ_UNBIND, busid);
}

/** Encodes OP_REQ_STATUS (8 bytes; usbipgw's extension). */
export function encodeOpReqStatus(): Uint8Array {
  const out = new Uint8Array(WireSize.OP_HEADER);
  putOpHeader(out, OpCode.OP_REQ_STATUS, 0);
  return out;
}

/**
 * Encodes OP_REP_STATUS: the header with `status`, a 4-byte length, then `json` as UTF-8 (empty
 * unless the status is 0).
 *
 * @example A refusal carries no body
 * ```ts
 * import { encodeOpRepStatus } from "./op_messages.ts";
 * console.assert(encodeOpRepStatus(1).length === 12);
 * ```
 */
export function encodeOpRepStatus(status: number, json = ""): Uint8Array {
  const body = encoder.encode(status === 0 ? json : "");
  const out = new Uint8Array(WireSize.OP_HEADER + 4 + body.length);
  putOpHeader(out, OpCode.OP_REP_STATUS, status);
  view(out).setUint32(WireSize.OP_HEADER, body.length);
  out.set(body, WireSize.OP_HEADER + 4);
  return out;
}

/**
 * Decodes a whole op request (header and body).
 *
 * @example Round trip
 * ```ts
 * import { decodeOpRequest, encodeOpReqImport } from "./op_messages.ts";
 * const req = decodeOpRequest(encodeOpReqImport("1-1"));
 * console.assert(req.kind === "op_req_import" && req.busid === "1-1");
 * ```
 */
export function decodeOpRequest(b: Uint8Array): OpRequest {
  const header = decodeOpHeader(b);
  const bodyLength = opRequestBodyLength(header.code);
  expectLength(b, "op request", WireSize.OP_HEADER + bodyLength);
  if (header.code === OpCode.OP_REQ_DEVLIST) return { kind: "op_req_devlist" };
  if (header.code === OpCode.OP_REQ_STATUS) return { kind: "op_req_status" };
  if (header.code === OpCode.OP_REQ_ATTACH) return decodeOpReqAttachBody(b);
  if (header.code === OpCode.OP_REQ_DETACH) {
    return { kind: "op_req_detach", vhciPort: view(b).getUint32(WireSize.OP_HEADER) };
  }
  const busid = readFixedString(b, WireSize.OP_HEADER, WireSize.BUSID);
  if (header.code === OpCode.OP_REQ_CAPTURE) {
    const snaplen = view(b).getUint32(WireSize.OP_HEADER + WireSize.BUSID);
    return { kind: "op_req_capture", busid, snaplen };
  }
  if (header.code === OpCode.OP_REQ_BIND) return { kind: "op_req_bind", busid };
  if (header.code === OpCode.OP_REQ_UNBIND) return { kind: "op_req_unbind", busid };
  return { kind: "op_req_import", busid };
}

/** Offsets in OP_REQ_ATTACH, from the start of the header. */
const AttachOffset = {
  KIND: 8,
  RESERVED: 9,
  PORT: 10,
  BUSID: 12,
  HOST: 12 + WireSize.BUSID,
} as const;

/** The bytes after OP_REQ_ATTACH's header: kind, reserved, port, busid[32], host[256]. */
const ATTACH_BODY = 4 + WireSize.BUSID + WireSize.HOST;

/** The wire value of each {@linkcode AttachRequest} kind. */
const ATTACH_KIND_VALUES: Record<string, number> = {
  local: AttachKind.ATTACH_LOCAL,
  remote: AttachKind.ATTACH_REMOTE,
  stream: AttachKind.ATTACH_STREAM,
} satisfies Record<AttachRequest["kind"], number>;

/** The {@linkcode AttachRequest} kind of each wire value. */
const ATTACH_KIND_NAMES = ["local", "remote", "stream"] as const;

/**
 * Checks a string for a NUL-padded field of `size` bytes of OP_REQ_ATTACH: not empty, no NUL,
 * at most `size - 1` bytes of UTF-8. Throws `RangeError`.
 */
function checkAttachString(s: string, size: number, field: string): void {
  const length = encoder.encode(s).length;
  if (length === 0 || length >= size || s.includes("\0")) {
    throw new RangeError(
      `Cannot encode OP_REQ_ATTACH: ${field} ${JSON.stringify(s)} must be 1 to ${
        size - 1
      } bytes of UTF-8 without NUL`,
    );
  }
}

/**
 * Encodes OP_REQ_ATTACH (300 bytes; usbipgw's extension): the header, `kind` u8, a reserved
 * u8 (0), `port` u16 (remote only), `busid[32]` and `host[256]` (remote only), NUL-padded.
 * Throws `RangeError` for an unknown kind, an empty bus id or host, one over 31 or 255 bytes
 * or holding a NUL, and a port outside 1..65535.
 *
 * @example A remote device
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { decodeOpRequest, encodeOpReqAttach } from "./op_messages.ts";
 * const request = { kind: "remote" as const, host: "192.0.2.9", port: 3240, busid: "1-2" };
 * const bytes = encodeOpReqAttach(request);
 * assertEquals(bytes.length, 300);
 * assertEquals(decodeOpRequest(bytes), { kind: "op_req_attach", request });
 * ```
 */
export function encodeOpReqAttach(request: AttachRequest): Uint8Array {
  const kind = Object.hasOwn(ATTACH_KIND_VALUES, request.kind)
    ? ATTACH_KIND_VALUES[request.kind]
    : undefined;
  if (kind === undefined) {
    throw new RangeError(
      `Cannot encode OP_REQ_ATTACH: kind ${
        JSON.stringify(request.kind)
      } is not local, remote or stream`,
    );
  }
  checkAttachString(request.busid, WireSize.BUSID, "busid");
  const out = new Uint8Array(WireSize.OP_HEADER + ATTACH_BODY);
  putOpHeader(out, OpCode.OP_REQ_ATTACH, 0);
  out[AttachOffset.KIND] = kind;
  writeFixedString(out, AttachOffset.BUSID, WireSize.BUSID, request.busid, "busid");
  if (request.kind === "remote") {
    const { host, port } = request;
    checkAttachString(host, WireSize.HOST, "host");
    if (!Number.isInteger(port) || port < 1 || port > 0xffff) {
      throw new RangeError(`Cannot encode OP_REQ_ATTACH: port ${port} is not in 1..65535`);
    }
    view(out).setUint16(AttachOffset.PORT, port);
    writeFixedString(out, AttachOffset.HOST, WireSize.HOST, host, "host");
  }
  return out;
}

/**
 * Reads a NUL-padded string field of OP_REQ_ATTACH strictly: not empty, ended by a NUL within
 * the field, only NULs after it, and UTF-8.
 */
function readAttachString(b: Uint8Array, offset: number, size: number, field: string): string {
  const bytes = b.subarray(offset, offset + size);
  const nul = bytes.indexOf(0);
  if (nul < 0) {
    throw new UsbipProtocolError("OP_REQ_ATTACH", field, `is not NUL-terminated in ${size} bytes`);
  }
  if (nul === 0) throw new UsbipProtocolError("OP_REQ_ATTACH", field, "is empty");
  if (!bytes.subarray(nul).every((x) => x === 0)) {
    throw new UsbipProtocolError("OP_REQ_ATTACH", field, "has bytes after its NUL terminator");
  }
  try {
    return strictDecoder.decode(bytes.subarray(0, nul));
  } catch {
    throw new UsbipProtocolError("OP_REQ_ATTACH", field, "is not UTF-8");
  }
}

/** Decodes and checks the body of a whole OP_REQ_ATTACH (`b` starts with the header). */
function decodeOpReqAttachBody(b: Uint8Array): OpReqAttach {
  const frame = "OP_REQ_ATTACH";
  const v = view(b);
  const wireKind = v.getUint8(AttachOffset.KIND);
  const kind = ATTACH_KIND_NAMES[wireKind];
  if (kind === undefined) {
    throw new UsbipProtocolError(
      frame,
      "kind",
      `is ${wireKind}, expected 0 (local), 1 (remote) or 2 (stream)`,
    );
  }
  const reserved = v.getUint8(AttachOffset.RESERVED);
  if (reserved !== 0) throw new UsbipProtocolError(frame, "reserved", `is ${reserved}, expected 0`);
  const busid = readAttachString(b, AttachOffset.BUSID, WireSize.BUSID, "busid");
  const port = v.getUint16(AttachOffset.PORT);
  if (kind === "remote") {
    const host = readAttachString(b, AttachOffset.HOST, WireSize.HOST, "host");
    return {
      kind: "op_req_attach",
      request: { kind, host, port: port === 0 ? USBIP_PORT : port, busid },
    };
  }
  if (port !== 0) {
    throw new UsbipProtocolError(frame, "port", `is ${port}, expected 0 for kind ${kind}`);
  }
  const host = b.subarray(AttachOffset.HOST, AttachOffset.HOST + WireSize.HOST);
  if (!host.every((x) => x === 0)) {
    throw new UsbipProtocolError(frame, "host", `is given for kind ${kind}, expected all zeros`);
  }
  return { kind: "op_req_attach", request: { kind, busid } };
}

/**
 * Encodes OP_REQ_DETACH (12 bytes; usbipgw's extension): the header and `vhciPort` u32.
 * Throws `RangeError` for a port that is not a 32-bit unsigned integer.
 *
 * @example Round trip
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { decodeOpRequest, encodeOpReqDetach } from "./op_messages.ts";
 * assertEquals(decodeOpRequest(encodeOpReqDetach(9)), { kind: "op_req_detach", vhciPort: 9 });
 * ```
 */
export function encodeOpReqDetach(vhciPort: number): Uint8Array {
  checkU32(vhciPort, "OP_REQ_DETACH", "vhciPort");
  const out = new Uint8Array(WireSize.OP_HEADER + 4);
  putOpHeader(out, OpCode.OP_REQ_DETACH, 0);
  view(out).setUint32(WireSize.OP_HEADER, vhciPort);
  return out;
}

/**
 * Encodes OP_REQ_CAPTURE (44 bytes; usbipgw's extension): the header, `busid[32]` (empty for
 * every device) and `snaplen` u32 (0 for all data). Throws `RangeError` for a bus id over 31
 * bytes or a snap length that is not a u32.
 *
 * @example Round trip
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { decodeOpRequest, encodeOpReqCapture } from "./op_messages.ts";
 * const bytes = encodeOpReqCapture("1-1", 96);
 * assertEquals(bytes.length, 44);
 * assertEquals(decodeOpRequest(bytes), { kind: "op_req_capture", busid: "1-1", snaplen: 96 });
 * ```
 */
export function encodeOpReqCapture(busid: string, snaplen = 0): Uint8Array {
  checkU32(snaplen, "OP_REQ_CAPTURE", "snaplen");
  const out = new Uint8Array(WireSize.OP_HEADER + WireSize.BUSID + 4);
  putOpHeader(out, OpCode.OP_REQ_CAPTURE, 0);
  writeFixedString(out, WireSize.OP_HEADER, WireSize.BUSID, busid, "busid");
  view(out).setUint32(WireSize.OP_HEADER + WireSize.BUSID, snaplen);
  return out;
}

/** Throws `RangeError` unless `n` is a 32-bit unsigned integer. */
function checkU32(n: number, frame: string, field: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new RangeError(`Cannot encode ${frame}: ${field} ${n} is not a 32-bit unsigned integer`);
  }
}

/** Writes a 312-byte device record into `out` at `offset`. */
function putDeviceRecord(out: Uint8Array, offset: number, d: UsbipDeviceRecord) {
  writeFixedString(out, offset, WireSize.PATH, d.path, "path");
  writeFixedString(out, offset + 0x100, WireSize.BUSID, d.busid, "busid");
  const v = new DataView(out.buffer, out.byteOffset + offset, WireSize.DEVICE_RECORD);
  v.setUint32(0x120, d.busnum);
  v.setUint32(0x124, d.devnum);
  v.setUint32(0x128, d.speed);
  v.setUint16(0x12c, d.idVendor);
  v.setUint16(0x12e, d.idProduct);
  v.setUint16(0x130, d.bcdDevice);
  v.setUint8(0x132, d.bDeviceClass);
  v.setUint8(0x133, d.bDeviceSubClass);
  v.setUint8(0x134, d.bDeviceProtocol);
  v.setUint8(0x135, d.bConfigurationValue);
  v.setUint8(0x136, d.bNumConfigurations);
  v.setUint8(0x137, d.bNumInterfaces);
}

/** Decodes a 312-byte device record. */
export function decodeDeviceRecord(b: Uint8Array): UsbipDeviceRecord {
  expectLength(b, "device record", WireSize.DEVICE_RECORD);
  const v = view(b);
  return {
    path: readFixedString(b, 0, WireSize.PATH),
    busid: readFixedString(b, 0x100, WireSize.BUSID),
    busnum: v.getUint32(0x120),
    devnum: v.getUint32(0x124),
    speed: v.getUint32(0x128),
    idVendor: v.getUint16(0x12c),
    idProduct: v.getUint16(0x12e),
    bcdDevice: v.getUint16(0x130),
    bDeviceClass: v.getUint8(0x132),
    bDeviceSubClass: v.getUint8(0x133),
    bDeviceProtocol: v.getUint8(0x134),
    bConfigurationValue: v.getUint8(0x135),
    bNumConfigurations: v.getUint8(0x136),
    bNumInterfaces: v.getUint8(0x137),
  };
}

/** Decodes `count` 4-byte interface records. */
export function decodeInterfaceRecords(b: Uint8Array, count: number): UsbipInterfaceRecord[] {
  expectLength(b, "interface records", count * WireSize.INTERFACE_RECORD);
  const interfaces: UsbipInterfaceRecord[] = [];
  for (let i = 0; i < count; i++) {
    const o = i * WireSize.INTERFACE_RECORD;
    interfaces.push({
      bInterfaceClass: b[o]!,
      bInterfaceSubClass: b[o + 1]!,
      bInterfaceProtocol: b[o + 2]!,
    });
  }
  return interfaces;
}

/**
 * Encodes OP_REP_DEVLIST: header, `u32 ndev`, then each device record and its interfaces.
 *
 * @example An empty list
 * ```ts
 * import { encodeOpRepDevlist } from "./op_messages.ts";
 * console.assert(encodeOpRepDevlist({ kind: "op_rep_devlist", status: 0, devices: [] }).length === 12);
 * ```
 */
export function encodeOpRepDevlist(rep: OpRepDevlist): Uint8Array {
  let size = WireSize.OP_HEADER + 4;
  for (const d of rep.devices) {
    if (d.interfaces.length !== d.bNumInterfaces) {
      throw new RangeError(
        `Cannot encode OP_REP_DEVLIST: ${d.busid} has ${d.interfaces.length} interface records, bNumInterfaces is ${d.bNumInterfaces}`,
      );
    }
    size += WireSize.DEVICE_RECORD + WireSize.INTERFACE_RECORD * d.interfaces.length;
  }
  const out = new Uint8Array(size);
  putOpHeader(out, OpCode.OP_REP_DEVLIST, rep.status);
  view(out).setUint32(WireSize.OP_HEADER, rep.devices.length);
  let o = WireSize.OP_HEADER + 4;
  for (const d of rep.devices) {
    putDeviceRecord(out, o, d);
    o += WireSize.DEVICE_RECORD;
    for (const i of d.interfaces) {
      out[o] = i.bInterfaceClass;
      out[o + 1] = i.bInterfaceSubClass;
      out[o + 2] = i.bInterfaceProtocol;
      o += WireSize.INTERFACE_RECORD;
    }
  }
  return out;
}

/** Checks an OP_REP_DEVLIST device count against the limits and returns it. */
export function checkDeviceCount(ndev: number, limits: UsbipLimits = DEFAULT_LIMITS): number {
  if (ndev > limits.maxDevices) {
    throw new UsbipProtocolError(
      "OP_REP_DEVLIST",
      "ndev",
      `is ${ndev}, limit is ${limits.maxDevices}`,
    );
  }
  return ndev;
}

/** Checks a device record's interface count against the limits and returns it. */
export function checkInterfaceCount(n: number, limits: UsbipLimits = DEFAULT_LIMITS): number {
  if (n > limits.maxInterfaces) {
    throw new UsbipProtocolError(
      "OP_REP_DEVLIST",
      "bNumInterfaces",
      `is ${n}, limit is ${limits.maxInterfaces}`,
    );
  }
  return n;
}

/** Decodes a whole OP_REP_DEVLIST held in one buffer. */
export function decodeOpRepDevlist(
  b: Uint8Array,
  limits: UsbipLimits = DEFAULT_LIMITS,
): OpRepDevlist {
  const header = decodeOpHeader(b);
  if (header.code !== OpCode.OP_REP_DEVLIST) {
    throw new UsbipProtocolError(
      "OP_REP_DEVLIST",
      "code",
      `is 0x${header.code.toString(16)}, expected 0x0005`,
    );
  }
  expectLength(b, "OP_REP_DEVLIST", WireSize.OP_HEADER + 4);
  const ndev = checkDeviceCount(view(b).getUint32(WireSize.OP_HEADER), limits);
  const devices: UsbipExportedDevice[] = [];
  let o = WireSize.OP_HEADER + 4;
  for (let i = 0; i < ndev; i++) {
    const record = decodeDeviceRecord(b.subarray(o));
    o += WireSize.DEVICE_RECORD;
    const n = checkInterfaceCount(record.bNumInterfaces, limits);
    devices.push({ ...record, interfaces: decodeInterfaceRecords(b.subarray(o), n) });
    o += n * WireSize.INTERFACE_RECORD;
  }
  return { kind: "op_rep_devlist", status: header.status, devices };
}

/** Encodes OP_REP_IMPORT: 320 bytes on success, the 8-byte header alone otherwise. */
export function encodeOpRepImport(rep: OpRepImport): Uint8Array {
  if (rep.status !== 0 || rep.device === undefined) {
    const out = new Uint8Array(WireSize.OP_HEADER);
    putOpHeader(out, OpCode.OP_REP_IMPORT, rep.status === 0 ? 1 : rep.status);
    return out;
  }
  const out = new Uint8Array(WireSize.OP_HEADER + WireSize.DEVICE_RECORD);
  putOpHeader(out, OpCode.OP_REP_IMPORT, 0);
  putDeviceRecord(out, WireSize.OP_HEADER, rep.device);
  return out;
}

/** Decodes OP_REP_IMPORT: a failure is the header alone, a success carries the record. */
export function decodeOpRepImport(b: Uint8Array): OpRepImport {
  const header = decodeOpHeader(b);
  if (header.code !== OpCode.OP_REP_IMPORT) {
    throw new UsbipProtocolError(
      "OP_REP_IMPORT",
      "code",
      `is 0x${header.code.toString(16)}, expected 0x0003`,
    );
  }
  if (header.status !== 0) return { kind: "op_rep_import", status: header.status };
  expectLength(b, "OP_REP_IMPORT", WireSize.OP_HEADER + WireSize.DEVICE_RECORD);
  return {
    kind: "op_rep_import",
    status: 0,
    device: decodeDeviceRecord(b.subarray(WireSize.OP_HEADER)),
  };
}

/** The replies that end in a 4-byte length and a message for people. */
type MessageReplyCode =
  | typeof OpCode.OP_REP_BIND
  | typeof OpCode.OP_REP_UNBIND
  | typeof OpCode.OP_REP_ATTACH
  | typeof OpCode.OP_REP_DETACH
  | typeof OpCode.OP_REP_CAPTURE;

/** The name of each reply that ends in a message, for messages. */
const MESSAGE_REPLY_NAMES: Record<MessageReplyCode, string> = {
  [OpCode.OP_REP_BIND]: "OP_REP_BIND",
  [OpCode.OP_REP_UNBIND]: "OP_REP_UNBIND",
  [OpCode.OP_REP_ATTACH]: "OP_REP_ATTACH",
  [OpCode.OP_REP_DETACH]: "OP_REP_DETACH",
  [OpCode.OP_REP_CAPTURE]: "OP_REP_CAPTURE",
};

/**
 * Encodes a reply that ends in a message: the header with `status`, then `vhciPort` u32 when
 * given (OP_REP_ATTACH), a 4-byte length, and the message as UTF-8.
 */
function messageReply(
  code: MessageReplyCode,
  status: number,
  message: string,
  vhciPort?: number,
): Uint8Array {
  const name = MESSAGE_REPLY_NAMES[code];
  const body = encoder.encode(message);
  if (body.length > MAX_BIND_MESSAGE_BYTES) {
    throw new RangeError(
      `Cannot encode ${name}: the message is ${body.length} bytes, limit is ${MAX_BIND_MESSAGE_BYTES}`,
    );
  }
  const extra = vhciPort === undefined ? 0 : 4;
  if (vhciPort !== undefined) checkU32(vhciPort, name, "vhciPort");
  const out = new Uint8Array(WireSize.OP_HEADER + extra + 4 + body.length);
  putOpHeader(out, code, status);
  const v = view(out);
  if (vhciPort !== undefined) v.setUint32(WireSize.OP_HEADER, vhciPort);
  v.setUint32(WireSize.OP_HEADER + extra, body.length);
  out.set(body, WireSize.OP_HEADER + extra + 4);
  return out;
}

/**
 * Decodes the head of a reply that ends in a message: the header (its code must be `code`),
 * `extra` bytes of fields (4 for OP_REP_ATTACH's `vhciPort`, else 0), and the length of the
 * message, checked against `maxBytes` before any of the message is read.
 */
function decodeMessageReplyHead(
  head: Uint8Array,
  code: MessageReplyCode,
  extra: 0 | 4,
  maxBytes: number,
): { status: number; length: number } {
  const frame = MESSAGE_REPLY_NAMES[code];
  const header = decodeOpHeader(head);
  if (header.code !== code) {
    throw new UsbipProtocolError(
      frame,
      "code",
      `is 0x${header.code.toString(16).padStart(4, "0")}, expected 0x${
        code.toString(16).padStart(4, "0")
      } (is this a usbipgw gateway?)`,
    );
  }
  expectLength(head, frame, WireSize.OP_HEADER + extra + 4);
  const length = view(head).getUint32(WireSize.OP_HEADER + extra);
  if (length > maxBytes) {
    throw new UsbipProtocolError(frame, "length", `is ${length} bytes, limit is ${maxBytes}`);
  }
  return { status: header.status, length };
}

/** Decodes a whole reply that ends in a message, held in one buffer. */
function decodeMessageReply(
  b: Uint8Array,
  code: MessageReplyCode,
  extra: 0 | 4,
  maxBytes: number,
): { status: number; message: string } {
  const { status, length } = decodeMessageReplyHead(b, code, extra, maxBytes);
  const start = WireSize.OP_HEADER + extra + 4;
  expectLength(b, MESSAGE_REPLY_NAMES[code], start + length);
  return { status, message: decoder.decode(b.subarray(start, start + length)) };
}

/**
 * Encodes OP_REP_BIND (usbipgw's extension): the header with the status, a 4-byte length,
 * then the message as UTF-8, for every status. Throws `RangeError` for a message over
 * {@linkcode MAX_BIND_MESSAGE_BYTES} bytes.
 *
 * @example Round trip
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { decodeOpRepBind, encodeOpRepBind } from "./op_messages.ts";
 * const rep = { kind: "op_rep_bind" as const, status: 0, message: "exported 3-1.2" };
 * const bytes = encodeOpRepBind(rep);
 * assertEquals(bytes.length, 12 + 14);
 * assertEquals(decodeOpRepBind(bytes), rep);
 * ```
 */
export function encodeOpRepBind(rep: OpRepBind): Uint8Array {
  return messageReply(OpCode.OP_REP_BIND, rep.status, rep.message);
}

/** Encodes OP_REP_UNBIND (usbipgw's extension), laid out as OP_REP_BIND. */
export function encodeOpRepUnbind(rep: OpRepUnbind): Uint8Array {
  return messageReply(OpCode.OP_REP_UNBIND, rep.status, rep.message);
}

/**
 * Decodes the first 12 bytes of an OP_REP_BIND, OP_REP_UNBIND, OP_REP_DETACH or OP_REP_CAPTURE (`code` says
 * which): the status and the length of the message that follows, checked against `maxBytes`
 * before any of it is read.
 */
export function decodeBindReplyHead(
  head: Uint8Array,
  code:
    | typeof OpCode.OP_REP_BIND
    | typeof OpCode.OP_REP_UNBIND
    | typeof OpCode.OP_REP_DETACH
    | typeof OpCode.OP_REP_CAPTURE,
  maxBytes: number = MAX_BIND_MESSAGE_BYTES,
): { status: number; length: number } {
  return decodeMessageReplyHead(head, code, 0, maxBytes);
}

/** Decodes a whole OP_REP_BIND; a message over `maxBytes` is a protocol error. */
export function decodeOpRepBind(
  b: Uint8Array,
  maxBytes: number = MAX_BIND_MESSAGE_BYTES,
): OpRepBind {
  return { kind: "op_rep_bind", ...decodeMessageReply(b, OpCode.OP_REP_BIND, 0, maxBytes) };
}

/** Decodes a whole OP_REP_UNBIND; a message over `maxBytes` is a protocol error. */
export function decodeOpRepUnbind(
  b: Uint8Array,
  maxBytes: number = MAX_BIND_MESSAGE_BYTES,
): OpRepUnbind {
  return { kind: "op_rep_unbind", ...decodeMessageReply(b, OpCode.OP_REP_UNBIND, 0, maxBytes) };
}

/**
 * Encodes OP_REP_ATTACH (usbipgw's extension): the header with the status, `vhciPort` u32, a
 * 4-byte length, then the message as UTF-8 (16 bytes and the message). Throws `RangeError` for
 * a message over {@linkcode MAX_BIND_MESSAGE_BYTES} bytes or a port that is not a u32.
 *
 * @example Attached on vhci port 2
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { decodeOpRepAttach, encodeOpRepAttach } from "./op_messages.ts";
 * const rep = { kind: "op_rep_attach" as const, status: 0, vhciPort: 2, message: "attached" };
 * const bytes = encodeOpRepAttach(rep);
 * assertEquals(bytes.length, 16 + 8);
 * assertEquals(decodeOpRepAttach(bytes), rep);
 * ```
 */
export function encodeOpRepAttach(rep: OpRepAttach): Uint8Array {
  return messageReply(OpCode.OP_REP_ATTACH, rep.status, rep.message, rep.vhciPort);
}

/**
 * Decodes the first 16 bytes of an OP_REP_ATTACH: the status, the vhci port and the length of
 * the message that follows, checked against `maxBytes` before any of it is read.
 */
export function decodeOpRepAttachHead(
  head: Uint8Array,
  maxBytes: number = MAX_BIND_MESSAGE_BYTES,
): { status: number; vhciPort: number; length: number } {
  const { status, length } = decodeMessageReplyHead(head, OpCode.OP_REP_ATTACH, 4, maxBytes);
  return { status, vhciPort: view(head).getUint32(WireSize.OP_HEADER), length };
}

/** Decodes a whole OP_REP_ATTACH; a message over `maxBytes` is a protocol error. */
export function decodeOpRepAttach(
  b: Uint8Array,
  maxBytes: number = MAX_BIND_MESSAGE_BYTES,
): OpRepAttach {
  const { status, message } = decodeMessageReply(b, OpCode.OP_REP_ATTACH, 4, maxBytes);
  return {
    kind: "op_rep_attach",
    status,
    vhciPort: view(b).getUint32(WireSize.OP_HEADER),
    message,
  };
}

/** Encodes OP_REP_DETACH (usbipgw's extension), laid out as OP_REP_BIND. */
export function encodeOpRepDetach(rep: OpRepDetach): Uint8Array {
  return messageReply(OpCode.OP_REP_DETACH, rep.status, rep.message);
}

/** Decodes a whole OP_REP_DETACH; a message over `maxBytes` is a protocol error. */
export function decodeOpRepDetach(
  b: Uint8Array,
  maxBytes: number = MAX_BIND_MESSAGE_BYTES,
): OpRepDetach {
  return { kind: "op_rep_detach", ...decodeMessageReply(b, OpCode.OP_REP_DETACH, 0, maxBytes) };
}

/** Encodes OP_REP_CAPTURE (usbipgw's extension), laid out as OP_REP_BIND. */
export function encodeOpRepCapture(rep: OpRepCapture): Uint8Array {
  return messageReply(OpCode.OP_REP_CAPTURE, rep.status, rep.message);
}

/** Decodes a whole OP_REP_CAPTURE; a message over `maxBytes` is a protocol error. */
export function decodeOpRepCapture(
  b: Uint8Array,
  maxBytes: number = MAX_BIND_MESSAGE_BYTES,
): OpRepCapture {
  return { kind: "op_rep_capture", ...decodeMessageReply(b, OpCode.OP_REP_CAPTURE, 0, maxBytes) };
}
