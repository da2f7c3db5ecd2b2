// A minimal Bulk-Only Transport host for the thumb-drive tests: CBWs, data and CSWs as
// UsbTransfers straight to the device, a RAM backing with fault injection, temp images.
import { assert, assertEquals } from "@std/assert";
import {
  MassStorage,
  type MassStorageOptions,
  type StorageBacking,
  type TransferResult,
} from "../../../mod.ts";
import {
  type CommandStatusWrapper,
  decodeCsw,
  encodeCbw,
} from "../../../lib/devices/storage/bot.ts";
import { MassStorageEndpoint } from "../../../lib/devices/storage/storage.ts";
import { control, data, setConfiguration } from "../_transfers.ts";

export const IN = MassStorageEndpoint.BULK_IN;
export const OUT = MassStorageEndpoint.BULK_OUT;

/** A RAM disk whose reads, writes and flushes can be made to fail; it counts flushes. */
export class MemoryBacking implements StorageBacking {
  readonly name: string;
  readonly size: number;
  readonly readOnly: boolean;
  readonly bytes: Uint8Array;
  syncs = 0;
  writes: { offset: number; length: number }[] = [];
  failReads = false;
  failWrites = false;
  failSync = false;
  closed = false;
  constructor(size: number, options: { readOnly?: boolean; name?: string; fill?: number } = {}) {
    this.size = size;
    this.readOnly = options.readOnly ?? false;
    this.name = options.name ?? "ram";
    this.bytes = new Uint8Array(size).fill(options.fill ?? 0);
  }
  /** Reads into `into` when it is given, as a disk image does. */
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    if (this.failReads) return Promise.reject(new Error("EIO (injected)"));
    const bytes = this.bytes.subarray(offset, offset + length);
    if (into?.length !== length) return Promise.resolve(bytes.slice());
    into.set(bytes);
    return Promise.resolve(into);
  }
  write(offset: number, data: Uint8Array): Promise<void> {
    if (this.failWrites) return Promise.reject(new Error("No space left on device (injected)"));
    assert(!this.readOnly, "a write reached a read-only backing");
    this.writes.push({ offset, length: data.length });
    this.bytes.set(data, offset);
    return Promise.resolve();
  }
  sync(): Promise<void> {
    if (this.failSync) return Promise.reject(new Error("EIO (injected)"));
    this.syncs++;
    return Promise.resolve();
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

/** A drive on RAM backings, configured (SET_CONFIGURATION 1) and imported. */
export async function ramDrive(
  options: Partial<MassStorageOptions> & { blocks?: number } = {},
): Promise<{ drive: MassStorage; ram: MemoryBacking[]; host: BotHost }> {
  const ram = (options.units as MemoryBacking[] | undefined) ??
    [new MemoryBacking((options.blocks ?? 64) * (options.blockSize ?? 512))];
  const drive = new MassStorage({ ...options, units: ram });
  drive.imported();
  assertEquals((await setConfiguration(drive, 1)).status, "ok");
  return { drive, ram, host: new BotHost(drive) };
}

/** The CDB of READ(10)/WRITE(10)/VERIFY(10)-shaped commands. */
export function cdb10(op: number, lba: number, count: number, flags = 0): Uint8Array {
  const b = new Uint8Array(10);
  const v = new DataView(b.buffer);
  b[0] = op;
  b[1] = flags;
  v.setUint32(2, lba);
  v.setUint16(7, count);
  return b;
}

/** The CDB of READ(16)/WRITE(16)/SYNCHRONIZE CACHE(16)-shaped commands. */
export function cdb16(op: number, lba: bigint, count: number, flags = 0): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  b[0] = op;
  b[1] = flags;
  v.setBigUint64(2, lba);
  v.setUint32(10, count);
  return b;
}

/** A recognisable pattern: byte i of block n. */
export function pattern(length: number, seed = 1): Uint8Array {
  return new Uint8Array(length).map((_, i) => (i * 7 + seed * 13 + (i >> 9)) & 0xff);
}

export interface CommandOptions {
  /** Host expects this many bytes in (default when neither is given: no data). */
  in?: number;
  /** Host sends these bytes. */
  out?: Uint8Array;
  lun?: number;
  readOnly?: boolean;
  /** Override the host's dCBWDataTransferLength and direction (for the thirteen cases). */
  hostLength?: number;
  hostDirIn?: boolean;
}

/** The device side as the Linux usb-storage host drives it. */
export class BotHost {
  readonly drive: MassStorage;
  tag = 0;
  constructor(drive: MassStorage) {
    this.drive = drive;
  }

  cbw(
    cdb: Uint8Array,
    hostLength: number,
    dirIn: boolean,
    lun = 0,
    readOnly = false,
  ): Promise<TransferResult> {
    this.tag++;
    return data(this.drive, OUT & 0x0f, false, {
      data: encodeCbw({ tag: this.tag, dataTransferLength: hostLength, dirIn, lun, cdb }),
      readOnly,
    });
  }

  in(length: number, signal?: AbortSignal): Promise<TransferResult> {
    return data(this.drive, IN & 0x0f, true, { length, ...(signal ? { signal } : {}) });
  }

  out(bytes: Uint8Array, signal?: AbortSignal, readOnly = false): Promise<TransferResult> {
    return data(this.drive, OUT & 0x0f, false, {
      data: bytes,
      readOnly,
      ...(signal ? { signal } : {}),
    });
  }

  /** Reads the CSW; after a stall, clears the halt and reads again, as usb-storage does. */
  async csw(): Promise<CommandStatusWrapper & { stalledFirst: boolean }> {
    let r = await this.in(13);
    let stalledFirst = false;
    if (r.status === "stall") {
      stalledFirst = true;
      assertEquals((await this.clearHalt(IN)).status, "ok");
      r = await this.in(13);
    }
    assertEquals(r.status, "ok", "the CSW read failed");
    const csw = decodeCsw(r.data!);
    assertEquals(csw.tag, this.tag, "the CSW tag is not the CBW's");
    return { ...csw, stalledFirst };
  }

  clearHalt(address: number): Promise<TransferResult> {
    return control(this.drive, {
      bmRequestType: 0x02,
      bRequest: 1,
      wValue: 0,
      wIndex: address,
      wLength: 0,
    });
  }

  async endpointHalted(address: number): Promise<boolean> {
    const r = await control(this.drive, {
      bmRequestType: 0x82,
      bRequest: 0,
      wValue: 0,
      wIndex: address,
      wLength: 2,
    });
    return r.data?.[0] === 1;
  }

  /** Bulk-Only Mass Storage Reset, then CLEAR_FEATURE(ENDPOINT_HALT) on IN and OUT. */
  async resetRecovery(): Promise<void> {
    const r = await control(this.drive, {
      bmRequestType: 0x21,
      bRequest: 0xff,
      wValue: 0,
      wIndex: 0,
      wLength: 0,
    });
    assertEquals(r.status, "ok");
    assertEquals((await this.clearHalt(IN)).status, "ok");
    assertEquals((await this.clearHalt(OUT)).status, "ok");
  }

  /**
   * One command through CBW, data and CSW, the way usb-storage does it: a stalled data
   * transfer is followed by CLEAR_FEATURE(HALT), then the CSW.
   */
  async command(cdb: Uint8Array, o: CommandOptions = {}): Promise<{
    data: Uint8Array;
    dataStatus: string | undefined;
    csw: CommandStatusWrapper & { stalledFirst: boolean };
  }> {
    const dirIn = o.hostDirIn ?? (o.out === undefined);
    const length = o.hostLength ?? (o.out?.length ?? o.in ?? 0);
    assertEquals(
      (await this.cbw(cdb, length, dirIn, o.lun ?? 0, o.readOnly ?? false)).status,
      "ok",
    );
    let bytes: Uint8Array = new Uint8Array(0);
    let dataStatus: string | undefined;
    if (length > 0) {
      const r = dirIn ? await this.in(length) : await this.out(o.out!, undefined, o.readOnly);
      dataStatus = r.status;
      if (r.status === "stall") {
        assertEquals((await this.clearHalt(dirIn ? IN : OUT)).status, "ok");
      }
      bytes = r.data ?? new Uint8Array(0);
    }
    return { data: bytes, dataStatus, csw: await this.csw() };
  }

  /** REQUEST SENSE: [key, asc, ascq]. */
  async sense(lun = 0): Promise<[number, number, number]> {
    const r = await this.command(new Uint8Array([0x03, 0, 0, 0, 18, 0]), { in: 18, lun });
    assertEquals(r.csw.status, 0);
    return [r.data[2]! & 0x0f, r.data[12]!, r.data[13]!];
  }
}

/** A temporary image file with `bytes` in it (or empty), removed by `remove()`. */
export async function tempImage(
  bytes?: Uint8Array,
): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await Deno.makeTempFile({ prefix: "usbipgw-storage-", suffix: ".img" });
  if (bytes) await Deno.writeFile(path, bytes);
  return { path, remove: () => Deno.remove(path).catch(() => {}) };
}
