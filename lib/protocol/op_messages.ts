/**
 * Op-phase messages: OP_REQ/REP_DEVLIST and OP_REQ/REP_IMPORT with the 312-byte device record
 * and 4-byte interface records, big-endian as in usbip_protocol.rst and usbip_network.h; and
 * usbipgw's own OP_REQ/REP_STATUS, OP_REQ/REP_BIND and OP_REQ/REP_UNBIND in the same framing.
 *
 * @module
 */

import {
  DEFAULT_LIMITS,
  MAX_BIND_MESSAGE_BYTES,
  OpCode,
  USBIP_VERSION,
  type UsbipLimits,
  WireSize,
} from "./constants.ts";
import { UsbipProtocolError } from "./protocol_error.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The 8-byte header of every op-phase message. */
export interface OpHeader {
  /** Protocol version, 0x0111. */
  version: number;
  /** One of {@linkcode OpCode}. */
  code: number;
  /** One of `OpStatus` (0 for requests). */
  status: number;
}

/** The exported-device record (`struct usbip_usb_device`, 312 bytes). */
export interface UsbipDeviceRecord {
  /** sysfs path of the device; informational only. */
  path: string;
  /** Bus id such as `1-1`; at most 31 bytes. */
  busid: string;
  busnum: number;
  devnum: number;
  /** One of `Speed`. */
  speed: number;
  idVendor: number;
  idProduct: number;
  bcdDevice: number;
  bDeviceClass: number;
  bDeviceSubClass: number;
  bDeviceProtocol: number;
  bConfigurationValue: number;
  bNumConfigurations: number;
  bNumInterfaces: number;
}

/** One interface of an exported device in OP_REP_DEVLIST (`struct usbip_usb_interface`). */
export interface UsbipInterfaceRecord {
  bInterfaceClass: number;
  bInterfaceSubClass: number;
  bInterfaceProtocol: number;
}

/** A device as OP_REP_DEVLIST lists it: the record followed by its interfaces. */
export interface UsbipExportedDevice extends UsbipDeviceRecord {
  /** Exactly `bNumInterfaces` entries. */
  interfaces: UsbipInterfaceRecord[];
}

/** OP_REQ_DEVLIST: asks for the list of exported devices. */
export interface OpReqDevlist {
  kind: "op_req_devlist";
}

/** OP_REQ_IMPORT: asks to import the device with `busid`. */
export interface OpReqImport {
  kind: "op_req_import";
  busid: string;
}

/** OP_REQ_STATUS (usbipgw's extension): asks for the gateway's status. */
export interface OpReqStatus {
  kind: "op_req_status";
}

/** OP_REQ_BIND (usbipgw's extension): asks to export the host device with `busid`. */
export interface OpReqBind {
  kind: "op_req_bind";
  /** The host bus id, such as `1-1.2`; at most 31 bytes. */
  busid: string;
}

/** OP_REQ_UNBIND (usbipgw's extension): asks to withdraw the host device with `busid`. */
export interface OpReqUnbind {
  kind: "op_req_unbind";
  /** The host bus id, such as `1-1.2`; at most 31 bytes. */
  busid: string;
}

/** A request a server reads in the op phase. */
export type OpRequest = OpReqDevlist | OpReqImport | OpReqStatus | OpReqBind | OpReqUnbind;

/** OP_REP_DEVLIST: the status and the exported devices. */
export interface OpRepDevlist {
  kind: "op_rep_devlist";
  status: number;
  devices: UsbipExportedDevice[];
}

/** OP_REP_IMPORT: on success the device record, otherwise only a non-zero status. */
export interface OpRepImport {
  kind: "op_rep_import";
  status: number;
  device?: UsbipDeviceRecord;
}

/** OP_REP_BIND (usbipgw's extension): an `OpStatus` and a short message for people. */
export interface OpRepBind {
  kind: "op_rep_bind";
  status: number;
  /** At most {@linkcode MAX_BIND_MESSAGE_BYTES} bytes of UTF-8; may be empty. */
  message: string;
}

/** OP_REP_UNBIND (usbipgw's extension): an `OpStatus` and a short message for people. */
export interface OpRepUnbind {
  kind: "op_rep_unbind";
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
    default:
      throw new UsbipProtocolError(
        "op request",
        "code",
        `is 0x${
          code.toString(16).padStart(4, "0")
        }, expected OP_REQ_DEVLIST, OP_REQ_IMPORT, OP_REQ_STATUS, OP_REQ_BIND or OP_REQ_UNBIND`,
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
  const busid = readFixedString(b, WireSize.OP_HEADER, WireSize.BUSID);
  if (header.code === OpCode.OP_REQ_BIND) return { kind: "op_req_bind", busid };
  if (header.code === OpCode.OP_REQ_UNBIND) return { kind: "op_req_unbind", busid };
  return { kind: "op_req_import", busid };
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

/** The name of a bind or unbind reply code, for messages. */
function bindReplyName(code: number): string {
  return code === OpCode.OP_REP_BIND ? "OP_REP_BIND" : "OP_REP_UNBIND";
}

/** Encodes a bind or unbind reply: the header with `status`, a 4-byte length, the message. */
function bindReply(code: number, status: number, message: string): Uint8Array {
  const body = encoder.encode(message);
  if (body.length > MAX_BIND_MESSAGE_BYTES) {
    throw new RangeError(
      `Cannot encode ${
        bindReplyName(code)
      }: the message is ${body.length} bytes, limit is ${MAX_BIND_MESSAGE_BYTES}`,
    );
  }
  const out = new Uint8Array(WireSize.OP_HEADER + 4 + body.length);
  putOpHeader(out, code, status);
  view(out).setUint32(WireSize.OP_HEADER, body.length);
  out.set(body, WireSize.OP_HEADER + 4);
  return out;
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
  return bindReply(OpCode.OP_REP_BIND, rep.status, rep.message);
}

/** Encodes OP_REP_UNBIND (usbipgw's extension), laid out as OP_REP_BIND. */
export function encodeOpRepUnbind(rep: OpRepUnbind): Uint8Array {
  return bindReply(OpCode.OP_REP_UNBIND, rep.status, rep.message);
}

/**
 * Decodes the first 12 bytes of an OP_REP_BIND or OP_REP_UNBIND (`code` says which): the
 * status and the length of the message that follows, checked against `maxBytes` before any of
 * it is read.
 */
export function decodeBindReplyHead(
  head: Uint8Array,
  code: typeof OpCode.OP_REP_BIND | typeof OpCode.OP_REP_UNBIND,
  maxBytes: number = MAX_BIND_MESSAGE_BYTES,
): { status: number; length: number } {
  const frame = bindReplyName(code);
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
  expectLength(head, frame, WireSize.OP_HEADER + 4);
  const length = view(head).getUint32(WireSize.OP_HEADER);
  if (length > maxBytes) {
    throw new UsbipProtocolError(frame, "length", `is ${length} bytes, limit is ${maxBytes}`);
  }
  return { status: header.status, length };
}

/** Decodes a whole bind or unbind reply held in one buffer. */
function decodeBindReply(
  b: Uint8Array,
  code: typeof OpCode.OP_REP_BIND | typeof OpCode.OP_REP_UNBIND,
  maxBytes: number,
): { status: number; message: string } {
  const { status, length } = decodeBindReplyHead(b, code, maxBytes);
  expectLength(b, bindReplyName(code), WireSize.OP_HEADER + 4 + length);
  const start = WireSize.OP_HEADER + 4;
  return { status, message: decoder.decode(b.subarray(start, start + length)) };
}

/** Decodes a whole OP_REP_BIND; a message over `maxBytes` is a protocol error. */
export function decodeOpRepBind(
  b: Uint8Array,
  maxBytes: number = MAX_BIND_MESSAGE_BYTES,
): OpRepBind {
  return { kind: "op_rep_bind", ...decodeBindReply(b, OpCode.OP_REP_BIND, maxBytes) };
}

/** Decodes a whole OP_REP_UNBIND; a message over `maxBytes` is a protocol error. */
export function decodeOpRepUnbind(
  b: Uint8Array,
  maxBytes: number = MAX_BIND_MESSAGE_BYTES,
): OpRepUnbind {
  return { kind: "op_rep_unbind", ...decodeBindReply(b, OpCode.OP_REP_UNBIND, maxBytes) };
}
