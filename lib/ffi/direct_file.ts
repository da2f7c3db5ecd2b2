/**
 * A file written with direct I/O, through FFI: open(2) with `O_DIRECT`, pwrite(2) on one of
 * Deno's threads for blocking calls, fstat(2) for the file's identity. Deno's files cannot be
 * opened with `O_DIRECT`, and its node:fs `write` runs on the JavaScript thread, which a direct
 * write would hold for the device's whole round trip. Constants are Linux's (`O_DIRECT` differs
 * between x86_64 and aarch64: arch/arm64/include/uapi/asm/fcntl.h); `struct stat` starts with
 * `st_dev` and `st_ino` (64 bits each) on both.
 *
 * @module
 */

import { ERRNO_LOCATION, errnoAt, lazyLibc } from "./libc.ts";
import { closeFd } from "./fd.ts";
import { OsError } from "./os_error.ts";

const PWRITE = { parameters: ["i32", "buffer", "u64", "i64"], result: "i64" } as const;

const lib = lazyLibc(
  {
    // int open(const char *pathname, int flags, ... /* mode_t mode */);
    open: { parameters: ["buffer", "i32", "i32"], result: "i32" },
    // ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset);  on a worker thread
    pwrite: { ...PWRITE, nonblocking: true },
    // The same, on this thread: to read the errno of a call that failed on a worker thread.
    pwrite_here: { name: "pwrite", ...PWRITE },
    // int fstat(int fd, struct stat *statbuf);
    fstat: { parameters: ["i32", "buffer"], result: "i32" },
    ...ERRNO_LOCATION,
  } as const satisfies Deno.ForeignLibraryInterface,
);

const O_WRONLY = 0o1;
const O_CLOEXEC = 0o2000000;
const O_DIRECT = Deno.build.arch === "aarch64" ? 0o200000 : 0o40000;

/** Large enough for `struct stat` on x86_64 (144 bytes) and aarch64 (128). */
const STAT_BYTES = 256;

/** What tells one file from another: `st_dev` and `st_ino`. */
export interface FileIdentity {
  dev: number;
  ino: number;
}

/** An open file for writes with `O_DIRECT`; see the module documentation. */
export class DirectFile {
  #fd: number;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /**
   * Opens the existing file `path` for writing with `O_DIRECT` (close-on-exec).
   *
   * @throws {OsError} With open(2)'s errno: EINVAL where the file system has no direct I/O.
   */
  static open(path: string): DirectFile {
    const l = lib();
    const fd = l.open(new TextEncoder().encode(`${path}\0`), O_WRONLY | O_DIRECT | O_CLOEXEC, 0);
    if (fd < 0) {
      throw new OsError(`Cannot open ${path} for direct writes`, errnoAt(l.__errno_location()));
    }
    return new DirectFile(fd);
  }

  /** The file's device and inode. */
  identity(): FileIdentity {
    const l = lib();
    const stat = new BigUint64Array(STAT_BYTES / 8);
    if (l.fstat(this.#fd, stat) !== 0) {
      throw new OsError(`Cannot stat fd ${this.#fd}`, errnoAt(l.__errno_location()));
    }
    return { dev: Number(stat[0]), ino: Number(stat[1]) };
  }

  /**
   * Writes `bytes` at `offset` (both aligned as `O_DIRECT` requires, as the memory must be)
   * without holding the JavaScript thread; resolves with the number of bytes written. The
   * memory must not change until then.
   *
   * @throws {OsError} With pwrite(2)'s errno: EINVAL for an alignment the file system refuses.
   */
  async write(bytes: Uint8Array, offset: number): Promise<number> {
    const l = lib();
    const n = Number(await l.pwrite(this.#fd, bytes, BigInt(bytes.length), BigInt(offset)));
    if (n >= 0) return n;
    // errno belongs to the thread that made the call: ask again here to read it. A call that
    // failed wrote nothing, and fails again the same way (or succeeds, if the cause is gone).
    const again = Number(l.pwrite_here(this.#fd, bytes, BigInt(bytes.length), BigInt(offset)));
    if (again >= 0) return again;
    throw new OsError(
      `Cannot write ${bytes.length} bytes at ${offset}`,
      errnoAt(l.__errno_location()),
    );
  }

  /** Closes the file. */
  close(): void {
    closeFd(this.#fd);
    this.#fd = -1;
  }
}
