/**
 * Socket options through FFI (getsockopt(2), setsockopt(2); socket(7), tcp(7), unix(7)), for
 * every layer that needs one Deno does not offer: SO_PEERCRED of unix peers, TCP keep-alive
 * of listeners and of the client's sockets, and what socket activation asks of inherited
 * descriptors. Failures return `undefined` or false; the caller reads errno right after, if
 * it wants it. Constants are the Linux values (asm-generic, identical on x86_64 and aarch64).
 *
 * @module
 */

import { lazyLibc } from "./libc.ts";

const lib = lazyLibc(
  {
    // int getsockopt(int sockfd, int level, int optname, void *optval, socklen_t *optlen);
    getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
    // int setsockopt(int sockfd, int level, int optname, const void *optval, socklen_t optlen);
    setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  } as const satisfies Deno.ForeignLibraryInterface,
);

/** Option levels and names (Linux). */
export const SockOpt = {
  SOL_SOCKET: 1,
  SO_TYPE: 3,
  SO_ERROR: 4,
  SO_KEEPALIVE: 9,
  SO_PEERCRED: 17,
  SO_ACCEPTCONN: 30,
  SO_DOMAIN: 39,
  IPPROTO_TCP: 6,
  TCP_NODELAY: 1,
  TCP_KEEPIDLE: 4,
  TCP_KEEPINTVL: 5,
  TCP_KEEPCNT: 6,
  TCP_USER_TIMEOUT: 18,
} as const;

/**
 * TCP keep-alive and user timeout (tcp(7)) that make the kernel drop a connection whose peer
 * vanished without a FIN: an idle connection is probed after `idleSeconds`, then every
 * `intervalSeconds`, and given up after `count` unanswered probes; data left unacknowledged
 * for `userTimeoutMs` ends it as well.
 */
export interface KeepaliveOptions {
  /** Seconds of silence before the first probe. */
  idleSeconds: number;
  /** Seconds between probes. */
  intervalSeconds: number;
  /** Unanswered probes before the connection is dropped. */
  count: number;
  /** Milliseconds that sent data may stay unacknowledged (TCP_USER_TIMEOUT). */
  userTimeoutMs: number;
}

/** Reads option `name` of `level` into `value`; the bytes the kernel wrote, `undefined` on failure. */
export function getOption(
  fd: number,
  level: number,
  name: number,
  value: Uint8Array,
): number | undefined {
  const len = new Uint8Array(4);
  const v = new DataView(len.buffer);
  v.setUint32(0, value.length, true);
  if (lib().getsockopt(fd, level, name, value, len) !== 0) return undefined;
  return v.getUint32(0, true);
}

/** Reads an `int` socket option; `undefined` on failure. */
export function getIntOption(fd: number, level: number, name: number): number | undefined {
  const value = new Uint8Array(4);
  if (getOption(fd, level, name, value) === undefined) return undefined;
  return new DataView(value.buffer).getInt32(0, true);
}

/** Sets an `int` socket option; false on failure. */
export function setIntOption(fd: number, level: number, name: number, value: number): boolean {
  const v = new Uint8Array(4);
  new DataView(v.buffer).setInt32(0, value, true);
  return lib().setsockopt(fd, level, name, v, 4) === 0;
}

/**
 * Turns SO_KEEPALIVE on for TCP socket `fd` and, with `options`, sets its timing; false at the
 * first option that fails (errno is that call's).
 */
export function setKeepalive(fd: number, options: KeepaliveOptions | undefined): boolean {
  const { SOL_SOCKET, SO_KEEPALIVE, IPPROTO_TCP } = SockOpt;
  if (!setIntOption(fd, SOL_SOCKET, SO_KEEPALIVE, 1)) return false;
  if (options === undefined) return true;
  return setIntOption(fd, IPPROTO_TCP, SockOpt.TCP_KEEPIDLE, options.idleSeconds) &&
    setIntOption(fd, IPPROTO_TCP, SockOpt.TCP_KEEPINTVL, options.intervalSeconds) &&
    setIntOption(fd, IPPROTO_TCP, SockOpt.TCP_KEEPCNT, options.count) &&
    setIntOption(fd, IPPROTO_TCP, SockOpt.TCP_USER_TIMEOUT, options.userTimeoutMs);
}
