/**
 * An emulated USB thumb drive: a USB Mass Storage Class device (interface class 0x08,
 * subclass 0x06 SCSI transparent command set, protocol 0x50 Bulk-Only Transport) with one
 * logical unit per backing store, at full, high (the default) or SuperSpeed, as Linux's
 * usb-storage, Windows' usbstor and macOS expect a USB stick to be; optionally with USB
 * Attached SCSI (protocol 0x62, uas.ts) as alternate setting 1, as UAS sticks offer it, which
 * keeps many commands in flight. Nothing written is lost
 * to a hang-up: a WRITE's data is in the image before its CSW says GOOD, and SYNCHRONIZE
 * CACHE, FUA, an eject, the end of a session and `close()` flush with fdatasync.
 *
 * @module
 */

import { errorMessage } from "../../util/error_message.ts";
import { getLogger } from "../../logtape.ts";
import { Speed } from "../../protocol/constants.ts";
import {
  type EndpointDescriptor,
  superSpeedCapability,
  TransferType,
  usb2ExtensionCapability,
  type UsbDescriptors,
} from "../descriptors.ts";
import { RequestType } from "../../protocol/setup_packet.ts";
import {
  type ControlTransfer,
  dataResult,
  type MaybePromise,
  OK,
  STALL,
  type TransferResult,
  UsbDevice,
  type UsbTransfer,
} from "../usb_device.ts";
import { BotRequest, type BotState, BulkOnlyTransport, MAX_LUNS } from "./bot.ts";
import type { StorageBacking } from "./image.ts";
import { ScsiLogicalUnit } from "./scsi.ts";
import { PIPE_USAGE_DESCRIPTOR, UasPipe, UasTransport } from "./uas.ts";

const log = getLogger(["usbipgw", "storage"]);

/** The drive's default IDs: pid.codes' test VID with a test PID, as the other emulations. */
export const MASS_STORAGE_IDS = { idVendor: 0x1209, idProduct: 0x0004 } as const;

/**
 * The drive's endpoints, on interface 0: bulk IN 0x81 and bulk OUT 0x02 (Bulk-Only's, and
 * UAS's data pipes), and in the UAS alternate setting the status IN and command OUT pipes.
 */
export const MassStorageEndpoint = {
  BULK_IN: 0x81,
  BULK_OUT: 0x02,
  UAS_STATUS: 0x83,
  UAS_COMMAND: 0x04,
} as const;

/** The interface protocol of USB Attached SCSI (UAS), the drive's alternate setting 1. */
export const UAS_PROTOCOL = 0x62;

/** The alternate setting of interface 0 that speaks UAS when {@linkcode MassStorageOptions.uas}. */
export const UAS_ALTERNATE = 1;

/** The mass-storage interface triple: class, subclass (SCSI), protocol (Bulk-Only). */
export const MASS_STORAGE_CLASS = {
  bInterfaceClass: 0x08,
  bInterfaceSubClass: 0x06,
  bInterfaceProtocol: 0x50,
} as const;

/** The speeds the drive can run at. */
export type MassStorageSpeed = "full" | "high" | "super";

/** Options of {@linkcode MassStorage}. */
export interface MassStorageOptions {
  /** One backing per logical unit, LUN 0 first; 1 to 16 of them. */
  units: StorageBacking[];
  /** Logical block size: 512 (the default) or 4096. */
  blockSize?: 512 | 4096;
  /** The RMB bit: a removable medium that can be ejected. Default true, as a thumb drive. */
  removable?: boolean;
  /** T10 vendor identification and USB manufacturer string, up to 8 characters; default "usbipgw". */
  vendor?: string;
  /** Product identification and USB product string, up to 16 characters; default "Thumb Drive". */
  product?: string;
  /** Product revision, up to 4 characters; default "1.00". */
  revision?: string;
  /**
   * USB serial number string and unit serial number (VPD 0x80; a LUN suffix `-N` from LUN 1
   * on), 1 to 126 printable ASCII characters. Default: 24 hex digits derived from the backing
   * names, so the same image keeps the same serial.
   */
  serial?: string;
  /** "high" (the default, 512-byte bulk packets), "super" (1024, SuperSpeed) or "full" (64). */
  speed?: MassStorageSpeed;
  /**
   * Offer USB Attached SCSI as alternate setting 1 beside Bulk-Only (alternate 0). Default
   * false. The UAS alternate has no streams: at SuperSpeed a host needs them (Linux's uas
   * refuses the device on a host without streams, vhci's case, and usb-storage takes
   * alternate 0), so UAS is a high-speed (or full-speed) feature here.
   */
  uas?: boolean;
}

const PRINTABLE = /^[\x20-\x7e]*$/;

/** FNV-1a, 64 bits: a stable default serial number from the backing names. */
function fnv64(text: string, seed: bigint): string {
  let h = seed;
  for (const byte of new TextEncoder().encode(text)) {
    h ^= BigInt(byte);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h.toString(16).toUpperCase().padStart(16, "0");
}

/**
 * A serial number from `names` (the images' paths): 24 hex digits, the form the Bulk-Only
 * Transport asks for (at least 12 of 0-9, A-F).
 *
 * @example
 * ```ts
 * import { defaultSerial } from "./storage.ts";
 * console.assert(/^[0-9A-F]{24}$/.test(defaultSerial(["/srv/stick.img"])));
 * console.assert(defaultSerial(["/a"]) !== defaultSerial(["/b"]));
 * ```
 */
export function defaultSerial(names: readonly string[]): string {
  const text = names.join("\n");
  return (fnv64(text, 0xcbf29ce484222325n) + fnv64(text, 0x84222325cbf29ce4n)).slice(0, 24);
}

/** The drive's descriptors at `speed`, with the other speed's for a USB 2.0 speed. */
export function massStorageDescriptors(
  speed: MassStorageSpeed,
  strings: { vendor: string; product: string; serial: string },
  uas = false,
): UsbDescriptors {
  /**
   * A bulk endpoint; in the UAS alternate `pipe` is its Pipe Usage descriptor's ID, and at
   * SuperSpeed the status and data pipes declare 32 streams (2^5), as UAS devices do.
   */
  const bulk = (s: MassStorageSpeed, address: number, pipe?: number): EndpointDescriptor => {
    const streams = pipe !== undefined && pipe !== UasPipe.COMMAND ? 5 : 0;
    return {
      bEndpointAddress: address,
      bmAttributes: TransferType.BULK,
      wMaxPacketSize: s === "super" ? 1024 : s === "high" ? 512 : 64,
      bInterval: 0,
      ...(s === "super"
        ? { superSpeedCompanion: { bMaxBurst: 15, bmAttributes: streams, wBytesPerInterval: 0 } }
        : {}),
      ...(pipe === undefined
        ? {}
        : { extra: [new Uint8Array([4, PIPE_USAGE_DESCRIPTOR, pipe, 0])] }),
    };
  };
  const botAlternate = (s: MassStorageSpeed) => ({
    bInterfaceNumber: 0,
    bAlternateSetting: 0,
    ...MASS_STORAGE_CLASS,
    endpoints: [
      bulk(s, MassStorageEndpoint.BULK_IN),
      bulk(s, MassStorageEndpoint.BULK_OUT),
    ],
  });
  const uasAlternate = (s: MassStorageSpeed) => ({
    bInterfaceNumber: 0,
    bAlternateSetting: UAS_ALTERNATE,
    ...MASS_STORAGE_CLASS,
    bInterfaceProtocol: UAS_PROTOCOL,
    endpoints: [
      bulk(s, MassStorageEndpoint.UAS_COMMAND, UasPipe.COMMAND),
      bulk(s, MassStorageEndpoint.UAS_STATUS, UasPipe.STATUS),
      bulk(s, MassStorageEndpoint.BULK_IN, UasPipe.DATA_IN),
      bulk(s, MassStorageEndpoint.BULK_OUT, UasPipe.DATA_OUT),
    ],
  });
  const configuration = (s: MassStorageSpeed) => [{
    bConfigurationValue: 1,
    bmAttributes: 0x80,
    // 100 mA in 2 mA units; SuperSpeed counts in 8 mA units (96 mA).
    bMaxPower: s === "super" ? 12 : 50,
    interfaces: uas ? [botAlternate(s), uasAlternate(s)] : [botAlternate(s)],
  }];
  const device = {
    bcdUSB: speed === "super" ? 0x0300 : 0x0200,
    bDeviceClass: 0,
    bDeviceSubClass: 0,
    bDeviceProtocol: 0,
    // SuperSpeed gives ep0's packet size as a power of two: 2^9 = 512.
    bMaxPacketSize0: speed === "super" ? 9 : 64,
    idVendor: MASS_STORAGE_IDS.idVendor,
    idProduct: MASS_STORAGE_IDS.idProduct,
    bcdDevice: 0x0100,
    iManufacturer: strings.vendor,
    iProduct: strings.product,
    iSerialNumber: strings.serial,
  };
  if (speed === "super") {
    return {
      device,
      configurations: configuration("super"),
      capabilities: [usb2ExtensionCapability(0x02), superSpeedCapability()],
    };
  }
  return {
    device,
    configurations: configuration(speed),
    otherSpeedConfigurations: configuration(speed === "high" ? "full" : "high"),
  };
}

const SPEED_VALUES = { full: Speed.FULL, high: Speed.HIGH, super: Speed.SUPER } as const;

/** The options of a drive with their defaults applied; the serial still may be absent. */
export interface CheckedMassStorageOptions {
  blockSize: 512 | 4096;
  removable: boolean;
  vendor: string;
  product: string;
  revision: string;
  serial: string | undefined;
  speed: MassStorageSpeed;
  uas: boolean;
}

/** A drive's option that is out of range: its name in {@linkcode MassStorageOptions}, and why. */
export interface MassStorageProblem {
  key: "blockSize" | "speed" | "vendor" | "product" | "revision" | "serial";
  /** What is wrong and what is accepted: `vendor "FAR TOO LONG" must be 1..8 printable ...`. */
  message: string;
}

/** The texts of a drive: the key, and the fewest and most printable ASCII characters. */
const TEXT_LENGTHS = [
  ["vendor", 1, 8],
  ["product", 1, 16],
  ["revision", 0, 4],
  ["serial", 1, 126],
] as const;

/**
 * The first option of a drive but its units that is out of range, in the order
 * {@linkcode MassStorageOptions} lists them, or `undefined` when every one is in range.
 *
 * @example
 * ```ts
 * import { massStorageProblem } from "./storage.ts";
 * console.assert(massStorageProblem({ vendor: "ACME" }) === undefined);
 * const p = massStorageProblem({ product: "ok", revision: "1.000" });
 * console.assert(p?.key === "revision");
 * console.assert(p?.message === 'revision "1.000" must be 0..4 printable ASCII characters');
 * ```
 */
export function massStorageProblem(
  options: Omit<MassStorageOptions, "units">,
): MassStorageProblem | undefined {
  const { blockSize = 512, speed = "high" } = options;
  if (blockSize !== 512 && blockSize !== 4096) {
    return { key: "blockSize", message: `block size ${blockSize}, expected 512 or 4096` };
  }
  if (!(speed in SPEED_VALUES)) {
    return { key: "speed", message: `speed "${speed}", expected full, high or super` };
  }
  for (const [key, min, max] of TEXT_LENGTHS) {
    const text = options[key];
    if (text !== undefined && (!PRINTABLE.test(text) || text.length > max || text.length < min)) {
      return { key, message: `${key} "${text}" must be ${min}..${max} printable ASCII characters` };
    }
  }
  return undefined;
}

/**
 * Checks every option of a drive but its units and applies the defaults; throws `RangeError`
 * for a value out of range (the {@linkcode massStorageProblem}). The CLI calls it before it
 * opens (or creates) any image.
 *
 * @example
 * ```ts
 * import { checkMassStorageOptions } from "./storage.ts";
 * console.assert(checkMassStorageOptions({}).product === "Thumb Drive");
 * let refused = false;
 * try {
 *   checkMassStorageOptions({ vendor: "FAR TOO LONG" });
 * } catch (e) {
 *   refused = e instanceof RangeError;
 * }
 * console.assert(refused);
 * ```
 */
export function checkMassStorageOptions(
  options: Omit<MassStorageOptions, "units">,
): CheckedMassStorageOptions {
  const problem = massStorageProblem(options);
  if (problem !== undefined) {
    throw new RangeError(`Cannot create the mass-storage device: ${problem.message}`);
  }
  return {
    blockSize: options.blockSize ?? 512,
    removable: options.removable ?? true,
    vendor: options.vendor ?? "usbipgw",
    product: options.product ?? "Thumb Drive",
    revision: options.revision ?? "1.00",
    serial: options.serial,
    speed: options.speed ?? "high",
    uas: options.uas ?? false,
  };
}
const CLASS_INTERFACE_OUT = RequestType.TYPE_CLASS | RequestType.RECIPIENT_INTERFACE;
const CLASS_INTERFACE_IN = RequestType.DIR_IN | CLASS_INTERFACE_OUT;

/**
 * The thumb drive. The images are opened by the caller ({@linkcode DiskImage.open}) and
 * closed by {@linkcode MassStorage.close}; every import finds the medium loaded and unlocked,
 * and the end of a session flushes the images.
 *
 * @example A 1 MiB drive on a sparse temporary image
 * ```ts
 * import { DiskImage } from "./image.ts";
 * import { MassStorage } from "./storage.ts";
 * const path = await Deno.makeTempFile();
 * const drive = new MassStorage({ units: [await DiskImage.open({ path, size: 1 << 20 })] });
 * console.assert(drive.summary().interfaces[0]?.bInterfaceClass === 0x08);
 * console.assert(drive.units[0]?.blocks === 2048);
 * await drive.close();
 * await Deno.remove(path);
 * ```
 */
export class MassStorage extends UsbDevice {
  /** The logical units, LUN 0 first. */
  readonly units: readonly ScsiLogicalUnit[];
  readonly #bot: BulkOnlyTransport;
  /** The UAS alternate's transport, when the drive offers it. */
  readonly #uas: UasTransport | undefined;
  #closing: Promise<void> | undefined;

  /** Builds the drive; throws `RangeError` for an option out of range. */
  constructor(options: MassStorageOptions) {
    const { units } = options;
    if (units.length < 1 || units.length > MAX_LUNS) {
      throw new RangeError(
        `Cannot create the mass-storage device: ${units.length} logical units, expected 1..16`,
      );
    }
    const checked = checkMassStorageOptions(options);
    const { blockSize, vendor, product, revision, speed, uas } = checked;
    const serial = checked.serial ?? defaultSerial(units.map((u) => u.name));
    super(massStorageDescriptors(speed, { vendor, product, serial }, uas), SPEED_VALUES[speed]);
    this.units = units.map((backing, lun) => {
      const unit = new ScsiLogicalUnit({
        backing,
        blockSize,
        removable: checked.removable,
        vendor,
        product,
        revision,
        serial: lun === 0 ? serial : `${serial}-${lun}`,
      });
      const rest = backing.size % blockSize;
      if (rest !== 0) {
        log.warn(
          "{name}: {size} bytes is not a whole number of {block}-byte blocks; the last {rest} bytes are not served",
          { name: backing.name, size: backing.size, block: blockSize, rest },
        );
      }
      log.info("LUN {lun}: {name}, {blocks} blocks of {block} bytes, {access}", {
        lun,
        name: backing.name,
        blocks: unit.blocks,
        block: blockSize,
        access: backing.readOnly ? "read-only" : "read-write",
      });
      return unit;
    });
    const lunCount = this.units.length;
    const command = (lun: number, cdb: Uint8Array, readOnly: boolean) =>
      this.units[lun]!.command(cdb, { readOnly, lunCount });
    this.#bot = new BulkOnlyTransport({
      lunCount,
      command,
      halt: (dirIn) =>
        this.setHalt(dirIn ? MassStorageEndpoint.BULK_IN : MassStorageEndpoint.BULK_OUT, true),
    });
    this.#uas = uas
      ? new UasTransport({
        lunCount,
        command,
        resetUnit: (lun) => this.units[lun]!.logicalUnitReset(),
      })
      : undefined;
  }

  /** Whether the host switched interface 0 to the UAS alternate setting. */
  get usingUas(): boolean {
    return this.#uas !== undefined && this.alternateSetting(0) === UAS_ALTERNATE;
  }

  /** The Bulk-Only Transport's phase. */
  get transportState(): BotState {
    return this.#bot.state;
  }

  /** Each import finds every medium loaded and unlocked, with no old sense data. */
  override imported(): void {
    super.imported();
    for (const unit of this.units) unit.powerOn();
  }

  /** The end of a session: work under way finishes, then every image is flushed. */
  override async released(): Promise<void> {
    await this.#idle();
    const most = this.#uas?.takeMostInFlight() ?? 0;
    if (most > 0) log.info("UAS: up to {most} commands were in flight at once", { most });
    this.reset();
    await this.flush();
  }

  /** Flushes every image (fdatasync); a failure is logged and rethrown. */
  async flush(): Promise<void> {
    const results = await Promise.allSettled(this.units.map((u) => u.backing.sync()));
    const failed = results.find((r) => r.status === "rejected");
    for (const [i, r] of results.entries()) {
      if (r.status === "rejected") {
        log.error("Cannot flush {name}: {error}", {
          name: this.units[i]!.backing.name,
          error: errorMessage(r.reason),
        });
      }
    }
    if (failed) throw failed.reason;
  }

  /**
   * Takes the drive away for good: its session ends (the device is gone), work under way
   * finishes, and every image is flushed, unlocked and closed.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.disconnect("The mass-storage device was closed");
      await this.#idle();
      const results = await Promise.allSettled(this.units.map((u) => u.backing.close()));
      const failed = results.find((r) => r.status === "rejected");
      if (failed) throw failed.reason;
    })();
    return this.#closing;
  }

  /** Resolves once neither transport has work under way. */
  async #idle(): Promise<void> {
    await Promise.all([this.#bot.idle(), this.#uas?.idle()]);
  }

  /**
   * In alternate setting 0 bulk IN and OUT go to the Bulk-Only Transport (CBW, data, CSW); in
   * the UAS alternate the four pipes go to UAS. Other endpoints stall.
   */
  protected override handleData(
    t: UsbTransfer,
    ep: EndpointDescriptor,
  ): MaybePromise<TransferResult> {
    if (this.#uas !== undefined && this.usingUas) {
      switch (ep.bEndpointAddress) {
        case MassStorageEndpoint.UAS_COMMAND:
          return this.#uas.handleCommand(t);
        case MassStorageEndpoint.UAS_STATUS:
          return this.#uas.handleStatus(t);
        case MassStorageEndpoint.BULK_IN:
          return this.#uas.handleDataIn(t);
        case MassStorageEndpoint.BULK_OUT:
          return this.#uas.handleDataOut(t);
      }
      return STALL;
    }
    if (ep.bEndpointAddress === MassStorageEndpoint.BULK_IN) return this.#bot.handleIn(t);
    if (ep.bEndpointAddress === MassStorageEndpoint.BULK_OUT) return this.#bot.handleOut(t);
    return STALL;
  }

  /**
   * Bulk-Only Mass Storage Reset and Get Max LUN (BOT §3.1, §3.2) to interface 0 of the
   * active configuration; any other request stalls.
   */
  protected override handleControl(c: ControlTransfer): MaybePromise<TransferResult> {
    const s = c.setup;
    // The class requests go to interface 0 of the active configuration (BOT §3.1, §3.2).
    if (this.configurationValue === 0 || s.wIndex !== 0 || s.wValue !== 0) return STALL;
    if (s.bRequest === BotRequest.BULK_ONLY_MASS_STORAGE_RESET) {
      if (s.bmRequestType !== CLASS_INTERFACE_OUT || s.wLength !== 0) return STALL;
      this.#bot.reset();
      return OK;
    }
    if (s.bRequest === BotRequest.GET_MAX_LUN) {
      if (s.bmRequestType !== CLASS_INTERFACE_IN || s.wLength < 1) return STALL;
      return dataResult(new Uint8Array([this.units.length - 1]));
    }
    return STALL;
  }

  /**
   * After an invalid CBW both bulk endpoints stay halted, whatever CLEAR_FEATURE says, until
   * the Bulk-Only Mass Storage Reset (BOT §6.6.1; the Reset Recovery of §5.3.4).
   */
  protected override setHalt(address: number, halted: boolean): void {
    const bulk = address === MassStorageEndpoint.BULK_IN ||
      address === MassStorageEndpoint.BULK_OUT;
    if (!halted && bulk && this.#bot.state === "needs_reset") return;
    super.setHalt(address, halted);
  }

  /** A bus reset drops the commands under way: the transport waits for the next CBW or IU. */
  protected override onReset(): void {
    this.#resetTransports();
  }

  /** SET_CONFIGURATION drops the commands under way. */
  protected override onConfigurationChanged(_value: number): void {
    this.#resetTransports();
  }

  /** SET_INTERFACE (Bulk-Only or UAS) drops the commands under way. */
  protected override onInterfaceChanged(_ifnum: number, _alt: number): void {
    this.#resetTransports();
  }

  #resetTransports(): void {
    this.#bot.reset();
    this.#uas?.reset();
  }
}
