/**
 * The transport seam: a connection is a byte stream pair plus a description of its peer. TCP,
 * unix-domain and in-memory transports all produce {@linkcode Connection}s.
 *
 * @module
 */

/**
 * The identity in a TLS client's certificate, read from the certificate the handshake verified
 * (lib/transport/tls.ts). Hashes are SHA-256 in 64 lowercase hex digits without colons: the
 * form of `openssl x509 -noout -fingerprint -sha256` with the colons taken out and lowercased.
 */
export interface PeerCertificate {
  /** The subject's common name (CN); absent when the subject has none, or more than one. */
  cn?: string;
  /** The subject's organizational units (OU), in the certificate's order. */
  ou: string[];
  /**
   * The subject alternative names, one entry each: `DNS:name`, `URI:uri`, `IP Address:addr`
   * (IPv6 in RFC 5952 form) or `email:addr`. Read from the extension itself, so a name that
   * holds `, ` stays one entry. Other kinds of names are left out.
   */
  sans: string[];
  /** SHA-256 of the certificate in DER. */
  fingerprint: string;
  /** SHA-256 of the certificate's SubjectPublicKeyInfo in DER (a public-key pin). */
  pubkey: string;
}

/** Who is on the other end of a connection. */
export interface PeerInfo {
  /** Which transport carried the connection. */
  transport: "tcp" | "tls" | "unix" | "memory";
  /**
   * `host:port` for TCP and TLS (`[v6]:port` for IPv6), the socket path for unix, a label
   * otherwise.
   */
  address: string;
  /** The client certificate the TLS handshake verified, TLS connections only. */
  certificate?: PeerCertificate;
  /** The peer process's user id (SO_PEERCRED), unix sockets only. */
  uid?: number;
  /** The peer process's group id (SO_PEERCRED), unix sockets only. */
  gid?: number;
  /** The peer process's id (SO_PEERCRED), unix sockets only. */
  pid?: number;
}

/**
 * Direct byte I/O on a socket, for transports that have it (Deno's own sockets). It skips the
 * web-streams machinery on the data path; a connection used this way must not also be read or
 * written through its streams.
 */
export interface DirectIo {
  /** Reads into `buffer`; the number of bytes read, or `null` at end of stream. */
  read(buffer: Uint8Array): Promise<number | null>;
  /** Writes some of `buffer`; the number of bytes written. */
  write(buffer: Uint8Array): Promise<number>;
}

/** One accepted or connected byte stream. */
export interface Connection {
  /** Bytes from the peer. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Bytes to the peer; each `write` is passed to the socket as one buffer. */
  readonly writable: WritableStream<Uint8Array>;
  /** The peer's description, for policy decisions and logs. */
  readonly peer: PeerInfo;
  /** Direct byte I/O, when the transport offers it; use it or the streams, not both. */
  readonly direct?: DirectIo;
  /**
   * Receives one file descriptor the peer sends with SCM_RIGHTS (unix(7)) on one byte, for
   * unix-socket connections that offer it (lib/transport/unix.ts). The connection stops
   * reading synchronously, when this is called, and reads that byte itself with recvmsg(2);
   * normal reading resumes once the promise settles. Send the peer its cue (through the usual
   * writer) after the call, or just before it in the same synchronous run (no `await` in
   * between: the socket is only read between runs), and have the peer send nothing after its
   * request but, once cued, that byte. Bytes the caller's own reader has buffered beyond the
   * last request are beyond the connection's view: make sure there are none.
   *
   * Resolves to the descriptor (close-on-exec), which the caller then owns. Rejects with
   * `FdPassingError` (lib/ffi/scm_rights.ts): `timeout` after `timeoutMs` (default 10000),
   * `closed`, `no_fd` (the byte is consumed), `too_many_fds`, `truncated`, or `early_data` when
   * bytes came before the descriptor was asked for; every descriptor that came and is not
   * handed over is closed. Rejects with `Deno.errors.BadResource` on a closed connection and
   * `Deno.errors.Busy` while another call is pending.
   */
  receiveFd?(timeoutMs?: number): Promise<number>;
  /** Closes both directions at once; pending reads end. Safe to call twice. */
  close(): void;
}

/** A source of incoming connections. */
export interface Listener extends AsyncIterable<Connection> {
  /** A printable description such as `tcp 127.0.0.1:3240` or `unix /run/usbipgw.sock`. */
  readonly description: string;
  /** Stops accepting; connections already accepted stay open. */
  close(): void;
}

/** Formats a host and port as `host:port`, bracketing IPv6 literals. */
export function formatHostPort(hostname: string, port: number): string {
  return hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
}

/**
 * A printable form of a peer for logs: `tcp 127.0.0.1:5000`, `unix uid=1000 gid=1000 pid=42`
 * or, for TLS, the address, the certificate's CN and the first 8 hex digits of its
 * fingerprint: `tls 192.0.2.7:51234 cn=alice fp=1a2b3c4d`. A CN with spaces, quotes, `=`,
 * or characters outside printable ASCII is quoted as a JSON string, so that a log line
 * cannot be forged through it.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { describePeer } from "./connection.ts";
 * const certificate = { cn: "alice", ou: ["lab"], sans: [], fingerprint: "1a2b3c4d".repeat(8),
 *   pubkey: "00".repeat(32) };
 * assertEquals(
 *   describePeer({ transport: "tls", address: "192.0.2.7:51234", certificate }),
 *   "tls 192.0.2.7:51234 cn=alice fp=1a2b3c4d",
 * );
 * assertEquals(
 *   describePeer({ transport: "tls", address: "[::1]:5000", certificate: { ...certificate, cn: "a b" } }),
 *   'tls [::1]:5000 cn="a b" fp=1a2b3c4d',
 * );
 * assertEquals(describePeer({ transport: "tcp", address: "127.0.0.1:5000" }), "tcp 127.0.0.1:5000");
 * ```
 */
export function describePeer(peer: PeerInfo): string {
  if (peer.transport === "unix" && peer.uid !== undefined) {
    return `unix uid=${peer.uid} gid=${peer.gid} pid=${peer.pid}`;
  }
  const cert = peer.certificate;
  if (peer.transport === "tls" && cert !== undefined) {
    const cn = cert.cn === undefined ? "" : ` cn=${_logSafe(cert.cn)}`;
    return `tls ${peer.address}${cn} fp=${cert.fingerprint.slice(0, 8)}`;
  }
  return `${peer.transport} ${peer.address}`;
}

/**
 * `text` as it is when it is printable ASCII without spaces, quotes or `=`, else as a JSON
 * string with DEL, C1 controls and the Unicode line separators escaped as well.
 */
function _logSafe(text: string): string {
  if (/^[!#-<>-~]+$/.test(text)) return text;
  return JSON.stringify(text).replace(
    /[\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** Wraps a Deno socket as a {@linkcode Connection}: streams made on demand, direct I/O, close. */
export function wrapDenoConn(conn: Deno.Conn, peer: PeerInfo): Connection {
  let closed = false;
  return {
    get readable() {
      return conn.readable;
    },
    get writable() {
      return conn.writable;
    },
    direct: conn,
    peer,
    close() {
      if (closed) return;
      closed = true;
      try {
        conn.close();
      } catch {
        // Already closed by the stream machinery.
      }
    },
  };
}
