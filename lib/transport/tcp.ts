/**
 * TCP transport on IPv4 and IPv6, with TCP_NODELAY and keep-alive on every connection so that
 * a request/response round trip is not held back by Nagle's algorithm (as the usbip tool's usbip_net_set_nodelay in
 * tools/usb/usbip/src/usbip_network.c), and a
 * client that vanished is given up in seconds rather than hours.
 *
 * @module
 */

import { connectError } from "./connect_error.ts";
import { tcpListenError } from "./listen_error.ts";
import {
  type Connection,
  formatHostPort,
  type Listener,
  type PeerInfo,
  wrapDenoConn,
} from "./connection.ts";
import { type KeepaliveOptions, keepListenerAlive } from "./_tcp_keepalive.ts";

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

  /**
   * Binds at once.
   *
   * @throws {ListenError} When the address is in use, is not one of this host's, or the port
   * needs privileges this process lacks; the message names the address.
   */
  constructor(options: TcpListenOptions) {
    try {
      this.#listener = Deno.listen({
        transport: "tcp",
        hostname: options.hostname,
        port: options.port,
      });
    } catch (e) {
      throw tcpListenError(formatHostPort(options.hostname, options.port), options.port, e);
    }
    this.description = `tcp ${formatHostPort(options.hostname, this.port)}`;
    this.keepaliveProblem = keepListenerAlive(this.port, options.keepalive, this.description);
  }

  /** The bound port (useful after binding port 0). */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** Yields each accepted connection, TCP_NODELAY and keep-alive on; ends once closed. */
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

/**
 * Connects to a TCP USB/IP server with TCP_NODELAY and keep-alive (the client side).
 *
 * @throws {ConnectError} When the server cannot be reached (refused, unreachable, timed out, an
 * unknown host); the message names `hostname:port` and the reason.
 */
export async function connectTcp(hostname: string, port: number): Promise<Connection> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ transport: "tcp", hostname, port });
  } catch (e) {
    throw connectError(formatHostPort(hostname, port), "tcp", e);
  }
  return wrapTcpConn(conn);
}

/** A host and a port, as {@linkcode parseHostPort} reads them. */
export interface HostPort {
  /** A host name, an IPv4 address or an IPv6 address (without brackets). */
  hostname: string;
  /** The port; 0 (any free port) only for a listener. */
  port: number;
}

/** Options of {@linkcode parseHostPort}. */
export interface ParseHostPortOptions {
  /**
   * Who will use the address. `listen` (the default): a port alone (`3240`) means
   * `127.0.0.1:3240`, and port 0 (any free port) is accepted. `connect`: a host is required
   * (a number alone is refused, since it could be meant as a host) and the port must be
   * 1..65535.
   */
  role?: "listen" | "connect";
}

/** Whether `text` is a dotted-quad IPv4 address with every part 0..255. */
function _isIpv4(text: string): boolean {
  const parts = text.split(".");
  return parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
}

/** Whether `text` is an IPv6 address (`::1`, `fe80::1%eth0`, `::ffff:192.0.2.1`). */
function _isIpv6(text: string): boolean {
  const address = text.replace(/%[\w.-]+$/, "");
  const halves = address.split("::");
  if (halves.length > 2) return false;
  const groups = halves.flatMap((h) => h === "" ? [] : h.split(":"));
  let count = groups.length;
  const last = groups.at(-1);
  if (last !== undefined && last.includes(".")) {
    if (!_isIpv4(last)) return false;
    groups.pop();
    count++; // an IPv4 tail fills two groups
  }
  if (!groups.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return false;
  return halves.length === 2 ? count <= 7 : count === 8;
}

/** Why `host` is neither a host name nor an IP address, or `undefined` when it is one. */
function _hostProblem(host: string): string | undefined {
  if (host === "") return "the host is empty";
  if (host.includes(":")) return _isIpv6(host) ? undefined : `"${host}" is not an IPv6 address`;
  if (/^[\d.]+$/.test(host)) {
    return _isIpv4(host) ? undefined : `"${host}" is not an IPv4 address (A.B.C.D, each 0..255)`;
  }
  const name = host.endsWith(".") ? host.slice(0, -1) : host;
  const label = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;
  if (name.length > 253 || !name.split(".").every((l) => label.test(l))) {
    return `"${host}" is not a host name or an IP address`;
  }
  return undefined;
}

/**
 * Reads an address: `HOST:PORT`, `[IPV6]:PORT`, `HOST` or `[IPV6]` alone (port
 * `defaultPort`), an unbracketed IPv6 address alone (`::1`, port `defaultPort`), and, for a
 * listener, a port alone: `3240` means `127.0.0.1:3240` (loopback only; listen on all
 * addresses with `0.0.0.0:3240` or `[::]:3240`). For a client (`role: "connect"`) a number
 * alone is refused, since it could be meant as a host.
 *
 * Pure: it resolves nothing, so a malformed address is reported here, never by a resolver.
 * Messages name the text and the accepted form, not the flag or file it came from: callers
 * add that (`Invalid --tcp 3240x: ...`).
 *
 * @throws {TypeError} For a malformed address (an empty host, a port that is not a number, a
 * host that is neither a name nor an IP address, a number alone for a client).
 * @throws {RangeError} For a port outside 1..65535 (0..65535 for a listener).
 *
 * @example
 * ```ts
 * import { assertEquals, assertThrows } from "@std/assert";
 * import { parseHostPort } from "./tcp.ts";
 * assertEquals(parseHostPort("3240", 3240), { hostname: "127.0.0.1", port: 3240 });
 * assertEquals(parseHostPort("[::1]:4000", 3240), { hostname: "::1", port: 4000 });
 * assertEquals(parseHostPort("gw.example", 3240, { role: "connect" }), {
 *   hostname: "gw.example",
 *   port: 3240,
 * });
 * assertThrows(() => parseHostPort("3240", 3240, { role: "connect" }), TypeError, "HOST:PORT");
 * assertThrows(() => parseHostPort("host:70000", 3240), RangeError, "1..65535");
 * ```
 */
export function parseHostPort(
  text: string,
  defaultPort: number,
  options: ParseHostPortOptions = {},
): HostPort {
  const listen = (options.role ?? "listen") === "listen";
  const form = listen
    ? "expected HOST:PORT (IPv6 as [ADDR]:PORT) or a port alone for 127.0.0.1"
    : "expected HOST:PORT (IPv6 as [ADDR]:PORT)";
  const invalid = (why: string) => new TypeError(`Invalid address "${text}": ${why}; ${form}`);
  let hostname: string;
  let portText: string | undefined;
  if (text.startsWith("[")) {
    const m = /^\[([^\]]*)\](?::(.*))?$/.exec(text);
    if (!m) throw invalid(`"]" and then ":PORT" or nothing must follow the IPv6 address`);
    hostname = m[1]!;
    portText = m[2];
    if (!_isIpv6(hostname)) throw invalid(`"${hostname}" is not an IPv6 address`);
  } else if (/^\d+$/.test(text)) {
    if (!listen) throw invalid("a number alone is not enough here: the host is missing");
    hostname = "127.0.0.1";
    portText = text;
  } else {
    const colons = text.split(":").length - 1;
    if (colons > 1) {
      if (!_isIpv6(text)) {
        throw invalid(`"${text}" is not an IPv6 address (with a port, write [ADDR]:PORT)`);
      }
      hostname = text;
    } else {
      const i = text.indexOf(":");
      hostname = i < 0 ? text : text.slice(0, i);
      portText = i < 0 ? undefined : text.slice(i + 1);
    }
  }
  const problem = _hostProblem(hostname);
  if (problem !== undefined) throw invalid(problem);
  if (portText === undefined) return { hostname, port: defaultPort };
  if (portText === "") throw invalid(`the port is missing after ":"`);
  if (!/^\d+$/.test(portText)) throw invalid(`the port "${portText}" is not a number`);
  const port = Number(portText);
  if (port > 65535 || (!listen && port === 0)) {
    throw new RangeError(
      `Invalid address "${text}": the port must be 1..65535${
        listen ? " (or 0 for any free port)" : ""
      }; ${form}`,
    );
  }
  return { hostname, port };
}

export { DEFAULT_KEEPALIVE, type KeepaliveOptions, tuneKeepaliveFd } from "./_tcp_keepalive.ts";
