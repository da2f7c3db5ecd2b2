/**
 * The libc symbols the transports need through FFI: getsockopt(2) for SO_PEERCRED (socket(7),
 * unix(7)), setsockopt(2) for TCP keep-alive tuning (tcp(7)). Opened lazily so that FFI
 * permission is only needed where it is used.
 *
 * @module
 */

import { lazyLibc } from "../ffi/libc.ts";

const SYMBOLS = {
  // int getsockopt(int sockfd, int level, int optname, void *optval, socklen_t *optlen);
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  // int setsockopt(int sockfd, int level, int optname, const void *optval, socklen_t optlen);
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;

const lib = lazyLibc(SYMBOLS);

/** The credentials of a unix socket peer (`struct ucred`). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/** Reads SO_PEERCRED of a connected unix socket's file descriptor; `undefined` on failure. */
export function getPeerCredentials(fd: number): PeerCredentials | undefined {
  const cred = new Uint8Array(12);
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, cred.length, true);
  if (lib().getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, len) !== 0) return undefined;
  const v = new DataView(cred.buffer);
  return { pid: v.getInt32(0, true), uid: v.getUint32(4, true), gid: v.getUint32(8, true) };
}

/** Reads an `int` socket option; `undefined` on failure. */
export function getIntOption(fd: number, level: number, name: number): number | undefined {
  const value = new Uint8Array(4);
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, 4, true);
  if (lib().getsockopt(fd, level, name, value, len) !== 0) return undefined;
  return new DataView(value.buffer).getInt32(0, true);
}

/** Sets an `int` socket option; false on failure. */
export function setIntOption(fd: number, level: number, name: number, value: number): boolean {
  const v = new Uint8Array(4);
  new DataView(v.buffer).setInt32(0, value, true);
  return lib().setsockopt(fd, level, name, v, 4) === 0;
}
