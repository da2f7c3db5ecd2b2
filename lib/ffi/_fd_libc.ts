/**
 * The libc symbols of socket pairs and descriptor passing through FFI: socketpair(2),
 * sendmsg(2), recvmsg(2), getpeername(2), poll(2), fcntl(2), close(2). Private to lib/ffi. Constants are the
 * Linux values (asm-generic; identical on x86_64 and aarch64), struct offsets those of LP64
 * (`<bits/socket.h>`, cmsg(3)).
 *
 * @module
 */

import { ERRNO_LOCATION, errnoAt, lazyLibc } from "./libc.ts";

const SYMBOLS = {
  // int socketpair(int domain, int type, int protocol, int sv[2]);
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  // ssize_t sendmsg(int sockfd, const struct msghdr *msg, int flags);
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "i64" },
  // ssize_t recvmsg(int sockfd, struct msghdr *msg, int flags);
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "i64" },
  // int poll(struct pollfd *fds, nfds_t nfds, int timeout);  blocks: runs on a worker thread
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  // int getpeername(int sockfd, struct sockaddr *addr, socklen_t *addrlen);
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // int fcntl(int fd, int cmd, ... /* int arg */);  variadic; an int travels as in a plain call
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int close(int fd);
  close: { parameters: ["i32"], result: "i32" },
  ...ERRNO_LOCATION,
} as const satisfies Deno.ForeignLibraryInterface;

/** The libc symbols, opened on first use so that FFI permission is needed only here. */
export const lib: () => Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] = lazyLibc(SYMBOLS);

/** The calling thread's errno; read it right after the synchronous call that failed. */
export function errno(): number {
  return errnoAt(lib().__errno_location());
}

/** Constants of `<sys/socket.h>`, `<poll.h>` and `<fcntl.h>` (Linux). */
export const C = {
  AF_UNIX: 1,
  SOCK_STREAM: 1,
  SOCK_DGRAM: 2,
  SOCK_SEQPACKET: 5,
  SOCK_CLOEXEC: 0o2000000,
  SOL_SOCKET: 1,
  /** cmsg type carrying file descriptors (unix(7)). */
  SCM_RIGHTS: 1,
  MSG_CTRUNC: 0x8,
  MSG_TRUNC: 0x20,
  MSG_DONTWAIT: 0x40,
  MSG_NOSIGNAL: 0x4000,
  /** Received descriptors get FD_CLOEXEC atomically (recvmsg(2)). */
  MSG_CMSG_CLOEXEC: 0x40000000,
  POLLIN: 0x1,
  POLLOUT: 0x4,
  F_GETFL: 3,
  F_SETFL: 4,
  O_NONBLOCK: 0o4000,
  /** fcntl(2): duplicate to the lowest free fd at or above the argument, close-on-exec. */
  F_DUPFD_CLOEXEC: 1030,
} as const;

/** `struct msghdr` (56 bytes): field offsets. */
export const MSGHDR = {
  size: 56,
  msg_name: 0,
  msg_namelen: 8,
  msg_iov: 16,
  msg_iovlen: 24,
  msg_control: 32,
  msg_controllen: 40,
  msg_flags: 48,
} as const;

/** `struct iovec` (16 bytes): `iov_base` at 0, `iov_len` at 8. */
export const IOVEC_SIZE = 16;

/** `struct cmsghdr` header: `cmsg_len` (size_t) at 0, level at 8, type at 12, data at 16. */
export const CMSG_HDR = 16;

/** CMSG_ALIGN: cmsg data and headers are aligned to `size_t`. */
export function cmsgAlign(n: number): number {
  return (n + 7) & ~7;
}

/** CMSG_SPACE(n): the bytes one cmsg with `n` data bytes takes in the control buffer. */
export function cmsgSpace(n: number): number {
  return CMSG_HDR + cmsgAlign(n);
}

/** The address of `buf`'s first byte, to store in a struct; keep `buf` referenced meanwhile. */
export function addressOf(buf: Uint8Array): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}
