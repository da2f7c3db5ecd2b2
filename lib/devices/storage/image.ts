import { errorMessage } from "../../util/error_message.ts";
/**
 * The backing store of a mass-storage logical unit: a raw disk image file. A read-only image
 * is opened `O_RDONLY` under a shared `flock`; a writable one `O_RDWR` under an exclusive one,
 * taken without waiting, so that two devices or two gateways never write the same image. An
 * image can be created sparse (`ftruncate`). Reads and writes go to byte offsets one at a time
 * (an `lseek` and a read or write on `Deno.FsFile`, never interleaved), on the event loop for an
 * image in memory and on Deno's blocking thread pool otherwise ({@linkcode ImageIo}), and
 * `sync()` is `fdatasync`.
 *
 * @module
 */

/**
 * What a logical unit reads and writes: bytes at offsets, a flush, a size. {@linkcode DiskImage}
 * is the file-backed one; anything else with these methods (a RAM disk, a test double) works.
 */
export interface StorageBacking {
  /** A name for logs and the default serial number (the image's path). */
  readonly name: string;
  /** The size in bytes. */
  readonly size: number;
  /** Whether the backing refuses writes. */
  readonly readOnly: boolean;
  /**
   * Reads `length` bytes at `offset`; rejects on an I/O error or a read past the end. When
   * `into` (of `length` bytes) is given, the bytes may be read into it and it returned, which
   * spares a fresh buffer; a backing may also ignore it and return one of its own.
   */
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
  /** Writes all of `data` at `offset` before resolving; rejects on an I/O error (ENOSPC, EIO). */
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Makes every completed write durable (`fdatasync`). */
  sync(): Promise<void>;
  /** Flushes and releases the backing. */
  close(): Promise<void>;
}

/** Options of {@linkcode DiskImage.open}. */
export interface DiskImageOptions {
  /** The image file (or a block device). */
  path: string;
  /** Open `O_RDONLY` with a shared lock; writes are refused. Default false. */
  readOnly?: boolean;
  /**
   * The size in bytes. A missing (or empty) file is created sparse with this size; an
   * existing image of another size is refused rather than resized. Without it the file must
   * exist and is used at its own size.
   */
  size?: number;
  /** File mode of a created image; default `0o600` (the image may hold private data). */
  mode?: number;
  /** How reads and writes reach the file; default `"auto"`. */
  io?: ImageIo;
}

/**
 * How an image's reads and writes run. `"async"`: on Deno's blocking thread pool, so that a slow
 * disk never holds up the event loop, at the price of handing each read or write to another
 * thread and back. `"sync"`: on the event loop (`readSync`, `writeSync`), which saves those two
 * thread wake-ups per command but stalls every session while the kernel works: right for an
 * image in memory. `"auto"`: sync for an image on tmpfs or ramfs, async anywhere else.
 */
export type ImageIo = "auto" | "sync" | "async";

/** The file systems whose files live in memory: an image on one never waits for a disk. */
const MEMORY_FILESYSTEMS: ReadonlySet<string> = new Set(["tmpfs", "ramfs"]);

/**
 * The type of the file system holding `realPath` (an absolute path without symbolic links), from
 * the text of `/proc/self/mountinfo` (proc(5)): the last-listed mount whose mount point is that
 * path or one of its folders. `undefined` when no line applies.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { filesystemOf } from "./image.ts";
 * const mountinfo = "21 1 8:1 / / rw - ext4 /dev/sda1 rw\n" +
 *   "25 21 0:22 / /tmp rw,nosuid - tmpfs tmpfs rw\n";
 * assertEquals(filesystemOf("/tmp/a.img", mountinfo), "tmpfs");
 * assertEquals(filesystemOf("/tmpx/a.img", mountinfo), "ext4");
 * ```
 */
export function filesystemOf(realPath: string, mountinfo: string): string | undefined {
  // Mount points escape space, tab, newline and backslash as octal (\040 and so on).
  const unescape = (field: string) =>
    field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
  let best: { length: number; type: string } | undefined;
  for (const line of mountinfo.split("\n")) {
    const fields = line.split(" ");
    const dash = fields.indexOf("-");
    if (dash < 6 || fields[dash + 1] === undefined) continue;
    const mountPoint = unescape(fields[4]!);
    const inside = mountPoint === "/" || realPath === mountPoint ||
      realPath.startsWith(`${mountPoint}/`);
    // A later mount on the same point hides the earlier one, so ties go to the later line.
    if (inside && (best === undefined || mountPoint.length >= best.length)) {
      best = { length: mountPoint.length, type: fields[dash + 1]! };
    }
  }
  return best?.type;
}

/** Whether an image at `realPath` is read and written on the event loop. */
async function _syncIo(io: ImageIo, realPath: string): Promise<boolean> {
  if (io !== "auto") return io === "sync";
  try {
    const type = filesystemOf(realPath, await Deno.readTextFile("/proc/self/mountinfo"));
    return type !== undefined && MEMORY_FILESYSTEMS.has(type);
  } catch {
    return false;
  }
}

/** The largest image size accepted: offsets must stay exact in a JavaScript number. */
export const MAX_IMAGE_SIZE: number = Number.MAX_SAFE_INTEGER;

const SIZE_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  k: 2 ** 10,
  m: 2 ** 20,
  g: 2 ** 30,
  t: 2 ** 40,
};

/**
 * Parses a size such as `64M`: a whole number of bytes with an optional `K`, `M`, `G` or `T`
 * suffix (powers of 1024, either case). Throws `RangeError` for anything else, zero, or a size
 * above {@linkcode MAX_IMAGE_SIZE}.
 *
 * @example
 * ```ts
 * import { parseSize } from "./image.ts";
 * console.assert(parseSize("64M") === 64 * 1024 * 1024 && parseSize("4096") === 4096);
 * ```
 */
export function parseSize(text: string): number {
  const m = /^(\d+)([kmgt]?)$/i.exec(text.trim());
  if (m === null) {
    throw new RangeError(
      `Cannot parse size "${text}": expected bytes or a number with K, M, G or T (such as 64M)`,
    );
  }
  const value = Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!;
  if (value === 0) throw new RangeError(`Cannot parse size "${text}": it is zero`);
  if (!Number.isSafeInteger(value)) {
    throw new RangeError(`Cannot parse size "${text}": it is above ${MAX_IMAGE_SIZE} bytes`);
  }
  return value;
}

/**
 * A raw image file opened and locked for one device. Every operation waits for the one before
 * it, so a seek and its read or write are never split by another.
 *
 * @example A sparse image, written and read back
 * ```ts
 * import { DiskImage } from "./image.ts";
 * const path = await Deno.makeTempFile();
 * const image = await DiskImage.open({ path, size: 1024 * 1024 });
 * await image.write(512, new Uint8Array([1, 2, 3]));
 * console.assert((await image.read(512, 3))[2] === 3 && image.size === 1024 * 1024);
 * await image.close();
 * await Deno.remove(path);
 * ```
 */
export class DiskImage implements StorageBacking {
  readonly name: string;
  readonly size: number;
  readonly readOnly: boolean;
  /** How reads and writes run, as {@linkcode ImageIo} `"auto"` decided it. */
  readonly io: "sync" | "async";
  #file: Deno.FsFile;
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(
    name: string,
    file: Deno.FsFile,
    size: number,
    readOnly: boolean,
    io: "sync" | "async",
  ) {
    this.name = name;
    this.#file = file;
    this.size = size;
    this.readOnly = readOnly;
    this.io = io;
  }

  /**
   * Opens and locks an image. Fails (with the path in the message) when the file is missing
   * and no `size` is given, when another device or process holds the lock, when an existing
   * image's size differs from `size`, and when the image is empty.
   */
  static async open(options: DiskImageOptions): Promise<DiskImage> {
    const { path, readOnly = false, size, io = "auto" } = options;
    const fail = (why: string, cause?: unknown) =>
      new Error(`Cannot open image ${path}: ${why}`, cause === undefined ? {} : { cause });
    if (size !== undefined && !(Number.isSafeInteger(size) && size > 0)) {
      throw new RangeError(`Cannot open image ${path}: size ${size} is not a positive integer`);
    }
    let file: Deno.FsFile;
    try {
      file = await Deno.open(
        path,
        readOnly ? { read: true } : {
          read: true,
          write: true,
          create: size !== undefined,
          mode: options.mode ?? 0o600,
        },
      );
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw fail(
          readOnly || size === undefined
            ? "it does not exist (give size=... to create it, without ro)"
            : "its folder does not exist",
          e,
        );
      }
      if (e instanceof Deno.errors.PermissionDenied && !readOnly) {
        throw fail(`${errorMessage(e)} (use ro to serve it read-only)`, e);
      }
      throw fail(errorMessage(e), e);
    }
    try {
      const info = await file.stat();
      if (info.isDirectory) throw fail("it is a folder");
      // Shared for readers, exclusive for a writer: flock, so that another open of the same
      // image, in this process or another, is refused instead of waited for.
      if (!(await file.tryLock(!readOnly))) {
        throw fail(
          readOnly
            ? "another device or process has it open for writing (it is locked)"
            : "another device or process has it open (it is locked)",
        );
      }
      let current = await file.seek(0, Deno.SeekMode.End);
      if (size !== undefined && current !== size) {
        if (current === 0 && readOnly) {
          throw fail("it is empty (a read-only image is never created or grown)");
        }
        if (current !== 0) {
          throw fail(
            `it is ${current} bytes but size=${size}; an existing image is never resized (remove size=, or the file)`,
          );
        }
        await file.truncate(size);
        current = size;
      }
      if (current === 0) throw fail("it is empty (give size=... to make it that big)");
      if (current > MAX_IMAGE_SIZE) throw fail(`it is above ${MAX_IMAGE_SIZE} bytes`);
      let name = path;
      try {
        name = await Deno.realPath(path);
      } catch {
        // A path that cannot be resolved stays as given; it only names the image.
      }
      // A name that is not a resolved path says nothing of where the file is: async, the safe way.
      const sync = name.startsWith("/") ? await _syncIo(io, name) : io === "sync";
      return new DiskImage(name, file, current, readOnly, sync ? "sync" : "async");
    } catch (e) {
      file.close();
      throw e;
    }
  }

  #serial<T>(op: () => T | Promise<T>, whenClosed?: () => T): Promise<T> {
    const run = this.#tail.then(() => {
      if (this.#closed) {
        if (whenClosed) return whenClosed();
        throw new Error(`Cannot access image ${this.name}: it is closed`);
      }
      return op();
    });
    this.#tail = run.catch(() => {});
    return run;
  }

  #check(offset: number, length: number): void {
    if (
      !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 ||
      offset + length > this.size
    ) {
      throw new RangeError(
        `Cannot access image ${this.name}: ${length} bytes at ${offset} are outside its ${this.size} bytes`,
      );
    }
  }

  /** Reads `length` bytes at `offset`, into `into` when it has that length. */
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    this.#check(offset, length);
    return this.#serial(async () => {
      const buffer = into?.length === length ? into : new Uint8Array(length);
      this.#file.seekSync(offset, Deno.SeekMode.Start);
      let done = 0;
      while (done < length) {
        const view = buffer.subarray(done);
        const n = this.io === "sync" ? this.#file.readSync(view) : await this.#file.read(view);
        if (n === null) {
          throw new Error(
            `Cannot read image ${this.name}: it ended at ${
              offset + done
            }, expected ${this.size} bytes`,
          );
        }
        done += n;
      }
      return buffer;
    });
  }

  /** Writes all of `data` at `offset`; the promise settles once the kernel has it. */
  write(offset: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) {
      return Promise.reject(new Error(`Cannot write image ${this.name}: it is read-only`));
    }
    this.#check(offset, data.length);
    return this.#serial(async () => {
      this.#file.seekSync(offset, Deno.SeekMode.Start);
      let done = 0;
      while (done < data.length) {
        const view = data.subarray(done);
        done += this.io === "sync" ? this.#file.writeSync(view) : await this.#file.write(view);
      }
    });
  }

  /** `fdatasync`: every write before it reaches the disk. */
  sync(): Promise<void> {
    return this.#serial(() => this.readOnly ? Promise.resolve() : this.#file.syncData());
  }

  /** Flushes, unlocks and closes the image; later operations reject, a second close does not. */
  close(): Promise<void> {
    return this.#serial(async () => {
      try {
        if (!this.readOnly) await this.#file.syncData();
      } finally {
        this.#closed = true;
        this.#file.close();
      }
    }, () => undefined);
  }
}
