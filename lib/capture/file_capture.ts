/**
 * A capture into a pcapng file (`serve --capture FILE`, or `capture` in the configuration). The
 * file is created with mode 0600 (it holds everything the devices moved: typed keys, disk
 * blocks). Records are packed into reused 4 MiB chunks ({@linkcode BlockPacker}: one copy of
 * the data per record, no allocation) and written in order by one writer in the background, a
 * full chunk at once and a partial one once its oldest record has waited 0.1 s; a full chunk
 * goes to a regular file with `O_DIRECT` where that works ({@linkcode CaptureFile}). Each write
 * holds whole blocks only, so a file cut off by kill -9 ends on a block boundary and Wireshark
 * opens it. Past `maxBytes` a regular file is rotated: FILE becomes FILE.1 (replacing an older
 * FILE.1) and a new FILE starts with the header and the descriptors of the devices imported at
 * that moment; a pipe or a device (`/dev/stdout`) is never rotated, which would rename it. A
 * write error stops the capture with one error line and leaves the file ending with its last
 * whole block; serving goes on.
 *
 * @module
 */

import { getLogger } from "../logtape.ts";
import { errorMessage } from "../util/error_message.ts";
import type { ExportedDevice } from "../server/exported_device.ts";
import { BlockPacker, type PackedView } from "./block_packer.ts";
import { Capture, type CaptureOutput, type CaptureSource } from "./capture.ts";
import { CaptureFile, DIRECT_ALIGNMENT } from "./capture_file.ts";

const log = getLogger(["usbipgw", "capture"]);

/** The default size at which a capture file is rotated: 1 GiB. */
export const DEFAULT_CAPTURE_MAX_BYTES = 1024 ** 3;

/**
 * A record waits at most about this long in a chunk that is not full before it is written: the
 * file trails the traffic by at most about this much (what a kill -9 can lose), and a busy
 * capture, whose chunks fill sooner, writes 4 MiB at a time.
 */
const FLUSH_MS = 100;

/** Bytes waiting for the disk beyond which records are dropped (counted and logged). */
const MAX_QUEUED = 64 * 1024 * 1024;

/** Options of {@linkcode FileCapture.open}. */
export interface FileCaptureOptions {
  /** The file to write (created or truncated, mode 0600). */
  path: string;
  /** Most bytes of data kept per record; all by default. */
  snaplen?: number;
  /** The size at which the file is rotated to `path.1`; Infinity: never (nor is a pipe or device). */
  maxBytes?: number;
  /** Which devices' traffic to record; all when absent. */
  includes?: (exported: ExportedDevice) => boolean;
  /** What is captured, for the first line of the file and logs: "all devices", "1-1". */
  what?: string;
  /**
   * Continue the file instead of replacing it: the capture starts a new pcapng section (its own
   * header and interfaces, which Wireshark reads as one file) after what the file holds.
   */
  append?: boolean;
  /** How long a record may wait in memory before it is written, ms (100 by default). */
  flushMs?: number;
}

/** The smallest size limit with direct writes: 16 MiB. */
const MIN_DIRECT_MAX_BYTES = 16 * 1024 * 1024;

/**
 * Whether a capture with this size limit writes full chunks with `O_DIRECT`: not for a limit
 * so small that the padding would matter.
 */
function directFor(maxBytes: number | undefined): boolean {
  return (maxBytes ?? DEFAULT_CAPTURE_MAX_BYTES) >= MIN_DIRECT_MAX_BYTES;
}

/** A rotation, queued between the blocks of the old file and those of the new one. */
const ROTATE = Symbol("rotate");

/**
 * A running capture into a file; see the module documentation.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { FileCapture } from "./file_capture.ts";
 * import { serverSource } from "./capture.ts";
 * import { UsbipServer } from "../server/server.ts";
 * const server = new UsbipServer();
 * const path = await Deno.makeTempFile({ suffix: ".pcapng" });
 * const file = await FileCapture.open(serverSource(server), { path });
 * await file.close();
 * assert((await Deno.stat(path)).size > 0, "the header and the first line");
 * await Deno.remove(path);
 * await server.close();
 * ```
 */
export class FileCapture implements CaptureOutput {
  /** The capture file. */
  readonly path: string;
  #file: CaptureFile;
  #capture: Capture;
  /** The size past which the file rotates. */
  #maxBytes: number;
  #packer: BlockPacker;
  /** What goes before the blocks in the packer: the old file's last blocks and a rotation. */
  #queue: (PackedView | typeof ROTATE)[] = [];
  /**
   * Bytes of the current file, written or queued: its blocks, the padding of its whole chunks,
   * and for each of those room for the padding its direct write may need before it.
   */
  #size = 0;
  /** Bytes of the current file known to be written whole (a failed write is cut back to it). */
  #good = 0;
  #pump: Promise<void> | undefined;
  /** Writes the chunk being filled once its oldest record has waited `#flushMs`. */
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When the oldest block of the chunk being filled that was not written yet was reserved. */
  #fillingSince = 0;
  /** Set when the next run of the writer also writes the chunk being filled. */
  #flushAll = false;
  #flushMs: number;
  #starting = false;
  #failed: string | undefined;
  #closed = false;

  private constructor(file: CaptureFile, source: CaptureSource, options: FileCaptureOptions) {
    this.path = options.path;
    this.#file = file;
    this.#flushMs = options.flushMs ?? FLUSH_MS;
    this.#packer = new BlockPacker(undefined, file.direct ? DIRECT_ALIGNMENT : 0);
    // A pipe or a device (`/dev/stdout`) has no size to limit, and a rotation would rename it.
    this.#maxBytes = file.regular ? options.maxBytes ?? DEFAULT_CAPTURE_MAX_BYTES : Infinity;
    this.#capture = new Capture(source, this, {
      maxQueued: MAX_QUEUED,
      label: `capture to ${options.path}`,
      ...(options.snaplen !== undefined ? { snaplen: options.snaplen } : {}),
      ...(options.includes !== undefined ? { includes: options.includes } : {}),
    });
  }

  /**
   * Creates the file and starts capturing `source`'s traffic into it. Rejects when the file
   * cannot be created.
   */
  static async open(source: CaptureSource, options: FileCaptureOptions): Promise<FileCapture> {
    const append = options.append ?? false;
    const file = await CaptureFile.open(options.path, {
      append,
      direct: directFor(options.maxBytes),
    }).catch((e) => {
      throw new Error(`Cannot create the capture file ${options.path}: ${errorMessage(e)}`, {
        cause: e,
      });
    });
    const capture = new FileCapture(file, source, options);
    // Whole blocks end where the file does: a failed write is cut back to here.
    capture.#size = file.size;
    capture.#good = file.size;
    capture.#starting = true;
    capture.#capture.start(`usbipgw capture of ${options.what ?? "all devices"} started`);
    capture.#starting = false;
    log.info("Capturing the traffic of {what} into {path}{how}", {
      what: options.what ?? "all devices",
      path: options.path,
      how: append ? " (a new section after what it holds)" : "",
    });
    return capture;
  }

  /** Why capturing stopped early, if it did. */
  get failed(): string | undefined {
    return this.#failed;
  }

  /** Records written and dropped so far. */
  get counts(): { written: number; dropped: number } {
    return { written: this.#capture.written, dropped: this.#capture.dropped };
  }

  /** Bytes waiting for the disk. */
  get pending(): number {
    return this.#packer.pending;
  }

  /** Bytes of the current file written with `O_DIRECT` (the rest went through the page cache). */
  get directBytes(): number {
    return this.#file.directBytes;
  }

  /**
   * Space for one whole block; rotates the file first when the block would take it past the
   * size. After a failure the space is scratch that is never written.
   */
  reserve(size: number): Uint8Array {
    if (this.#failed !== undefined || this.#closed) return new Uint8Array(size);
    // Room for the padding of the chunk being filled and for the one its direct write may need.
    const headroom = 2 * this.#packer.maxPadding;
    if (!this.#starting && this.#size > 0 && this.#size + size + headroom > this.#maxBytes) {
      for (let v = this.#packer.take(); v !== undefined; v = this.#packer.take()) {
        this.#queue.push(v);
      }
      this.#queue.push(ROTATE);
      this.#size = 0;
      this.#starting = true;
      try {
        this.#capture.begin(`usbipgw capture continued from ${this.path}.1`);
      } finally {
        this.#starting = false;
      }
    }
    const { padding, wholeChunks } = this.#packer;
    const space = this.#packer.reserve(size);
    if (this.#packer.filling === size) this.#fillingSince = performance.now();
    this.#size += size + this.#packer.padding - padding +
      (this.#packer.wholeChunks - wholeChunks) * this.#packer.maxPadding;
    if (this.#packer.hasFull || this.#queue.length > 0) this.#kick();
    else this.#arm();
    return space;
  }

  /**
   * Writes the chunk being filled once its oldest block has waited `flushMs`, unless the writer
   * runs (it arms this again as it ends) or is due already. A busy capture fills its chunks
   * sooner and writes each whole: taking blocks out of a chunk being filled sends them through
   * the page cache.
   */
  #arm(): void {
    if (this.#timer !== undefined || this.#pump !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      // The chunk that was being filled when this was armed may have filled since.
      if (this.#packer.filling > 0 && !this.#packer.hasFull && this.#flushDue() >= 1) {
        return this.#arm();
      }
      this.#flushAll = true;
      this.#kick();
    }, this.#flushDue());
  }

  /** Milliseconds until the oldest block of the chunk being filled has waited `flushMs`. */
  #flushDue(): number {
    if (this.#packer.filling === 0) return this.#flushMs;
    return Math.max(0, this.#fillingSince + this.#flushMs - performance.now());
  }

  /** Starts the writer unless it runs; it starts again if blocks came as it finished. */
  #kick(): void {
    if (this.#pump !== undefined) return;
    this.#pump = this.#run().finally(() => {
      this.#pump = undefined;
      if (this.#failed !== undefined) return;
      if (this.#queue.length > 0 || this.#packer.hasFull || this.#flushAll) this.#kick();
      else if (this.#packer.pending > 0) this.#arm();
    });
  }

  /** Stops capturing, writes what is queued and closes the file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#capture.stop();
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#flushAll = true;
    this.#kick();
    while (this.#pump !== undefined) await this.#pump;
    this.#file.close();
    if (this.#failed === undefined) {
      log.info("Capture to {path} ended: {written} record(s) written, {dropped} dropped", {
        path: this.path,
        ...this.counts,
      });
    }
  }

  /**
   * Writes the queue, then the full chunks, in order, until there are none; and the chunk being
   * filled when its time has come (or at the close).
   */
  async #run(): Promise<void> {
    // The block just reserved is filled before this goes on.
    await Promise.resolve();
    // The chunk being filled is written once per flush, with what it holds now; blocks that
    // come while this runs wait for their chunk to fill (or for the next flush).
    let partial = this.#flushAll;
    this.#flushAll = false;
    try {
      while (true) {
        let next = this.#queue.shift() ?? this.#packer.takeFull();
        if (next === undefined && partial) {
          partial = false;
          next = this.#packer.take();
        }
        if (next === undefined) break;
        if (next === ROTATE) {
          await this.#rotate();
          continue;
        }
        try {
          await this.#file.write(next.bytes, next.aligned);
          this.#good = this.#file.size;
        } finally {
          next.release();
        }
      }
    } catch (e) {
      await this.#fail(e);
    }
  }

  async #rotate(): Promise<void> {
    this.#file.close();
    await Deno.rename(this.path, `${this.path}.1`);
    this.#file = await CaptureFile.open(this.path, { direct: this.#packer.alignment > 0 });
    this.#good = 0;
    log.info("Capture file {path} reached {max} bytes: moved to {path}.1, a new one started", {
      path: this.path,
      max: this.#maxBytes,
    });
  }

  /** Stops capturing after a failed write or rotation, cutting the file back to whole blocks. */
  async #fail(e: unknown): Promise<void> {
    this.#failed = errorMessage(e);
    log.error("Capture to {path} stopped: {error}; serving goes on", {
      path: this.path,
      error: this.#failed,
    });
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#capture.stop();
    for (const item of this.#queue.splice(0)) if (item !== ROTATE) item.release();
    this.#packer.clear();
    try {
      await this.#file.truncate(this.#good);
    } catch {
      // Nothing more can be done for the file.
    }
    this.#file.close();
  }
}
