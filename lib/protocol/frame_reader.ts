/**
 * Reads whole USB/IP frames from a byte stream: exactly the bytes each header announces, with
 * every length checked against {@linkcode UsbipLimits} before anything is allocated.
 *
 * @module
 */

import {
  DEFAULT_LIMITS,
  MAX_BIND_MESSAGE_BYTES,
  MAX_STATUS_BYTES,
  OpCode,
  UrbCommandCode,
  type UsbipLimits,
  WireSize,
} from "./constants.ts";
import {
  checkDeviceCount,
  checkInterfaceCount,
  decodeBindReplyHead,
  decodeDeviceRecord,
  decodeInterfaceRecords,
  decodeOpHeader,
  decodeOpRepAttachHead,
  decodeOpRequest,
  type OpRepAttach,
  type OpRepBind,
  type OpRepCapture,
  type OpRepDetach,
  type OpRepDevlist,
  type OpRepImport,
  type OpRepUnbind,
  type OpRequest,
  opRequestBodyLength,
  type UsbipExportedDevice,
} from "./op_messages.ts";
import { BufferPool } from "./buffer_pool.ts";
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

/** What a server reads in the URB phase, and what a client reads back. */
const URB_COMMANDS = [UrbCommandCode.USBIP_CMD_SUBMIT, UrbCommandCode.USBIP_CMD_UNLINK] as const;
const URB_RETURNS = [UrbCommandCode.USBIP_RET_SUBMIT, UrbCommandCode.USBIP_RET_UNLINK] as const;
/**
 * The read-ahead buffer's initial size: dozens of small frames arrive in one read, and an idle
 * connection (which always has a read pending into it) holds only this much. It was 64 KiB,
 * which made an idle session cost over 64 KiB of RSS, and made a header read pull most of a
 * large OUT payload into it, to be copied out again.
 */
const SCRATCH_SIZE = 4 * 1024;
/**
 * Bodies from this size on are read straight into their own buffer (what the read-ahead
 * already holds of them is copied over), so the read-ahead never grows for them.
 */
const DIRECT_READ_SIZE = SCRATCH_SIZE;

/**
 * The pool of a reader given none: payload buffers handed back with
 * {@linkcode FrameReader.recycle} are kept for the next payload of the same size, up to this
 * many bytes in all.
 */
const OWN_POOL_BYTES = 256 * 1024;

/** A source of bytes read into the caller's buffer, such as a Deno socket. */
export interface ByteSource {
  /** Reads into `buffer`; the number of bytes read, or `null` at end of stream. */
  read(buffer: Uint8Array): Promise<number | null>;
}

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
  #source: ByteSource | undefined;
  #byob: ReadableStreamBYOBReader | undefined;
  #reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  #limits: UsbipLimits;
  /** Read-ahead buffer; bytes `#start..#end` are received and not yet consumed. */
  #buf = new Uint8Array(SCRATCH_SIZE);
  #start = 0;
  #end = 0;
  /** Where payload buffers come from and go back to. */
  #pool: BufferPool;

  /**
   * Takes a reader of `readable`: a BYOB reader for byte streams (socket streams are), so
   * that bytes land in buffers this reader owns, else a default reader.
   * {@linkcode FrameReader.cancel} gives the stream back. Payload buffers of
   * {@linkcode FrameReader.readExact} come from `pool` when it has one of the size (a server
   * shares one pool among its sessions); without one the reader keeps a small pool of its own.
   */
  constructor(
    source: ReadableStream<Uint8Array> | ByteSource,
    limits: UsbipLimits = DEFAULT_LIMITS,
    pool: BufferPool = new BufferPool(OWN_POOL_BYTES, DIRECT_READ_SIZE),
  ) {
    this.#pool = pool;
    if (!("getReader" in source)) {
      this.#source = source;
    } else {
      try {
        this.#byob = source.getReader({ mode: "byob" });
      } catch {
        this.#reader = source.getReader();
      }
    }
    this.#limits = limits;
  }

  /** Reads at least `min` bytes into `view`; returns the (possibly moved) buffer and count. */
  async #readInto(view: Uint8Array, min: number): Promise<{ buffer: ArrayBuffer; got: number }> {
    if (this.#source) {
      let got = 0;
      while (got < min) {
        const n = await this.#source.read(got === 0 ? view : view.subarray(got));
        if (n === null) break;
        got += n;
      }
      return { buffer: view.buffer as ArrayBuffer, got };
    }
    const { done, value } = await this.#byob!.read(view, { min });
    if (value === undefined) throw new Deno.errors.BadResource("The stream was cancelled");
    return { buffer: value.buffer as ArrayBuffer, got: done ? 0 : value.length };
  }

  /** The number of bytes already received and not yet consumed. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /**
   * Makes at least `n` bytes available in the read-ahead buffer. Returns false if the stream
   * ends before the first byte; throws if it ends after some but not all of them.
   */
  async #fill(n: number, frame: string): Promise<boolean> {
    if (this.#end - this.#start >= n) return true;
    if (this.#buf.length - this.#start < n) {
      const next = n > this.#buf.length
        ? new Uint8Array(Math.max(n, this.#buf.length * 2))
        : this.#buf;
      next.set(this.#buf.subarray(this.#start, this.#end));
      this.#buf = next;
      this.#end -= this.#start;
      this.#start = 0;
    }
    while (this.#end - this.#start < n) {
      const have = this.#end - this.#start;
      let got: number;
      if (this.#reader === undefined) {
        const view = new Uint8Array(this.#buf.buffer, this.#end, this.#buf.length - this.#end);
        const r = await this.#readInto(view, n - have);
        this.#buf = new Uint8Array(r.buffer);
        got = r.got;
      } else {
        const { done, value } = await this.#reader.read();
        got = done ? 0 : value.length;
        if (got > this.#buf.length - this.#end) {
          const next = new Uint8Array(Math.max(have + got, this.#buf.length * 2));
          next.set(this.#buf.subarray(this.#start, this.#end));
          this.#buf = next;
          this.#end = have;
          this.#start = 0;
        }
        if (got > 0) this.#buf.set(value!, this.#end);
      }
      if (got === 0) {
        if (have === 0) return false;
        throw new UsbipProtocolError(frame, "length", `ends after ${have} of ${n} bytes`);
      }
      this.#end += got;
    }
    return true;
  }

  /**
   * Reads `n` bytes into a view of the read-ahead buffer, valid only until the next read.
   * Returns `null` if the stream ends before the first byte.
   */
  async #peek(n: number, frame: string): Promise<Uint8Array | null> {
    if (this.#end - this.#start < n && !(await this.#fill(n, frame))) return null;
    const out = this.#buf.subarray(this.#start, this.#start + n);
    this.#start += n;
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return out;
  }

  /**
   * Reads exactly `n` bytes into a new buffer the caller owns. Returns `null` if the stream
   * ends before the first byte; throws if it ends after some but not all of them. Large
   * reads go straight into the result, without passing through the read-ahead buffer.
   */
  async readExact(n: number, frame = "frame"): Promise<Uint8Array | null> {
    const have = this.#end - this.#start;
    if (have >= n || n < DIRECT_READ_SIZE || this.#reader !== undefined) {
      if (have < n && !(await this.#fill(n, frame))) return null;
      const out = this.#buf.slice(this.#start, this.#start + n);
      this.#start += n;
      if (this.#start === this.#end) this.#start = this.#end = 0;
      return out;
    }
    let out = this.#pool.take(n) ?? new Uint8Array(n);
    out.set(this.#buf.subarray(this.#start, this.#end));
    this.#start = this.#end = 0;
    let filled = have;
    while (filled < n) {
      const r = await this.#readInto(new Uint8Array(out.buffer, filled, n - filled), n - filled);
      out = new Uint8Array(r.buffer);
      const got = r.got;
      if (got === 0) {
        if (filled === 0) return null;
        throw new UsbipProtocolError(frame, "length", `ends after ${filled} of ${n} bytes`);
      }
      filled += got;
    }
    return out;
  }

  /**
   * Hands back a buffer that {@linkcode FrameReader.readExact} returned (a CMD_SUBMIT's OUT
   * data) once nothing uses it any more, so that the next payload of its size is read into it
   * instead of a fresh one. What the pool does not take (a view into a larger buffer, a small
   * buffer, more than it keeps) is left to the garbage collector.
   */
  recycle(buffer: Uint8Array): void {
    this.#pool.give(buffer);
  }

  async #readRequired(n: number, frame: string): Promise<Uint8Array> {
    if (n === 0) return EMPTY;
    const b = await this.readExact(n, frame);
    if (b === null) throw new UsbipProtocolError(frame, "length", `ends after 0 of ${n} bytes`);
    return b;
  }

  /** Reads an op request (OP_REQ_DEVLIST, OP_REQ_IMPORT, ...); `null` on a clean end of stream. */
  async readOpRequest(): Promise<OpRequest | null> {
    const peeked = await this.#peek(WireSize.OP_HEADER, "op request");
    if (peeked === null) return null;
    // The peeked view is only valid until the next read.
    const header = peeked.slice();
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
    const header = await this.#peek(WireSize.URB_HEADER, "URB header");
    if (header === null) return null;
    const command = peekUrbCommand(header, URB_COMMANDS);
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
    const header = await this.#peek(WireSize.URB_HEADER, "URB header");
    if (header === null) return null;
    const command = peekUrbCommand(header, URB_RETURNS);
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

  /**
   * Reads OP_REP_STATUS (client side): the status, and the JSON text when it is 0. A body over
   * `maxBytes` is a protocol error, read no further.
   */
  async readOpRepStatus(
    maxBytes: number = MAX_STATUS_BYTES,
  ): Promise<{ status: number; json: string }> {
    const frame = "OP_REP_STATUS";
    const head = await this.#readRequired(WireSize.OP_HEADER + 4, frame);
    const header = decodeOpHeader(head);
    if (header.code !== OpCode.OP_REP_STATUS) {
      throw new UsbipProtocolError(
        frame,
        "code",
        `is 0x${header.code.toString(16)}, expected 0x00f0 (is this a usbipgw gateway?)`,
      );
    }
    const length = new DataView(head.buffer, head.byteOffset, head.byteLength)
      .getUint32(WireSize.OP_HEADER);
    if (length > maxBytes) {
      throw new UsbipProtocolError(frame, "length", `is ${length} bytes, limit is ${maxBytes}`);
    }
    const body = await this.#readRequired(length, frame);
    return { status: header.status, json: new TextDecoder().decode(body) };
  }

  /**
   * Reads OP_REP_BIND (client side): the status and the message. A message over `maxBytes` is a
   * protocol error, read no further.
   */
  async readOpRepBind(maxBytes: number = MAX_BIND_MESSAGE_BYTES): Promise<OpRepBind> {
    const head = await this.#readRequired(WireSize.OP_HEADER + 4, "OP_REP_BIND");
    const { status, length } = decodeBindReplyHead(head, OpCode.OP_REP_BIND, maxBytes);
    const body = await this.#readRequired(length, "OP_REP_BIND");
    return { kind: "op_rep_bind", status, message: new TextDecoder().decode(body) };
  }

  /**
   * Reads OP_REP_UNBIND (client side): the status and the message. A message over `maxBytes`
   * is a protocol error, read no further.
   */
  async readOpRepUnbind(maxBytes: number = MAX_BIND_MESSAGE_BYTES): Promise<OpRepUnbind> {
    const head = await this.#readRequired(WireSize.OP_HEADER + 4, "OP_REP_UNBIND");
    const { status, length } = decodeBindReplyHead(head, OpCode.OP_REP_UNBIND, maxBytes);
    const body = await this.#readRequired(length, "OP_REP_UNBIND");
    return { kind: "op_rep_unbind", status, message: new TextDecoder().decode(body) };
  }

  /**
   * Reads OP_REP_ATTACH (client side): the status, the vhci port and the message. A message
   * over `maxBytes` is a protocol error, read no further.
   */
  async readOpRepAttach(maxBytes: number = MAX_BIND_MESSAGE_BYTES): Promise<OpRepAttach> {
    const head = await this.#readRequired(WireSize.OP_HEADER + 8, "OP_REP_ATTACH");
    const { status, vhciPort, length } = decodeOpRepAttachHead(head, maxBytes);
    const body = await this.#readRequired(length, "OP_REP_ATTACH");
    return { kind: "op_rep_attach", status, vhciPort, message: new TextDecoder().decode(body) };
  }

  /**
   * Reads OP_REP_DETACH (client side): the status and the message. A message over `maxBytes`
   * is a protocol error, read no further.
   */
  async readOpRepDetach(maxBytes: number = MAX_BIND_MESSAGE_BYTES): Promise<OpRepDetach> {
    const head = await this.#readRequired(WireSize.OP_HEADER + 4, "OP_REP_DETACH");
    const { status, length } = decodeBindReplyHead(head, OpCode.OP_REP_DETACH, maxBytes);
    const body = await this.#readRequired(length, "OP_REP_DETACH");
    return { kind: "op_rep_detach", status, message: new TextDecoder().decode(body) };
  }

  /**
   * Reads OP_REP_CAPTURE (client side): the status and the message; with ST_OK the pcapng
   * stream follows. A message over `maxBytes` is a protocol error, read no further.
   */
  async readOpRepCapture(maxBytes: number = MAX_BIND_MESSAGE_BYTES): Promise<OpRepCapture> {
    const head = await this.#readRequired(WireSize.OP_HEADER + 4, "OP_REP_CAPTURE");
    const { status, length } = decodeBindReplyHead(head, OpCode.OP_REP_CAPTURE, maxBytes);
    const body = await this.#readRequired(length, "OP_REP_CAPTURE");
    return { kind: "op_rep_capture", status, message: new TextDecoder().decode(body) };
  }

  /** Cancels the underlying stream and releases it. */
  async cancel(reason?: unknown): Promise<void> {
    if (this.#source) return;
    try {
      await (this.#byob ?? this.#reader)!.cancel(reason);
    } catch {
      // The stream is already errored or closed: nothing left to cancel.
    }
  }

  /** Releases the reader without cancelling the stream (e.g. to hand the socket over). */
  releaseLock(): void {
    (this.#byob ?? this.#reader)?.releaseLock();
  }
}
