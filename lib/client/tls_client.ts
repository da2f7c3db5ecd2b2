/**
 * The client side of USB/IP over TLS (RFC 8446, RFC 5246) with a client certificate: a
 * `node:tls` connection over a TCP socket this process made (so that it has TCP_NODELAY and the
 * dead-peer keep-alive of `usbipgw attach`), which verifies the server's certificate against
 * the given CAs and its name or address against the certificate (RFC 6125), and pumps for the
 * relay of `attach --tls` and for `usbipgw tunnel`: bytes between that connection and a plain
 * stream (one end of a socketpair that vhci_hcd reads, or an accepted TCP connection), until
 * either side ends.
 *
 * @module
 */

import * as net from "node:net";
import * as tls from "node:tls";
import { isIP } from "node:net";
import { FdSocket, formatRemote, type KeepaliveOptions } from "./fd_socket.ts";
import { socketPair } from "../ffi/socket_pair.ts";
import { closeFd } from "../ffi/fd.ts";
import {
  loadTlsCredentials,
  type TlsCredentialFiles,
  type TlsCredentials,
} from "../transport/tls.ts";
import { errorMessage } from "../util/error_message.ts";
import { TlsClientError } from "../ffi/libssl.ts";

export { TlsClientError } from "../ffi/libssl.ts";

/** How to reach a TLS server and prove who we are. */
export interface TlsClientOptions extends TlsCredentialFiles {
  /** The server: a host name (also sent as SNI) or an address, and its port. */
  host: string;
  port: number;
  /** The name the server's certificate must carry, when not `host` (e.g. `host` is an address). */
  serverName?: string;
  /** Keep-alive of the TCP connection (dead-peer detection); undefined: the system's. */
  keepalive?: KeepaliveOptions | undefined;
  /** Time limit of the TCP connect and of the handshake, each (default 10000 ms). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * The files' contents, read and checked already (a tunnel reads them once, not per
   * connection); read from the files when absent.
   */
  credentials?: TlsCredentials;
}

/** node:tls's error codes for a server certificate that does not verify (X509_V_ERR_*). */
const VERIFY_CODES = new Set([
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_SIGNATURE_FAILURE",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/**
 * Connects to `o.host:o.port`, shows the client certificate and verifies the server's.
 *
 * @throws {OsError} When the TCP connection fails (lib/client `connectErrorFor` words it).
 * @throws {TlsCredentialsError} When a PEM file cannot be used (the message names it).
 * @throws {TlsClientError} When the handshake fails or the server's certificate does not verify.
 */
export async function connectTls(o: TlsClientOptions): Promise<tls.TLSSocket> {
  const credentials = o.credentials ?? await loadTlsCredentials(o);
  const remote = { transport: "tcp" as const, host: o.host, port: o.port };
  const timeoutMs = o.timeoutMs ?? 10_000;
  const tcp = await FdSocket.connect(remote, {
    timeoutMs,
    ...(o.signal ? { signal: o.signal } : {}),
  });
  let raw: net.Socket;
  try {
    tcp.setTcpOptions(o.keepalive);
    raw = new net.Socket({ fd: tcp.fd, readable: true, writable: true });
    tcp.release();
  } catch (e) {
    tcp.close();
    throw e;
  }
  const where = formatRemote(remote);
  const name = o.serverName ?? o.host;
  const socket = tls.connect({
    socket: raw,
    ...credentials,
    minVersion: "TLSv1.2",
    // SNI carries names only (RFC 6066 section 3); an address is checked against IP SANs.
    ...(isIP(name) === 0 ? { servername: name } : {}),
    checkServerIdentity: (_name, cert) => tls.checkServerIdentity(name, cert),
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(failure(where, "timeout", `no handshake within ${timeoutMs} ms`)),
        timeoutMs,
      );
      const aborted = () => reject(o.signal!.reason);
      o.signal?.addEventListener("abort", aborted, { once: true });
      const done = () => {
        clearTimeout(timer);
        o.signal?.removeEventListener("abort", aborted);
      };
      socket.once("secureConnect", () => {
        done();
        resolve();
      });
      socket.once("error", (e: Error & { code?: string }) => {
        done();
        reject(handshakeError(where, o, e));
      });
      socket.once("close", () => {
        done();
        reject(failure(where, "handshake", "the server closed the connection in the handshake"));
      });
    });
  } catch (e) {
    socket.destroy();
    throw e;
  }
  return socket;
}

/** A TlsClientError whose message says where: `Cannot connect to HOST:PORT over TLS: ...`. */
function failure(
  where: string,
  reason: "verify" | "handshake" | "timeout",
  detail: string,
  cause?: unknown,
): TlsClientError {
  return new TlsClientError(
    reason,
    `Cannot connect to ${where} over TLS: ${detail}`,
    detail,
    [],
    cause === undefined ? undefined : { cause },
  );
}

function handshakeError(where: string, o: TlsClientOptions, e: Error & { code?: string }) {
  if (e.code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    const name = o.serverName ?? o.host;
    return failure(
      where,
      "verify",
      `the server's certificate is not for ${name} (${e.message})`,
      e,
    );
  }
  if (e.code !== undefined && VERIFY_CODES.has(e.code)) {
    return failure(
      where,
      "verify",
      `the server's certificate does not verify against ${o.caFile} (${e.code})`,
      e,
    );
  }
  return failure(
    where,
    "handshake",
    `${errorMessage(e)} (is it a TLS listener, and does it accept ${o.certFile}?)`,
    e,
  );
}

/** How a pump between two streams ended. */
export interface PumpEnd {
  /** Which side ended first: `a` or `b`. */
  side: "a" | "b";
  /** Why, when it was an error rather than an end of stream. */
  error?: string;
}

/**
 * Pumps bytes both ways between `a` and `b`, with back-pressure, until either side ends or
 * fails; then destroys both (a relay has no use for half a connection: vhci frees its port
 * when its end reads EOF). Resolves with the side that ended first.
 */
export function pump(a: net.Socket, b: net.Socket): Promise<PumpEnd> {
  return new Promise((resolve) => {
    let ended = false;
    const finish = (side: "a" | "b", error?: Error) => {
      if (ended) return;
      ended = true;
      a.destroy();
      b.destroy();
      resolve({ side, ...(error ? { error: errorMessage(error) } : {}) });
    };
    for (const [from, to, side] of [[a, b, "a"], [b, a, "b"]] as const) {
      from.pipe(to, { end: false });
      from.once("end", () => finish(side));
      from.once("close", () => finish(side));
      from.once("error", (e: Error) => finish(side, e));
    }
  });
}

/** What the owner of a running relay sees of it: when it ends, and how to end it. */
export interface TlsRelayControl {
  /** Resolves once the relay has ended, with the side that ended first: a server or vhci. */
  ended: Promise<{ by: "server" | "kernel"; error?: string }>;
  /** Ends the relay (vhci then reads EOF and frees its port). */
  stop(): void;
}

/** A relay of `attach --tls`: vhci's end of a socketpair, pumped to the TLS connection. */
export interface TlsRelay extends TlsRelayControl {
  /** The socketpair end for vhci (this process closes its fd once vhci holds the socket). */
  kernel: FdSocket;
}

/** Starts relaying between a new socketpair and `socket`, which the relay owns from now on. */
export function startRelay(socket: tls.TLSSocket, description: string): TlsRelay {
  let pair: [number, number];
  try {
    pair = socketPair();
  } catch (e) {
    socket.destroy();
    throw e;
  }
  const [mine, theirs] = pair;
  let kernel: FdSocket;
  let local: net.Socket;
  try {
    kernel = FdSocket.adopt(theirs, { transport: "unix", path: `relay:${description}` });
  } catch (e) {
    closeFd(mine);
    closeFd(theirs);
    socket.destroy();
    throw e;
  }
  try {
    local = new net.Socket({ fd: mine, readable: true, writable: true });
  } catch (e) {
    closeFd(mine);
    kernel.close();
    socket.destroy();
    throw e;
  }
  const ended = pump(socket, local).then((end) => ({
    by: end.side === "a" ? "server" as const : "kernel" as const,
    ...(end.error ? { error: end.error } : {}),
  }));
  return {
    kernel,
    ended,
    stop: () => {
      local.destroy();
      socket.destroy();
    },
  };
}
