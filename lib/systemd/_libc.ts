/**
 * The libc calls socket activation needs through FFI: getsockopt(2) for SO_TYPE, SO_DOMAIN
 * and SO_ACCEPTCONN (through lib/ffi/sockopt.ts), getsockname(2) for a unix socket's path (socket(7), unix(7)), and
 * fcntl(2) to mark an inherited descriptor close-on-exec as sd_listen_fds(3) does.
 * Opened lazily so that FFI permission is only needed where sockets are inherited.
 *
 * @module
 */

import { lazyLibc } from "../ffi/libc.ts";
import { getIntOption, SockOpt } from "../ffi/sockopt.ts";

const SYMBOLS = {
  // int getsockname(int sockfd, struct sockaddr *addr, socklen_t *addrlen);
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  // int fcntl(int fd, int cmd, ... /* int arg */);
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

const F_GETFD = 1;
const F_SETFD = 2;
const FD_CLOEXEC = 1;

/** Address families of `<sys/socket.h>`. */
export const AF = { AF_UNIX: 1, AF_INET: 2, AF_INET6: 10 } as const;
/** Socket types of `<sys/socket.h>`. */
export const SOCK = { SOCK_STREAM: 1, SOCK_DGRAM: 2, SOCK_SEQPACKET: 5 } as const;

const lib = lazyLibc(SYMBOLS);

function intOption(fd: number, option: number): number | undefined {
  return getIntOption(fd, SockOpt.SOL_SOCKET, option);
}

/** What a file descriptor is, as far as socket activation cares; `undefined`: not a socket. */
export interface SocketFacts {
  /** `AF.AF_UNIX`, `AF.AF_INET`, `AF.AF_INET6`, ... */
  domain: number;
  /** `SOCK.SOCK_STREAM`, ... */
  type: number;
  /** Whether listen(2) was called on it. */
  listening: boolean;
  /** A unix socket's path (`@name` for an abstract one, `""` when unnamed). */
  unixPath?: string;
}

/** Reads the domain, type, listening state and (unix) path of socket `fd`. */
export function socketFacts(fd: number): SocketFacts | undefined {
  const type = intOption(fd, SockOpt.SO_TYPE);
  const domain = intOption(fd, SockOpt.SO_DOMAIN);
  if (type === undefined || domain === undefined) return undefined;
  const facts: SocketFacts = {
    domain,
    type,
    listening: intOption(fd, SockOpt.SO_ACCEPTCONN) === 1,
  };
  if (domain === AF.AF_UNIX) {
    // struct sockaddr_un: sa_family_t sun_family; char sun_path[108];
    const addr = new Uint8Array(110);
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, addr.length, true);
    if (lib().getsockname(fd, addr, len) === 0) {
      const n = Math.min(new DataView(len.buffer).getUint32(0, true), addr.length);
      const path = addr.subarray(2, n);
      if (path.length > 0 && path[0] === 0) {
        facts.unixPath = `@${new TextDecoder().decode(path.subarray(1))}`;
      } else {
        const end = path.indexOf(0);
        facts.unixPath = new TextDecoder().decode(end < 0 ? path : path.subarray(0, end));
      }
    }
  }
  return facts;
}

/** Sets FD_CLOEXEC on `fd`, so that programs the gateway starts do not inherit it. */
export function setCloseOnExec(fd: number): boolean {
  const { fcntl } = lib();
  const flags = fcntl(fd, F_GETFD, 0);
  if (flags < 0) return false;
  return fcntl(fd, F_SETFD, flags | FD_CLOEXEC) === 0;
}
