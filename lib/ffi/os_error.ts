/**
 * A failed system call made through FFI, worded with the errno's name and libc's text for it
 * (errno(3), strerror(3)); errno values are the Linux ones (asm-generic/errno-base.h,
 * asm-generic/errno.h, identical on x86_64 and aarch64).
 *
 * @module
 */

import { lazyLibc } from "./libc.ts";

const lib = lazyLibc(
  {
    // char *strerror(int errnum);
    strerror: { parameters: ["i32"], result: "pointer" },
  } as const satisfies Deno.ForeignLibraryInterface,
);

/** errno values the FFI callers tell apart. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EBADF: 9,
  EAGAIN: 11,
  EACCES: 13,
  EBUSY: 16,
  ENODEV: 19,
  EINVAL: 22,
  EMFILE: 24,
  EPIPE: 32,
  ENOTSOCK: 88,
  EADDRNOTAVAIL: 99,
  ENETUNREACH: 101,
  ECONNABORTED: 103,
  ECONNRESET: 104,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EHOSTUNREACH: 113,
  EINPROGRESS: 115,
} as const;

const ERRNO_NAMES = new Map<number, string>(Object.entries(Errno).map(([k, v]) => [v, k]));

/**
 * `ECONNREFUSED (Connection refused)`: the errno's name and libc's text for it.
 *
 * @example
 * ```ts
 * import { describeErrno } from "./os_error.ts";
 * console.assert(describeErrno(2) === "ENOENT (No such file or directory)");
 * ```
 */
export function describeErrno(code: number): string {
  const p = lib().strerror(code);
  const text = p === null ? "" : Deno.UnsafePointerView.getCString(p);
  const name = ERRNO_NAMES.get(code) ?? `errno ${code}`;
  return text ? `${name} (${text})` : name;
}

/** A failed system call: `errno` is the kernel's answer. */
export class OsError extends Error {
  /** The errno value. */
  readonly errno: number;
  /** Builds the error; the message ends with the errno's name and text. */
  constructor(what: string, code: number) {
    super(`${what}: ${describeErrno(code)}`);
    this.name = "OsError";
    this.errno = code;
  }
}
