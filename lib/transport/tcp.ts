/**
 * TCP transport on IPv4 and IPv6, with TCP_NODELAY and keep-alive on every connection so that
 * a request/response round trip is not held back by Nagle's algorithm (USBIP.md), and a
 * client that vanished is given up in seconds rather than hours.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import {
  type Connection,
  formatHostPort,
  type Listener,
  type PeerInfo,
  wrapDenoConn,
} from "./connection.ts";
import {
  DEFAULT_KEEPALIVE,
  type KeepaliveOptions,
  tuneListenerKeepalive,
} from "./_tcp_keepalive.ts";

const log = getLogger(["usbipgw", "transport"]);

/** Where to listen for TCP. */
export interface TcpListenOptions {
  /** Address to bind, e.g. `127.0.0.1`, `::1`, `0.0.0.0`. */
  hostname: string;
  /** Port; 0 picks a free one. */
  port: number;
  /**
   * Keep-alive for the accepted connections, so that a vanished client frees its device
   * ({@linkcode DEFAULT_KEEPALIVE} when absent); false keeps the system's defaults.
   */
  keepalive?: KeepaliveOptions | false;
}

/** Wraps a Deno TCP connection, turning on TCP_NODELAY and keep-alive. */
export function wrapTcpConn(conn: Deno.TcpConn): Connection {
  conn.setNoDelay(true);
  conn.setKeepAlive(true);
  const remote = conn.remoteAddr;
  const peer: PeerInfo = {
    transport: "tcp",
    address: formatHostPort(remote.hostname, remote.port),
  };
  return wrapDenoConn(conn, peer);
}

/** A TCP listener that yields {@linkcode Connection}s. */
export class TcpListener implements Listener {
  #listener: Deno.TcpListener;
  readonly description: string;
  /** Why keep-alive tuning failed, when it did (the system's defaults apply then). */
  readonly keepaliveProblem: string | undefined;

  /** Binds at once; throws `Deno.errors.AddrInUse` and the like. */
  constructor(options: TcpListenOptions) {
    this.#listener = Deno.listen({
      transport: "tcp",
      hostname: options.hostname,
      port: options.port,
    });
    this.description = `tcp ${formatHostPort(options.hostname, this.port)}`;
    const keepalive = options.keepalive ?? DEFAULT_KEEPALIVE;
    this.keepaliveProblem = keepalive === false
      ? undefined
      : tuneListenerKeepalive(this.port, keepalive);
    if (this.keepaliveProblem !== undefined) {
      log.warn("{listener}: keep-alive not tuned ({problem}); a vanished client is noticed late", {
        listener: this.description,
        problem: this.keepaliveProblem,
      });
    }
  }

  /** The bound port (useful after binding port 0). */
  get port(): number {
    return this.#listener.addr.port;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Connection> {
    while (true) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch (e) {
        if (e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted) return;
        throw e;
      }
      yield wrapTcpConn(conn);
    }
  }

  close(): void {
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
  }
}

/** Connects to a TCP USB/IP server with TCP_NODELAY and keep-alive (the client side). */
export async function connectTcp(hostname: string, port: number): Promise<Connection> {
  return wrapTcpConn(await Deno.connect({ transport: "tcp", hostname, port }));
}

/** Parses `HOST:PORT`, `[V6]:PORT` or `HOST` (port `defaultPort`). */
export function parseHostPort(text: string, defaultPort: number): TcpListenOptions {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  let hostname: string;
  let portText: string | undefined;
  if (v6) {
    hostname = v6[1]!;
    portText = v6[2];
  } else {
    const colons = text.split(":").length - 1;
    if (colons > 1) {
      hostname = text;
    } else {
      const i = text.lastIndexOf(":");
      hostname = i < 0 ? text : text.slice(0, i);
      portText = i < 0 ? undefined : text.slice(i + 1);
    }
  }
  if (hostname === "") throw new TypeError(`Invalid address "${text}": the host is empty`);
  const port = portText === undefined ? defaultPort : Number(portText);
  if (!/^\d+$/.test(portText ?? String(defaultPort)) || port > 65535) {
    throw new TypeError(`Invalid address "${text}": the port must be 0..65535`);
  }
  return { hostname, port };
}

export { DEFAULT_KEEPALIVE, type KeepaliveOptions, tuneKeepaliveFd } from "./_tcp_keepalive.ts";
