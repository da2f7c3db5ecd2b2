/**
 * The file a capture writes: whole pcapng blocks appended in order. A regular file also gets a
 * second descriptor opened with `O_DIRECT`, and a view that is aligned in memory and in length
 * (a whole chunk of the `BlockPacker`, padded) goes through it, from the capture's memory
 * to the disk without a copy into the page cache. A capture writes hundreds of MB/s that nobody
 * reads back soon; through the page cache that is the kernel's copy of every byte into fresh
 * pages (and on a virtual machine whose host takes freed memory back, a fault on each of them),
 * while a direct write hands the buffer to the device (open(2), "O_DIRECT").
 *
 * Everything else (the header, a partial chunk flushed on time, a large record, any file that
 * is not a regular one, a file system without `O_DIRECT`) is written through the page cache.
 * Before a direct write at an unaligned offset, a padding block takes the file to the
 * alignment; every write holds whole blocks, so the file ends on a block boundary whatever
 * stops the process.
 *
 * @module
 */

import { getLogger } from "../logtape.ts";
import { errorMessage } from "../util/error_message.ts";
import { canAlignMemory } from "../util/aligned_bytes.ts";
import { DirectFile } from "../ffi/direct_file.ts";
import { Errno, OsError } from "../ffi/os_error.ts";
import { paddingLength, writePaddingBlock } from "./pcapng.ts";

const log = getLogger(["usbipgw", "capture"]);

/**
 * The alignment of direct writes: a multiple of every logical block size Linux block devices
 * have in practice (512 and 4096; queue/logical_block_size in sysfs).
 */
export const DIRECT_ALIGNMENT = 4096;

/** Options of {@linkcode CaptureFile.open}. */
export interface CaptureFileOptions {
  /** Continue after what the file holds instead of truncating it. */
  append?: boolean;
  /** Try `O_DIRECT` for aligned writes (default true; it is used where it works). */
  direct?: boolean;
}

/** A capture's output file; see the module documentation. */
export class CaptureFile {
  /** The file's path. */
  readonly path: string;
  /** A regular file (not a pipe or a device): one that can be rotated and written directly. */
  readonly regular: boolean;
  #file: Deno.FsFile;
  /** The same file opened with O_DIRECT, while direct writes work. */
  #direct: DirectFile | undefined;
  /** Where the next block goes; every byte before it is written. */
  #offset: number;
  /** The buffered descriptor's position is not `#offset` (direct writes moved the end). */
  #seek = false;
  #directBytes = 0;

  private constructor(
    path: string,
    regular: boolean,
    file: Deno.FsFile,
    direct: DirectFile | undefined,
    size: number,
  ) {
    this.path = path;
    this.regular = regular;
    this.#file = file;
    this.#direct = direct;
    this.#offset = size;
  }

  /**
   * Creates (mode 0600) or truncates `path`, or opens it to append, and opens it a second time
   * with `O_DIRECT` when it is a regular file on a file system that takes it and the memory of
   * writes can be aligned ({@linkcode canAlignMemory}). Rejects when the file cannot be opened.
   */
  static async open(path: string, options: CaptureFileOptions = {}): Promise<CaptureFile> {
    const append = options.append ?? false;
    const file = await Deno.open(path, {
      write: true,
      create: true,
      ...(append ? { append: true } : { truncate: true }),
      mode: 0o600,
    });
    try {
      const stat = await file.stat();
      const direct = (options.direct ?? true) && stat.isFile && canAlignMemory()
        ? openDirect(path, stat)
        : undefined;
      return new CaptureFile(path, stat.isFile, file, direct, append ? stat.size : 0);
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /** Whether aligned writes go past the page cache. */
  get direct(): boolean {
    return this.#direct !== undefined;
  }

  /** Bytes written: the file's length, every block in it whole. */
  get size(): number {
    return this.#offset;
  }

  /** Bytes of those written with `O_DIRECT`. */
  get directBytes(): number {
    return this.#directBytes;
  }

  /**
   * Appends `bytes` (whole blocks). `aligned` says that they start at a multiple of
   * {@linkcode DIRECT_ALIGNMENT} in memory and are a multiple of it long; those go through
   * `O_DIRECT` when it is open. Rejects on a write error; the file then holds what was written
   * before, and perhaps part of `bytes` ({@linkcode truncate} cuts that off).
   */
  async write(bytes: Uint8Array, aligned: boolean): Promise<void> {
    if (this.#direct !== undefined && aligned) {
      const padding = paddingLength(this.#offset, DIRECT_ALIGNMENT);
      if (padding > 0) {
        const pad = new Uint8Array(padding);
        writePaddingBlock(pad);
        await this.#writeBuffered(pad);
      }
      if (await this.#writeDirect(bytes)) return;
    }
    await this.#writeBuffered(bytes);
  }

  /** Cuts the file back to `size` bytes (after a failed write), and writes from there. */
  async truncate(size: number): Promise<void> {
    await this.#file.truncate(size);
    this.#offset = size;
    this.#seek = true;
  }

  /** Closes both descriptors. */
  close(): void {
    this.#closeDirect();
    try {
      this.#file.close();
    } catch {
      // Closed already.
    }
  }

  /** Writes all of `bytes` at the end with O_DIRECT; false if O_DIRECT refused them (nothing written). */
  async #writeDirect(bytes: Uint8Array): Promise<boolean> {
    let done = 0;
    while (done < bytes.length) {
      let n: number;
      try {
        n = await this.#direct!.write(bytes.subarray(done), this.#offset);
      } catch (e) {
        // EINVAL: the file system wants a larger alignment than this one.
        if (done > 0 || !(e instanceof OsError) || e.errno !== Errno.EINVAL) throw e;
        log.info(
          "Capture file {path}: direct writes refused ({error}); writing through the page cache",
          {
            path: this.path,
            error: errorMessage(e),
          },
        );
        this.#closeDirect();
        return false;
      }
      if (n === 0) throw new Error(`Cannot write to ${this.path}: the device took no bytes`);
      done += n;
      this.#offset += n;
      this.#directBytes += n;
      this.#seek = true;
      // A short direct write (a full disk, say) leaves the rest to the buffered one.
      if (n % DIRECT_ALIGNMENT !== 0 && done < bytes.length) {
        await this.#writeBuffered(bytes.subarray(done));
        return true;
      }
    }
    return true;
  }

  async #writeBuffered(bytes: Uint8Array): Promise<void> {
    if (this.#seek) {
      await this.#file.seek(this.#offset, Deno.SeekMode.Start);
      this.#seek = false;
    }
    let done = 0;
    while (done < bytes.length) {
      const n = await this.#file.write(bytes.subarray(done));
      done += n;
      this.#offset += n;
    }
  }

  #closeDirect(): void {
    if (this.#direct === undefined) return;
    this.#direct.close();
    this.#direct = undefined;
  }
}

/**
 * Opens `path` again with O_DIRECT, or `undefined` where that fails (a file system without it)
 * or `path` is no longer the file `first` describes (replaced between the two opens). For
 * {@linkcode CaptureFile.open}; exported for its tests.
 */
export function openDirect(
  path: string,
  first: Pick<Deno.FileInfo, "dev" | "ino">,
): DirectFile | undefined {
  let direct: DirectFile | undefined;
  try {
    direct = DirectFile.open(path);
    const { dev, ino } = direct.identity();
    if (dev === first.dev && ino === first.ino) return direct;
    log.warn("Capture file {path} was replaced as it was opened; writing through the first", {
      path,
    });
  } catch (e) {
    log.debug("Capture file {path}: no direct writes ({error})", { path, error: errorMessage(e) });
  }
  direct?.close();
  return undefined;
}
