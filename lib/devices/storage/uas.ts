/**
 * USB Attached SCSI (UAS) without streams, the device side: information units (IUs) on four
 * bulk pipes (command OUT, status IN, data IN, data OUT), many commands in flight told apart
 * by their tags, autosense in the SENSE IU, and task management. The IU layouts are those of
 * T10's UAS and of the Linux host driver (include/linux/usb/uas.h, drivers/usb/storage/uas.c).
 *
 * Without streams (a high-speed device, or any device behind vhci, which has none) the device
 * announces each command's data phase with a READ READY or WRITE READY IU on the status pipe,
 * and the host then submits that command's data transfer (uas.c submits its data URB only on
 * that IU when `use_streams` is 0). The data of one pipe moves in the order the READY IUs went
 * out, so every command is announced as it arrives: the host queues the data transfers of
 * many commands at once and a long link carries them back to back instead of one per round
 * trip (a host controller, and vhci, keep one endpoint's transfers in order). Data phases in
 * and out run side by side; commands without data run at once; each command's SENSE IU
 * follows its data, so a WRITE's data is in the backing before its status is sent.
 *
 * @module
 */

import { getLogger } from "../../logtape.ts";
import { Notifier } from "../../util/wait.ts";
import { deviceInPool } from "../../protocol/buffer_pool.ts";
import {
  CANCELLED,
  type MaybePromise,
  type TransferResult,
  type UsbTransfer,
} from "../usb_device.ts";
import { encodeFixedSense, type ScsiCommand, type ScsiStatus, SENSE, type Sense } from "./scsi.ts";

const log = getLogger(["usbipgw", "storage"]);

/** IU types (uas.h `IU_ID_*`). */
export const UasIu = {
  COMMAND: 0x01,
  SENSE: 0x03,
  RESPONSE: 0x04,
  TASK_MANAGEMENT: 0x05,
  READ_READY: 0x06,
  WRITE_READY: 0x07,
} as const;

/** The pipe IDs of the Pipe Usage descriptors (uas.h `CMD_PIPE_ID` ...). */
export const UasPipe = { COMMAND: 1, STATUS: 2, DATA_IN: 3, DATA_OUT: 4 } as const;

/** The descriptor type of a Pipe Usage descriptor that follows each UAS endpoint (uas.h). */
export const PIPE_USAGE_DESCRIPTOR = 0x24;

/** Task management functions (SAM-5 §7; uas.h `TMF_*`). */
export const TaskFunction = {
  ABORT_TASK: 0x01,
  ABORT_TASK_SET: 0x02,
  CLEAR_TASK_SET: 0x04,
  LOGICAL_UNIT_RESET: 0x08,
  I_T_NEXUS_RESET: 0x10,
  CLEAR_ACA: 0x40,
  QUERY_TASK: 0x80,
  QUERY_TASK_SET: 0x81,
  QUERY_ASYNC_EVENT: 0x82,
} as const;

/** RESPONSE IU codes (uas.h `RC_*`). */
export const ResponseCode = {
  TMF_COMPLETE: 0x00,
  INVALID_INFO_UNIT: 0x02,
  TMF_NOT_SUPPORTED: 0x04,
  TMF_FAILED: 0x05,
  TMF_SUCCEEDED: 0x08,
  INCORRECT_LUN: 0x09,
  OVERLAPPED_TAG: 0x0a,
} as const;

/** SAM status codes a SENSE IU carries (SAM-5 §5.3). */
export const SamStatus = { GOOD: 0x00, CHECK_CONDITION: 0x02, TASK_SET_FULL: 0x28 } as const;

/** A COMMAND IU without additional CDB bytes; a TASK MANAGEMENT IU. */
export const COMMAND_IU_LENGTH = 32;
/** A TASK MANAGEMENT IU. */
export const TASK_MANAGEMENT_IU_LENGTH = 16;
/** The SENSE IU before its sense data. */
export const SENSE_IU_HEADER_LENGTH = 16;

/**
 * Commands this device holds at once. Linux's uas queues up to 32 without streams
 * (`uas_configure_endpoints`); one more is answered TASK SET FULL, never stored.
 */
export const MAX_TASKS = 32;

/** Invalid IUs logged as warnings per device; later ones at debug level. */
const INVALID_IU_WARNINGS = 10;

/** A COMMAND IU as the host sends it (host side: tests and clients). */
export interface CommandIu {
  tag: number;
  lun: number;
  cdb: Uint8Array;
}

/** A TASK MANAGEMENT IU as the host sends it. */
export interface TaskManagementIu {
  tag: number;
  function: number;
  /** The tag of the command ABORT TASK and QUERY TASK name. */
  taskTag: number;
  lun: number;
}

/** What the device sends on the status pipe, decoded (host side). */
export type StatusIu =
  | { type: "sense"; tag: number; status: number; sense: Uint8Array }
  | { type: "response"; tag: number; code: number }
  | { type: "read_ready" | "write_ready"; tag: number };

/** A LUN in SAM's 8-byte form, single level (peripheral or flat addressing, SAM-5 §4.7). */
function encodeLun(lun: number, into: Uint8Array, at: number): void {
  into[at] = lun > 0xff ? 0x40 | (lun >> 8) : 0;
  into[at + 1] = lun & 0xff;
}

/** The LUN of an 8-byte field in single-level addressing, or `undefined` for any other form. */
function decodeLun(b: Uint8Array, at: number): number | undefined {
  const method = b[at]! >> 6;
  if (method > 1 || b.subarray(at + 2, at + 8).some((x) => x !== 0)) return undefined;
  return ((b[at]! & 0x3f) << 8) | b[at + 1]!;
}

function header(length: number, type: number, tag: number): [Uint8Array, DataView] {
  const b = new Uint8Array(length);
  const v = new DataView(b.buffer);
  b[0] = type;
  v.setUint16(2, tag);
  return [b, v];
}

/**
 * Encodes a COMMAND IU (host side). Throws `RangeError` for a CDB of 0 or more than 16 bytes.
 *
 * @example
 * ```ts
 * import { encodeCommandIu } from "./uas.ts";
 * const iu = encodeCommandIu({ tag: 3, lun: 1, cdb: new Uint8Array([0x00, 0, 0, 0, 0, 0]) });
 * console.assert(iu.length === 32 && iu[0] === 1 && iu[3] === 3 && iu[9] === 1);
 * ```
 */
export function encodeCommandIu(c: CommandIu): Uint8Array {
  if (c.cdb.length < 1 || c.cdb.length > 16) {
    throw new RangeError(`Cannot encode a COMMAND IU: the CDB is ${c.cdb.length} bytes`);
  }
  const [b] = header(COMMAND_IU_LENGTH, UasIu.COMMAND, c.tag);
  encodeLun(c.lun, b, 8);
  b.set(c.cdb, 16);
  return b;
}

/** Encodes a TASK MANAGEMENT IU (host side). */
export function encodeTaskManagementIu(t: TaskManagementIu): Uint8Array {
  const [b, v] = header(TASK_MANAGEMENT_IU_LENGTH, UasIu.TASK_MANAGEMENT, t.tag);
  b[4] = t.function;
  v.setUint16(6, t.taskTag);
  encodeLun(t.lun, b, 8);
  return b;
}

/** Decodes what came on the status pipe (host side); `RangeError` for anything else. */
export function decodeStatusIu(b: Uint8Array): StatusIu {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const tag = b.length >= 4 ? v.getUint16(2) : -1;
  if (b[0] === UasIu.SENSE && b.length >= SENSE_IU_HEADER_LENGTH) {
    const length = v.getUint16(14);
    return { type: "sense", tag, status: b[6]!, sense: b.slice(16, 16 + length) };
  }
  if (b[0] === UasIu.RESPONSE && b.length === 8) return { type: "response", tag, code: b[7]! };
  if (b[0] === UasIu.READ_READY && b.length === 4) return { type: "read_ready", tag };
  if (b[0] === UasIu.WRITE_READY && b.length === 4) return { type: "write_ready", tag };
  throw new RangeError(`Cannot decode a status IU: type ${b[0]}, ${b.length} bytes`);
}

/** A SENSE IU: the command's status, with fixed-format sense data for CHECK CONDITION. */
function senseIu(tag: number, status: number, sense?: Sense): Uint8Array {
  const data = sense === undefined ? undefined : encodeFixedSense(sense);
  const [b, v] = header(SENSE_IU_HEADER_LENGTH + (data?.length ?? 0), UasIu.SENSE, tag);
  b[6] = status;
  if (data !== undefined) {
    v.setUint16(14, data.length);
    b.set(data, SENSE_IU_HEADER_LENGTH);
  }
  return b;
}

function responseIu(tag: number, code: number): Uint8Array {
  const [b] = header(8, UasIu.RESPONSE, tag);
  b[7] = code;
  return b;
}

/** What the transport drives: the logical units. */
export interface UasTarget {
  /** The number of logical units. */
  readonly lunCount: number;
  /** The plan for a CDB addressed to `lun`. */
  command(lun: number, cdb: Uint8Array, readOnly: boolean): ScsiCommand;
  /** A LOGICAL UNIT RESET of `lun` (its tasks are already aborted). */
  resetUnit(lun: number): void;
}

type DataCommand = Exclude<ScsiCommand, { direction: "none" }>;

/** A command the device holds: from its COMMAND IU until its SENSE IU or its abort. */
interface Task {
  readonly tag: number;
  readonly lun: number;
  readonly command: ScsiCommand;
  /** Bytes of its data moved so far. */
  moved: number;
  aborted: boolean;
  /** Its work under way (a read, a write, its finish), which an abort waits for. */
  work: Promise<unknown> | undefined;
}

/** One data pipe: the tasks whose READY IU was sent, in that order; the first one's data moves. */
interface DataLane {
  readonly announced: Task[];
  /** The READY IU's type. */
  readonly ready: number;
}

/**
 * The device side of UAS without streams. The device hands it every transfer of the four
 * UAS endpoints while the UAS alternate setting is active; the session gives it one transfer
 * per endpoint at a time, and a transfer that comes before there is anything for it (a status
 * read with no IU to send, a data transfer before its READY IU) waits, as a device NAKs,
 * until there is or it is cancelled.
 */
export class UasTransport {
  readonly #target: UasTarget;
  /** Every task not yet answered, by tag. */
  readonly #tasks = new Map<number, Task>();
  readonly #in: DataLane = { announced: [], ready: UasIu.READ_READY };
  readonly #out: DataLane = { announced: [], ready: UasIu.WRITE_READY };
  /** IUs for the status pipe, oldest first. */
  readonly #status: Uint8Array[] = [];
  readonly #changed = new Notifier();
  /** Incremented by every reset: work begun before it sends nothing. */
  #generation = 0;
  #invalidCount = 0;
  /** The most commands held at once since {@linkcode UasTransport.takeMostInFlight}. */
  #mostInFlight = 0;
  readonly #work = new Set<Promise<unknown>>();
  /** Buffers for the data of READs, back from the server (`TransferResult.release`). */
  readonly #inBuffers = deviceInPool();

  /** Drives `target`. */
  constructor(target: UasTarget) {
    this.#target = target;
  }

  /** The tags of the commands held now. */
  get tags(): number[] {
    return [...this.#tasks.keys()];
  }

  /** The most commands held at once since the last call, which starts counting again. */
  takeMostInFlight(): number {
    const most = this.#mostInFlight;
    this.#mostInFlight = 0;
    return most;
  }

  /** Resolves once no command's work is under way (waiting transfers do not count). */
  async idle(): Promise<void> {
    while (this.#work.size > 0) await Promise.allSettled([...this.#work]);
  }

  /**
   * A bus reset, a configuration or interface change, the end of a session: every command is
   * dropped unanswered and the status pipe emptied. Work under way (a write into the image)
   * finishes; {@linkcode UasTransport.idle} waits for it.
   */
  reset(): void {
    this.#generation++;
    for (const task of this.#tasks.values()) task.aborted = true;
    this.#tasks.clear();
    for (const lane of [this.#in, this.#out]) lane.announced.length = 0;
    this.#status.length = 0;
    this.#changed.notify();
  }

  /** A transfer on the command pipe: a COMMAND or TASK MANAGEMENT IU. */
  handleCommand(t: UsbTransfer): TransferResult {
    if (t.signal.aborted) return CANCELLED;
    const b = t.data;
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const tag = b.length >= 4 ? v.getUint16(2) : 0;
    const received: TransferResult = { status: "ok", actualLength: b.length };
    if (b[0] === UasIu.COMMAND && b.length >= COMMAND_IU_LENGTH) {
      this.#command(tag, b, t.readOnly ?? false);
    } else if (b[0] === UasIu.TASK_MANAGEMENT && b.length === TASK_MANAGEMENT_IU_LENGTH) {
      this.#taskManagement(tag, b, v);
    } else {
      this.#invalid(tag, `type ${b[0] ?? "none"}, ${b.length} bytes`);
    }
    return received;
  }

  /** A transfer on the status pipe: the next IU, once there is one. */
  handleStatus(t: UsbTransfer): MaybePromise<TransferResult> {
    const iu = this.#status.shift();
    if (iu !== undefined) return { status: "ok", data: iu };
    return this.#until(() => this.#status.length > 0, t.signal).then((ok) =>
      ok ? this.handleStatus(t) : CANCELLED
    );
  }

  /** A transfer on the data-in pipe: data of the command whose READ READY was sent. */
  handleDataIn(t: UsbTransfer): MaybePromise<TransferResult> {
    const task = this.#in.announced[0];
    if (task === undefined) {
      return this.#until(() => this.#in.announced.length > 0, t.signal).then((ok) =>
        ok ? this.handleDataIn(t) : CANCELLED
      );
    }
    return this.#track(task, this.#dataIn(task, task.command as DataCommand, t));
  }

  /** A transfer on the data-out pipe: data of the command whose WRITE READY was sent. */
  handleDataOut(t: UsbTransfer): MaybePromise<TransferResult> {
    const task = this.#out.announced[0];
    if (task === undefined) {
      return this.#until(() => this.#out.announced.length > 0, t.signal).then((ok) =>
        ok ? this.handleDataOut(t) : CANCELLED
      );
    }
    return this.#track(task, this.#dataOut(task, task.command as DataCommand, t));
  }

  #command(tag: number, b: Uint8Array, readOnly: boolean): void {
    const additional = b[6]! & 0xfc;
    if (b.length !== COMMAND_IU_LENGTH + additional) {
      return this.#invalid(tag, `a COMMAND IU of ${b.length} bytes, ${additional} more CDB bytes`);
    }
    if (this.#overlapped(tag)) return;
    if (this.#tasks.size >= MAX_TASKS) return this.#send(senseIu(tag, SamStatus.TASK_SET_FULL));
    const lun = decodeLun(b, 8);
    if (lun === undefined || lun >= this.#target.lunCount) {
      return this.#send(senseIu(tag, SamStatus.CHECK_CONDITION, SENSE.LOGICAL_UNIT_NOT_SUPPORTED));
    }
    // CDBs longer than 16 bytes (variable-length, SPC-4 §4.2.3) are not supported.
    const command: ScsiCommand = additional > 0
      ? { direction: "none", finish: () => ({ sense: SENSE.INVALID_FIELD_IN_CDB }) }
      : this.#target.command(lun, b.slice(16, 32), readOnly);
    const task: Task = { tag, lun, command, moved: 0, aborted: false, work: undefined };
    this.#tasks.set(tag, task);
    this.#mostInFlight = Math.max(this.#mostInFlight, this.#tasks.size);
    if (command.direction === "none") {
      this.#track(task, Promise.resolve(command.finish()).then((s) => this.#complete(task, s)));
    } else {
      const lane = command.direction === "in" ? this.#in : this.#out;
      lane.announced.push(task);
      this.#send(new Uint8Array([lane.ready, 0, tag >> 8, tag & 0xff]));
    }
  }

  /**
   * A tag already in use (SAM-5 §5.9.3, overlapped commands): the command holding it is
   * aborted (the host no longer waits for it) and the new IU is answered OVERLAPPED TAG.
   */
  #overlapped(tag: number): boolean {
    const held = this.#tasks.get(tag);
    if (held === undefined) return false;
    log.warn("UAS: tag {tag} is already in use; that command is aborted", { tag });
    this.#abort(held);
    this.#send(responseIu(tag, ResponseCode.OVERLAPPED_TAG));
    return true;
  }

  #taskManagement(tag: number, b: Uint8Array, v: DataView): void {
    if (this.#overlapped(tag)) return;
    const lun = decodeLun(b, 8);
    if (lun === undefined || lun >= this.#target.lunCount) {
      return this.#send(responseIu(tag, ResponseCode.INCORRECT_LUN));
    }
    const fn = b[4]!;
    const taskTag = v.getUint16(6);
    const named = this.#tasks.get(taskTag);
    const ofUnit = [...this.#tasks.values()].filter((t) => t.lun === lun);
    let aborted: Task[] = [];
    let code: number = ResponseCode.TMF_COMPLETE;
    switch (fn) {
      case TaskFunction.ABORT_TASK:
        aborted = named?.lun === lun ? [named] : [];
        break;
      case TaskFunction.ABORT_TASK_SET:
      case TaskFunction.CLEAR_TASK_SET:
      case TaskFunction.LOGICAL_UNIT_RESET:
        aborted = ofUnit;
        break;
      case TaskFunction.I_T_NEXUS_RESET:
        aborted = [...this.#tasks.values()];
        break;
      case TaskFunction.QUERY_TASK:
        code = named?.lun === lun ? ResponseCode.TMF_SUCCEEDED : ResponseCode.TMF_COMPLETE;
        break;
      case TaskFunction.QUERY_TASK_SET:
        code = ofUnit.length > 0 ? ResponseCode.TMF_SUCCEEDED : ResponseCode.TMF_COMPLETE;
        break;
      default:
        code = ResponseCode.TMF_NOT_SUPPORTED;
    }
    log.info("UAS task management 0x{fn} (tag {tag}) on LUN {lun}: {count} command(s) aborted", {
      fn: fn.toString(16),
      tag,
      lun,
      count: aborted.length,
    });
    for (const task of aborted) this.#abort(task);
    const generation = this.#generation;
    // The response follows the end of the aborted commands' work: a write under way finishes
    // (whole blocks) before the host hears that the command is gone.
    const settled = Promise.allSettled(aborted.map((t) => t.work)).then(() => {
      if (generation !== this.#generation) return;
      if (fn === TaskFunction.LOGICAL_UNIT_RESET) this.#target.resetUnit(lun);
      if (fn === TaskFunction.I_T_NEXUS_RESET) {
        for (let u = 0; u < this.#target.lunCount; u++) this.#target.resetUnit(u);
      }
      this.#send(responseIu(tag, code));
    });
    this.#trackWork(settled);
  }

  /** An IU that is neither a valid COMMAND nor TASK MANAGEMENT IU: RESPONSE INVALID IU. */
  #invalid(tag: number, why: string): void {
    const level = ++this.#invalidCount <= INVALID_IU_WARNINGS ? "warn" : "debug";
    log[level]("Invalid UAS IU ({count}): {why}; answered INVALID INFORMATION UNIT", {
      why,
      count: this.#invalidCount,
    });
    this.#send(responseIu(tag, ResponseCode.INVALID_INFO_UNIT));
  }

  /** Drops a task: no SENSE IU will be sent for it, and its data transfers are not expected. */
  #abort(task: Task): void {
    task.aborted = true;
    this.#tasks.delete(task.tag);
    for (const lane of [this.#in, this.#out]) this.#release(lane, task);
  }

  /** `task`'s data phase is over: the pipe's next transfers carry the next announced task's. */
  #release(lane: DataLane, task: Task): void {
    const i = lane.announced.indexOf(task);
    if (i < 0) return;
    lane.announced.splice(i, 1);
    this.#changed.notify();
  }

  /** The task's status in its SENSE IU; the tag is free again. */
  #complete(task: Task, status: ScsiStatus): void {
    if (task.aborted) return;
    this.#tasks.delete(task.tag);
    this.#send(
      status === "good"
        ? senseIu(task.tag, SamStatus.GOOD)
        : senseIu(task.tag, SamStatus.CHECK_CONDITION, status.sense),
    );
  }

  async #dataIn(task: Task, command: DataCommand, t: UsbTransfer): Promise<TransferResult> {
    if (command.direction !== "in") return CANCELLED;
    const length = Math.min(t.length, command.length - task.moved);
    const lent = this.#inBuffers.lend(length);
    const r = length > 0 ? await command.read(task.moved, length, lent) : new Uint8Array(0);
    if (task.aborted || t.signal.aborted) return CANCELLED;
    if (!(r instanceof Uint8Array)) {
      // A read error ends the data phase short (no stall: the host clears no halt in UAS);
      // the SENSE IU says why.
      this.#release(this.#in, task);
      this.#complete(task, r);
      return { status: "ok", data: new Uint8Array(0) };
    }
    const data = r.length > length ? r.subarray(0, length) : r;
    task.moved += data.length;
    if (task.moved === command.length) {
      this.#release(this.#in, task);
      this.#complete(task, await command.finish());
    }
    return { status: "ok", ...this.#inBuffers.handOver(lent, data) };
  }

  async #dataOut(task: Task, command: DataCommand, t: UsbTransfer): Promise<TransferResult> {
    if (command.direction !== "out") return CANCELLED;
    const take = Math.min(t.data.length, command.length - task.moved);
    const status = take > 0 ? await command.write(t.data.subarray(0, take)) : "good";
    if (task.aborted) return CANCELLED;
    task.moved += take;
    if (status !== "good") {
      this.#release(this.#out, task);
      this.#complete(task, status);
    } else if (task.moved === command.length) {
      this.#release(this.#out, task);
      this.#complete(task, await command.finish());
    }
    return { status: "ok", actualLength: take };
  }

  #send(iu: Uint8Array): void {
    this.#status.push(iu);
    this.#changed.notify();
  }

  /** Keeps `p` as the task's work (for an abort to wait on) and as the transport's. */
  #track<T>(task: Task, p: Promise<T>): Promise<T> {
    task.work = p;
    this.#trackWork(p);
    return p;
  }

  #trackWork(p: Promise<unknown>): void {
    this.#work.add(p);
    const done = () => this.#work.delete(p);
    p.then(done, done);
  }

  async #until(ready: () => boolean, signal: AbortSignal): Promise<boolean> {
    while (!ready()) {
      if (await this.#changed.wait(signal) === "aborted") return false;
    }
    return !signal.aborted;
  }
}
