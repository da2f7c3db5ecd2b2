/**
 * A local plain-to-TLS tunnel for USB/IP clients that speak no TLS (the `usbip` tool,
 * usbip-win2), in the manner of stunnel's client mode: every connection accepted on a loopback
 * address gets its own TLS connection, with the client certificate, to a usbipgw TLS listener,
 * and bytes are pumped both ways until either side ends. The plain side has no authentication
 * of its own, so it listens on loopback only (anyone who can reach it acts with the tunnel's
 * certificate).
 *
 * @module
 */

import * as net from "node:net";
import { getLogger } from "../logtape.ts";
import { connectTls, pump } from "./tls_client.ts";
import {
  connectErrorFor,
  DEFAULT_DEAD_PEER_TIMEOUT_S,
  keepaliveFor,
  OsError,
} from "./fd_socket.ts";
import { loadTlsCredentials, type TlsCredentialFiles } from "../transport/tls.ts";
import { formatHostPort } from "../transport/connection.ts";
import { tcpListenError } from "../transport/listen_error.ts";
import { errorMessage } from "../util/error_message.ts";

const log = getLogger(["usbipgw", "tunnel"]);

/** What a tunnel listens on and where it connects. */
export interface TunnelOptions extends TlsCredentialFiles {
  /** The plain side: a loopback address (127.0.0.0/8, ::1 or localhost) and a port (0: any). */
  listen: { hostname: string; port: number };
  /** The usbipgw TLS listener. */
  connect: { host: string; port: number };
  /** Connections at once; one more is closed at once, with a log line (default 64). */
  maxConnections?: number;
  /** Time limit of each TCP connect and TLS handshake (default 10000 ms). */
  timeoutMs?: number;
}

/** A running tunnel. */
export interface Tunnel {
  /** The port the plain side listens on. */
  readonly port: number;
  /** Connections open now. */
  readonly open: number;
  /** Stops listening and ends every connection. */
  close(): Promise<void>;
}

/** Whether `hostname` is a loopback name or address. */
export function isLoopback(hostname: string): boolean {
  if (hostname === "localhost" || hostname === "::1") return true;
  return net.isIPv4(hostname) && hostname.startsWith("127.");
}

/** The default most connections a tunnel relays at once. */
export const DEFAULT_TUNNEL_CONNECTIONS = 64;

/**
 * Starts a tunnel. The PEM files are read and checked first, so that a bad file is an error
 * here rather than a failure of each connection.
 *
 * @throws {RangeError} When `listen` is not a loopback address.
 * @throws {TlsCredentialsError} When a PEM file cannot be used.
 * @throws {ListenError} When the address cannot be bound.
 */
export async function startTunnel(o: TunnelOptions): Promise<Tunnel> {
  if (!isLoopback(o.listen.hostname)) {
    throw new RangeError(
      `Cannot listen on ${o.listen.hostname}: a tunnel's plain side has no authentication, so it listens on loopback only (127.0.0.1, ::1 or localhost)`,
    );
  }
  const credentials = await loadTlsCredentials(o);
  const target = formatHostPort(o.connect.host, o.connect.port);
  const max = o.maxConnections ?? DEFAULT_TUNNEL_CONNECTIONS;
  const open = new Set<net.Socket>();
  const ends = new Set<Promise<void>>();
  const server = net.createServer({ noDelay: true }, (plain) => {
    const from = formatHostPort(plain.remoteAddress ?? "?", plain.remotePort ?? 0);
    if (open.size >= max) {
      log.warn("Closed the connection from {from}: {max} connections are open already", {
        from,
        max,
      });
      plain.destroy();
      return;
    }
    open.add(plain);
    const done = relay(plain, from).finally(() => {
      open.delete(plain);
      ends.delete(done);
    });
    ends.add(done);
  });
  const relay = async (plain: net.Socket, from: string) => {
    // Bytes the client sends during the handshake wait in the plain socket's buffer.
    plain.pause();
    plain.on("error", () => {});
    let secure;
    try {
      secure = await connectTls({
        ...o,
        credentials,
        host: o.connect.host,
        port: o.connect.port,
        keepalive: keepaliveFor(DEFAULT_DEAD_PEER_TIMEOUT_S),
        timeoutMs: o.timeoutMs ?? 10_000,
      });
    } catch (e) {
      const reason = e instanceof OsError
        ? connectErrorFor({ transport: "tcp", ...o.connect }, e).message
        : errorMessage(e);
      log.error("Connection from {from}: {reason}", { from, reason });
      plain.destroy();
      return;
    }
    if (plain.destroyed) {
      secure.destroy();
      return;
    }
    log.info("Connection from {from} tunnelled to {target} over TLS", { from, target });
    const end = await pump(plain, secure);
    log.info("Connection from {from} ended by {side}{error}", {
      from,
      side: end.side === "a" ? "the client" : target,
      error: end.error ? `: ${end.error}` : "",
    });
  };
  const address = formatHostPort(o.listen.hostname, o.listen.port);
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e) => reject(tcpListenError(address, o.listen.port, e)));
    server.listen({ host: o.listen.hostname, port: o.listen.port }, () => resolve());
  });
  server.on("error", (e) => log.warn("Tunnel listener: {error}", { error: errorMessage(e) }));
  const port = (server.address() as net.AddressInfo).port;
  log.info("Tunnel from {listen} to {target} over TLS", {
    listen: formatHostPort(o.listen.hostname, port),
    target,
  });
  return {
    port,
    get open() {
      return open.size;
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of open) s.destroy();
      await Promise.all([closed, ...ends]);
    },
  };
}
