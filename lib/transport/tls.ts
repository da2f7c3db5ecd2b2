/**
 * USB/IP over TLS with client certificates (mutual TLS: RFC 8446 and RFC 5246, certificates
 * per RFC 5280). `Deno.listenTls` cannot ask a client for a certificate, so the listener is a
 * `node:tls` server (rustls underneath in Deno); each accepted socket gets TCP_NODELAY and
 * keep-alive, as the TCP listener's do, and becomes a {@linkcode Connection} whose peer carries
 * the verified certificate's identity ({@linkcode PeerCertificate}).
 *
 * The server runs with `requestCert: true` and `rejectUnauthorized: false`, and this module
 * refuses every client that node:tls did not mark `authorized` (a chain to one of the `ca`
 * certificates, checked in the handshake) or that showed no certificate. Measured on Deno
 * 2.9.6: with `rejectUnauthorized: true` a certificate that does not verify is dropped before
 * the application sees it, and Deno names every such failure `UNABLE_TO_VERIFY_LEAF_SIGNATURE`,
 * an expired certificate too; refusing here keeps the certificate in view, so that the reason
 * given can say that it expired, or is not valid yet. A self-signed client certificate listed
 * in `ca` is accepted: listing it pins it.
 *
 * The certificate's identity is read from its DER bytes here rather than from node:tls's text
 * forms: Deno joins the subject alternative names with `, ` without quoting, so a name that
 * holds `, DNS:x` would read as two.
 *
 * @module
 */

import * as net from "node:net";
import * as tls from "node:tls";
import { createHash, createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { getLogger } from "../logtape.ts";
import {
  type Connection,
  formatHostPort,
  type Listener,
  type PeerCertificate,
  type PeerInfo,
} from "./connection.ts";
import { AcceptQueue } from "./accept_queue.ts";
import { errorCode } from "./_errno.ts";
import { errorMessage } from "../util/error_message.ts";
import {
  describePathError,
  ListenError,
  type PathFailure,
  tcpListenError,
} from "./listen_error.ts";
import { type KeepaliveOptions, keepListenerAlive } from "./_tcp_keepalive.ts";
import { wrapNodeSocket } from "./unix.ts";

const log = getLogger(["usbipgw", "transport"]);

/** The gateway's default time limit for a TLS handshake, from the TCP connection on. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** The default most TLS handshakes under way at once (the default connection limit). */
export const DEFAULT_MAX_HANDSHAKES = 256;

/** The default most TLS handshakes under way from one address (the default per-peer limit). */
export const DEFAULT_MAX_HANDSHAKES_PER_ADDRESS = 32;

/** The PEM files of a TLS listener. */
export interface TlsCredentialFiles {
  /** The server's certificate, optionally followed by its intermediate CAs. */
  certFile: string;
  /** The server certificate's private key (unencrypted). */
  keyFile: string;
  /**
   * The CAs whose client certificates are accepted, and any self-signed client certificates
   * to pin (a certificate listed here is trusted as it is).
   */
  caFile: string;
}

/** Called for each client refused before it became a connection. */
export type TlsRefusalHandler = (
  /** The client's `host:port` (`[v6]:port`), or `unknown` when the socket had gone. */
  address: string,
  /** Why, e.g. `no client certificate`, `certificate has expired (valid until ...)`. */
  reason: string,
  /** The identity of the certificate the client showed, when it showed one. */
  certificate?: PeerCertificate,
) => void;

/** Where and how to listen for TLS. */
export interface TlsListenOptions extends TlsCredentialFiles {
  /** Address to bind, e.g. `127.0.0.1`, `::1`, `0.0.0.0`. */
  hostname: string;
  /** Port; 0 picks a free one. */
  port: number;
  /** The lowest TLS version accepted; `TLSv1.2` when absent. */
  minVersion?: "TLSv1.2" | "TLSv1.3";
  /**
   * Milliseconds a client has from its TCP connection to the end of the TLS handshake
   * ({@linkcode DEFAULT_HANDSHAKE_TIMEOUT_MS} when absent); a client that takes longer is
   * dropped and reported.
   */
  handshakeTimeoutMs?: number;
  /**
   * TLS handshakes under way at once, and from one address; a TCP connection beyond either is
   * closed at once and reported (defaults {@linkcode DEFAULT_MAX_HANDSHAKES} and
   * {@linkcode DEFAULT_MAX_HANDSHAKES_PER_ADDRESS}). The gateway sets them to its connection
   * limits, so that clients still in their handshake count as connections do.
   */
  maxHandshakes?: number;
  /** TLS handshakes under way at once from one client address; see `maxHandshakes`. */
  maxHandshakesPerAddress?: number;
  /** Reports each refused client, for the audit log. */
  onRefused?: TlsRefusalHandler;
  /**
   * Keep-alive for the accepted connections, as for the TCP listener, so that a vanished client
   * frees its device ({@linkcode DEFAULT_KEEPALIVE} when absent); false keeps the system's
   * defaults.
   */
  keepalive?: KeepaliveOptions | false;
}

/** What is wrong with a TLS listener's PEM files. */
export type TlsCredentialsFailure =
  | PathFailure
  /** The certificate file or the CA file holds no certificate that can be read. */
  | "no_certificate"
  /** The key file holds no private key that can be read (or an encrypted one). */
  | "no_key"
  /** The private key does not belong to the certificate. */
  | "key_mismatch";

/**
 * PEM files a TLS listener cannot use: missing or unreadable, holding no certificate or key,
 * or a key that does not belong to the certificate. The message names the file:
 * `Cannot use the TLS key file /etc/usbipgw/key.pem: there is no such file (ENOENT)`.
 */
export class TlsCredentialsError extends Error {
  /** What is wrong, for programs. */
  readonly failure: TlsCredentialsFailure;
  /** The file at fault. */
  readonly file: string;
  /** The reason alone, without the file: `there is no such file (ENOENT)`. */
  readonly detail: string;

  /** Builds the error; the message names what the file is for, the file and the detail. */
  constructor(
    role: "certificate" | "key" | "CA",
    file: string,
    failure: TlsCredentialsFailure,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(`Cannot use the TLS ${role} file ${file}: ${detail}`, options);
    this.name = "TlsCredentialsError";
    this.failure = failure;
    this.file = file;
    this.detail = detail;
  }
}

/** The contents of the PEM files, checked: what `node:tls` is given. */
export interface TlsCredentials {
  cert: string;
  key: string;
  ca: string[];
}

const _PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/**
 * Reads and checks the PEM files: each certificate must parse, the key must be a private key
 * and belong to the first certificate of `certFile`.
 *
 * @throws {TlsCredentialsError} Naming the file at fault.
 */
export async function loadTlsCredentials(files: TlsCredentialFiles): Promise<TlsCredentials> {
  const read = async (role: "certificate" | "key" | "CA", path: string) => {
    try {
      return await Deno.readTextFile(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotCapable) throw e;
      const p = await describePathError(path, e, "read");
      throw new TlsCredentialsError(role, path, p.failure, p.detail, { cause: e });
    }
  };
  const certificates = (role: "certificate" | "CA", path: string, text: string) => {
    const blocks = text.match(_PEM_CERTIFICATE) ?? [];
    if (blocks.length === 0) {
      throw new TlsCredentialsError(role, path, "no_certificate", "it holds no PEM certificate");
    }
    return blocks.map((pem, i) => {
      try {
        return { pem, x509: new X509Certificate(pem) };
      } catch (e) {
        throw new TlsCredentialsError(
          role,
          path,
          "no_certificate",
          `certificate ${i + 1} cannot be read (${errorMessage(e)})`,
          { cause: e },
        );
      }
    });
  };
  const [certText, keyText, caText] = [
    await read("certificate", files.certFile),
    await read("key", files.keyFile),
    await read("CA", files.caFile),
  ];
  const chain = certificates("certificate", files.certFile, certText);
  const ca = certificates("CA", files.caFile, caText);
  let key: KeyObject;
  try {
    key = createPrivateKey(keyText);
  } catch (e) {
    throw new TlsCredentialsError(
      "key",
      files.keyFile,
      "no_key",
      `it holds no private key that can be read, or an encrypted one (${errorMessage(e)})`,
      { cause: e },
    );
  }
  if (!chain[0]!.x509.checkPrivateKey(key)) {
    throw new TlsCredentialsError(
      "key",
      files.keyFile,
      "key_mismatch",
      `the key does not belong to the certificate in ${files.certFile}`,
    );
  }
  return { cert: chain.map((c) => c.pem).join("\n"), key: keyText, ca: ca.map((c) => c.pem) };
}

/** OpenSSL's words for the verification results node:tls reports (X509_V_ERR_*). */
const _VERIFY_WORDS: Readonly<Record<string, string>> = {
  CERT_HAS_EXPIRED: "certificate has expired",
  CERT_NOT_YET_VALID: "certificate is not yet valid",
  CERT_REVOKED: "certificate revoked",
  CERT_SIGNATURE_FAILURE: "certificate signature failure",
  DEPTH_ZERO_SELF_SIGNED_CERT: "self-signed certificate",
  INVALID_PURPOSE: "unsupported certificate purpose",
  SELF_SIGNED_CERT_IN_CHAIN: "self-signed certificate in certificate chain",
  UNABLE_TO_GET_ISSUER_CERT: "unable to get issuer certificate",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "unable to get local issuer certificate",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "unable to verify the first certificate",
};

/** A verification result in words: OpenSSL's, or the code itself. */
function _verifyWords(code: string | null | undefined): string {
  if (!code) return "the certificate does not verify";
  return _VERIFY_WORDS[code] ?? `the certificate does not verify (${code})`;
}

/** An ISO 8601 time without milliseconds: `2020-01-02T00:00:00Z`. */
function _isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** A refusal's reason, and the certificate's identity when there is one. */
interface _Refusal {
  reason: string;
  certificate?: PeerCertificate;
}

/**
 * Why a client that finished the handshake unauthorized is refused. A certificate outside its
 * validity period is named so, whatever code the TLS layer gave.
 */
function _unauthorizedReason(sock: tls.TLSSocket): _Refusal {
  const der = _peerDer(sock);
  if (der === undefined) return { reason: "no client certificate" };
  let facts: _CertificateFacts;
  try {
    facts = _certificateFacts(der);
  } catch {
    return { reason: _verifyWords(sock.authorizationError?.toString()) };
  }
  const now = Date.now();
  const reason = facts.version1
    ? "an X.509 version 1 certificate (without extensions), which TLS here does not accept: issue a version 3 one (openssl x509 -req ... -extfile FILE)"
    : now > facts.notAfter
    ? `certificate has expired (valid until ${_isoSeconds(facts.notAfter)})`
    : now < facts.notBefore
    ? `certificate is not yet valid (valid from ${_isoSeconds(facts.notBefore)})`
    : _verifyWords(sock.authorizationError?.toString());
  return { reason, certificate: facts.identity };
}

/** Why a handshake failed, from node:tls's `tlsClientError`. */
function _clientErrorReason(error: unknown, sock: tls.TLSSocket, timeoutMs: number): string {
  const message = errorMessage(error);
  const code = (error as { code?: unknown } | null)?.code;
  if (/handshake timeout/i.test(message) || code === "ERR_TLS_HANDSHAKE_TIMEOUT") {
    return `the TLS handshake did not finish within ${timeoutMs / 1000} s`;
  }
  if (code === "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE") return "no client certificate";
  if (sock.authorizationError) return _verifyWords(sock.authorizationError.toString());
  if (code === "ERR_SSL_WRONG_VERSION_NUMBER") {
    return "the client does not speak TLS (it sent no TLS record)";
  }
  if (code === "ECONNRESET" || /socket hang up/i.test(message)) {
    return "the client closed the connection during the TLS handshake";
  }
  return `the TLS handshake failed: ${message}${typeof code === "string" ? ` (${code})` : ""}`;
}

/** The DER bytes of the client's certificate, if it showed one. */
function _peerDer(sock: tls.TLSSocket): Uint8Array | undefined {
  const raw: Uint8Array | undefined = sock.getPeerCertificate(false)?.raw;
  return raw !== undefined && raw.length > 0 ? raw : undefined;
}

/** `host:port` of a socket, or `unknown`. */
function _addressOf(sock: net.Socket | undefined): string | undefined {
  const host = sock?.remoteAddress;
  return host === undefined ? undefined : formatHostPort(host, sock?.remotePort ?? 0);
}

/** Identifies a socket in the handshake by its addresses; the same for both of its objects. */
function _socketKey(sock: net.Socket): string {
  return `${sock.remoteAddress} ${sock.remotePort} ${sock.localAddress} ${sock.localPort}`;
}

/**
 * A TLS listener that yields {@linkcode Connection}s of clients whose certificates verified,
 * with the certificate's identity in `peer.certificate`.
 */
export class TlsListener implements Listener {
  /** `tls HOST:PORT`. */
  readonly description: string;
  /** Why keep-alive tuning failed, when it did (the system's defaults apply then). */
  readonly keepaliveProblem: string | undefined;
  /** The time limit of a handshake, in milliseconds. */
  readonly handshakeTimeoutMs: number;
  #server: tls.Server;
  #accepted = new AcceptQueue();
  #minVersion: "TLSv1.2" | "TLSv1.3";
  #onRefused: TlsRefusalHandler | undefined;
  /** TCP connections whose handshake has not ended, by {@linkcode _socketKey}. */
  #handshaking = new Map<string, { raw: net.Socket; from: string }>();
  /** How many of those each remote address has. */
  #handshakesFrom = new Map<string, number>();
  #maxHandshakes: number;
  #maxHandshakesPerAddress: number;

  private constructor(server: tls.Server, options: TlsListenOptions, timeoutMs: number) {
    this.#server = server;
    this.#minVersion = options.minVersion ?? "TLSv1.2";
    this.#onRefused = options.onRefused;
    this.#maxHandshakes = options.maxHandshakes ?? DEFAULT_MAX_HANDSHAKES;
    this.#maxHandshakesPerAddress = options.maxHandshakesPerAddress ??
      DEFAULT_MAX_HANDSHAKES_PER_ADDRESS;
    this.handshakeTimeoutMs = timeoutMs;
    this.description = `tls ${formatHostPort(options.hostname, this.port)}`;
    this.keepaliveProblem = keepListenerAlive(this.port, options.keepalive, this.description);
    server.on("connection", (raw: net.Socket) => this.#connected(raw));
    server.on("secureConnection", (sock: tls.TLSSocket) => this.#secured(sock));
    server.on("tlsClientError", (error: Error, sock: tls.TLSSocket) => this.#failed(error, sock));
    server.on("error", (e: Error) => {
      // An accept error on the listening socket: node:net tries the next accept itself.
      log.debug("{listener}: {error}", { listener: this.description, error: errorMessage(e) });
    });
  }

  /**
   * Reads the PEM files and binds.
   *
   * @throws {ListenError} When the address is in use, is not one of this host's, or the port
   * needs privileges this process lacks (worded as the TCP listener's), or when the PEM
   * files cannot be used (the cause is then a {@linkcode TlsCredentialsError}); the message
   * names the address.
   * @throws {RangeError} For a handshake time limit that is not a positive number.
   */
  static async listen(options: TlsListenOptions): Promise<TlsListener> {
    const address = formatHostPort(options.hostname, options.port);
    const timeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    if (!(timeoutMs > 0 && Number.isFinite(timeoutMs))) {
      throw new RangeError(
        `Invalid handshake time limit ${timeoutMs}: expected a positive number of milliseconds`,
      );
    }
    let credentials: TlsCredentials;
    try {
      credentials = await loadTlsCredentials(options);
    } catch (e) {
      if (!(e instanceof TlsCredentialsError)) throw e;
      const failure = e.failure === "no_certificate" || e.failure === "no_key" ||
          e.failure === "key_mismatch"
        ? "other"
        : e.failure;
      throw new ListenError(address, failure, e.message.replace(/^Cannot/, "cannot"), {
        cause: e,
      });
    }
    const server = tls.createServer({
      ...credentials,
      requestCert: true,
      // Checked in #secured, which refuses every client node:tls did not authorize; see the
      // module doc for why not here.
      rejectUnauthorized: false,
      minVersion: options.minVersion ?? "TLSv1.2",
      handshakeTimeout: timeoutMs,
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(options.port, options.hostname, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } catch (e) {
      server.close();
      throw _bindError(options.hostname, options.port, e);
    }
    return new TlsListener(server, options, timeoutMs);
  }

  /** The bound port (useful after binding port 0). */
  get port(): number {
    const a = this.#server.address();
    return a !== null && typeof a === "object" ? a.port : 0;
  }

  /**
   * Yields each client whose handshake verified its certificate, in the order they finished;
   * ends once the listener is closed. Use one loop at a time.
   */
  [Symbol.asyncIterator](): AsyncIterator<Connection> {
    return this.#accepted[Symbol.asyncIterator]();
  }

  /**
   * Re-reads the PEM files and uses them for new connections; connections already accepted
   * carry on with the ones they began with. The minimum TLS version stays.
   *
   * @throws {TlsCredentialsError} When a file cannot be read, holds no certificate or key, or
   * the key does not belong to the certificate; the listener keeps the files it had.
   * @throws {Deno.errors.BadResource} When the listener is closed.
   */
  async reload(files: TlsCredentialFiles): Promise<void> {
    if (this.#accepted.closed) {
      throw new Deno.errors.BadResource(`Cannot reload ${this.description}: it is closed`);
    }
    const credentials = await loadTlsCredentials(files);
    this.#server.setSecureContext({ ...credentials, minVersion: this.#minVersion });
  }

  /**
   * Stops accepting, and drops the clients still in their handshake; connections already
   * accepted stay open. Nothing is reported after this.
   */
  close(): void {
    if (this.#accepted.closed) return;
    this.#accepted.close();
    this.#server.close();
    for (const { raw } of this.#handshaking.values()) raw.destroy();
    this.#handshaking.clear();
    this.#handshakesFrom.clear();
  }

  /** A TCP connection came: NODELAY and keep-alive now, so the handshake gains from them. */
  #connected(raw: net.Socket): void {
    // Errors come to the TLS socket; this keeps one on the TCP socket from being unhandled.
    raw.on("error", () => {});
    if (this.#accepted.closed) {
      raw.destroy();
      return;
    }
    // Counted before any TLS byte is read: a flood of handshakes that never finish holds no
    // more than the limits, each for at most the handshake's time limit.
    const from = raw.remoteAddress ?? "unknown";
    const mine = this.#handshakesFrom.get(from) ?? 0;
    const over = this.#handshaking.size >= this.#maxHandshakes
      ? `too many TLS handshakes under way (the limit is ${this.#maxHandshakes})`
      : mine >= this.#maxHandshakesPerAddress
      ? `too many TLS handshakes under way from ${from} (the limit is ${mine})`
      : undefined;
    if (over !== undefined) {
      const address = _addressOf(raw) ?? "unknown";
      raw.destroy();
      this.#refuse(address, over);
      return;
    }
    raw.setNoDelay(true);
    raw.setKeepAlive(true);
    const key = _socketKey(raw);
    this.#handshaking.set(key, { raw, from });
    this.#handshakesFrom.set(from, mine + 1);
    raw.once("close", () => this.#handshakeEnded(key, raw));
  }

  /** Forgets a handshake that ended (or a connection closed before it did); once per socket. */
  #handshakeEnded(key: string, raw?: net.Socket): void {
    const entry = this.#handshaking.get(key);
    if (entry === undefined || (raw !== undefined && entry.raw !== raw)) return;
    this.#handshaking.delete(key);
    const from = entry.from;
    const n = (this.#handshakesFrom.get(from) ?? 1) - 1;
    if (n > 0) this.#handshakesFrom.set(from, n);
    else this.#handshakesFrom.delete(from);
  }

  /** The handshake finished: a connection if node:tls authorized the certificate. */
  #secured(sock: tls.TLSSocket): void {
    this.#handshakeEnded(_socketKey(sock));
    // The wrappers report errors through reads and writes; this keeps an error that comes
    // before either from being an unhandled 'error' event.
    sock.on("error", () => {});
    const address = _addressOf(sock) ?? "unknown";
    if (!sock.authorized) {
      // Read before the socket goes: a destroyed socket has no certificate.
      const r = _unauthorizedReason(sock);
      sock.destroy();
      this.#refuse(address, r.reason, r.certificate);
      return;
    }
    const der = _peerDer(sock);
    let certificate: PeerCertificate;
    try {
      if (der === undefined) throw new TypeError("no client certificate");
      certificate = parsePeerCertificate(der);
    } catch (e) {
      sock.destroy();
      this.#refuse(address, `the certificate cannot be read: ${errorMessage(e)}`);
      return;
    }
    const peer: PeerInfo = { transport: "tls", address, certificate };
    this.#accepted.push(wrapNodeSocket(sock, peer));
  }

  /** The handshake failed or timed out. */
  #failed(error: unknown, sock: tls.TLSSocket): void {
    // A destroyed TLS socket no longer knows its address; its TCP socket (node:tls's
    // `_parent`) remembers the one read when it came, if the runtime keeps that link.
    const parent = (sock as { _parent?: unknown })._parent;
    const address = _addressOf(sock) ??
      (parent instanceof net.Socket ? _addressOf(parent) : undefined) ?? "unknown";
    // A certificate that did not verify, when the socket still has it: named, and why.
    const r = sock.authorizationError && _peerDer(sock) !== undefined
      ? _unauthorizedReason(sock)
      : { reason: _clientErrorReason(error, sock, this.handshakeTimeoutMs) };
    if (!sock.destroyed) sock.destroy();
    this.#refuse(address, r.reason, r.certificate);
  }

  #refuse(address: string, reason: string, certificate?: PeerCertificate): void {
    if (this.#accepted.closed) return;
    log.debug("{listener}: refused {address}: {reason}", {
      listener: this.description,
      address,
      reason,
    });
    try {
      this.#onRefused?.(address, reason, certificate);
    } catch (e) {
      log.error("{listener}: the refusal handler failed: {error}", {
        listener: this.description,
        error: errorMessage(e),
      });
    }
  }
}

/**
 * The {@linkcode ListenError} for a bind that failed. `node:net` reports some failures
 * vaguely (an address not of this host as EINVAL, an unknown host as ENOTFOUND), so the
 * address is tried once more with `Deno.listen`, whose error is worded as the TCP listener's.
 */
function _bindError(hostname: string, port: number, error: unknown): Error {
  if (error instanceof Deno.errors.NotCapable) return error;
  const address = formatHostPort(hostname, port);
  if (errorCode(error) !== "EADDRINUSE") {
    try {
      Deno.listen({ transport: "tcp", hostname, port }).close();
    } catch (e) {
      return tcpListenError(address, port, e);
    }
  }
  return tcpListenError(address, port, error);
}

// --- Reading the certificate (RFC 5280 section 4.1, in DER: X.690) ---

/** One DER element: its tag, and where its header and value lie in the buffer. */
interface _Der {
  tag: number;
  /** Where its header begins. */
  at: number;
  /** Where its value begins. */
  start: number;
  /** Where it ends. */
  end: number;
}

function _malformed(what: string): TypeError {
  return new TypeError(`Cannot read the certificate: ${what}`);
}

/** The element at `at`, which must end by `limit`. */
function _derAt(b: Uint8Array, at: number, limit: number): _Der {
  if (at + 2 > limit) throw _malformed(`an element at byte ${at} is cut short`);
  const tag = b[at]!;
  if ((tag & 0x1f) === 0x1f) throw _malformed(`a multi-byte tag at byte ${at}`);
  let length = b[at + 1]!;
  let start = at + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 4 || start + n > limit) {
      throw _malformed(`a length at byte ${at + 1} that DER does not allow`);
    }
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + b[start + i]!;
    start += n;
  }
  if (start + length > limit) throw _malformed(`an element at byte ${at} runs past its parent`);
  return { tag, at, start, end: start + length };
}

/** The elements inside a constructed element. */
function _children(b: Uint8Array, parent: _Der): _Der[] {
  const out: _Der[] = [];
  for (let at = parent.start; at < parent.end;) {
    const d = _derAt(b, at, parent.end);
    out.push(d);
    at = d.end;
  }
  return out;
}

/** The element, checked to have `tag`. */
function _expect(d: _Der | undefined, tag: number, what: string): _Der {
  if (d === undefined || d.tag !== tag) throw _malformed(`${what} is missing`);
  return d;
}

function _latin1(v: Uint8Array): string {
  let s = "";
  for (const byte of v) s += String.fromCharCode(byte);
  return s;
}

/**
 * A directory string's text (UTF8String, BMPString, UniversalString, or a one-byte kind).
 * Bytes that are not valid in their encoding make the certificate unreadable rather than
 * turning into U+FFFD, so that two different names never read the same.
 */
function _text(b: Uint8Array, d: _Der): string {
  const v = b.subarray(d.start, d.end);
  const decode = (encoding: string) => {
    try {
      return new TextDecoder(encoding, { fatal: true }).decode(v);
    } catch {
      throw _malformed(`a name is not valid ${encoding}`);
    }
  };
  switch (d.tag) {
    case 0x0c: // UTF8String
      return decode("utf-8");
    case 0x1e: // BMPString: UTF-16BE
      return decode("utf-16be");
    case 0x1c: { // UniversalString: UTF-32BE
      if (v.length % 4 !== 0) throw _malformed("a name is not valid UTF-32");
      const view = new DataView(v.buffer, v.byteOffset, v.byteLength);
      let s = "";
      for (let i = 0; i < v.length; i += 4) {
        const cp = view.getUint32(i);
        if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
          throw _malformed("a name is not valid UTF-32");
        }
        s += String.fromCodePoint(cp);
      }
      return s;
    }
    default: // PrintableString, IA5String, TeletexString, VisibleString, NumericString
      return _latin1(v);
  }
}

function _oidIs(b: Uint8Array, d: _Der, oid: readonly number[]): boolean {
  if (d.tag !== 0x06 || d.end - d.start !== oid.length) return false;
  return oid.every((byte, i) => b[d.start + i] === byte);
}

/** id-at-commonName (2.5.4.3), id-at-organizationalUnitName (2.5.4.11). */
const _OID_CN = [0x55, 0x04, 0x03] as const;
const _OID_OU = [0x55, 0x04, 0x0b] as const;
/** id-ce-subjectAltName (2.5.29.17). */
const _OID_SAN = [0x55, 0x1d, 0x11] as const;

/** A UTCTime or GeneralizedTime (RFC 5280 section 4.1.2.5), in milliseconds since 1970. */
function _time(b: Uint8Array, d: _Der | undefined): number {
  const text = d === undefined ? "" : _latin1(b.subarray(d.start, d.end));
  const m = d?.tag === 0x17
    ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text)
    : d?.tag === 0x18
    ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text)
    : null;
  if (!m) throw _malformed(`the validity time "${text}" is not a UTCTime or GeneralizedTime`);
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  // RFC 5280: a UTCTime year below 50 is 20YY, else 19YY.
  const fullYear = d!.tag === 0x17 ? (year < 50 ? 2000 + year : 1900 + year) : year;
  return Date.UTC(fullYear, month - 1, day, hour, minute, second);
}

/** An IPv6 address in RFC 5952 form: lowercase, no leading zeros, the longest zero run `::`. */
function _ipv6(v: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(v[i]! * 256 + v[i + 1]!);
  let best = -1;
  let bestLength = 1; // a single zero group is not shortened
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [best, bestLength] = [i, j - i];
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(":");
  if (best < 0) return hex(groups);
  return `${hex(groups.slice(0, best))}::${hex(groups.slice(best + bestLength))}`;
}

/** A GeneralName (RFC 5280 section 4.2.1.6) in node's words, or undefined for other kinds. */
function _generalName(b: Uint8Array, d: _Der): string | undefined {
  const v = b.subarray(d.start, d.end);
  switch (d.tag) {
    case 0x81: // [1] rfc822Name
      return `email:${_latin1(v)}`;
    case 0x82: // [2] dNSName
      return `DNS:${_latin1(v)}`;
    case 0x86: // [6] uniformResourceIdentifier
      return `URI:${_latin1(v)}`;
    case 0x87: // [7] iPAddress
      if (v.length === 4) return `IP Address:${v.join(".")}`;
      if (v.length === 16) return `IP Address:${_ipv6(v)}`;
      return undefined;
    default:
      return undefined;
  }
}

/** What this module reads from a certificate. */
interface _CertificateFacts {
  identity: PeerCertificate;
  notBefore: number;
  notAfter: number;
  /** X.509 version 1: no extensions, which rustls (webpki) refuses as a client certificate. */
  version1: boolean;
}

function _certificateFacts(der: Uint8Array): _CertificateFacts {
  const cert = _expect(_derAt(der, 0, der.length), 0x30, "the Certificate sequence");
  if (cert.end !== der.length) throw _malformed("bytes follow the certificate");
  const tbs = _expect(_children(der, cert)[0], 0x30, "tbsCertificate");
  const fields = _children(der, tbs);
  // version [0] is there for v2 and v3 certificates only.
  const first = fields[0]?.tag === 0xa0 ? 1 : 0;
  const validity = _expect(fields[first + 3], 0x30, "the validity");
  const subject = _expect(fields[first + 4], 0x30, "the subject");
  const spki = _expect(fields[first + 5], 0x30, "the subjectPublicKeyInfo");
  const [notBefore, notAfter] = _children(der, validity);

  const cns: string[] = [];
  const ou: string[] = [];
  for (const rdn of _children(der, subject)) {
    for (const atv of _children(der, _expect(rdn, 0x31, "a relative distinguished name"))) {
      const [type, value] = _children(der, _expect(atv, 0x30, "an attribute"));
      if (type === undefined || value === undefined) throw _malformed("an attribute is empty");
      if (_oidIs(der, type, _OID_CN)) cns.push(_text(der, value));
      else if (_oidIs(der, type, _OID_OU)) ou.push(_text(der, value));
    }
  }

  const sans: string[] = [];
  const extensions = fields.slice(first + 6).find((d) => d.tag === 0xa3);
  if (extensions !== undefined) {
    const list = _expect(_children(der, extensions)[0], 0x30, "the extensions");
    for (const ext of _children(der, list)) {
      const parts = _children(der, _expect(ext, 0x30, "an extension"));
      if (parts[0] === undefined || !_oidIs(der, parts[0], _OID_SAN)) continue;
      const octets = _expect(parts.at(-1), 0x04, "the subjectAltName value");
      const names = _expect(_derAt(der, octets.start, octets.end), 0x30, "GeneralNames");
      if (names.end !== octets.end) throw _malformed("bytes follow the GeneralNames");
      for (const name of _children(der, names)) {
        const text = _generalName(der, name);
        if (text !== undefined) sans.push(text);
      }
    }
  }

  const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
  const identity: PeerCertificate = {
    // Several CNs would make any one of them a guess: a rule on cn then matches nothing.
    ...(cns.length === 1 ? { cn: cns[0]! } : {}),
    ou,
    sans,
    fingerprint: sha256(der),
    pubkey: sha256(der.subarray(spki.at, spki.end)),
  };
  return {
    identity,
    notBefore: _time(der, notBefore),
    notAfter: _time(der, notAfter),
    version1: first === 0,
  };
}

/**
 * The identity a certificate (DER) gives a TLS peer: subject CN (when there is exactly one)
 * and OUs, the subject alternative names (DNS, URI, IP address and e-mail), and the SHA-256
 * hashes of the certificate and of its public key (SubjectPublicKeyInfo), as 64 lowercase hex
 * digits. It reads; it verifies nothing.
 *
 * @throws {TypeError} When the bytes are not a DER X.509 certificate.
 *
 * @example A PEM certificate's identity
 * ```ts ignore
 * import { X509Certificate } from "node:crypto";
 * import { parsePeerCertificate } from "./tls.ts";
 * const pem = await Deno.readTextFile("client.pem");
 * const id = parsePeerCertificate(new X509Certificate(pem).raw);
 * console.log(id.cn, id.fingerprint);
 * ```
 */
export function parsePeerCertificate(der: Uint8Array): PeerCertificate {
  return _certificateFacts(der).identity;
}
