/**
 * File descriptors this process owns, through FFI: close(2), and fcntl(2)'s F_DUPFD_CLOEXEC,
 * F_GETFL and F_SETFL (O_NONBLOCK).
 *
 * @module
 */

import { C, errno, lib } from "./_fd_libc.ts";
import { OsError } from "./os_error.ts";

/**
 * Closes `fd` (close(2)); false when it was not open (EBADF) or the close failed. Never retry
 * a failed close: on Linux the fd is released either way.
 *
 * @example
 * ```ts
 * import { closeFd } from "./fd.ts";
 * console.assert(closeFd(-1) === false);
 * ```
 */
export function closeFd(fd: number): boolean {
  return fd >= 0 && lib().close(fd) === 0;
}

/**
 * A second, close-on-exec descriptor for the open file of `fd` (the lowest free number from 3
 * up). Holding it keeps the file (a socket) open whatever happens to `fd`, so that its number
 * can never be reused under the holder's feet; close it with {@linkcode closeFd}.
 *
 * @throws {OsError} With fcntl(2)'s errno (EBADF, EMFILE).
 */
export function dupFd(fd: number): number {
  const copy = lib().fcntl(fd, C.F_DUPFD_CLOEXEC, 3);
  if (copy < 0) throw new OsError(`Cannot duplicate fd ${fd}`, errno());
  return copy;
}

/**
 * Sets or clears O_NONBLOCK on `fd`'s open file description (shared by all its duplicates).
 *
 * @throws {OsError} With fcntl(2)'s errno.
 */
export function setNonBlocking(fd: number, nonBlocking: boolean): void {
  const l = lib();
  const flags = l.fcntl(fd, C.F_GETFL, 0);
  const next = nonBlocking ? flags | C.O_NONBLOCK : flags & ~C.O_NONBLOCK;
  if (flags < 0 || (next !== flags && l.fcntl(fd, C.F_SETFL, next) < 0)) {
    throw new OsError(
      `Cannot make fd ${fd} ${nonBlocking ? "non-blocking" : "blocking"}`,
      errno(),
    );
  }
}
