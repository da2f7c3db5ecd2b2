/**
 * The libc symbols the kernel client needs through FFI: BSD sockets (socket(2), connect(2),
 * poll(2), recv(2), send(2), fcntl(2); socket options are lib/ffi/sockopt.ts's) for a socket
 * whose fd this process owns, as vhci_hcd's sysfs `attach` requires, and open(2)/write(2) for
 * sysfs attributes, so that the kernel's errno reaches the caller unchanged (as
 * lib/ffi/os_error.ts's `OsError`). Private to lib/client. Constants are the Linux values
 * (asm-generic, identical on x86_64 and aarch64).
 *
 * @module
 */

import { ERRNO_LOCATION, errnoAt, lazyLibc } from "../ffi/libc.ts";
import { OsError } from "../ffi/os_error.ts";

export { describeErrno, Errno, OsError } from "../ffi/os_error.ts";

const SYMBOLS = {
  // int socket(int domain, int type, int protocol);
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int connect(int sockfd, const struct sockaddr *addr, socklen_t addrlen);
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // int poll(struct pollfd *fds, nfds_t nfds, int timeout);  blocks: runs on a worker thread
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  // ssize_t recv(int sockfd, void *buf, size_t len, int flags);
  recv: { parameters: ["i32", "buffer", "u64", "i32"], result: "i64" },
  // ssize_t send(int sockfd, const void *buf, size_t len, int flags);
  send: { parameters: ["i32", "buffer", "u64", "i32"], result: "i64" },
  // int fcntl(int fd, int cmd, ... /* int arg */);  variadic; an int travels as in a plain call
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int open(const char *pathname, int flags, mode_t mode);
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  // ssize_t write(int fd, const void *buf, size_t count);
  write: { parameters: ["i32", "buffer", "u64"], result: "i64" },
  // int close(int fd);
  close: { parameters: ["i32"], result: "i32" },
  ...ERRNO_LOCATION,
} as const satisfies Deno.ForeignLibraryInterface;

/** The libc symbols, opened on first use so that FFI permission is needed only here. */
export const lib: () => Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] = lazyLibc(SYMBOLS);

/** Socket and file constants (Linux). */
export const C = {
  AF_UNIX: 1,
  AF_INET: 2,
  AF_INET6: 10,
  SOCK_STREAM: 1,
  SOCK_NONBLOCK: 0o4000,
  SOCK_CLOEXEC: 0o2000000,
  F_GETFL: 3,
  F_SETFL: 4,
  O_WRONLY: 1,
  O_NONBLOCK: 0o4000,
  O_CLOEXEC: 0o2000000,
  POLLIN: 0x1,
  POLLOUT: 0x4,
  POLLERR: 0x8,
  POLLHUP: 0x10,
  MSG_DONTWAIT: 0x40,
  MSG_NOSIGNAL: 0x4000,
} as const;

/** The calling thread's errno; read it right after the synchronous call that failed. */
export function errno(): number {
  return errnoAt(lib().__errno_location());
}

const encoder = new TextEncoder();

/** A NUL-terminated C string. */
export function cString(s: string): Uint8Array {
  const b = encoder.encode(s);
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
}

/**
 * Writes `text` to an existing file (a sysfs attribute) in one write(2), as the kernel wants
 * an attribute store: `O_WRONLY`, no create, no truncate. Throws {@linkcode OsError} with the
 * kernel's errno (EBUSY, EINVAL, EACCES, ENOENT, ...).
 */
export function writeAttribute(path: string, text: string): void {
  const l = lib();
  const fd = l.open(cString(path), C.O_WRONLY | C.O_CLOEXEC, 0);
  if (fd < 0) throw new OsError(`Cannot open ${path}`, errno());
  try {
    const bytes = encoder.encode(text);
    const n = l.write(fd, bytes, BigInt(bytes.length));
    if (n < 0n) throw new OsError(`Cannot write "${text}" to ${path}`, errno());
    if (Number(n) !== bytes.length) {
      throw new Error(
        `Cannot write "${text}" to ${path}: only ${n} of ${bytes.length} bytes taken`,
      );
    }
  } finally {
    l.close(fd);
  }
}
