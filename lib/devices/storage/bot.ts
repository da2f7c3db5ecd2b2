/**
 * USB Mass Storage Class Bulk-Only Transport 1.0 (BOT): the Command Block Wrapper and Command
 * Status Wrapper codecs, and the device side of the transport over a bulk IN and a bulk OUT
 * endpoint: CBW validity and meaningfulness (§6.2), the thirteen cases of host and device
 * expectations (§6.7) with the data residue and the stalls each case asks for, phase errors,
 * and the stall of both endpoints after an invalid CBW that only a Reset Recovery (§5.3.4:
 * Bulk-Only Mass Storage Reset, then CLEAR_FEATURE(ENDPOINT_HALT) on both) lifts.
 *
 * @module
 */

import { getLogger } from "../../logtape.ts";
import { Notifier } from "../../util/wait.ts";
import { deviceInPool } from "../../protocol/buffer_pool.ts";
import {
  CANCELLED,
  type MaybePromise,
  STALL,
  type TransferResult,
  type UsbTransfer,
} from "../usb_device.ts";
import type { ScsiCommand, ScsiStatus } from "./scsi.ts";

const log = getLogger(["usbipgw", "storage"]);

/** dCBWSignature, "USBC" little-endian. */
export const CBW_SIGNATURE = 0x43425355;
/** dCSWSignature, "USBS" little-endian. */
export const CSW_SIGNATURE = 0x53425355;
/** A CBW is exactly 31 bytes. */
export const CBW_LENGTH = 31;
/** A CSW is exactly 13 bytes. */
export const CSW_LENGTH = 13;
/** bmCBWFlags bit 7: the data phase goes from the device to the host. */
export const CBW_FLAG_DATA_IN = 0x80;
/** The most logical units a BOT device has (bCBWLUN is 4 bits). */
export const MAX_LUNS = 16;

/** bCSWStatus values (BOT §5.2 table 5.3). */
export const CswStatus = { PASSED: 0, FAILED: 1, PHASE_ERROR: 2 } as const;
/** A bCSWStatus value. */
export type CswStatusValue = (typeof CswStatus)[keyof typeof CswStatus];

/** The class-specific requests (BOT §3), to the interface. */
export const BotRequest = { GET_MAX_LUN: 0xfe, BULK_ONLY_MASS_STORAGE_RESET: 0xff } as const;

/** A Command Block Wrapper (BOT §5.1) with the kernel's field names in camelCase. */
export interface CommandBlockWrapper {
  /** dCBWTag, echoed in the CSW. */
  tag: number;
  /** dCBWDataTransferLength: the bytes the host expects to move. */
  dataTransferLength: number;
  /** bmCBWFlags; bit 7 is the direction (1: device to host). */
  flags: number;
  /** bCBWLUN, as sent (bits 7..4 are reserved). */
  lun: number;
  /** bCBWCBLength, as sent (bits 7..5 are reserved; 1..16 is meaningful). */
  length: number;
  /** CBWCB: all 16 bytes; the command block is the first `length`. */
  cdb: Uint8Array;
}

/** A Command Status Wrapper (BOT §5.2). */
export interface CommandStatusWrapper {
  /** dCSWTag: the CBW's tag. */
  tag: number;
  /** dCSWDataResidue. */
  residue: number;
  /** bCSWStatus. */
  status: number;
}

/** What {@linkcode encodeCbw} takes: the direction as a flag, the CDB as given. */
export interface CbwFields {
  tag: number;
  dataTransferLength: number;
  dirIn: boolean;
  lun?: number;
  cdb: Uint8Array;
}

/**
 * Encodes a CBW (host side: tests and clients). Throws `RangeError` for a CDB of 0 or more
 * than 16 bytes.
 *
 * @example
 * ```ts
 * import { decodeCbw, encodeCbw } from "./bot.ts";
 * const bytes = encodeCbw({ tag: 7, dataTransferLength: 36, dirIn: true,
 *   cdb: new Uint8Array([0x12, 0, 0, 0, 36, 0]) });
 * const cbw = decodeCbw(bytes);
 * console.assert(bytes.length === 31 && cbw.tag === 7 && cbw.flags === 0x80 && cbw.length === 6);
 * ```
 */
export function encodeCbw(f: CbwFields): Uint8Array {
  if (f.cdb.length < 1 || f.cdb.length > 16) {
    throw new RangeError(`Cannot encode CBW: the CDB is ${f.cdb.length} bytes, expected 1..16`);
  }
  const b = new Uint8Array(CBW_LENGTH);
  const v = new DataView(b.buffer);
  v.setUint32(0, CBW_SIGNATURE, true);
  v.setUint32(4, f.tag >>> 0, true);
  v.setUint32(8, f.dataTransferLength >>> 0, true);
  b[12] = f.dirIn ? CBW_FLAG_DATA_IN : 0;
  b[13] = (f.lun ?? 0) & 0x0f;
  b[14] = f.cdb.length;
  b.set(f.cdb, 15);
  return b;
}

/**
 * A view of a CBW or CSW after checking its length and its signature (BOT §5.1, §5.2);
 * `RangeError` when either is wrong.
 */
function wrapperView(name: string, bytes: Uint8Array, length: number, signature: number): DataView {
  if (bytes.length !== length) {
    throw new RangeError(`Cannot decode ${name}: it is ${bytes.length} bytes, expected ${length}`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const found = v.getUint32(0, true);
  if (found !== signature) {
    const hex = (n: number) => `0x${n.toString(16)}`;
    throw new RangeError(
      `Cannot decode ${name}: the signature is ${hex(found)}, expected ${hex(signature)}`,
    );
  }
  return v;
}

/**
 * Decodes a CBW and checks that it is valid (BOT §6.2.1: 31 bytes, the signature). Throws
 * `RangeError` otherwise; whether it is meaningful is {@linkcode cbwProblem}'s question.
 */
export function decodeCbw(bytes: Uint8Array): CommandBlockWrapper {
  const v = wrapperView("CBW", bytes, CBW_LENGTH, CBW_SIGNATURE);
  return {
    tag: v.getUint32(4, true),
    dataTransferLength: v.getUint32(8, true),
    flags: bytes[12]!,
    lun: bytes[13]!,
    length: bytes[14]!,
    cdb: bytes.slice(15, 31),
  };
}

/**
 * Why a valid CBW is not meaningful (BOT §6.2.2) for a device with `lunCount` logical
 * units: reserved bits set, a LUN it does not have, a CDB length outside 1..16. `undefined`
 * when it is meaningful.
 */
export function cbwProblem(cbw: CommandBlockWrapper, lunCount: number): string | undefined {
  if ((cbw.flags & ~CBW_FLAG_DATA_IN) !== 0) {
    return `bmCBWFlags 0x${cbw.flags.toString(16)} has reserved bits set`;
  }
  if (cbw.lun >= lunCount) return `bCBWLUN ${cbw.lun} is not one of the ${lunCount} LUNs`;
  if (cbw.length < 1 || cbw.length > 16) return `bCBWCBLength ${cbw.length} is not 1..16`;
  return undefined;
}

/**
 * Encodes a CSW.
 *
 * @example
 * ```ts
 * import { decodeCsw, encodeCsw } from "./bot.ts";
 * const csw = decodeCsw(encodeCsw({ tag: 7, residue: 4, status: 1 }));
 * console.assert(csw.tag === 7 && csw.residue === 4 && csw.status === 1);
 * ```
 */
export function encodeCsw(csw: CommandStatusWrapper): Uint8Array {
  const b = new Uint8Array(CSW_LENGTH);
  const v = new DataView(b.buffer);
  v.setUint32(0, CSW_SIGNATURE, true);
  v.setUint32(4, csw.tag >>> 0, true);
  v.setUint32(8, csw.residue >>> 0, true);
  b[12] = csw.status;
  return b;
}

/** Decodes a CSW (host side); throws `RangeError` for a wrong length or signature. */
export function decodeCsw(bytes: Uint8Array): CommandStatusWrapper {
  const v = wrapperView("CSW", bytes, CSW_LENGTH, CSW_SIGNATURE);
  return { tag: v.getUint32(4, true), residue: v.getUint32(8, true), status: bytes[12]! };
}

/**
 * Where the transport is: waiting for a CBW, in a data phase, holding a CSW for the host,
 * or stalled after an invalid CBW until a Reset Recovery.
 */
export type BotState = "cbw" | "data_in" | "data_out" | "csw" | "needs_reset";

/** What the transport drives: the logical units and the halts of the two bulk endpoints. */
export interface BotTarget {
  /** The number of logical units (1..16); Get Max LUN answers one less. */
  readonly lunCount: number;
  /** The plan for a CDB addressed to `lun`. */
  command(lun: number, cdb: Uint8Array, readOnly: boolean): ScsiCommand;
  /** Halts the bulk IN (`true`) or OUT endpoint, as the device does to end a data phase. */
  halt(dirIn: boolean): void;
}

type DataCommand = Exclude<ScsiCommand, { direction: "none" }>;

const EMPTY: Uint8Array = new Uint8Array(0);
/** Invalid CBWs logged as warnings per device; later ones are logged at debug level. */
const INVALID_CBW_WARNINGS = 10;

/**
 * The device side of the Bulk-Only Transport. The device hands it every transfer of its bulk
 * IN and bulk OUT endpoints and the class reset; the session gives it one transfer per
 * endpoint at a time. A transfer that arrives in the wrong phase (an IN while a CBW is
 * awaited, an OUT while a CSW is) waits, as a device NAKs, until the phase comes or the
 * transfer is cancelled.
 *
 * The thirteen cases (BOT §6.7), with H the host's dCBWDataTransferLength and D what the
 * command would move:
 * - no data either way, or the data as expected: the CSW says GOOD or FAILED with the residue;
 * - host expects data, device has none or less (cases 4, 5): the device's data, then the bulk
 *   IN endpoint halts and the CSW has residue H - D; host sends data the device does not
 *   want, or more (cases 9, 11): what it wants is taken, the bulk OUT endpoint halts for the
 *   rest, and the residue says how much was not;
 * - the host expects no data but the device has some, the directions differ, or the device
 *   has more than H (cases 2, 3, 7, 8, 10, 13): the command is not run, the data endpoint the
 *   host uses halts, and the CSW says PHASE ERROR.
 */
export class BulkOnlyTransport {
  readonly #target: BotTarget;
  #state: BotState = "cbw";
  /** Incremented by every reset: work begun before it drops its result. */
  #generation = 0;
  #command: DataCommand | undefined;
  #tag = 0;
  #hostLength = 0;
  #moved = 0;
  #remaining = 0;
  #csw: CommandStatusWrapper | undefined;
  #stateChanged = new Notifier();
  #invalidCount = 0;
  #work = new Set<Promise<unknown>>();
  /** Buffers for the data of READs, back from the server (`TransferResult.release`). */
  #inBuffers = deviceInPool();

  /** Drives `target`. */
  constructor(target: BotTarget) {
    this.#target = target;
  }

  /** The current phase. */
  get state(): BotState {
    return this.#state;
  }

  /** Resolves once no transfer is being worked on (waiting transfers do not count). */
  async idle(): Promise<void> {
    while (this.#work.size > 0) await Promise.allSettled([...this.#work]);
  }

  /**
   * The Bulk-Only Mass Storage Reset (and a bus reset or configuration change): drops the
   * command under way and waits for the next CBW. Endpoint halts stay as they are (BOT §3.1);
   * the host clears them next.
   */
  reset(): void {
    this.#generation++;
    this.#command = undefined;
    this.#csw = undefined;
    this.#enter("cbw");
  }

  /** A transfer on the bulk OUT endpoint: a CBW, or data of a data-out phase. */
  handleOut(t: UsbTransfer): MaybePromise<TransferResult> {
    const ready = () =>
      this.#state === "cbw" || this.#state === "data_out" ||
      this.#state === "needs_reset";
    if (ready()) return this.#out(t);
    return this.#until(ready, t.signal).then((ok) => ok ? this.handleOut(t) : CANCELLED);
  }

  /** A transfer on the bulk IN endpoint: data of a data-in phase, or the CSW. */
  handleIn(t: UsbTransfer): MaybePromise<TransferResult> {
    const ready = () =>
      this.#state === "data_in" || this.#state === "csw" ||
      this.#state === "needs_reset";
    if (ready()) return this.#in(t);
    return this.#until(ready, t.signal).then((ok) => ok ? this.handleIn(t) : CANCELLED);
  }

  #out(t: UsbTransfer): MaybePromise<TransferResult> {
    if (t.signal.aborted) return CANCELLED;
    switch (this.#state) {
      case "cbw":
        return this.#track(this.#cbw(t));
      case "data_out":
        return this.#track(this.#dataOut(t));
      default:
        return STALL;
    }
  }

  #in(t: UsbTransfer): MaybePromise<TransferResult> {
    if (t.signal.aborted) return CANCELLED;
    switch (this.#state) {
      case "data_in":
        return this.#track(this.#dataIn(t));
      case "csw":
        return this.#sendCsw();
      default:
        return STALL;
    }
  }

  #track<T>(p: MaybePromise<T>): MaybePromise<T> {
    if (!(p instanceof Promise)) return p;
    this.#work.add(p);
    const done = () => this.#work.delete(p);
    p.then(done, done);
    return p;
  }

  #enter(state: BotState): void {
    this.#state = state;
    this.#stateChanged.notify();
  }

  async #until(ready: () => boolean, signal: AbortSignal): Promise<boolean> {
    while (!ready()) {
      if (await this.#stateChanged.wait(signal) === "aborted") return false;
    }
    return !signal.aborted;
  }

  #toCsw(status: CswStatusValue, residue: number): void {
    this.#command = undefined;
    this.#csw = { tag: this.#tag, residue, status };
    this.#enter("csw");
  }

  #statusOf(s: ScsiStatus): CswStatusValue {
    return s === "good" ? CswStatus.PASSED : CswStatus.FAILED;
  }

  /** BOT §6.6.1: an invalid (or meaningless) CBW stalls both endpoints until Reset Recovery. */
  #invalid(why: string): TransferResult {
    // A host that keeps sending garbage must not flood the log: the first few are warnings.
    const level = ++this.#invalidCount <= INVALID_CBW_WARNINGS ? "warn" : "debug";
    log[level]("Invalid CBW ({count}): {why}; both bulk endpoints stall until a Reset Recovery", {
      why,
      count: this.#invalidCount,
    });
    this.#command = undefined;
    this.#csw = undefined;
    this.#target.halt(true);
    this.#target.halt(false);
    this.#enter("needs_reset");
    // The CBW itself was received; the stalls meet what the host sends next.
    return { status: "ok" };
  }

  #cbw(t: UsbTransfer): MaybePromise<TransferResult> {
    let cbw: CommandBlockWrapper;
    try {
      cbw = decodeCbw(t.data);
    } catch (e) {
      return this.#invalid((e as Error).message);
    }
    const problem = cbwProblem(cbw, this.#target.lunCount);
    if (problem !== undefined) return this.#invalid(problem);
    const hostLength = cbw.dataTransferLength;
    const hostDir = hostLength === 0 ? "none" : (cbw.flags & CBW_FLAG_DATA_IN) !== 0 ? "in" : "out";
    this.#tag = cbw.tag;
    this.#hostLength = hostLength;
    this.#moved = 0;
    const command = this.#target.command(
      cbw.lun,
      cbw.cdb.subarray(0, cbw.length),
      t.readOnly ?? false,
    );
    const deviceLength = command.direction === "none" ? 0 : command.length;
    if (deviceLength === 0) {
      // Cases 1, 4 and 9: the command runs; a data phase the host expects is cut short by a
      // stall of its endpoint, and the residue is all of it.
      const generation = this.#generation;
      const finish = (status: ScsiStatus): TransferResult => {
        if (generation !== this.#generation) return { status: "ok" };
        if (hostDir !== "none") this.#target.halt(hostDir === "in");
        this.#toCsw(this.#statusOf(status), hostLength);
        return { status: "ok" };
      };
      const status = command.finish();
      return status instanceof Promise ? status.then(finish) : finish(status);
    }
    const dataCommand = command as DataCommand;
    if (hostDir !== dataCommand.direction || deviceLength > hostLength) {
      // Cases 2, 3, 7, 8, 10 and 13: a phase error; the command is not run.
      log.debug(
        "BOT phase error: the host expects {hostLength} bytes {hostDir}, the device {deviceLength} {deviceDir}",
        { hostLength, hostDir, deviceLength, deviceDir: dataCommand.direction },
      );
      if (hostDir !== "none") this.#target.halt(hostDir === "in");
      this.#toCsw(CswStatus.PHASE_ERROR, hostLength);
      return { status: "ok" };
    }
    // Cases 5, 6, 11 and 12: the data phase.
    this.#command = dataCommand;
    this.#remaining = deviceLength;
    this.#enter(dataCommand.direction === "in" ? "data_in" : "data_out");
    return { status: "ok" };
  }

  async #dataIn(t: UsbTransfer): Promise<TransferResult> {
    const command = this.#command;
    if (command?.direction !== "in") return STALL;
    const generation = this.#generation;
    const length = Math.min(t.length, this.#remaining);
    let data: Uint8Array = EMPTY;
    const lent = this.#inBuffers.lend(length);
    if (length > 0) {
      const r = await command.read(this.#moved, length, lent);
      if (generation !== this.#generation || t.signal.aborted) return CANCELLED;
      if (!(r instanceof Uint8Array)) {
        // A read error ends the data phase with a stall; the CSW reports the failure.
        this.#toCsw(CswStatus.FAILED, this.#hostLength - this.#moved);
        return STALL;
      }
      data = r.length > length ? r.subarray(0, length) : r;
    }
    this.#moved += data.length;
    this.#remaining -= data.length;
    if (this.#remaining === 0) {
      const status = await command.finish();
      if (generation !== this.#generation) return CANCELLED;
      const residue = this.#hostLength - this.#moved;
      this.#toCsw(this.#statusOf(status), residue);
      // Case 5: less data than the host asked for; the bulk IN endpoint halts after it.
      if (residue > 0) this.#target.halt(true);
    }
    return { status: "ok", ...this.#inBuffers.handOver(lent, data) };
  }

  async #dataOut(t: UsbTransfer): Promise<TransferResult> {
    const command = this.#command;
    if (command?.direction !== "out") return STALL;
    const generation = this.#generation;
    const take = Math.min(t.data.length, this.#remaining);
    if (take > 0) {
      const status = await command.write(t.data.subarray(0, take));
      if (generation !== this.#generation) return CANCELLED;
      if (status !== "good") {
        // A write error: the rest of the data phase stalls; the CSW reports the failure.
        this.#toCsw(CswStatus.FAILED, this.#hostLength - this.#moved);
        return { status: "stall", actualLength: 0 };
      }
    }
    this.#moved += take;
    this.#remaining -= take;
    if (this.#remaining > 0) return { status: "ok", actualLength: take };
    const status = await command.finish();
    if (generation !== this.#generation) return CANCELLED;
    const residue = this.#hostLength - this.#moved;
    this.#toCsw(this.#statusOf(status), residue);
    // Case 11: the host sends more than the command takes; the bulk OUT endpoint stalls the
    // rest, within this transfer or at the next.
    if (take < t.data.length) return { status: "stall", actualLength: take };
    if (residue > 0) this.#target.halt(false);
    return { status: "ok", actualLength: take };
  }

  #sendCsw(): TransferResult {
    const csw = this.#csw!;
    this.#csw = undefined;
    this.#enter("cbw");
    return { status: "ok", data: encodeCsw(csw) };
  }
}
