/**
 * Reads whole USB/IP frames from a byte stream: exactly the bytes each header announces, with
 * every length checked against {@linkcode UsbipLimits} before anything is allocated.
 *
 * @module
 */

import { DEFAULT_LIMITS, OpCode, UrbCommandCode, type UsbipLimits, WireSize } from "./constants.ts";
import {
  checkDeviceCount,
  checkInterfaceCount,
  decodeDeviceRecord,
  decodeInterfaceRecords,
  decodeOpHeader,
  decodeOpRequest,
  type OpRepDevlist,
  type OpRepImport,
  type OpRequest,
  opRequestBodyLength,
  type UsbipExportedDevice,
} from "./op_messages.ts";
import { UsbipProtocolError } from "./protocol_error.ts";
import {
  cmdSubmitBodyLength,
  decodeCmdSubmitBody,
  decodeCmdSubmitHeader,
  decodeCmdUnlink,
  decodeRetSubmitBody,
  decodeRetSubmitHeader,
  decodeRetUnlink,
  isoPacketCount,
  peekUrbCommand,
  retSubmitBodyLength,
  type SubmittedUrb,
  type UrbCommand,
  type UrbReturn,
} from "./urb_messages.ts";

const EMPTY = new Uint8Array(0);

/** Tells whether endpoint `ep` in `direction` (0 OUT, 1 IN) is isochronous. */
export type IsochronousPredicate = (ep: number, direction: number) => boolean;

/**
 * Frames USB/IP messages from a `ReadableStream`. Each `read*` method returns one whole
 * message, or `null` when the stream ends cleanly between messages; a stream that ends inside
 * a message, and any field that breaks the protocol, raise {@linkcode UsbipProtocolError}.
 *
 * @example Reading an op request
 * ```ts
 * import { FrameReader } from "./frame_reader.ts";
 * import { encodeOpReqImport } from "./op_messages.ts";
 * const stream = ReadableStream.from([encodeOpReqImport("1-1")]);
 * const req = await new FrameReader(stream).readOpRequest();
 * console.assert(req?.kind === "op_req_import");
 * ```
 */
export class FrameReader {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #limits: UsbipLimits;
  #chunk: Uint8Array = EMPTY;
  #pos = 0;

  /** Takes the reader of `readable`; {@linkcode FrameReader.cancel} gives it back. */
  constructor(readable: ReadableStream<Uint8Array>, limits: UsbipLimits = DEFAULT_LIMITS) {
    this.#reader = readable.getReader();
    this.#limits = limits;
  }

  /** The number of bytes already received and not yet consumed. */
  get buffered(): number {
    return this.#chunk.length - this.#pos;
  }

  /**
   * Reads exactly `n` bytes. Returns `null` if the stream ends before the first byte; throws if
   * it ends after some but not all of them. The result may be a view into a received chunk.
   */
  async readExact(n: number, frame = "frame"): Promise<Uint8Array | null> {
    const available = this.#chunk.length - this.#pos;
    if (available >= n) {
      const out = this.#chunk.subarray(this.#pos, this.#pos + n);
      this.#pos += n;
      return out;
    }
    let out: Uint8Array | undefined;
    let filled = 0;
    if (available > 0) {
      out = new Uint8Array(n);
      out.set(this.#chunk.subarray(this.#pos));
      filled = available;
    }
    this.#chunk = EMPTY;
    this.#pos = 0;
    while (true) {
      const { done, value } = await this.#reader.read();
      if (done) {
        if (filled === 0) return null;
        throw new UsbipProtocolError(frame, "length", `ends after ${filled} of ${n} bytes`);
      }
      if (value.length === 0) continue;
      if (out === undefined && value.length >= n) {
        this.#chunk = value;
        this.#pos = n;
        return value.subarray(0, n);
      }
      out ??= new Uint8Array(n);
      const take = Math.min(n - filled, value.length);
      out.set(value.subarray(0, take), filled);
      filled += take;
      if (filled === n) {
        this.#chunk = value;
        this.#pos = take;
        return out;
      }
    }
  }

  async #readRequired(n: number, frame: string): Promise<Uint8Array> {
    if (n === 0) return EMPTY;
    const b = await this.readExact(n, frame);
    if (b === null) throw new UsbipProtocolError(frame, "length", `ends after 0 of ${n} bytes`);
    return b;
  }

  /** Reads OP_REQ_DEVLIST or OP_REQ_IMPORT; `null` on a clean end of stream. */
  async readOpRequest(): Promise<OpRequest | null> {
    const header = await this.readExact(WireSize.OP_HEADER, "op request");
    if (header === null) return null;
    const { code } = decodeOpHeader(header);
    const body = await this.#readRequired(opRequestBodyLength(code), "op request");
    const whole = new Uint8Array(WireSize.OP_HEADER + body.length);
    whole.set(header);
    whole.set(body, WireSize.OP_HEADER);
    return decodeOpRequest(whole);
  }

  /**
   * Reads CMD_SUBMIT or CMD_UNLINK; `null` on a clean end of stream. `isochronous` decides
   * whether a CMD_SUBMIT carries ISO descriptors, since `number_of_packets` is only
   * trustworthy for isochronous endpoints.
   */
  async readUrbCommand(isochronous: IsochronousPredicate): Promise<UrbCommand | null> {
    const header = await this.readExact(WireSize.URB_HEADER, "URB header");
    if (header === null) return null;
    const command = peekUrbCommand(header, [
      UrbCommandCode.USBIP_CMD_SUBMIT,
      UrbCommandCode.USBIP_CMD_UNLINK,
    ]);
    if (command === UrbCommandCode.USBIP_CMD_UNLINK) return decodeCmdUnlink(header);
    const h = decodeCmdSubmitHeader(header, this.#limits);
    const packets = isochronous(h.ep, h.direction) ? isoPacketCount(h, this.#limits) : 0;
    const body = await this.#readRequired(cmdSubmitBodyLength(h, packets), "CMD_SUBMIT");
    return decodeCmdSubmitBody(h, body, packets);
  }

  /**
   * Reads RET_SUBMIT or RET_UNLINK (client side); `null` on a clean end of stream. `lookup`
   * returns what was submitted under a seqnum; an unknown seqnum is a protocol error.
   */
  async readUrbReturn(
    lookup: (seqnum: number) => SubmittedUrb | undefined,
  ): Promise<UrbReturn | null> {
    const header = await this.readExact(WireSize.URB_HEADER, "URB header");
    if (header === null) return null;
    const command = peekUrbCommand(header, [
      UrbCommandCode.USBIP_RET_SUBMIT,
      UrbCommandCode.USBIP_RET_UNLINK,
    ]);
    if (command === UrbCommandCode.USBIP_RET_UNLINK) return decodeRetUnlink(header);
    const h = decodeRetSubmitHeader(header);
    const urb = lookup(h.seqnum);
    if (urb === undefined) {
      throw new UsbipProtocolError("RET_SUBMIT", "seqnum", `is ${h.seqnum}, which is not pending`);
    }
    const body = await this.#readRequired(retSubmitBodyLength(h, urb, this.#limits), "RET_SUBMIT");
    return decodeRetSubmitBody(h, body, urb);
  }

  /** Reads OP_REP_DEVLIST (client side). */
  async readOpRepDevlist(): Promise<OpRepDevlist> {
    const frame = "OP_REP_DEVLIST";
    const head = await this.#readRequired(WireSize.OP_HEADER + 4, frame);
    const header = decodeOpHeader(head);
    if (header.code !== OpCode.OP_REP_DEVLIST) {
      throw new UsbipProtocolError(
        frame,
        "code",
        `is 0x${header.code.toString(16)}, expected 0x0005`,
      );
    }
    const ndev = checkDeviceCount(
      new DataView(head.buffer, head.byteOffset, head.byteLength).getUint32(WireSize.OP_HEADER),
      this.#limits,
    );
    const devices: UsbipExportedDevice[] = [];
    for (let i = 0; i < ndev; i++) {
      const record = decodeDeviceRecord(await this.#readRequired(WireSize.DEVICE_RECORD, frame));
      const n = checkInterfaceCount(record.bNumInterfaces, this.#limits);
      const interfaces = decodeInterfaceRecords(
        await this.#readRequired(n * WireSize.INTERFACE_RECORD, frame),
        n,
      );
      devices.push({ ...record, interfaces });
    }
    return { kind: "op_rep_devlist", status: header.status, devices };
  }

  /** Reads OP_REP_IMPORT (client side). */
  async readOpRepImport(): Promise<OpRepImport> {
    const frame = "OP_REP_IMPORT";
    const header = decodeOpHeader(await this.#readRequired(WireSize.OP_HEADER, frame));
    if (header.code !== OpCode.OP_REP_IMPORT) {
      throw new UsbipProtocolError(
        frame,
        "code",
        `is 0x${header.code.toString(16)}, expected 0x0003`,
      );
    }
    if (header.status !== 0) return { kind: "op_rep_import", status: header.status };
    const device = decodeDeviceRecord(await this.#readRequired(WireSize.DEVICE_RECORD, frame));
    return { kind: "op_rep_import", status: 0, device };
  }

  /** Cancels the underlying stream and releases it. */
  async cancel(reason?: unknown): Promise<void> {
    try {
      await this.#reader.cancel(reason);
    } catch {
      // The stream is already errored or closed: nothing left to cancel.
    }
  }

  /** Releases the reader without cancelling the stream (e.g. to hand the socket over). */
  releaseLock(): void {
    this.#reader.releaseLock();
  }
}
