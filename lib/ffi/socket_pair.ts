/**
 * A connected pair of unix stream sockets made through FFI (socketpair(2), unix(7)), whose
 * fds this process owns: one end can go to the kernel (vhci_hcd's sysfs `attach` looks the fd
 * up in the writer's table) while the other is served in this process.
 *
 * @module
 */

import { C, errno, lib } from "./_fd_libc.ts";
import { OsError } from "./os_error.ts";

/**
 * Makes a connected pair of `AF_UNIX`, `SOCK_STREAM | SOCK_CLOEXEC` sockets. Both ends are
 * blocking; the caller owns both fds and closes them (or hands them on).
 *
 * @throws {OsError} With socketpair(2)'s errno (EMFILE, ENFILE, ...).
 *
 * @example Two ends, then closed
 * ```ts
 * import { socketPair } from "./socket_pair.ts";
 * import { closeFd } from "./fd.ts";
 * const [a, b] = socketPair();
 * console.assert(Deno.readLinkSync(`/proc/self/fd/${a}`).startsWith("socket:["));
 * console.assert(closeFd(a) && closeFd(b));
 * ```
 */
export function socketPair(): [number, number] {
  const sv = new Int32Array(2);
  const u8 = new Uint8Array(sv.buffer);
  if (lib().socketpair(C.AF_UNIX, C.SOCK_STREAM | C.SOCK_CLOEXEC, 0, u8) !== 0) {
    throw new OsError("Cannot create a socket pair", errno());
  }
  return [sv[0]!, sv[1]!];
}
