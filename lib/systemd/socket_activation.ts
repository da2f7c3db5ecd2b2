/**
 * systemd socket activation (sd_listen_fds(3), systemd.socket(5)): the listening sockets a
 * socket unit (or `systemd-socket-activate`) passes as file descriptors 3, 4, ... with
 * `$LISTEN_PID`, `$LISTEN_FDS` and `$LISTEN_FDNAMES`, adopted through `node:net` (Deno's own
 * `Deno.listen` cannot take a descriptor) and served as {@linkcode Listener}s: TCP connections
 * get TCP_NODELAY and keep-alive like `TcpListener`'s, unix connections carry their SO_PEERCRED
 * credentials like `UnixListener`'s, so the policy sees the same peers.
 *
 * @module
 */

import * as net from "node:net";
import { AcceptQueue } from "../transport/accept_queue.ts";
import {
  type Connection,
  DEFAULT_KEEPALIVE,
  formatHostPort,
  type Listener,
  NODE_SERVER_OPTIONS,
  tuneKeepaliveFd,
  wrapNodeSocket,
  wrapUnixSocket,
} from "../transport/mod.ts";
import { AF, setCloseOnExec, SOCK, socketFacts } from "./_libc.ts";

/** The first inherited descriptor (`SD_LISTEN_FDS_START`). */
export const SD_LISTEN_FDS_START = 3;

/** More inherited sockets than this is taken for a malformed `$LISTEN_FDS`. */
export const MAX_LISTEN_FDS = 256;

/** The socket-activation variables, as the process environment has them. */
export interface ListenEnv {
  /** The pid the sockets are meant for. */
  LISTEN_PID?: string | undefined;
  /** How many descriptors, from 3 on. */
  LISTEN_FDS?: string | undefined;
  /** Their names (`FileDescriptorName=`), colon-separated. */
  LISTEN_FDNAMES?: string | undefined;
}

/** One inherited descriptor and its name (`"unknown"` when none was given). */
export interface InheritedFd {
  fd: number;
  name: string;
}

/**
 * The descriptors passed to process `pid`, as sd_listen_fds_with_names(3) reads them: none
 * when `$LISTEN_PID` is absent or names another process (a parent's sockets, say). Names are
 * used only when there is one per descriptor.
 *
 * @throws {TypeError} When `$LISTEN_FDS` or `$LISTEN_PID` is not a number, or
 *   `$LISTEN_FDS` is over {@linkcode MAX_LISTEN_FDS}.
 *
 * @example Two sockets from a socket unit
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseListenFds } from "./socket_activation.ts";
 * assertEquals(
 *   parseListenFds({ LISTEN_PID: "42", LISTEN_FDS: "2", LISTEN_FDNAMES: "tcp:unix" }, 42),
 *   [{ fd: 3, name: "tcp" }, { fd: 4, name: "unix" }],
 * );
 * assertEquals(parseListenFds({ LISTEN_PID: "41", LISTEN_FDS: "2" }, 42), []);
 * ```
 */
export function parseListenFds(env: ListenEnv, pid: number): InheritedFd[] {
  const { LISTEN_PID: pidText, LISTEN_FDS: fdsText, LISTEN_FDNAMES: namesText } = env;
  if (fdsText === undefined || pidText === undefined) return [];
  if (!/^\d+$/.test(pidText)) {
    throw new TypeError(`Cannot use LISTEN_PID=${pidText}: expected a process id`);
  }
  if (Number(pidText) !== pid) return [];
  if (!/^\d+$/.test(fdsText)) {
    throw new TypeError(`Cannot use LISTEN_FDS=${fdsText}: expected a number of descriptors`);
  }
  const count = Number(fdsText);
  if (count > MAX_LISTEN_FDS) {
    throw new TypeError(
      `Cannot use LISTEN_FDS=${fdsText}: more than ${MAX_LISTEN_FDS} inherited sockets`,
    );
  }
  const names = namesText?.split(":");
  const named = names !== undefined && names.length === count;
  return Array.from({ length: count }, (_, i) => ({
    fd: SD_LISTEN_FDS_START + i,
    name: named ? names[i]! : "unknown",
  }));
}

/** A listening socket inherited from systemd, served through a `node:net` server. */
export class ActivatedListener implements Listener {
  /** `tcp ADDRESS:PORT (systemd)` or `unix PATH (systemd)`. */
  readonly description: string;
  /** The inherited descriptor. */
  readonly fd: number;
  /** Its `FileDescriptorName=`, or `"unknown"`. */
  readonly name: string;
  readonly transport: "tcp" | "unix";
  /** `HOST:PORT` for TCP, the socket path for unix (`@name` when abstract). */
  readonly address: string;
  #server: net.Server;
  #accepted = new AcceptQueue();

  private constructor(
    server: net.Server,
    inherited: InheritedFd,
    transport: "tcp" | "unix",
    address: string,
  ) {
    this.#server = server;
    this.fd = inherited.fd;
    this.name = inherited.name;
    this.transport = transport;
    this.address = address;
    this.description = `${transport} ${address} (systemd)`;
    server.on("connection", (sock: net.Socket) => {
      // The wrappers report errors through reads and writes; this keeps an error that comes
      // before either from being an unhandled 'error' event.
      sock.on("error", () => {});
      let conn: Connection;
      if (transport === "unix") {
        conn = wrapUnixSocket(sock, address);
      } else {
        sock.setNoDelay(true);
        sock.setKeepAlive(true);
        conn = wrapNodeSocket(sock, {
          transport: "tcp",
          address: formatHostPort(sock.remoteAddress ?? "unknown", sock.remotePort ?? 0),
        });
      }
      this.#accepted.push(conn);
    });
    server.on("error", () => {
      // An accept error on a listening socket: the next accept is tried by node:net itself.
    });
  }

  /**
   * Adopts an inherited descriptor: it must be a listening TCP (IPv4 or IPv6) or unix stream
   * socket (`ListenStream=`). It is marked close-on-exec, as sd_listen_fds(3) does.
   *
   * @throws {TypeError} For any other kind of descriptor, naming it and what it is.
   */
  static async adopt(inherited: InheritedFd): Promise<ActivatedListener> {
    const what = `inherited socket fd ${inherited.fd} ("${inherited.name}")`;
    const facts = socketFacts(inherited.fd);
    if (facts === undefined) throw new TypeError(`Cannot adopt ${what}: it is not a socket`);
    if (facts.type !== SOCK.SOCK_STREAM) {
      throw new TypeError(
        `Cannot adopt ${what}: it is not a stream socket (socket type ${facts.type}); use ListenStream=`,
      );
    }
    if (
      facts.domain !== AF.AF_UNIX && facts.domain !== AF.AF_INET && facts.domain !== AF.AF_INET6
    ) {
      throw new TypeError(
        `Cannot adopt ${what}: address family ${facts.domain} is not TCP or unix`,
      );
    }
    if (!facts.listening) {
      throw new TypeError(
        `Cannot adopt ${what}: it is a connection, not a listening socket (Accept=yes is not supported)`,
      );
    }
    setCloseOnExec(inherited.fd);
    if (facts.domain !== AF.AF_UNIX) {
      // The gateway's keep-alive timings, which accepted connections inherit, as TcpListener
      // does: a vanished client frees its device in seconds, not hours.
      tuneKeepaliveFd(inherited.fd, DEFAULT_KEEPALIVE);
    }
    const server = net.createServer(NODE_SERVER_OPTIONS);
    await new Promise<void>((resolve, reject) => {
      const failed = (e: Error) => reject(new TypeError(`Cannot adopt ${what}: ${e.message}`));
      server.once("error", failed);
      server.listen({ fd: inherited.fd }, () => {
        server.off("error", failed);
        resolve();
      });
    });
    if (facts.domain === AF.AF_UNIX) {
      return new ActivatedListener(server, inherited, "unix", facts.unixPath ?? "");
    }
    const bound = server.address();
    const address = bound !== null && typeof bound === "object"
      ? formatHostPort(bound.address, bound.port)
      : `fd ${inherited.fd}`;
    return new ActivatedListener(server, inherited, "tcp", address);
  }

  /** The TCP port it listens on; undefined for a unix socket. */
  get port(): number | undefined {
    const bound = this.transport === "tcp" ? this.#server.address() : null;
    return bound !== null && typeof bound === "object" ? bound.port : undefined;
  }

  [Symbol.asyncIterator](): AsyncIterator<Connection> {
    return this.#accepted[Symbol.asyncIterator]();
  }

  /**
   * Stops accepting and closes this process's copy of the descriptor. The socket file stays:
   * systemd holds the socket, and queues connections until the service runs again.
   */
  close(): void {
    if (this.#accepted.closed) return;
    this.#accepted.close();
    this.#server.close();
  }
}

/**
 * Adopts every inherited descriptor (see {@linkcode ActivatedListener.adopt}); when one cannot
 * be adopted, those already adopted are closed and the error is thrown.
 */
export async function adoptListeners(fds: InheritedFd[]): Promise<ActivatedListener[]> {
  const adopted: ActivatedListener[] = [];
  try {
    for (const fd of fds) adopted.push(await ActivatedListener.adopt(fd));
  } catch (e) {
    for (const l of adopted) l.close();
    throw e;
  }
  return adopted;
}
