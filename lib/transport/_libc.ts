/**
 * SO_PEERCRED of a connected unix socket (socket(7), unix(7)), through FFI.
 *
 * @module
 */

import { getOption, SockOpt } from "../ffi/sockopt.ts";

/** The credentials of a unix socket peer (`struct ucred`). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/** Reads SO_PEERCRED of a connected unix socket's file descriptor; `undefined` on failure. */
export function getPeerCredentials(fd: number): PeerCredentials | undefined {
  const cred = new Uint8Array(12);
  if (getOption(fd, SockOpt.SOL_SOCKET, SockOpt.SO_PEERCRED, cred) === undefined) return undefined;
  const v = new DataView(cred.buffer);
  return { pid: v.getInt32(0, true), uid: v.getUint32(4, true), gid: v.getUint32(8, true) };
}
