/**
 * URB-phase messages: USBIP_CMD_SUBMIT, USBIP_RET_SUBMIT (with ISO packet descriptors),
 * USBIP_CMD_UNLINK and USBIP_RET_UNLINK; 48-byte big-endian headers as in usbip_protocol.rst
 * and `struct usbip_header` in drivers/usb/usbip/usbip_common.h.
 *
 * @module
 */

import {
  DEFAULT_LIMITS,
  Direction,
  UrbCommandCode,
  type UsbipLimits,
  WireSize,
} from "./constants.ts";
import { UsbipProtocolError } from "./protocol_error.ts";

/**
 * The fields every URB header starts with, after the u32 `command`: `struct usbip_header_basic`
 * of drivers/usb/usbip/usbip_common.h.
 */
export interface UrbHeaderBasic {
  /** `seqnum` (u32): the request's number, which the reply to it carries back. */
  seqnum: number;
  /** `busnum << 16 | devnum`. */
  devid: number;
  /** {@linkcode Direction}: 0 OUT, 1 IN. */
  direction: number;
  /** Endpoint number without the direction bit, 0..15. */
  ep: number;
}

/** One ISO packet descriptor (`struct usbip_iso_packet_descriptor`, 16 bytes). */
export interface IsoPacketDescriptor {
  /** `offset` (u32): where the packet's data starts in the transfer buffer, in bytes. */
  offset: number;
  /** `length` (u32): the bytes expected for the packet. */
  length: number;
  /** `actual_length` (u32): the bytes the packet moved, as RET_SUBMIT reports them. */
  actualLength: number;
  /** `status`: the packet's completion status, 0 or a negative errno (read as signed). */
  status: number;
}

/**
 * USBIP_CMD_SUBMIT: the basic header, `struct usbip_header_cmd_submit` of
 * drivers/usb/usbip/usbip_common.h, then the OUT data and the ISO packet descriptors.
 */
export interface CmdSubmit extends UrbHeaderBasic {
  /** Tells the messages apart: USBIP_CMD_SUBMIT, command 0x00000001. */
  kind: "cmd_submit";
  /** `transfer_flags` (u32): the URB's flags, see `TransferFlags`. */
  transferFlags: number;
  /** `transfer_buffer_length`: the OUT bytes that follow, or the most IN bytes the client takes. */
  transferBufferLength: number;
  /** `start_frame`: the frame an isochronous URB starts in; unused by other transfer types. */
  startFrame: number;
  /** As received; only meaningful for isochronous endpoints. */
  numberOfPackets: number;
  /** `interval`: the URB's polling interval for interrupt and isochronous endpoints. */
  interval: number;
  /** The 8-byte setup packet, USB little-endian. */
  setup: Uint8Array;
  /** The OUT data, `transferBufferLength` bytes; empty for IN. */
  data: Uint8Array;
  /** The ISO packet descriptors; empty for other transfer types. */
  isoPackets: IsoPacketDescriptor[];
}

/**
 * USBIP_RET_SUBMIT: the basic header, `struct usbip_header_ret_submit` of
 * drivers/usb/usbip/usbip_common.h, then the IN data (ISO: packed without gaps) and the ISO
 * packet descriptors.
 */
export interface RetSubmit extends UrbHeaderBasic {
  /** Tells the messages apart: USBIP_RET_SUBMIT, command 0x00000003. */
  kind: "ret_submit";
  /** `status` (s32): the URB's completion status, 0 or a negative errno (see `UrbStatus`). */
  status: number;
  /** `actual_length`: the bytes transferred, IN data returned or OUT data taken. */
  actualLength: number;
  /** `start_frame`: the frame an isochronous URB started in; usbipgw's server sends 0. */
  startFrame: number;
  /** `number_of_packets` as received; {@linkcode encodeRetSubmit} writes `isoPackets.length`. */
  numberOfPackets: number;
  /** `error_count`: how many isochronous packets completed with an error. */
  errorCount: number;
  /** The IN data, `actualLength` bytes; empty for OUT. */
  data: Uint8Array;
  /** The ISO packet descriptors with each packet's result; empty for other transfer types. */
  isoPackets: IsoPacketDescriptor[];
}

/**
 * USBIP_CMD_UNLINK: cancel the URB `unlinkSeqnum` (`struct usbip_header_cmd_unlink` of
 * drivers/usb/usbip/usbip_common.h).
 */
export interface CmdUnlink extends UrbHeaderBasic {
  /** Tells the messages apart: USBIP_CMD_UNLINK, command 0x00000002. */
  kind: "cmd_unlink";
  /** `seqnum` of `struct usbip_header_cmd_unlink` (u32): the CMD_SUBMIT to cancel. */
  unlinkSeqnum: number;
}

/**
 * USBIP_RET_UNLINK; `seqnum` is the CMD_UNLINK's own (`struct usbip_header_ret_unlink` of
 * drivers/usb/usbip/usbip_common.h).
 */
export interface RetUnlink extends UrbHeaderBasic {
  /** Tells the messages apart: USBIP_RET_UNLINK, command 0x00000004. */
  kind: "ret_unlink";
  /** `status` (s32): -ECONNRESET when the URB was cancelled, 0 when it had completed already. */
  status: number;
}

/** A command a server reads in the URB phase. */
export type UrbCommand = CmdSubmit | CmdUnlink;
/** A reply a client reads in the URB phase. */
export type UrbReturn = RetSubmit | RetUnlink;

/** The header of a CMD_SUBMIT, decoded before its data and ISO descriptors are read. */
export type CmdSubmitHeader = Omit<CmdSubmit, "data" | "isoPackets">;
/** The header of a RET_SUBMIT, decoded before its data and ISO descriptors are read. */
export type RetSubmitHeader = Omit<RetSubmit, "data" | "isoPackets">;

const H = WireSize.URB_HEADER;
const ISO = WireSize.ISO_PACKET_DESCRIPTOR;

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function name(command: number): string {
  switch (command) {
    case UrbCommandCode.USBIP_CMD_SUBMIT:
      return "CMD_SUBMIT";
    case UrbCommandCode.USBIP_CMD_UNLINK:
      return "CMD_UNLINK";
    case UrbCommandCode.USBIP_RET_SUBMIT:
      return "RET_SUBMIT";
    case UrbCommandCode.USBIP_RET_UNLINK:
      return "RET_UNLINK";
    default:
      return "URB header";
  }
}

function putBasic(v: DataView, command: number, m: UrbHeaderBasic) {
  v.setUint32(0x00, command);
  v.setUint32(0x04, m.seqnum);
  v.setUint32(0x08, m.devid);
  v.setUint32(0x0c, m.direction);
  v.setUint32(0x10, m.ep);
}

/**
 * Reads the command code of a 48-byte URB header and checks it is one of `expected`.
 */
export function peekUrbCommand(b: Uint8Array, expected: readonly number[]): number {
  if (b.length < H) {
    throw new UsbipProtocolError("URB header", "length", `is ${b.length} bytes, expected ${H}`);
  }
  const command = view(b).getUint32(0);
  if (!expected.includes(command)) {
    throw new UsbipProtocolError(
      "URB header",
      "command",
      `is 0x${command.toString(16).padStart(8, "0")}, expected ${expected.map(name).join(" or ")}`,
    );
  }
  return command;
}

/** The command codes each decoder accepts (one array each, not one per call). */
const ONLY_CMD_SUBMIT = [UrbCommandCode.USBIP_CMD_SUBMIT] as const;
const ONLY_RET_SUBMIT = [UrbCommandCode.USBIP_RET_SUBMIT] as const;
const ONLY_CMD_UNLINK = [UrbCommandCode.USBIP_CMD_UNLINK] as const;
const ONLY_RET_UNLINK = [UrbCommandCode.USBIP_RET_UNLINK] as const;

/** Checks the `direction` and `ep` of a header; `command` names the frame in the error. */
function checkBasic(v: DataView, command: number): void {
  const direction = v.getUint32(0x0c);
  const ep = v.getUint32(0x10);
  if (direction !== Direction.USBIP_DIR_OUT && direction !== Direction.USBIP_DIR_IN) {
    throw new UsbipProtocolError(name(command), "direction", `is ${direction}, expected 0 or 1`);
  }
  if (ep > 15) throw new UsbipProtocolError(name(command), "ep", `is ${ep}, expected 0..15`);
}

function decodeBasic(b: Uint8Array, command: number): UrbHeaderBasic {
  const v = view(b);
  checkBasic(v, command);
  return {
    seqnum: v.getUint32(0x04),
    devid: v.getUint32(0x08),
    direction: v.getUint32(0x0c),
    ep: v.getUint32(0x10),
  };
}

function checkLength(frame: string, field: string, value: number, limit: number) {
  if (value > limit) throw new UsbipProtocolError(frame, field, `is ${value}, limit is ${limit}`);
}

/**
 * Decodes the 48-byte header of a CMD_SUBMIT and checks `transfer_buffer_length` against the
 * limits. `number_of_packets` is kept as received: only the caller knows whether the endpoint
 * is isochronous (see {@linkcode cmdSubmitBodyLength}).
 */
export function decodeCmdSubmitHeader(
  b: Uint8Array,
  limits: UsbipLimits = DEFAULT_LIMITS,
): CmdSubmitHeader {
  peekUrbCommand(b, ONLY_CMD_SUBMIT);
  const v = view(b);
  const transferBufferLength = v.getUint32(0x18);
  checkLength(
    "CMD_SUBMIT",
    "transfer_buffer_length",
    transferBufferLength,
    limits.maxTransferBufferLength,
  );
  checkBasic(v, UrbCommandCode.USBIP_CMD_SUBMIT);
  // Built field by field: a spread of the basic header would copy an object per URB.
  return {
    kind: "cmd_submit",
    seqnum: v.getUint32(0x04),
    devid: v.getUint32(0x08),
    direction: v.getUint32(0x0c),
    ep: v.getUint32(0x10),
    transferFlags: v.getUint32(0x14),
    transferBufferLength,
    startFrame: v.getUint32(0x1c),
    numberOfPackets: v.getUint32(0x20),
    interval: v.getUint32(0x24),
    setup: b.slice(0x28, 0x30),
  };
}

/**
 * The ISO packet count of a CMD_SUBMIT to an isochronous endpoint, checked against the limits:
 * at least 1 and at most `maxIsoPackets`.
 */
export function isoPacketCount(
  h: { numberOfPackets: number },
  limits: UsbipLimits = DEFAULT_LIMITS,
): number {
  const n = h.numberOfPackets;
  if (n === 0 || n > limits.maxIsoPackets) {
    throw new UsbipProtocolError(
      "CMD_SUBMIT",
      "number_of_packets",
      `is ${n}, expected 1..${limits.maxIsoPackets} for an isochronous endpoint`,
    );
  }
  return n;
}

/**
 * The bytes that follow a CMD_SUBMIT header: the OUT data, then `isoPackets` descriptors.
 */
export function cmdSubmitBodyLength(h: CmdSubmitHeader, isoPackets: number): number {
  return (h.direction === Direction.USBIP_DIR_OUT ? h.transferBufferLength : 0) + isoPackets * ISO;
}

function decodeIsoDescriptors(b: Uint8Array, count: number): IsoPacketDescriptor[] {
  const v = view(b);
  const packets: IsoPacketDescriptor[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const o = i * ISO;
    packets[i] = {
      offset: v.getUint32(o),
      length: v.getUint32(o + 4),
      actualLength: v.getUint32(o + 8),
      status: v.getInt32(o + 12),
    };
  }
  return packets;
}

/**
 * The `count` ISO descriptors that follow `dataLength` bytes of data in the body of `frame`
 * (CMD_SUBMIT or RET_SUBMIT), after checking that the body holds both.
 */
function bodyIsoDescriptors(
  frame: string,
  body: Uint8Array,
  dataLength: number,
  count: number,
): IsoPacketDescriptor[] {
  const expected = dataLength + count * ISO;
  if (body.length < expected) {
    throw new UsbipProtocolError(
      frame,
      "length",
      `body is ${body.length} bytes, expected ${expected}`,
    );
  }
  return decodeIsoDescriptors(body.subarray(dataLength), count);
}

function putIsoDescriptors(v: DataView, at: number, packets: readonly IsoPacketDescriptor[]) {
  for (const p of packets) {
    v.setUint32(at, p.offset);
    v.setUint32(at + 4, p.length);
    v.setUint32(at + 8, p.actualLength);
    v.setInt32(at + 12, p.status);
    at += ISO;
  }
}

/**
 * Completes a CMD_SUBMIT from its header and body (as sized by {@linkcode cmdSubmitBodyLength}).
 * ISO descriptors must each lie inside the transfer buffer, and their lengths must not add up
 * to more than `transfer_buffer_length`.
 */
export function decodeCmdSubmitBody(
  h: CmdSubmitHeader,
  body: Uint8Array,
  isoPackets: number,
): CmdSubmit {
  const dataLength = h.direction === Direction.USBIP_DIR_OUT ? h.transferBufferLength : 0;
  const packets = bodyIsoDescriptors("CMD_SUBMIT", body, dataLength, isoPackets);
  let sum = 0;
  for (let i = 0; i < packets.length; i++) {
    const p = packets[i]!;
    if (p.offset + p.length > h.transferBufferLength) {
      throw new UsbipProtocolError(
        "CMD_SUBMIT",
        `iso_packet_desc[${i}]`,
        `spans ${p.offset}..${
          p.offset + p.length
        }, beyond transfer_buffer_length ${h.transferBufferLength}`,
      );
    }
    sum += p.length;
  }
  if (sum > h.transferBufferLength) {
    throw new UsbipProtocolError(
      "CMD_SUBMIT",
      "iso_packet_desc",
      `lengths add up to ${sum}, more than transfer_buffer_length ${h.transferBufferLength}`,
    );
  }
  return {
    kind: h.kind,
    seqnum: h.seqnum,
    devid: h.devid,
    direction: h.direction,
    ep: h.ep,
    transferFlags: h.transferFlags,
    transferBufferLength: h.transferBufferLength,
    startFrame: h.startFrame,
    numberOfPackets: h.numberOfPackets,
    interval: h.interval,
    setup: h.setup,
    data: body.subarray(0, dataLength),
    isoPackets: packets,
  };
}

/**
 * Decodes a whole CMD_SUBMIT held in one buffer. `isochronous` tells whether the endpoint is
 * isochronous, which decides whether ISO descriptors follow.
 *
 * @example Round trip of a bulk OUT
 * ```ts
 * import { decodeCmdSubmit, encodeCmdSubmit } from "./urb_messages.ts";
 * const bytes = encodeCmdSubmit({
 *   kind: "cmd_submit", seqnum: 1, devid: 0x10001, direction: 0, ep: 1, transferFlags: 0,
 *   transferBufferLength: 3, startFrame: 0, numberOfPackets: 0, interval: 0,
 *   setup: new Uint8Array(8), data: new Uint8Array([1, 2, 3]), isoPackets: [],
 * });
 * console.assert(decodeCmdSubmit(bytes, false).data.length === 3);
 * ```
 */
export function decodeCmdSubmit(
  b: Uint8Array,
  isochronous: boolean,
  limits: UsbipLimits = DEFAULT_LIMITS,
): CmdSubmit {
  const h = decodeCmdSubmitHeader(b, limits);
  const n = isochronous ? isoPacketCount(h, limits) : 0;
  return decodeCmdSubmitBody(h, b.subarray(H), n);
}

/** Encodes CMD_SUBMIT: header, OUT data, ISO descriptors, in one buffer. */
export function encodeCmdSubmit(m: CmdSubmit): Uint8Array {
  const dataLength = m.direction === Direction.USBIP_DIR_OUT ? m.transferBufferLength : 0;
  if (m.data.length !== dataLength) {
    throw new RangeError(
      `Cannot encode CMD_SUBMIT: data is ${m.data.length} bytes, expected ${dataLength}`,
    );
  }
  if (m.setup.length !== WireSize.SETUP) {
    throw new RangeError(`Cannot encode CMD_SUBMIT: setup is ${m.setup.length} bytes, expected 8`);
  }
  const out = new Uint8Array(H + dataLength + m.isoPackets.length * ISO);
  const v = view(out);
  putBasic(v, UrbCommandCode.USBIP_CMD_SUBMIT, m);
  v.setUint32(0x14, m.transferFlags);
  v.setUint32(0x18, m.transferBufferLength);
  v.setUint32(0x1c, m.startFrame);
  v.setUint32(0x20, m.numberOfPackets);
  v.setUint32(0x24, m.interval);
  out.set(m.setup, 0x28);
  out.set(m.data, H);
  putIsoDescriptors(v, H + dataLength, m.isoPackets);
  return out;
}

/**
 * Encodes RET_SUBMIT: header, IN data, ISO descriptors, written as one buffer so that a reply
 * is a single socket write. `numberOfPackets` is written as `isoPackets.length`.
 */
export function encodeRetSubmit(m: RetSubmit): Uint8Array {
  const out = new Uint8Array(retSubmitLength(m));
  encodeRetSubmitInto(out, m);
  return out;
}

/** The size of RET_SUBMIT `m` on the wire: the header, the IN data and the ISO descriptors. */
export function retSubmitLength(m: RetSubmit): number {
  return H + m.data.length + m.isoPackets.length * ISO;
}

/**
 * Encodes RET_SUBMIT `m` into `out` (reused memory: every byte of the message is written), which
 * must hold {@linkcode retSubmitLength} bytes. When `m.data` already lies in `out` right behind
 * the header (a device's buffer with room in front, `TransferResult.headroom`), it is left where
 * it is: only the header is written.
 */
export function encodeRetSubmitInto(out: Uint8Array, m: RetSubmit): void {
  const v = view(out);
  putBasic(v, UrbCommandCode.USBIP_RET_SUBMIT, m);
  v.setInt32(0x14, m.status);
  v.setUint32(0x18, m.actualLength);
  v.setUint32(0x1c, m.startFrame);
  v.setUint32(0x20, m.isoPackets.length);
  v.setUint32(0x24, m.errorCount);
  out.fill(0, 0x28, H); // the setup field, unused in a reply
  const inPlace = m.data.buffer === out.buffer && m.data.byteOffset === out.byteOffset + H;
  if (!inPlace) out.set(m.data, H);
  putIsoDescriptors(v, H + m.data.length, m.isoPackets);
}

/** Decodes the 48-byte header of a RET_SUBMIT. */
export function decodeRetSubmitHeader(b: Uint8Array): RetSubmitHeader {
  peekUrbCommand(b, ONLY_RET_SUBMIT);
  const v = view(b);
  return {
    kind: "ret_submit",
    ...decodeBasic(b, UrbCommandCode.USBIP_RET_SUBMIT),
    status: v.getInt32(0x14),
    actualLength: v.getUint32(0x18),
    startFrame: v.getUint32(0x1c),
    numberOfPackets: v.getUint32(0x20),
    errorCount: v.getUint32(0x24),
  };
}

/** What a client knows about the URB a RET_SUBMIT answers, needed to size its body. */
export interface SubmittedUrb {
  /** Whether the URB was IN (the RET_SUBMIT's own direction may be 0). */
  dirIn: boolean;
  /** Whether the endpoint is isochronous. */
  isochronous: boolean;
  /** The `transfer_buffer_length` submitted: the most `actual_length` may be. */
  transferBufferLength: number;
}

/**
 * The bytes that follow a RET_SUBMIT header for the URB it answers, after checking
 * `actual_length` and `number_of_packets` against what was submitted.
 */
export function retSubmitBodyLength(
  h: RetSubmitHeader,
  urb: SubmittedUrb,
  limits: UsbipLimits = DEFAULT_LIMITS,
): number {
  checkLength("RET_SUBMIT", "actual_length", h.actualLength, urb.transferBufferLength);
  let n = 0;
  if (urb.isochronous) {
    checkLength("RET_SUBMIT", "number_of_packets", h.numberOfPackets, limits.maxIsoPackets);
    n = h.numberOfPackets;
  }
  return (urb.dirIn ? h.actualLength : 0) + n * ISO;
}

/**
 * Completes a RET_SUBMIT. For ISO the packets' `actual_length` values must add up to the
 * header's `actual_length`, and none may exceed its packet's length.
 */
export function decodeRetSubmitBody(
  h: RetSubmitHeader,
  body: Uint8Array,
  urb: SubmittedUrb,
): RetSubmit {
  const dataLength = urb.dirIn ? h.actualLength : 0;
  const n = urb.isochronous ? h.numberOfPackets : 0;
  const packets = bodyIsoDescriptors("RET_SUBMIT", body, dataLength, n);
  if (urb.isochronous) {
    let sum = 0;
    for (const [i, p] of packets.entries()) {
      if (p.actualLength > p.length) {
        throw new UsbipProtocolError(
          "RET_SUBMIT",
          `iso_packet_desc[${i}].actual_length`,
          `is ${p.actualLength}, more than its length ${p.length}`,
        );
      }
      sum += p.actualLength;
    }
    if (sum !== h.actualLength) {
      throw new UsbipProtocolError(
        "RET_SUBMIT",
        "iso_packet_desc",
        `actual lengths add up to ${sum}, actual_length is ${h.actualLength}`,
      );
    }
  }
  return { ...h, data: body.subarray(0, dataLength), isoPackets: packets };
}

/** Decodes a whole RET_SUBMIT held in one buffer. */
export function decodeRetSubmit(
  b: Uint8Array,
  urb: SubmittedUrb,
  limits: UsbipLimits = DEFAULT_LIMITS,
): RetSubmit {
  const h = decodeRetSubmitHeader(b);
  retSubmitBodyLength(h, urb, limits);
  return decodeRetSubmitBody(h, b.subarray(H), urb);
}

/** Encodes CMD_UNLINK (48 bytes). */
export function encodeCmdUnlink(m: CmdUnlink): Uint8Array {
  const out = new Uint8Array(H);
  const v = view(out);
  putBasic(v, UrbCommandCode.USBIP_CMD_UNLINK, m);
  v.setUint32(0x14, m.unlinkSeqnum);
  return out;
}

/** Decodes CMD_UNLINK (48 bytes). */
export function decodeCmdUnlink(b: Uint8Array): CmdUnlink {
  peekUrbCommand(b, ONLY_CMD_UNLINK);
  return {
    kind: "cmd_unlink",
    ...decodeBasic(b, UrbCommandCode.USBIP_CMD_UNLINK),
    unlinkSeqnum: view(b).getUint32(0x14),
  };
}

/** Encodes RET_UNLINK (48 bytes). */
export function encodeRetUnlink(m: RetUnlink): Uint8Array {
  const out = new Uint8Array(H);
  const v = view(out);
  putBasic(v, UrbCommandCode.USBIP_RET_UNLINK, m);
  v.setInt32(0x14, m.status);
  return out;
}

/** Decodes RET_UNLINK (48 bytes). */
export function decodeRetUnlink(b: Uint8Array): RetUnlink {
  peekUrbCommand(b, ONLY_RET_UNLINK);
  return {
    kind: "ret_unlink",
    ...decodeBasic(b, UrbCommandCode.USBIP_RET_UNLINK),
    status: view(b).getInt32(0x14),
  };
}

/**
 * Packs the IN data of an isochronous transfer for RET_SUBMIT: each packet's `actualLength`
 * bytes, taken from its `offset` in `buffer`, one after another without gaps.
 */
export function packIsoData(
  buffer: Uint8Array,
  packets: readonly IsoPacketDescriptor[],
): Uint8Array {
  let total = 0;
  for (const p of packets) total += p.actualLength;
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of packets) {
    out.set(buffer.subarray(p.offset, p.offset + p.actualLength), o);
    o += p.actualLength;
  }
  return out;
}
