/**
 * Passing one file descriptor over a unix stream socket with SCM_RIGHTS (unix(7), cmsg(3),
 * sendmsg(2), recvmsg(2)) through FFI, and checking that a descriptor handed over is a
 * connected stream socket (socket(7) SO_TYPE, SO_ACCEPTCONN).
 *
 * The receiving side uses MSG_CMSG_CLOEXEC, refuses truncated control data (MSG_CTRUNC), and
 * closes every descriptor it received but does not hand to the caller: nothing leaks, whatever
 * the sender put in the message. Whatever reads the byte that carries the descriptor must be
 * recvmsg(2): a plain read(2) consumes the byte and the kernel drops the descriptor.
 *
 * @module
 */

import {
  addressOf,
  C,
  CMSG_HDR,
  cmsgAlign,
  cmsgSpace,
  errno,
  IOVEC_SIZE,
  lib,
  MSGHDR,
} from "./_fd_libc.ts";
import { describeErrno, Errno, OsError } from "./os_error.ts";
import { getIntOption, SockOpt } from "./sockopt.ts";

/** Why receiving a descriptor failed. */
export type FdPassingFailure =
  /** Nothing arrived within the time limit (nothing was consumed). */
  | "timeout"
  /** The peer closed the connection before sending anything. */
  | "closed"
  /** Bytes arrived without a descriptor (they are consumed). */
  | "no_fd"
  /** More than one descriptor came with the bytes; all were closed. */
  | "too_many_fds"
  /** The control data did not fit (MSG_CTRUNC); whatever arrived was closed. */
  | "truncated"
  /**
   * Bytes came before the descriptor was asked for, so a reader that is not recvmsg(2) may
   * have taken the byte that carried it (a connection's own reader, see lib/transport).
   */
  | "early_data";

/** A descriptor that was not received as asked; `failure` says why. */
export class FdPassingError extends Error {
  /** What went wrong, for programs. */
  readonly failure: FdPassingFailure;
  /** The bytes that came with the message (empty for `timeout` and `closed`). */
  readonly bytes: Uint8Array;
  /** Builds the error. */
  constructor(failure: FdPassingFailure, message: string, bytes = new Uint8Array(0)) {
    super(message);
    this.name = "FdPassingError";
    this.failure = failure;
    this.bytes = bytes;
  }
}

/** Why a descriptor is not a connected stream socket. */
export type StreamFdFailure =
  /** Not an open socket (ENOTSOCK, EBADF). */
  | "not_a_socket"
  /** A socket of another type (datagram, seqpacket, raw). */
  | "not_stream"
  /** A listening socket (SO_ACCEPTCONN is 1). */
  | "listening"
  /** A stream socket that was never connected (getpeername(2): ENOTCONN). */
  | "not_connected";

/** A descriptor refused by {@linkcode checkStreamFd}. */
export class StreamFdError extends Error {
  /** What is wrong with it, for programs. */
  readonly failure: StreamFdFailure;
  /** The errno behind `not_a_socket` (getsockopt(2)) and `not_connected` (getpeername(2)). */
  readonly errno: number | undefined;
  /** Builds the error. */
  constructor(failure: StreamFdFailure, message: string, errno?: number) {
    super(message);
    this.name = "StreamFdError";
    this.failure = failure;
    this.errno = errno;
  }
}

/** Names of socket types, for messages (`<bits/socket_type.h>`). */
const TYPE_NAMES: Record<number, string> = {
  1: "a stream socket",
  2: "a datagram socket",
  3: "a raw socket",
  5: "a seqpacket socket",
};

/**
 * Throws unless `fd` is a connected socket of type SOCK_STREAM: not listening (SO_ACCEPTCONN
 * is 0) and with a peer (getpeername(2)), what vhci_hcd's `attach` and a USB/IP session need.
 * A connection whose peer has closed since passes; its first read or write tells.
 *
 * @throws {StreamFdError} `not_a_socket`, `not_stream`, `listening` or `not_connected`.
 *
 * @example
 * ```ts
 * import { checkStreamFd } from "./scm_rights.ts";
 * import { socketPair } from "./socket_pair.ts";
 * import { closeFd } from "./fd.ts";
 * const [a, b] = socketPair();
 * checkStreamFd(a);
 * closeFd(a);
 * closeFd(b);
 * ```
 */
export function checkStreamFd(fd: number): void {
  // Opened first, so that its dlopen cannot change the errno of getsockopt read below.
  lib();
  const type = getIntOption(fd, SockOpt.SOL_SOCKET, SockOpt.SO_TYPE);
  if (type === undefined) {
    const code = fd < 0 ? Errno.EBADF : errno();
    throw new StreamFdError(
      "not_a_socket",
      `Cannot use fd ${fd}: it is not a socket (${describeErrno(code)})`,
      code,
    );
  }
  if (type !== C.SOCK_STREAM) {
    throw new StreamFdError(
      "not_stream",
      `Cannot use fd ${fd}: it is ${
        TYPE_NAMES[type] ?? `a socket of type ${type}`
      }, expected a stream socket`,
    );
  }
  if (getIntOption(fd, SockOpt.SOL_SOCKET, SockOpt.SO_ACCEPTCONN) !== 0) {
    throw new StreamFdError(
      "listening",
      `Cannot use fd ${fd}: it is a listening socket, expected a connected stream`,
    );
  }
  const address = new Uint8Array(128);
  const length = new Uint8Array(4);
  new DataView(length.buffer).setUint32(0, address.length, true);
  if (lib().getpeername(fd, address, length) !== 0) {
    const code = errno();
    throw new StreamFdError(
      "not_connected",
      `Cannot use fd ${fd}: the stream socket is not connected (${describeErrno(code)})`,
      code,
    );
  }
}

/** Options of {@linkcode sendFd} and {@linkcode receiveFd}. */
export interface FdPassingOptions {
  /** Gives up after this many milliseconds (default 10000). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** How long one poll(2) on the worker thread may block, so that an abort is seen soon. */
const POLL_SLICE_MS = 200;

/**
 * Waits until `fd` is ready for `events` (poll(2) on a worker thread); false at the deadline.
 */
async function waitFor(
  fd: number,
  events: number,
  deadline: number,
  signal: AbortSignal | undefined,
): Promise<boolean> {
  const pfd = new Uint8Array(8);
  const v = new DataView(pfd.buffer);
  while (true) {
    signal?.throwIfAborted();
    const left = deadline - performance.now();
    if (left <= 0) return false;
    v.setInt32(0, fd, true);
    v.setInt16(4, events, true);
    v.setInt16(6, 0, true);
    // n < 0 is EINTR at worst (errno of the worker thread is not ours to read): poll again.
    if (await lib().poll(pfd, 1n, Math.ceil(Math.min(left, POLL_SLICE_MS))) > 0) return true;
  }
}

/** A `struct msghdr` over one iovec of `data` and, when given, the control buffer. */
function msghdr(data: Uint8Array, iov: Uint8Array, control?: Uint8Array): Uint8Array {
  const iv = new DataView(iov.buffer, iov.byteOffset, iov.byteLength);
  iv.setBigUint64(0, addressOf(data), true);
  iv.setBigUint64(8, BigInt(data.length), true);
  const msg = new Uint8Array(MSGHDR.size);
  const m = new DataView(msg.buffer);
  m.setBigUint64(MSGHDR.msg_iov, addressOf(iov), true);
  m.setBigUint64(MSGHDR.msg_iovlen, 1n, true);
  if (control) {
    m.setBigUint64(MSGHDR.msg_control, addressOf(control), true);
    m.setBigUint64(MSGHDR.msg_controllen, BigInt(control.length), true);
  }
  return msg;
}

/**
 * Sends `bytes` (at least one) on connected unix stream socket `socketFd` with `fd` attached
 * to the first of them (SCM_RIGHTS). The kernel takes its own reference: the caller still
 * owns `fd` and may close it once this resolves. Works on blocking and non-blocking sockets.
 *
 * @throws {RangeError} When `bytes` is empty (a stream carries no descriptor without data).
 * @throws {OsError} With sendmsg(2)'s errno (EPIPE, ECONNRESET, EBADF, ...), or ETIMEDOUT
 * when the socket stays full past the time limit.
 */
export async function sendFd(
  socketFd: number,
  fd: number,
  bytes: Uint8Array,
  options: FdPassingOptions = {},
): Promise<void> {
  if (bytes.length === 0) {
    throw new RangeError("Cannot send a descriptor without data: expected at least 1 byte");
  }
  const what = `Cannot send fd ${fd} on socket ${socketFd}`;
  const deadline = performance.now() + (options.timeoutMs ?? 10000);
  const control = new Uint8Array(cmsgSpace(4));
  const cv = new DataView(control.buffer);
  // CMSG_LEN(sizeof(int)): the header and one int, without the trailing padding.
  cv.setBigUint64(0, BigInt(CMSG_HDR + 4), true);
  cv.setInt32(8, C.SOL_SOCKET, true);
  cv.setInt32(12, C.SCM_RIGHTS, true);
  cv.setInt32(CMSG_HDR, fd, true);
  const data = bytes.slice();
  const iov = new Uint8Array(IOVEC_SIZE);
  let off = 0;
  while (off < data.length) {
    const rest = data.subarray(off);
    // The descriptor travels with the first byte that is sent, and only once.
    const msg = msghdr(rest, iov, off === 0 ? control : undefined);
    const n = lib().sendmsg(socketFd, msg, C.MSG_DONTWAIT | C.MSG_NOSIGNAL);
    if (n < 0n) {
      const e = errno();
      if (e === Errno.EINTR) continue;
      if (e !== Errno.EAGAIN) throw new OsError(what, e);
      if (!await waitFor(socketFd, C.POLLOUT, deadline, options.signal)) {
        throw new OsError(what, Errno.ETIMEDOUT);
      }
      continue;
    }
    off += Number(n);
  }
}

/** What {@linkcode receiveFd} got: the descriptor (the caller owns it) and the bytes. */
export interface ReceivedFd {
  /** The received descriptor, close-on-exec; the caller closes it or hands it on. */
  fd: number;
  /** The data bytes that carried it (1 to `maxBytes`). */
  bytes: Uint8Array;
}

/** Room for the control data: up to 16 descriptors, and a SCM_CREDENTIALS message besides. */
const CONTROL_BYTES = cmsgSpace(16 * 4) + cmsgSpace(12);

/** The descriptors of every SCM_RIGHTS message in the first `length` bytes of `control`. */
function descriptorsIn(control: Uint8Array, length: number): number[] {
  const v = new DataView(control.buffer, control.byteOffset, control.byteLength);
  const fds: number[] = [];
  let off = 0;
  // CMSG_FIRSTHDR/CMSG_NXTHDR (cmsg(3)): headers follow each other at aligned offsets.
  while (off + CMSG_HDR <= length) {
    const len = Number(v.getBigUint64(off, true));
    if (len < CMSG_HDR || off + len > length) break;
    if (v.getInt32(off + 8, true) === C.SOL_SOCKET && v.getInt32(off + 12, true) === C.SCM_RIGHTS) {
      for (let p = off + CMSG_HDR; p + 4 <= off + len; p += 4) fds.push(v.getInt32(p, true));
    }
    off += cmsgAlign(len);
  }
  return fds;
}

/**
 * Receives up to `maxBytes` bytes with exactly one descriptor attached (SCM_RIGHTS) on unix
 * stream socket `socketFd`, waiting up to the time limit for them. The descriptor is
 * close-on-exec and the caller's; any other descriptor that came along is closed.
 *
 * Use `maxBytes` 1 when the sender sends one byte with the descriptor and what follows belongs
 * to another reader.
 *
 * @throws {FdPassingError} `timeout`, `closed`, `no_fd` (the bytes were consumed),
 * `too_many_fds` or `truncated` (every descriptor received was closed).
 * @throws {OsError} With recvmsg(2)'s errno (ECONNRESET, EBADF, ...).
 */
export async function receiveFd(
  socketFd: number,
  maxBytes = 1,
  options: FdPassingOptions = {},
): Promise<ReceivedFd> {
  if (!Number.isInteger(maxBytes) || maxBytes < 1) {
    throw new RangeError(`Invalid maxBytes ${maxBytes}: expected a positive integer`);
  }
  const timeoutMs = options.timeoutMs ?? 10000;
  const deadline = performance.now() + timeoutMs;
  const what = `Cannot receive a descriptor on socket ${socketFd}`;
  const data = new Uint8Array(maxBytes);
  const iov = new Uint8Array(IOVEC_SIZE);
  const control = new Uint8Array(CONTROL_BYTES);
  while (true) {
    options.signal?.throwIfAborted();
    const msg = msghdr(data, iov, control);
    const n = lib().recvmsg(socketFd, msg, C.MSG_DONTWAIT | C.MSG_CMSG_CLOEXEC);
    if (n < 0n) {
      const e = errno();
      if (e === Errno.EINTR) continue;
      if (e !== Errno.EAGAIN) throw new OsError(what, e);
      if (!await waitFor(socketFd, C.POLLIN, deadline, options.signal)) {
        throw new FdPassingError("timeout", `${what}: nothing arrived within ${timeoutMs} ms`);
      }
      continue;
    }
    const m = new DataView(msg.buffer);
    const flags = m.getInt32(MSGHDR.msg_flags, true);
    const fds = descriptorsIn(control, Number(m.getBigUint64(MSGHDR.msg_controllen, true)));
    const bytes = data.slice(0, Number(n));
    if ((flags & C.MSG_CTRUNC) !== 0 || fds.length > 1) {
      for (const fd of fds) lib().close(fd);
      throw (flags & C.MSG_CTRUNC) !== 0
        ? new FdPassingError("truncated", `${what}: the control data was truncated`, bytes)
        : new FdPassingError(
          "too_many_fds",
          `${what}: ${fds.length} descriptors came, expected one`,
          bytes,
        );
    }
    if (fds.length === 0) {
      if (n === 0n) {
        throw new FdPassingError("closed", `${what}: the peer closed the connection`);
      }
      throw new FdPassingError(
        "no_fd",
        `${what}: ${bytes.length} byte${bytes.length === 1 ? "" : "s"} came without one`,
        bytes,
      );
    }
    return { fd: fds[0]!, bytes };
  }
}
