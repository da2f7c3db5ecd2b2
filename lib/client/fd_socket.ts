/**
 * A stream socket whose file descriptor this process owns (socket(7), tcp(7), unix(7)), made
 * through libc FFI or adopted from a descriptor the process already has (one end of a
 * socketpair(2), or one received with SCM_RIGHTS): Deno's own sockets and `node:net` keep their
 * fds to themselves, and vhci's sysfs `attach` looks the fd up in the writing process. The
 * socket stays non-blocking while this process uses it (waits happen in poll(2) on a worker
 * thread) and is made blocking again before the kernel takes it over.
 *
 * @module
 */

import { errorMessage } from "../util/error_message.ts";
import { lookup } from "node:dns/promises";
import { C, Errno, errno, lib, OsError } from "./_libc_socket.ts";
import { checkStreamFd, sendFd } from "../ffi/scm_rights.ts";
import { setNonBlocking } from "../ffi/fd.ts";
import { connectError } from "../transport/connect_error.ts";
import { formatHostPort } from "../transport/connection.ts";
import {
  getIntOption,
  type KeepaliveOptions,
  setIntOption,
  setKeepalive,
  SockOpt,
} from "../ffi/sockopt.ts";

export type { KeepaliveOptions } from "../ffi/sockopt.ts";

export { OsError } from "./_libc_socket.ts";
export { StreamFdError } from "../ffi/scm_rights.ts";

/** Where a USB/IP server is: TCP host and port, or a unix socket path (`@name`: abstract). */
export type RemoteAddress =
  | { transport: "tcp"; host: string; port: number }
  | { transport: "unix"; path: string };

/** A printable form: `127.0.0.1:3240`, `[::1]:3240` or `unix:/run/usbipgw.sock`. */
export function formatRemote(r: RemoteAddress): string {
  if (r.transport === "unix") return `unix:${r.path}`;
  return r.host.includes(":") ? `[${r.host}]:${r.port}` : `${r.host}:${r.port}`;
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(Errno).map(([k, v]) => [v, k]));

/**
 * The `ConnectError` (lib/transport) for a failed {@linkcode FdSocket.connect}, so that the
 * kernel client words a server it cannot reach as `connectTcp` and `connectUnix` do: the
 * target is `host:port` or the socket's path, the reason comes from the errno.
 */
export function connectErrorFor(remote: RemoteAddress, error: unknown): Error {
  const target = remote.transport === "unix"
    ? remote.path
    : formatHostPort(remote.host, remote.port);
  if (!(error instanceof OsError)) return connectError(target, remote.transport, error);
  // A name that does not resolve is reported with EADDRNOTAVAIL, which is no connect errno.
  const resolving = error.errno === Errno.EADDRNOTAVAIL &&
    error.message.startsWith("Cannot resolve ");
  return connectError(
    target,
    remote.transport,
    error,
    resolving ? undefined : ERRNO_NAMES.get(error.errno),
  );
}

/** The default dead-peer timeout of `usbipgw attach`, in seconds. */
export const DEFAULT_DEAD_PEER_TIMEOUT_S = 10;

/**
 * Keep-alive settings that declare a silent peer dead after about `seconds`: probes start at
 * half of it, three probes, and TCP_USER_TIMEOUT is `seconds` (it also bounds the probing).
 *
 * @example Ten seconds
 * ```ts
 * import { keepaliveFor } from "./fd_socket.ts";
 * const k = keepaliveFor(10);
 * console.assert(k.idleSeconds === 5 && k.intervalSeconds === 1 && k.count === 3);
 * console.assert(k.userTimeoutMs === 10000);
 * ```
 */
export function keepaliveFor(seconds: number): KeepaliveOptions {
  if (!(seconds >= 1) || !Number.isFinite(seconds)) {
    throw new RangeError(`Invalid dead-peer timeout ${seconds}: expected at least 1 second`);
  }
  const idleSeconds = Math.max(1, Math.floor(seconds / 2));
  return {
    idleSeconds,
    intervalSeconds: Math.max(1, Math.floor((seconds - idleSeconds) / 3)),
    count: 3,
    userTimeoutMs: Math.round(seconds * 1000),
  };
}

/** Options of a blocking-style operation: a time limit and a cancel signal. */
export interface WaitOptions {
  /** Gives up after this many milliseconds (default 10000). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** How long one poll(2) on the worker thread may block, so that an abort is seen soon. */
const POLL_SLICE_MS = 200;

function parseIpv4(s: string): number[] | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  return parts.every((p) => p <= 255) ? parts : undefined;
}

function parseIpv6(s: string): Uint8Array | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(s) || !s.includes(":")) return undefined;
  let text = s;
  // A trailing dotted IPv4 part (::ffff:192.0.2.1) becomes two hex groups.
  const lastColon = text.lastIndexOf(":");
  const tail = text.slice(lastColon + 1);
  if (tail.includes(".")) {
    const v4 = parseIpv4(tail);
    if (!v4) return undefined;
    const hex = (a: number, b: number) => ((a << 8) | b).toString(16);
    text = `${text.slice(0, lastColon + 1)}${hex(v4[0]!, v4[1]!)}:${hex(v4[2]!, v4[3]!)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (h: string) => h === "" ? [] : h.split(":");
  const head = groups(halves[0]!);
  const rest = halves.length === 2 ? groups(halves[1]!) : [];
  const given = head.length + rest.length;
  if (halves.length === 1 ? given !== 8 : given > 7) return undefined;
  const all = [...head, ...Array<string>(8 - given).fill("0"), ...rest];
  if (!all.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return undefined;
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    const w = parseInt(g, 16);
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

/** Builds a `struct sockaddr_in`/`sockaddr_in6` for an IP literal, or undefined. */
export function inetSockaddr(
  address: string,
  port: number,
): { family: number; bytes: Uint8Array } | undefined {
  const v4 = parseIpv4(address);
  if (v4) {
    const b = new Uint8Array(16);
    const v = new DataView(b.buffer);
    v.setUint16(0, C.AF_INET, true);
    v.setUint16(2, port);
    b.set(v4, 4);
    return { family: C.AF_INET, bytes: b };
  }
  const v6 = parseIpv6(address);
  if (v6) {
    const b = new Uint8Array(28);
    const v = new DataView(b.buffer);
    v.setUint16(0, C.AF_INET6, true);
    v.setUint16(2, port);
    b.set(v6, 8);
    return { family: C.AF_INET6, bytes: b };
  }
  return undefined;
}

/** Builds a `struct sockaddr_un` (a leading `@` names an abstract socket). */
export function unixSockaddr(path: string): Uint8Array {
  const name = new TextEncoder().encode(path.startsWith("@") ? "\0" + path.slice(1) : path);
  if (name.length === 0 || name.length > 107) {
    throw new RangeError(`Invalid unix socket path "${path}": 1 to 107 bytes`);
  }
  const abstract = path.startsWith("@");
  const b = new Uint8Array(2 + name.length + (abstract ? 0 : 1));
  new DataView(b.buffer).setUint16(0, C.AF_UNIX, true);
  b.set(name, 2);
  return b;
}

async function addressesOf(host: string): Promise<string[]> {
  if (inetSockaddr(host, 0)) return [host];
  try {
    const found = await lookup(host, { all: true });
    return found.map((a) => a.address);
  } catch (e) {
    throw new OsError(
      `Cannot resolve ${host}: ${errorMessage(e)}`,
      Errno.EADDRNOTAVAIL,
    );
  }
}

/** A connected stream socket with its own fd. */
export class FdSocket {
  #fd: number;
  /** What it is connected to, for messages. */
  readonly remote: RemoteAddress;

  private constructor(fd: number, remote: RemoteAddress) {
    this.#fd = fd;
    this.remote = remote;
  }

  /** The file descriptor, or -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  /**
   * Adopts `fd`, a connected stream socket this process already has (one end of
   * `socketPair()`, or a descriptor received with `receiveFd()`, lib/ffi): the FdSocket owns it
   * from now on and closes it in {@linkcode FdSocket.close}. It is made non-blocking, like a
   * socket from {@linkcode FdSocket.connect}, so reads and writes wait in poll(2) within their
   * time limits, and {@linkcode FdSocket.setBlocking} readies it for the kernel the same way
   * (O_NONBLOCK belongs to the open file: a process that sent the socket and kept a copy sees
   * the change too). `remote` describes the far end for messages (a socketpair has no address
   * of its own: name what is on the other end, e.g.
   * `{ transport: "unix", path: "socketpair:gateway" }`).
   *
   * @throws {StreamFdError} When `fd` is not a socket, not a stream, a listening socket or a
   * socket never connected (lib/ffi `checkStreamFd`); the fd stays the caller's then.
   * @throws {OsError} When its flags cannot be set.
   *
   * @example One end of a socket pair
   * ```ts
   * import { FdSocket } from "./fd_socket.ts";
   * import { socketPair } from "../ffi/socket_pair.ts";
   * const [a, b] = socketPair();
   * const left = FdSocket.adopt(a, { transport: "unix", path: "socketpair:left" });
   * const right = FdSocket.adopt(b, { transport: "unix", path: "socketpair:right" });
   * await left.writeAll(new Uint8Array([1, 2]));
   * console.assert((await right.readExactly(2))[1] === 2);
   * left.close();
   * right.close();
   * ```
   */
  static adopt(fd: number, remote: RemoteAddress): FdSocket {
    checkStreamFd(fd);
    setNonBlocking(fd, true);
    return new FdSocket(fd, remote);
  }

  /**
   * Connects to `remote`: every address of a TCP host in turn until one accepts.
   *
   * @throws {OsError} With the last errno (ECONNREFUSED, ETIMEDOUT, ENOENT, ...).
   */
  static async connect(remote: RemoteAddress, options: WaitOptions = {}): Promise<FdSocket> {
    if (remote.transport === "unix") {
      return await FdSocket.#connectOne(C.AF_UNIX, unixSockaddr(remote.path), remote, options);
    }
    let last: unknown;
    for (const address of await addressesOf(remote.host)) {
      const sa = inetSockaddr(address, remote.port);
      if (!sa) continue;
      try {
        return await FdSocket.#connectOne(sa.family, sa.bytes, remote, options);
      } catch (e) {
        if (options.signal?.aborted) throw e;
        last = e;
      }
    }
    throw last ?? new OsError(`Cannot connect to ${formatRemote(remote)}`, Errno.EADDRNOTAVAIL);
  }

  static async #connectOne(
    family: number,
    sockaddr: Uint8Array,
    remote: RemoteAddress,
    options: WaitOptions,
  ): Promise<FdSocket> {
    const l = lib();
    const what = `Cannot connect to ${formatRemote(remote)}`;
    const fd = l.socket(family, C.SOCK_STREAM | C.SOCK_NONBLOCK | C.SOCK_CLOEXEC, 0);
    if (fd < 0) throw new OsError(what, errno());
    const sock = new FdSocket(fd, remote);
    try {
      if (l.connect(fd, sockaddr, sockaddr.length) !== 0) {
        const e = errno();
        // A unix socket may also answer EAGAIN when its backlog is full.
        if (e !== Errno.EINPROGRESS && e !== Errno.EAGAIN) throw new OsError(what, e);
        await sock.#wait(C.POLLOUT, options, what);
        const err = sock.getIntOption(SockOpt.SOL_SOCKET, SockOpt.SO_ERROR);
        if (err !== 0) throw new OsError(what, err);
      }
      return sock;
    } catch (e) {
      sock.close();
      throw e;
    }
  }

  /** Waits until the socket is ready for `events`, within the time limit. */
  async #wait(events: number, options: WaitOptions, what: string): Promise<void> {
    const deadline = performance.now() + (options.timeoutMs ?? 10000);
    const pfd = new Uint8Array(8);
    const v = new DataView(pfd.buffer);
    while (true) {
      if (options.signal?.aborted) {
        throw options.signal.reason ?? new DOMException("Aborted", "AbortError");
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new OsError(what, Errno.ETIMEDOUT);
      if (this.#fd < 0) throw new OsError(what, Errno.EBADF);
      v.setInt32(0, this.#fd, true);
      v.setInt16(4, events, true);
      v.setInt16(6, 0, true);
      const n = await lib().poll(pfd, 1n, Math.ceil(Math.min(left, POLL_SLICE_MS)));
      if (n > 0) return;
      // n < 0 is EINTR at worst (errno of the worker thread is not ours to read): poll again.
    }
  }

  /** Sets an int socket option. */
  setIntOption(level: number, name: number, value: number, what = "setsockopt"): void {
    if (!setIntOption(this.#fd, level, name, value)) throw new OsError(what, errno());
  }

  /** Reads an int socket option. */
  getIntOption(level: number, name: number): number {
    return socketOption(this.#fd, level, name);
  }

  /**
   * Sets TCP_NODELAY, as the usbip tool does, and with `keepalive` SO_KEEPALIVE,
   * TCP_KEEPIDLE/INTVL/CNT and TCP_USER_TIMEOUT. Only for TCP sockets.
   */
  setTcpOptions(keepalive: KeepaliveOptions | undefined): void {
    const what = `Cannot set TCP options on the connection to ${formatRemote(this.remote)}`;
    this.setIntOption(SockOpt.IPPROTO_TCP, SockOpt.TCP_NODELAY, 1, what);
    if (!setKeepalive(this.#fd, keepalive)) throw new OsError(what, errno());
  }

  /** Writes all of `bytes`. */
  async writeAll(bytes: Uint8Array, options: WaitOptions = {}): Promise<void> {
    const what = `Cannot send to ${formatRemote(this.remote)}`;
    let off = 0;
    while (off < bytes.length) {
      const chunk = bytes.subarray(off);
      const n = lib().send(
        this.#fd,
        chunk,
        BigInt(chunk.length),
        C.MSG_DONTWAIT | C.MSG_NOSIGNAL,
      );
      if (n < 0n) {
        const e = errno();
        if (e !== Errno.EAGAIN && e !== Errno.EINTR) throw new OsError(what, e);
        await this.#wait(C.POLLOUT, options, what);
        continue;
      }
      off += Number(n);
    }
  }

  /**
   * Reads exactly `length` bytes, never more: what follows belongs to whoever reads next.
   *
   * @throws {Deno.errors.UnexpectedEof} When the peer closes first.
   */
  async readExactly(length: number, options: WaitOptions = {}): Promise<Uint8Array> {
    const what = `Cannot receive from ${formatRemote(this.remote)}`;
    const out = new Uint8Array(length);
    let off = 0;
    while (off < length) {
      const rest = out.subarray(off);
      const n = lib().recv(this.#fd, rest, BigInt(rest.length), C.MSG_DONTWAIT);
      if (n < 0n) {
        const e = errno();
        if (e !== Errno.EAGAIN && e !== Errno.EINTR) throw new OsError(what, e);
        await this.#wait(C.POLLIN, options, what);
        continue;
      }
      if (n === 0n) {
        throw new Deno.errors.UnexpectedEof(
          `${what}: the server closed the connection after ${off} of ${length} bytes`,
        );
      }
      off += Number(n);
    }
    return out;
  }

  /**
   * Sends descriptor `fd` with SCM_RIGHTS on `bytes` (default one zero byte), for a unix
   * socket whose peer asked for it (the gateway's cue); the caller keeps its own `fd`.
   *
   * @throws {OsError} With sendmsg(2)'s errno, or ETIMEDOUT.
   */
  async sendFd(
    fd: number,
    bytes: Uint8Array = new Uint8Array(1),
    options: WaitOptions = {},
  ): Promise<void> {
    await sendFd(this.#fd, fd, bytes, options);
  }

  /** Clears O_NONBLOCK, so that the kernel gets a socket like the usbip tool's. */
  setBlocking(): void {
    const l = lib();
    const flags = l.fcntl(this.#fd, C.F_GETFL, 0);
    if (flags < 0 || l.fcntl(this.#fd, C.F_SETFL, flags & ~C.O_NONBLOCK) < 0) {
      throw new OsError("Cannot make the socket blocking", errno());
    }
  }

  /**
   * Gives the fd away: the caller owns it from now on (e.g. a `node:net` socket that takes it
   * over), and {@linkcode FdSocket.close} no longer closes it.
   */
  release(): number {
    const fd = this.#fd;
    this.#fd = -1;
    return fd;
  }

  /** Closes this process's fd (a kernel that took the socket over keeps its own reference). */
  close(): void {
    if (this.#fd < 0) return;
    lib().close(this.#fd);
    this.#fd = -1;
  }
}

/** Reads an int socket option of any socket fd of this process (for checks and tests). */
export function socketOption(fd: number, level: number, name: number): number {
  const value = getIntOption(fd, level, name);
  if (value === undefined) throw new OsError("getsockopt", errno());
  return value;
}
