/**
 * The SCSI command set of a thumb drive's logical unit, a direct-access block device: SPC-4
 * (INQUIRY with VPD pages 0x00, 0x80 and 0x83, REQUEST SENSE in fixed format, MODE SENSE and
 * MODE SELECT, REPORT LUNS, TEST UNIT READY) and SBC-3 (READ and WRITE 6/10/12/16, VERIFY(10),
 * READ CAPACITY 10/16, SYNCHRONIZE CACHE 10/16, START STOP UNIT, PREVENT ALLOW MEDIUM
 * REMOVAL), plus READ FORMAT CAPACITIES (UFI/MMC), which Windows asks of USB drives. A failed
 * command ends in CHECK CONDITION with sense data kept per logical unit until REQUEST SENSE
 * or the next command. A command is a plan: which way its data goes, how many bytes, and how
 * to produce or consume them; the transport (bot.ts) moves the bytes.
 *
 * @module
 */

import { errorMessage } from "../../util/error_message.ts";
import { getLogger } from "../../logtape.ts";
import type { MaybePromise } from "../usb_device.ts";
import type { StorageBacking } from "./image.ts";

const log = getLogger(["usbipgw", "storage"]);

/** Operation codes this logical unit handles (SPC-4, SBC-3, UFI). */
export const ScsiOpcode = {
  TEST_UNIT_READY: 0x00,
  REQUEST_SENSE: 0x03,
  READ_6: 0x08,
  WRITE_6: 0x0a,
  INQUIRY: 0x12,
  MODE_SELECT_6: 0x15,
  MODE_SENSE_6: 0x1a,
  START_STOP_UNIT: 0x1b,
  PREVENT_ALLOW_MEDIUM_REMOVAL: 0x1e,
  READ_FORMAT_CAPACITIES: 0x23,
  READ_CAPACITY_10: 0x25,
  READ_10: 0x28,
  WRITE_10: 0x2a,
  VERIFY_10: 0x2f,
  SYNCHRONIZE_CACHE_10: 0x35,
  MODE_SELECT_10: 0x55,
  MODE_SENSE_10: 0x5a,
  READ_16: 0x88,
  WRITE_16: 0x8a,
  SYNCHRONIZE_CACHE_16: 0x91,
  SERVICE_ACTION_IN_16: 0x9e,
  REPORT_LUNS: 0xa0,
  READ_12: 0xa8,
  WRITE_12: 0xaa,
} as const;

/** The SERVICE ACTION IN(16) service action of READ CAPACITY(16). */
export const SAI_READ_CAPACITY_16 = 0x10;

/** Sense keys (SPC-4 table 27). */
export const SenseKey = {
  NO_SENSE: 0x0,
  NOT_READY: 0x2,
  MEDIUM_ERROR: 0x3,
  ILLEGAL_REQUEST: 0x5,
  UNIT_ATTENTION: 0x6,
  DATA_PROTECT: 0x7,
  MISCOMPARE: 0xe,
} as const;

/** A sense key with its additional sense code and qualifier. */
export interface Sense {
  /** The sense key, one of `SenseKey`: 0x5 ILLEGAL REQUEST, 0x6 UNIT ATTENTION, ... */
  readonly key: number;
  /** The additional sense code (ASC), e.g. 0x3a MEDIUM NOT PRESENT. */
  readonly asc: number;
  /** The additional sense code qualifier (ASCQ), which refines `asc`. */
  readonly ascq: number;
}

/** The sense data this logical unit reports (SPC-4 annex D). */
export const SENSE = {
  NO_SENSE: { key: SenseKey.NO_SENSE, asc: 0x00, ascq: 0x00 },
  MEDIUM_NOT_PRESENT: { key: SenseKey.NOT_READY, asc: 0x3a, ascq: 0x00 },
  WRITE_ERROR: { key: SenseKey.MEDIUM_ERROR, asc: 0x0c, ascq: 0x00 },
  UNRECOVERED_READ_ERROR: { key: SenseKey.MEDIUM_ERROR, asc: 0x11, ascq: 0x00 },
  INVALID_COMMAND_OPERATION_CODE: { key: SenseKey.ILLEGAL_REQUEST, asc: 0x20, ascq: 0x00 },
  LBA_OUT_OF_RANGE: { key: SenseKey.ILLEGAL_REQUEST, asc: 0x21, ascq: 0x00 },
  INVALID_FIELD_IN_CDB: { key: SenseKey.ILLEGAL_REQUEST, asc: 0x24, ascq: 0x00 },
  LOGICAL_UNIT_NOT_SUPPORTED: { key: SenseKey.ILLEGAL_REQUEST, asc: 0x25, ascq: 0x00 },
  SAVING_PARAMETERS_NOT_SUPPORTED: { key: SenseKey.ILLEGAL_REQUEST, asc: 0x39, ascq: 0x00 },
  MEDIUM_REMOVAL_PREVENTED: { key: SenseKey.ILLEGAL_REQUEST, asc: 0x53, ascq: 0x02 },
  NOT_READY_TO_READY_CHANGE: { key: SenseKey.UNIT_ATTENTION, asc: 0x28, ascq: 0x00 },
  BUS_DEVICE_RESET_OCCURRED: { key: SenseKey.UNIT_ATTENTION, asc: 0x29, ascq: 0x03 },
  WRITE_PROTECTED: { key: SenseKey.DATA_PROTECT, asc: 0x27, ascq: 0x00 },
  MISCOMPARE_DURING_VERIFY: { key: SenseKey.MISCOMPARE, asc: 0x1d, ascq: 0x00 },
} as const satisfies Record<string, Sense>;

/** Fixed-format sense data is 18 bytes here (additional sense length 10). */
export const FIXED_SENSE_LENGTH = 18;

/**
 * Encodes fixed-format sense data (response code 0x70, current error; SPC-4 §4.5.3).
 *
 * @example
 * ```ts
 * import { encodeFixedSense, SENSE } from "./scsi.ts";
 * const b = encodeFixedSense(SENSE.LBA_OUT_OF_RANGE);
 * console.assert(b[0] === 0x70 && b[2] === 5 && b[12] === 0x21 && b.length === 18);
 * ```
 */
export function encodeFixedSense(sense: Sense): Uint8Array {
  const b = new Uint8Array(FIXED_SENSE_LENGTH);
  b[0] = 0x70;
  b[2] = sense.key & 0x0f;
  b[7] = FIXED_SENSE_LENGTH - 8;
  b[12] = sense.asc;
  b[13] = sense.ascq;
  return b;
}

/**
 * CHECK CONDITION and the sense data that says why. The logical unit also keeps the sense
 * for REQUEST SENSE (Bulk-Only); UAS sends it in the command's SENSE IU (autosense), which
 * needs it per command since other commands run meanwhile.
 */
export interface CheckCondition {
  /** Why the command failed. */
  readonly sense: Sense;
}

/** How a command ended: GOOD, or CHECK CONDITION with its sense. */
export type ScsiStatus = "good" | CheckCondition;

/**
 * A command as a plan for the transport: the direction and amount of the data the device
 * intends to move (the "Di"/"Do" of the Bulk-Only Transport's thirteen cases), the steps
 * that move it, and `finish()`, which runs once all of it has moved (at once for "none").
 * `read` and `write` are called with consecutive pieces, in order.
 */
export type ScsiCommand =
  | {
    readonly direction: "none";
    finish(): MaybePromise<ScsiStatus>;
  }
  | {
    readonly direction: "in";
    readonly length: number;
    /**
     * `length` bytes of the data starting at `offset`, or CHECK CONDITION (a read error);
     * read into `into` (of `length` bytes) where the data come from the medium.
     */
    read(
      offset: number,
      length: number,
      into?: Uint8Array,
    ): MaybePromise<Uint8Array | CheckCondition>;
    finish(): MaybePromise<ScsiStatus>;
  }
  | {
    readonly direction: "out";
    readonly length: number;
    /** The next bytes of the data; CHECK CONDITION stops the command (a write error). */
    write(chunk: Uint8Array): MaybePromise<ScsiStatus>;
    finish(): MaybePromise<ScsiStatus>;
  };

/** What a command needs to know about the importer and the device. */
export interface CommandContext {
  /** The importer may only read (a policy decision): writes fail with DATA PROTECT. */
  readOnly: boolean;
  /** The number of logical units of the device, for REPORT LUNS. */
  lunCount: number;
}

/** The identity and shape of a logical unit. */
export interface LogicalUnitOptions {
  /** The medium: the image or other store the blocks are read from and written to. */
  backing: StorageBacking;
  /** Logical block size in bytes: 512 or 4096. */
  blockSize: number;
  /** Removable medium (the RMB bit): eject and PREVENT ALLOW MEDIUM REMOVAL work. */
  removable: boolean;
  /** T10 vendor identification, up to 8 ASCII characters. */
  vendor: string;
  /** Product identification, up to 16 ASCII characters. */
  product: string;
  /** Product revision level, up to 4 ASCII characters. */
  revision: string;
  /** The unit serial number (VPD page 0x80), printable ASCII. */
  serial: string;
}

const GOOD: ScsiCommand = Object.freeze({ direction: "none", finish: () => "good" as const });

/** Commands that neither report nor clear a unit attention (SPC-4 §5.14). */
const UNIT_ATTENTION_EXEMPT: ReadonlySet<number> = new Set([
  ScsiOpcode.INQUIRY,
  ScsiOpcode.REQUEST_SENSE,
  ScsiOpcode.REPORT_LUNS,
]);

/** The CDB length of an operation code's group (SAM-5 §5.2). */
function cdbLength(op: number): number {
  switch (op >> 5) {
    case 0:
      return 6;
    case 1:
    case 2:
      return 10;
    case 4:
      return 16;
    case 5:
      return 12;
    default:
      return 16;
  }
}

const SUPPORTED: ReadonlySet<number> = new Set<number>(Object.values(ScsiOpcode));

function ascii(text: string, length: number): Uint8Array {
  const b = new Uint8Array(length).fill(0x20);
  for (let i = 0; i < Math.min(text.length, length); i++) b[i] = text.charCodeAt(i) & 0x7f;
  return b;
}

/** A 64-bit big-endian field as a number; values beyond 2^53 become `Infinity` (out of range). */
function u64(v: DataView, offset: number): number {
  const n = v.getBigUint64(offset);
  return n > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(n);
}

/**
 * Feeds consecutive pieces of a data-out phase to `sectors` in whole logical blocks only: a
 * piece that ends inside a block is kept until the rest of that block arrives, and a block
 * never completed is never passed on. `sectors(offset, bytes)` gets the byte offset within
 * the command's data.
 */
function wholeBlocks(
  blockSize: number,
  sectors: (offset: number, bytes: Uint8Array) => Promise<ScsiStatus>,
): (chunk: Uint8Array) => Promise<ScsiStatus> {
  let done = 0;
  let partial: Uint8Array | undefined;
  let fill = 0;
  return async (chunk) => {
    let pos = 0;
    if (fill > 0) {
      const n = Math.min(blockSize - fill, chunk.length);
      partial!.set(chunk.subarray(0, n), fill);
      fill += n;
      pos = n;
      if (fill < blockSize) return "good";
      fill = 0;
      const status = await sectors(done, partial!);
      if (status !== "good") return status;
      done += blockSize;
    }
    const whole = Math.floor((chunk.length - pos) / blockSize) * blockSize;
    if (whole > 0) {
      const status = await sectors(done, chunk.subarray(pos, pos + whole));
      if (status !== "good") return status;
      done += whole;
      pos += whole;
    }
    if (pos < chunk.length) {
      partial ??= new Uint8Array(blockSize);
      partial.set(chunk.subarray(pos), 0);
      fill = chunk.length - pos;
    }
    return "good";
  };
}

/**
 * One logical unit: its medium (the backing), its sense data, unit attention, medium
 * presence and removal lock, and the commands. {@linkcode ScsiLogicalUnit.command} turns a
 * CDB into a {@linkcode ScsiCommand}; CHECK CONDITION leaves its sense for REQUEST SENSE.
 *
 * The medium is present after {@linkcode ScsiLogicalUnit.powerOn} (each import); START STOP
 * UNIT with LOEJ ejects it (refused while PREVENT ALLOW MEDIUM REMOVAL prevents removal) and
 * loads it again, after which the next command reports the unit attention NOT READY TO READY
 * CHANGE, MEDIUM MAY HAVE CHANGED.
 *
 * @example TEST UNIT READY on a RAM backing
 * ```ts
 * import { ScsiLogicalUnit } from "./scsi.ts";
 * const ram = new Uint8Array(64 * 512);
 * const lu = new ScsiLogicalUnit({
 *   backing: { name: "ram", size: ram.length, readOnly: false,
 *     read: (o, n) => Promise.resolve(ram.slice(o, o + n)),
 *     write: (o, d) => Promise.resolve(void ram.set(d, o)),
 *     sync: () => Promise.resolve(), close: () => Promise.resolve() },
 *   blockSize: 512, removable: true, vendor: "usbipgw", product: "RAM", revision: "1.00",
 *   serial: "0123456789AB",
 * });
 * const cmd = lu.command(new Uint8Array(6), { readOnly: false, lunCount: 1 });
 * console.assert(cmd.direction === "none" && cmd.finish() === "good");
 * ```
 */
export class ScsiLogicalUnit {
  /** The backing store. */
  readonly backing: StorageBacking;
  /** Bytes per logical block. */
  readonly blockSize: number;
  /** Logical blocks the medium holds (the image size rounded down to whole blocks). */
  readonly blocks: number;
  /** Whether the medium is removable (INQUIRY's RMB bit), so that it can be ejected. */
  readonly removable: boolean;
  readonly #inquiry: Uint8Array;
  readonly #serial: string;
  readonly #designator: Uint8Array;
  #sense: Sense | undefined;
  #unitAttention: Sense | undefined;
  #mediumPresent = true;
  #preventRemoval = false;

  /** Builds a logical unit; throws `RangeError` for a backing smaller than one block. */
  constructor(options: LogicalUnitOptions) {
    this.backing = options.backing;
    this.blockSize = options.blockSize;
    this.blocks = Math.floor(options.backing.size / options.blockSize);
    if (this.blocks < 1) {
      throw new RangeError(
        `Cannot use ${options.backing.name}: ${options.backing.size} bytes is less than one ${options.blockSize}-byte block`,
      );
    }
    this.removable = options.removable;
    this.#serial = options.serial;
    const inquiry = new Uint8Array(36);
    inquiry[0] = 0x00; // peripheral qualifier 0, direct-access block device
    inquiry[1] = options.removable ? 0x80 : 0x00;
    inquiry[2] = 0x06; // SPC-4
    inquiry[3] = 0x02; // response data format 2
    inquiry[4] = inquiry.length - 5;
    inquiry.set(ascii(options.vendor, 8), 8);
    inquiry.set(ascii(options.product, 16), 16);
    inquiry.set(ascii(options.revision, 4), 32);
    this.#inquiry = inquiry;
    // A T10 vendor ID based designator: vendor, then product and serial as the vendor part.
    const id = new TextEncoder().encode(
      `${
        new TextDecoder().decode(ascii(options.vendor, 8))
      }${options.product.trim()} ${options.serial}`,
    ).subarray(0, 252);
    const designator = new Uint8Array(4 + id.length);
    designator.set([0x02, 0x01, 0x00, id.length]); // ASCII, logical unit, T10 vendor ID
    designator.set(id, 4);
    this.#designator = designator;
  }

  /** Whether the medium is loaded. */
  get mediumPresent(): boolean {
    return this.#mediumPresent;
  }

  /** Whether PREVENT ALLOW MEDIUM REMOVAL prevents removal. */
  get preventRemoval(): boolean {
    return this.#preventRemoval;
  }

  /** The sense data REQUEST SENSE would report now, if any. */
  get sense(): Sense | undefined {
    return this.#sense ?? this.#unitAttention;
  }

  /** A new import: the medium is loaded again, unlocked, and old sense data is gone. */
  powerOn(): void {
    this.#mediumPresent = true;
    this.#preventRemoval = false;
    this.#sense = undefined;
    this.#unitAttention = undefined;
  }

  /**
   * A LOGICAL UNIT RESET (SAM-5 §7.7): the sense data goes, and the next command reports the
   * unit attention BUS DEVICE RESET FUNCTION OCCURRED.
   */
  logicalUnitReset(): void {
    this.#sense = undefined;
    this.#unitAttention = SENSE.BUS_DEVICE_RESET_OCCURRED;
  }

  /** Whether the unit refuses writes for this importer. */
  writeProtected(ctx: CommandContext): boolean {
    return this.backing.readOnly || ctx.readOnly;
  }

  #fail(sense: Sense): CheckCondition {
    this.#sense = sense;
    if (sense === this.#unitAttention) this.#unitAttention = undefined;
    return { sense };
  }

  /** Logs a failed read or write of the backing store at `offset`; fails with `sense`. */
  #ioFailed(op: "read" | "write", offset: number, e: unknown, sense: Sense): CheckCondition {
    log.error("Cannot {op} {name} at {offset}: {error}", {
      op,
      name: this.backing.name,
      offset,
      error: errorMessage(e),
    });
    return this.#fail(sense);
  }

  /** A command that does nothing but end in CHECK CONDITION with `sense`. */
  #failed(sense: Sense): ScsiCommand {
    return { direction: "none", finish: () => this.#fail(sense) };
  }

  /** Data for the host, cut to the allocation length; `after` runs once it has gone. */
  #respond(data: Uint8Array, allocation: number, after?: () => void): ScsiCommand {
    const bytes = data.subarray(0, Math.min(allocation, data.length));
    return {
      direction: "in",
      length: bytes.length,
      read: (offset, length) => bytes.subarray(offset, offset + length),
      finish: () => {
        after?.();
        return "good";
      },
    };
  }

  #notReady(): ScsiCommand | undefined {
    return this.#mediumPresent ? undefined : this.#failed(SENSE.MEDIUM_NOT_PRESENT);
  }

  /**
   * The plan for one CDB (as long as the CBW's bCBWCBLength says). An unknown operation code
   * gives ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE; a CDB shorter than its operation
   * code's group needs gives INVALID FIELD IN CDB.
   */
  command(cdb: Uint8Array, ctx: CommandContext): ScsiCommand {
    const op = cdb[0] ?? -1;
    if (op !== ScsiOpcode.REQUEST_SENSE) this.#sense = undefined;
    if (!SUPPORTED.has(op)) {
      log.debug("Unsupported SCSI operation code {op}", { op: op.toString(16) });
      return this.#failed(SENSE.INVALID_COMMAND_OPERATION_CODE);
    }
    if (cdb.length < cdbLength(op)) return this.#failed(SENSE.INVALID_FIELD_IN_CDB);
    if (this.#unitAttention !== undefined && !UNIT_ATTENTION_EXEMPT.has(op)) {
      return this.#failed(this.#unitAttention);
    }
    const v = new DataView(cdb.buffer, cdb.byteOffset, cdb.byteLength);
    switch (op) {
      case ScsiOpcode.TEST_UNIT_READY:
        return this.#notReady() ?? GOOD;
      case ScsiOpcode.REQUEST_SENSE:
        return this.#requestSense(cdb);
      case ScsiOpcode.INQUIRY:
        return this.#inquiryCommand(cdb, v.getUint16(3));
      case ScsiOpcode.READ_CAPACITY_10:
        return this.#readCapacity10(cdb, v);
      case ScsiOpcode.SERVICE_ACTION_IN_16:
        if ((cdb[1]! & 0x1f) !== SAI_READ_CAPACITY_16) {
          return this.#failed(SENSE.INVALID_FIELD_IN_CDB);
        }
        return this.#readCapacity16(v.getUint32(10));
      case ScsiOpcode.READ_6:
      case ScsiOpcode.WRITE_6: {
        const lba = ((cdb[1]! & 0x1f) << 16) | v.getUint16(2);
        const count = cdb[4] === 0 ? 256 : cdb[4]!;
        return op === ScsiOpcode.READ_6
          ? this.#read(lba, count, 0)
          : this.#write(lba, count, 0, ctx);
      }
      case ScsiOpcode.READ_10:
        return this.#read(v.getUint32(2), v.getUint16(7), cdb[1]!);
      case ScsiOpcode.READ_12:
        return this.#read(v.getUint32(2), v.getUint32(6), cdb[1]!);
      case ScsiOpcode.READ_16:
        return this.#read(u64(v, 2), v.getUint32(10), cdb[1]!);
      case ScsiOpcode.WRITE_10:
        return this.#write(v.getUint32(2), v.getUint16(7), cdb[1]!, ctx);
      case ScsiOpcode.WRITE_12:
        return this.#write(v.getUint32(2), v.getUint32(6), cdb[1]!, ctx);
      case ScsiOpcode.WRITE_16:
        return this.#write(u64(v, 2), v.getUint32(10), cdb[1]!, ctx);
      case ScsiOpcode.VERIFY_10:
        return this.#verify(v.getUint32(2), v.getUint16(7), cdb[1]!);
      case ScsiOpcode.SYNCHRONIZE_CACHE_10:
        return this.#synchronizeCache(v.getUint32(2), v.getUint16(7));
      case ScsiOpcode.SYNCHRONIZE_CACHE_16:
        return this.#synchronizeCache(u64(v, 2), v.getUint32(10));
      case ScsiOpcode.MODE_SENSE_6:
        return this.#modeSense(false, cdb, cdb[4]!, ctx);
      case ScsiOpcode.MODE_SENSE_10:
        return this.#modeSense(true, cdb, v.getUint16(7), ctx);
      case ScsiOpcode.MODE_SELECT_6:
        return this.#modeSelect(cdb[4]!);
      case ScsiOpcode.MODE_SELECT_10:
        return this.#modeSelect(v.getUint16(7));
      case ScsiOpcode.PREVENT_ALLOW_MEDIUM_REMOVAL:
        return this.#preventAllow(cdb[4]!);
      case ScsiOpcode.START_STOP_UNIT:
        return this.#startStop(cdb[4]!);
      case ScsiOpcode.READ_FORMAT_CAPACITIES:
        return this.#readFormatCapacities(v.getUint16(7));
      case ScsiOpcode.REPORT_LUNS:
        return this.#reportLuns(cdb[2]!, v.getUint32(6), ctx);
      default:
        return this.#failed(SENSE.INVALID_COMMAND_OPERATION_CODE);
    }
  }

  #requestSense(cdb: Uint8Array): ScsiCommand {
    // DESC=1 asks for descriptor-format sense, which this unit does not offer.
    if ((cdb[1]! & 0x01) !== 0) return this.#failed(SENSE.INVALID_FIELD_IN_CDB);
    const pending = this.#sense ?? this.#unitAttention ??
      (this.#mediumPresent ? SENSE.NO_SENSE : SENSE.MEDIUM_NOT_PRESENT);
    return this.#respond(encodeFixedSense(pending), cdb[4]!, () => {
      this.#sense = undefined;
      if (pending === this.#unitAttention) this.#unitAttention = undefined;
    });
  }

  #inquiryCommand(cdb: Uint8Array, allocation: number): ScsiCommand {
    const evpd = (cdb[1]! & 0x01) !== 0;
    const page = cdb[2]!;
    if ((cdb[1]! & 0x02) !== 0 || (!evpd && page !== 0)) {
      return this.#failed(SENSE.INVALID_FIELD_IN_CDB);
    }
    if (!evpd) return this.#respond(this.#inquiry, allocation);
    let body: Uint8Array;
    switch (page) {
      case 0x00:
        body = new Uint8Array([0x00, 0x80, 0x83]);
        break;
      case 0x80:
        body = ascii(this.#serial, this.#serial.length);
        break;
      case 0x83:
        body = this.#designator;
        break;
      default:
        return this.#failed(SENSE.INVALID_FIELD_IN_CDB);
    }
    const data = new Uint8Array(4 + body.length);
    data[1] = page;
    new DataView(data.buffer).setUint16(2, body.length);
    data.set(body, 4);
    return this.#respond(data, allocation);
  }

  #readCapacity10(cdb: Uint8Array, v: DataView): ScsiCommand {
    const notReady = this.#notReady();
    if (notReady) return notReady;
    // PMI=0 with a non-zero LBA is an invalid field (SBC-3 §5.16).
    if ((cdb[8]! & 0x01) === 0 && v.getUint32(2) !== 0) {
      return this.#failed(SENSE.INVALID_FIELD_IN_CDB);
    }
    const data = new Uint8Array(8);
    const d = new DataView(data.buffer);
    d.setUint32(0, Math.min(this.blocks - 1, 0xffffffff));
    d.setUint32(4, this.blockSize);
    return this.#respond(data, data.length);
  }

  #readCapacity16(allocation: number): ScsiCommand {
    const notReady = this.#notReady();
    if (notReady) return notReady;
    const data = new Uint8Array(32);
    const d = new DataView(data.buffer);
    d.setBigUint64(0, BigInt(this.blocks - 1));
    d.setUint32(8, this.blockSize);
    return this.#respond(data, allocation);
  }

  /** The checks every medium access shares; a failed command, or undefined to go on. */
  #access(lba: number, count: number, flags: number): ScsiCommand | undefined {
    const notReady = this.#notReady();
    if (notReady) return notReady;
    // RDPROTECT/WRPROTECT: this unit has no protection information.
    if ((flags & 0xe0) !== 0) return this.#failed(SENSE.INVALID_FIELD_IN_CDB);
    if (lba + count > this.blocks) return this.#failed(SENSE.LBA_OUT_OF_RANGE);
    return undefined;
  }

  #read(lba: number, count: number, flags: number): ScsiCommand {
    const failed = this.#access(lba, count, flags);
    if (failed) return failed;
    if (count === 0) return GOOD;
    const base = lba * this.blockSize;
    return {
      direction: "in",
      length: count * this.blockSize,
      read: async (offset, length, into) => {
        try {
          return await this.backing.read(base + offset, length, into);
        } catch (e) {
          return this.#ioFailed("read", base + offset, e, SENSE.UNRECOVERED_READ_ERROR);
        }
      },
      finish: () => "good",
    };
  }

  #write(lba: number, count: number, flags: number, ctx: CommandContext): ScsiCommand {
    const notReady = this.#notReady();
    if (notReady) return notReady;
    if (this.writeProtected(ctx)) return this.#failed(SENSE.WRITE_PROTECTED);
    const failed = this.#access(lba, count, flags);
    if (failed) return failed;
    if (count === 0) return GOOD;
    const base = lba * this.blockSize;
    const fua = (flags & 0x08) !== 0;
    return {
      direction: "out",
      length: count * this.blockSize,
      write: wholeBlocks(this.blockSize, async (offset, bytes) => {
        try {
          await this.backing.write(base + offset, bytes);
          return "good";
        } catch (e) {
          return this.#ioFailed("write", base + offset, e, SENSE.WRITE_ERROR);
        }
      }),
      finish: () => fua ? this.#sync() : "good",
    };
  }

  #verify(lba: number, count: number, flags: number): ScsiCommand {
    const failed = this.#access(lba, count, flags);
    if (failed) return failed;
    const bytchk = (flags >> 1) & 0x03;
    // BYTCHK 0: check the medium, which is always readable here; 1: compare with the data.
    if (bytchk === 0 || count === 0) return GOOD;
    if (bytchk !== 1) return this.#failed(SENSE.INVALID_FIELD_IN_CDB);
    const base = lba * this.blockSize;
    return {
      direction: "out",
      length: count * this.blockSize,
      write: wholeBlocks(this.blockSize, async (offset, bytes) => {
        let stored: Uint8Array;
        try {
          stored = await this.backing.read(base + offset, bytes.length);
        } catch (e) {
          return this.#ioFailed("read", base + offset, e, SENSE.UNRECOVERED_READ_ERROR);
        }
        for (let i = 0; i < bytes.length; i++) {
          if (stored[i] !== bytes[i]) return this.#fail(SENSE.MISCOMPARE_DURING_VERIFY);
        }
        return "good";
      }),
      finish: () => "good",
    };
  }

  async #sync(): Promise<ScsiStatus> {
    try {
      await this.backing.sync();
      return "good";
    } catch (e) {
      log.error("Cannot flush {name}: {error}", {
        name: this.backing.name,
        error: errorMessage(e),
      });
      return this.#fail(SENSE.WRITE_ERROR);
    }
  }

  #synchronizeCache(lba: number, count: number): ScsiCommand {
    const notReady = this.#notReady();
    if (notReady) return notReady;
    if (lba + count > this.blocks) return this.#failed(SENSE.LBA_OUT_OF_RANGE);
    return { direction: "none", finish: () => this.#sync() };
  }

  #modeSense(ten: boolean, cdb: Uint8Array, allocation: number, ctx: CommandContext): ScsiCommand {
    const pc = cdb[2]! >> 6;
    const page = cdb[2]! & 0x3f;
    const subpage = cdb[3]!;
    if (pc === 3) return this.#failed(SENSE.SAVING_PARAMETERS_NOT_SUPPORTED);
    // Subpage 0xff asks for every subpage of the page; these pages have only subpage 0.
    if (subpage !== 0 && subpage !== 0xff) return this.#failed(SENSE.INVALID_FIELD_IN_CDB);
    const changeable = pc === 1;
    const pages: Uint8Array[] = [];
    if (page === 0x01 || page === 0x3f) {
      // Read-Write Error Recovery: nothing to tune, nothing changeable.
      const p = new Uint8Array(12);
      p[0] = 0x01;
      p[1] = 10;
      pages.push(p);
    }
    if (page === 0x08 || page === 0x3f) {
      // Caching: WCE=1, so that hosts send SYNCHRONIZE CACHE (which is fdatasync) to flush.
      const p = new Uint8Array(20);
      p[0] = 0x08;
      p[1] = 18;
      if (!changeable) p[2] = 0x04;
      pages.push(p);
    }
    if (pages.length === 0) return this.#failed(SENSE.INVALID_FIELD_IN_CDB);
    const header = ten ? 8 : 4;
    const total = header + pages.reduce((n, p) => n + p.length, 0);
    const data = new Uint8Array(total);
    // Device-specific parameter: WP (bit 7) and DPOFUA (bit 4, FUA is honoured).
    const deviceSpecific = (this.writeProtected(ctx) ? 0x80 : 0) | 0x10;
    if (ten) {
      new DataView(data.buffer).setUint16(0, total - 2);
      data[3] = deviceSpecific;
    } else {
      data[0] = total - 1;
      data[2] = deviceSpecific;
    }
    let o = header;
    for (const p of pages) {
      data.set(p, o);
      o += p.length;
    }
    return this.#respond(data, allocation);
  }

  #modeSelect(length: number): ScsiCommand {
    if (length === 0) return GOOD;
    // Nothing here is changeable: the parameter list is read and dropped.
    return { direction: "out", length, write: () => "good", finish: () => "good" };
  }

  #preventAllow(field: number): ScsiCommand {
    const prevent = (field & 0x01) !== 0;
    if (prevent && !this.removable) return this.#failed(SENSE.INVALID_FIELD_IN_CDB);
    return {
      direction: "none",
      finish: () => {
        this.#preventRemoval = prevent;
        return "good";
      },
    };
  }

  #startStop(field: number): ScsiCommand {
    const powerCondition = field >> 4;
    const loej = (field & 0x02) !== 0;
    const start = (field & 0x01) !== 0;
    // A power condition, or START without LOEJ: nothing to spin up or down.
    if (powerCondition !== 0 || !loej) return GOOD;
    if (!this.removable) return this.#failed(SENSE.INVALID_FIELD_IN_CDB);
    if (start) {
      return {
        direction: "none",
        finish: () => {
          if (!this.#mediumPresent) {
            this.#mediumPresent = true;
            this.#unitAttention = SENSE.NOT_READY_TO_READY_CHANGE;
          }
          return "good";
        },
      };
    }
    if (this.#preventRemoval) return this.#failed(SENSE.MEDIUM_REMOVAL_PREVENTED);
    return {
      direction: "none",
      finish: async () => {
        if (!this.#mediumPresent) return "good";
        const status = await this.#sync();
        if (status === "good") this.#mediumPresent = false;
        return status;
      },
    };
  }

  #readFormatCapacities(allocation: number): ScsiCommand {
    const data = new Uint8Array(12);
    const d = new DataView(data.buffer);
    data[3] = 8; // capacity list length: one descriptor
    d.setUint32(4, Math.min(this.blocks, 0xffffffff));
    // Descriptor type 2: formatted medium; 3: no medium present (the maximum capacity).
    d.setUint32(8, this.blockSize);
    data[8] = this.#mediumPresent ? 0x02 : 0x03;
    return this.#respond(data, allocation);
  }

  #reportLuns(selectReport: number, allocation: number, ctx: CommandContext): ScsiCommand {
    if (selectReport > 0x02 || allocation < 16) return this.#failed(SENSE.INVALID_FIELD_IN_CDB);
    const data = new Uint8Array(8 + 8 * ctx.lunCount);
    new DataView(data.buffer).setUint32(0, 8 * ctx.lunCount);
    // Peripheral device addressing: LUN n is 00 nn 00 00 00 00 00 00.
    for (let lun = 0; lun < ctx.lunCount; lun++) data[8 + 8 * lun + 1] = lun;
    return this.#respond(data, allocation);
  }
}
