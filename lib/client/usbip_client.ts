/**
 * A USB/IP client over any {@linkcode Connection}: the op phase (device list, import, and
 * usbipgw's own status, bind, unbind and capture) and a URB channel that keeps many URBs in flight and
 * matches replies by seqnum, as Linux vhci does. Used by `usbipgw list`, by the tests and
 * benchmarks, and by anyone who wants to drive a served device from a program.
 *
 * @module
 */

import {
  DEFAULT_LIMITS,
  Direction,
  MAX_BIND_MESSAGE_BYTES,
  OpCode,
  OpStatus,
  TransferFlags,
  type UsbipLimits,
} from "../protocol/constants.ts";
import { FrameReader } from "../protocol/frame_reader.ts";
import {
  decodeBindReplyHead,
  encodeOpReqBind,
  encodeOpReqCapture,
  encodeOpReqDevlist,
  encodeOpReqImport,
  encodeOpReqStatus,
  encodeOpReqUnbind,
  type UsbipDeviceRecord,
  type UsbipExportedDevice,
} from "../protocol/op_messages.ts";
import {
  encodeCmdSubmit,
  encodeCmdUnlink,
  type IsoPacketDescriptor,
  type RetSubmit,
  type RetUnlink,
  type SubmittedUrb,
} from "../protocol/urb_messages.ts";
import { encodeSetupPacket, RequestType, type SetupPacket } from "../protocol/setup_packet.ts";
import type { Connection } from "../transport/connection.ts";
import { GatewayRefusal } from "./gateway_requests.ts";

/** Names of op status values, for messages. */
const STATUS_NAMES: Record<number, string> = {
  [OpStatus.ST_OK]: "OK",
  [OpStatus.ST_NA]: "not available",
  [OpStatus.ST_DEV_BUSY]: "device busy",
  [OpStatus.ST_DEV_ERR]: "device error",
  [OpStatus.ST_NODEV]: "no such device",
  [OpStatus.ST_ERROR]: "error",
};

/** An import the server refused; `status` is the `OpStatus` it answered. */
export class ImportRefusedError extends Error {
  /** The `OpStatus` of OP_REP_IMPORT: ST_NA, ST_DEV_BUSY, ST_NODEV, ... */
  readonly status: number;
  /** Builds the error for `busid` and the server's status. */
  constructor(busid: string, status: number) {
    super(
      `Cannot import ${busid}: the server answered ${STATUS_NAMES[status] ?? "status"} (${status})`,
    );
    this.name = "ImportRefusedError";
    this.status = status;
  }
}

async function writeAll(conn: Connection, bytes: Uint8Array): Promise<void> {
  const w = conn.writable.getWriter();
  try {
    await w.write(bytes);
  } finally {
    w.releaseLock();
  }
}

/**
 * Asks for the device list (OP_REQ_DEVLIST) on a fresh connection and closes it, as
 * `usbip list -r` does.
 */
export async function requestDeviceList(
  conn: Connection,
  limits: UsbipLimits = DEFAULT_LIMITS,
): Promise<UsbipExportedDevice[]> {
  const reader = new FrameReader(conn.readable, limits);
  try {
    await writeAll(conn, encodeOpReqDevlist());
    const rep = await reader.readOpRepDevlist();
    if (rep.status !== OpStatus.ST_OK) {
      throw new Error(`Cannot list devices: the server answered status ${rep.status}`);
    }
    return rep.devices;
  } finally {
    await reader.cancel();
    conn.close();
  }
}

/**
 * Asks a usbipgw gateway for its status (OP_REQ_STATUS, usbipgw's extension) on a fresh
 * connection and closes it; returns the parsed JSON. Throws when the gateway refuses (only
 * root, the console user and the gateway's own user may read it, over a unix socket).
 */
export async function requestStatus(conn: Connection): Promise<unknown> {
  const reader = new FrameReader(conn.readable);
  try {
    await writeAll(conn, encodeOpReqStatus());
    const rep = await reader.readOpRepStatus();
    if (rep.status === OpStatus.ST_NA) {
      throw new Error(
        "Cannot read the status: the gateway refused (only root, the console user and the gateway's own user may, over its unix socket)",
      );
    }
    if (rep.status !== OpStatus.ST_OK) {
      throw new Error(`Cannot read the status: the gateway answered status ${rep.status}`);
    }
    return JSON.parse(rep.json);
  } finally {
    await reader.cancel();
    conn.close();
  }
}

/** A gateway's answer to a bind or unbind request. */
export interface BindAnswer {
  /** An `OpStatus`: ST_OK done, ST_NA not allowed for this peer, ST_ERROR failed. */
  status: number;
  /** The gateway's message for people (at most `MAX_BIND_MESSAGE_BYTES` bytes). */
  message: string;
}

/**
 * Asks a usbipgw gateway to export the host device with the host bus id `busid`, as
 * `usbip bind` does on a Linux host (OP_REQ_BIND, usbipgw's extension), on a fresh connection,
 * and closes it. Returns the gateway's status and message: only root, the console user and the
 * gateway's own user may, over its unix socket; anyone else gets ST_NA. Throws `RangeError`
 * for a bus id over 31 bytes and `UsbipProtocolError` for a malformed answer.
 *
 * @example Against a server without a host device handler
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { requestBind } from "./usbip_client.ts";
 * import { UsbipServer } from "../server/server.ts";
 * import { memoryConnectionPair } from "../transport/memory.ts";
 * import { OpStatus } from "../protocol/constants.ts";
 * const server = new UsbipServer({ statusAccess: () => true });
 * const [client, end] = memoryConnectionPair();
 * const done = server.accept(end);
 * assertEquals(await requestBind(client, "1-1.2"), {
 *   status: OpStatus.ST_ERROR,
 *   message: "Not supported: this server cannot bind host devices",
 * });
 * await done;
 * await server.close();
 * ```
 */
export function requestBind(conn: Connection, busid: string): Promise<BindAnswer> {
  return _hostDeviceRequest(conn, () => encodeOpReqBind(busid), (r) => r.readOpRepBind());
}

/**
 * Asks a usbipgw gateway to withdraw the host device with the host bus id `busid`, as
 * `usbip unbind` does (OP_REQ_UNBIND, usbipgw's extension), on a fresh connection, and closes
 * it. Returns the status and message, as {@linkcode requestBind}.
 */
export function requestUnbind(conn: Connection, busid: string): Promise<BindAnswer> {
  return _hostDeviceRequest(conn, () => encodeOpReqUnbind(busid), (r) => r.readOpRepUnbind());
}

/**
 * Asks a usbipgw gateway for a live capture (OP_REQ_CAPTURE, usbipgw's extension) of the device
 * `busid` ("" for every device), with at most `snaplen` data bytes per record (0 for all), and
 * returns the pcapng stream that follows the answer; cancelling the stream closes `conn`.
 * Throws `GatewayRefusal` when the gateway refuses (only root, the console user
 * and the gateway's own user may, over its unix socket) and `UsbipProtocolError` for a
 * malformed answer; `conn` is closed then.
 *
 * @example Refused: this server lets nobody read its status
 * ```ts
 * import { assertRejects } from "@std/assert";
 * import { requestCapture } from "./usbip_client.ts";
 * import { GatewayRefusal } from "./gateway_requests.ts";
 * import { UsbipServer } from "../server/server.ts";
 * import { memoryConnectionPair } from "../transport/memory.ts";
 * const server = new UsbipServer();
 * const [client, end] = memoryConnectionPair();
 * const done = server.accept(end);
 * await assertRejects(() => requestCapture(client, "1-1"), GatewayRefusal);
 * await done;
 * await server.close();
 * ```
 */
export async function requestCapture(
  conn: Connection,
  busid: string,
  snaplen = 0,
): Promise<ReadableStream<Uint8Array>> {
  const reader = conn.readable.getReader();
  let held = new Uint8Array(0);
  /** Reads until `n` bytes are held; false at the end of the stream. */
  const hold = async (n: number): Promise<boolean> => {
    while (held.length < n) {
      const { done, value } = await reader.read();
      if (done) return false;
      const next = new Uint8Array(held.length + value.length);
      next.set(held);
      next.set(value, held.length);
      held = next;
    }
    return true;
  };
  try {
    await writeAll(conn, encodeOpReqCapture(busid, snaplen));
    const short = () => new Error("Cannot capture: the gateway closed the connection");
    if (!await hold(12)) throw short();
    const { status, length } = decodeBindReplyHead(
      held.subarray(0, 12),
      OpCode.OP_REP_CAPTURE,
      MAX_BIND_MESSAGE_BYTES,
    );
    if (!await hold(12 + length)) throw short();
    const message = new TextDecoder().decode(held.subarray(12, 12 + length));
    if (status !== OpStatus.ST_OK) throw new GatewayRefusal(status, `Cannot capture: ${message}`);
    held = held.subarray(12 + length);
  } catch (e) {
    await reader.cancel().catch(() => {});
    conn.close();
    throw e;
  }
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (held.length > 0) controller.enqueue(held);
    },
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          controller.close();
          conn.close();
        } else controller.enqueue(value);
      } catch (e) {
        controller.error(e);
        conn.close();
      }
    },
    async cancel() {
      await reader.cancel().catch(() => {});
      conn.close();
    },
  });
}

/**
 * Sends the request `encode` makes (it may throw, for a bus id over 31 bytes) on `conn`, reads
 * the answer with `read`, and closes `conn` either way.
 */
async function _hostDeviceRequest(
  conn: Connection,
  encode: () => Uint8Array,
  read: (reader: FrameReader) => Promise<BindAnswer>,
): Promise<BindAnswer> {
  const reader = new FrameReader(conn.readable);
  try {
    await writeAll(conn, encode());
    const { status, message } = await read(reader);
    return { status, message };
  } finally {
    await reader.cancel();
    conn.close();
  }
}

/** What to submit. */
export interface SubmitOptions {
  /** The endpoint number without the direction bit, 0..15 (0 for control). */
  ep: number;
  /** IN (device to host) or OUT; sent as `direction` and with URB_DIR_IN. */
  dirIn: boolean;
  /** IN: bytes to ask for; OUT: defaults to `data.length`. */
  length?: number;
  /** The OUT data; ignored for IN. Empty when absent. */
  data?: Uint8Array;
  /** The SETUP packet of a control transfer; 8 zero bytes are sent when absent. */
  setup?: SetupPacket;
  /** `transfer_flags` (`TransferFlags`); URB_DIR_IN is added for IN. Default 0. */
  transferFlags?: number;
  /** For isochronous endpoints: the packets (offset, length). */
  isoPackets?: { offset: number; length: number }[];
  /** The `interval` field of CMD_SUBMIT, for interrupt and isochronous endpoints. Default 0. */
  interval?: number;
}

/** A submitted URB: its seqnum, and its RET_SUBMIT (or an error if it was unlinked). */
export interface SubmittedHandle {
  /** The URB's seqnum, to pass to {@linkcode UrbChannel.unlink}. */
  seqnum: number;
  /** Resolves with the RET_SUBMIT; rejects if the URB is unlinked or the connection ends. */
  done: Promise<RetSubmit>;
}

interface Waiting {
  urb: SubmittedUrb;
  resolve(r: RetSubmit): void;
  reject(e: Error): void;
}

/**
 * The URB phase of an imported device: submit and unlink URBs, many at a time.
 */
export class UrbChannel {
  /** The device record the server sent in OP_REP_IMPORT. */
  readonly device: UsbipDeviceRecord;
  /** `busnum << 16 | devnum` of that record, sent in every command's header. */
  readonly devid: number;
  #conn: Connection;
  #reader: FrameReader;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #seqnum = 0;
  #waiting = new Map<number, Waiting>();
  #unlinks = new Map<number, (r: RetUnlink) => void>();
  #error: Error | undefined;
  #loop: Promise<void>;

  /** Takes over a connection whose import has succeeded. */
  constructor(conn: Connection, reader: FrameReader, device: UsbipDeviceRecord) {
    this.#conn = conn;
    this.#reader = reader;
    this.device = device;
    this.devid = (device.busnum << 16) | device.devnum;
    this.#writer = conn.writable.getWriter();
    this.#loop = this.#readLoop();
  }

  /** Resolves when the connection has ended (the reason, if any, is `closedReason`). */
  get closed(): Promise<void> {
    return this.#loop;
  }

  /** Why the channel ended, if it did with an error. */
  get closedReason(): Error | undefined {
    return this.#error;
  }

  /** The number of URBs awaiting a reply. */
  get inFlight(): number {
    return this.#waiting.size;
  }

  async #readLoop(): Promise<void> {
    try {
      while (true) {
        const msg = await this.#reader.readUrbReturn((seqnum) => this.#waiting.get(seqnum)?.urb);
        if (msg === null) break;
        if (msg.kind === "ret_submit") {
          const w = this.#waiting.get(msg.seqnum)!;
          this.#waiting.delete(msg.seqnum);
          w.resolve(msg);
        } else {
          const u = this.#unlinks.get(msg.seqnum);
          this.#unlinks.delete(msg.seqnum);
          u?.(msg);
        }
      }
      this.#error ??= new Deno.errors.UnexpectedEof("The server closed the connection");
    } catch (e) {
      this.#error = e instanceof Error ? e : new Error(String(e));
    }
    for (const w of this.#waiting.values()) w.reject(this.#error);
    this.#waiting.clear();
    this.#unlinks.clear();
  }

  /** Submits a URB; the promise in the handle settles with its RET_SUBMIT. */
  submit(o: SubmitOptions): SubmittedHandle {
    if (this.#error) throw this.#error;
    const seqnum = ++this.#seqnum;
    const data = o.dirIn ? new Uint8Array(0) : (o.data ?? new Uint8Array(0));
    const length = o.length ?? data.length;
    const isoPackets: IsoPacketDescriptor[] = (o.isoPackets ?? []).map((p) => ({
      offset: p.offset,
      length: p.length,
      actualLength: 0,
      status: 0,
    }));
    const bytes = encodeCmdSubmit({
      kind: "cmd_submit",
      seqnum,
      devid: this.devid,
      direction: o.dirIn ? Direction.USBIP_DIR_IN : Direction.USBIP_DIR_OUT,
      ep: o.ep,
      transferFlags: (o.transferFlags ?? 0) | (o.dirIn ? TransferFlags.URB_DIR_IN : 0),
      transferBufferLength: length,
      startFrame: 0,
      numberOfPackets: isoPackets.length,
      interval: o.interval ?? 0,
      setup: o.setup ? encodeSetupPacket(o.setup) : new Uint8Array(8),
      data,
      isoPackets,
    });
    const done = new Promise<RetSubmit>((resolve, reject) => {
      this.#waiting.set(seqnum, {
        urb: { dirIn: o.dirIn, isochronous: isoPackets.length > 0, transferBufferLength: length },
        resolve,
        reject,
      });
    });
    this.#writer.write(bytes).catch(() => {});
    return { seqnum, done };
  }

  /** Submits a control transfer on ep0 and waits for it. */
  control(setup: SetupPacket, data?: Uint8Array): Promise<RetSubmit> {
    const dirIn = (setup.bmRequestType & RequestType.DIR_IN) !== 0;
    const o: SubmitOptions = {
      ep: 0,
      dirIn,
      setup,
      length: dirIn ? setup.wLength : (data?.length ?? 0),
    };
    if (data) o.data = data;
    return this.submit(o).done;
  }

  /** Unlinks URB `seqnum`; resolves with the RET_UNLINK. */
  unlink(seqnum: number): Promise<RetUnlink> {
    if (this.#error) return Promise.reject(this.#error);
    const own = ++this.#seqnum;
    const w = this.#waiting.get(seqnum);
    const p = new Promise<RetUnlink>((resolve) => {
      this.#unlinks.set(own, (r) => {
        if (r.status !== 0 && w) {
          // Cancelled: no RET_SUBMIT will come for it.
          this.#waiting.delete(seqnum);
          w.reject(new DOMException(`URB ${seqnum} was unlinked`, "AbortError"));
        }
        resolve(r);
      });
    });
    this.#writer.write(encodeCmdUnlink({
      kind: "cmd_unlink",
      seqnum: own,
      devid: this.devid,
      // direction and ep 0, as Linux vhci_tx.c (vhci_send_cmd_unlink) leaves them.
      direction: Direction.USBIP_DIR_OUT,
      ep: 0,
      unlinkSeqnum: seqnum,
    })).catch(() => {});
    return p;
  }

  /** Closes the connection; pending URBs reject. */
  async close(): Promise<void> {
    this.#writer.releaseLock();
    await this.#reader.cancel();
    this.#conn.close();
    await this.#loop;
  }
}

/**
 * Imports `busid` over `conn` (OP_REQ_IMPORT) and returns the URB channel. Throws
 * {@linkcode ImportRefusedError} when the server refuses; the connection is then closed.
 */
export async function importDevice(
  conn: Connection,
  busid: string,
  limits: UsbipLimits = DEFAULT_LIMITS,
): Promise<UrbChannel> {
  const reader = new FrameReader(conn.readable, limits);
  try {
    await writeAll(conn, encodeOpReqImport(busid));
    const rep = await reader.readOpRepImport();
    if (rep.status !== OpStatus.ST_OK || rep.device === undefined) {
      throw new ImportRefusedError(busid, rep.status);
    }
    if (rep.device.busid !== busid) {
      throw new Error(`Cannot import ${busid}: the server answered for ${rep.device.busid}`);
    }
    return new UrbChannel(conn, reader, rep.device);
  } catch (e) {
    await reader.cancel();
    conn.close();
    throw e;
  }
}
