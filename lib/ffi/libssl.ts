/**
 * A TLS 1.2 client through the system's OpenSSL 3 (`libssl.so.3`, `libcrypto.so.3`; Debian
 * 12's OpenSSL 3.0) by FFI, for kernel TLS (kTLS; the kernel's net/tls and
 * Documentation/networking/tls.rst). With `SSL_OP_ENABLE_KTLS` (SSL_CTX_set_options(3)),
 * OpenSSL gives the session's keys to the socket itself after the handshake (TCP_ULP `tls`,
 * then SOL_TLS TLS_TX and TLS_RX), so the plain socket fd can be handed to vhci_hcd, which
 * reads with sock_recvmsg, and no process has to stay behind to relay bytes. Deno's own TLS
 * exposes no keys.
 *
 * The settings are the ones that path needs: TLS 1.2 only, since
 * OpenSSL 3.0 offloads receiving only under TLS 1.2; the ChaCha20-Poly1305 suites only, since
 * rustls (Deno's TLS, on the server side) ends an AES-GCM session after 2^23 records with a
 * close_notify that kTLS RX in Linux 6.1 cannot follow; no renegotiation, which kTLS cannot
 * follow either. The server's certificate is verified against the given CAs and must match the
 * given host name or IP address (SSL_set1_host(3), X509_VERIFY_PARAM_set1_ip_asc(3)).
 *
 * Threads. OpenSSL's error queue (ERR_get_error(3)) and errno are per thread, and
 * SSL_get_error(3) looks at the calling thread's queue, which "must be empty before the
 * TLS/SSL I/O operation is attempted". Deno runs an FFI call declared `nonblocking` on some
 * thread of a pool, a different one from call to call, so a blocking SSL_connect there would
 * leave its reasons where no later call can read them (and SSL_free could race it). Every
 * OpenSSL call here is therefore made on the calling (JavaScript) thread, with the socket put
 * in non-blocking mode while the session uses it: SSL_connect, SSL_read and SSL_write return
 * SSL_ERROR_WANT_READ or SSL_ERROR_WANT_WRITE instead of blocking, and the wait is a poll(2)
 * on a worker thread (`nonblocking`), against one deadline per operation. The descriptor's
 * flags are put back as they were found by `release()` and `close()`; its socket options are
 * never touched, so no receive or send timeout is left for the kernel.
 *
 * @module
 */

import { errorMessage } from "../util/error_message.ts";
import { isIP } from "node:net";
import { C, errno, lib as libc } from "./_fd_libc.ts";
import { describeErrno, Errno } from "./os_error.ts";

const SSL_SYMBOLS = {
  // const SSL_METHOD *TLS_client_method(void);
  TLS_client_method: { parameters: [], result: "pointer" },
  // SSL_CTX *SSL_CTX_new(const SSL_METHOD *meth);
  SSL_CTX_new: { parameters: ["pointer"], result: "pointer" },
  // void SSL_CTX_free(SSL_CTX *ctx);
  SSL_CTX_free: { parameters: ["pointer"], result: "void" },
  // long SSL_CTX_ctrl(SSL_CTX *ctx, int cmd, long larg, void *parg);
  SSL_CTX_ctrl: { parameters: ["pointer", "i32", "i64", "buffer"], result: "i64" },
  // uint64_t SSL_CTX_set_options(SSL_CTX *ctx, uint64_t op);
  SSL_CTX_set_options: { parameters: ["pointer", "u64"], result: "u64" },
  // int SSL_CTX_set_cipher_list(SSL_CTX *ctx, const char *str);
  SSL_CTX_set_cipher_list: { parameters: ["pointer", "buffer"], result: "i32" },
  // void SSL_CTX_set_verify(SSL_CTX *ctx, int mode, SSL_verify_cb callback);
  SSL_CTX_set_verify: { parameters: ["pointer", "i32", "pointer"], result: "void" },
  // int SSL_CTX_load_verify_locations(SSL_CTX *ctx, const char *CAfile, const char *CApath);
  SSL_CTX_load_verify_locations: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  // int SSL_CTX_use_certificate_chain_file(SSL_CTX *ctx, const char *file);
  SSL_CTX_use_certificate_chain_file: { parameters: ["pointer", "buffer"], result: "i32" },
  // int SSL_CTX_use_PrivateKey_file(SSL_CTX *ctx, const char *file, int type);
  SSL_CTX_use_PrivateKey_file: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  // int SSL_CTX_check_private_key(const SSL_CTX *ctx);
  SSL_CTX_check_private_key: { parameters: ["pointer"], result: "i32" },
  // SSL *SSL_new(SSL_CTX *ctx);
  SSL_new: { parameters: ["pointer"], result: "pointer" },
  // void SSL_free(SSL *ssl);
  SSL_free: { parameters: ["pointer"], result: "void" },
  // long SSL_ctrl(SSL *ssl, int cmd, long larg, void *parg);
  SSL_ctrl: { parameters: ["pointer", "i32", "i64", "buffer"], result: "i64" },
  // int SSL_set_fd(SSL *ssl, int fd);
  SSL_set_fd: { parameters: ["pointer", "i32"], result: "i32" },
  // int SSL_set1_host(SSL *s, const char *hostname);
  SSL_set1_host: { parameters: ["pointer", "buffer"], result: "i32" },
  // void SSL_set_hostflags(SSL *s, unsigned int flags);
  SSL_set_hostflags: { parameters: ["pointer", "u32"], result: "void" },
  // X509_VERIFY_PARAM *SSL_get0_param(SSL *ssl);
  SSL_get0_param: { parameters: ["pointer"], result: "pointer" },
  // int SSL_connect(SSL *ssl);  never blocks here: the socket is non-blocking
  SSL_connect: { parameters: ["pointer"], result: "i32" },
  // int SSL_read(SSL *ssl, void *buf, int num);
  SSL_read: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  // int SSL_write(SSL *ssl, const void *buf, int num);
  SSL_write: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  // int SSL_shutdown(SSL *ssl);
  SSL_shutdown: { parameters: ["pointer"], result: "i32" },
  // int SSL_get_error(const SSL *ssl, int ret);
  SSL_get_error: { parameters: ["pointer", "i32"], result: "i32" },
  // long SSL_get_verify_result(const SSL *ssl);
  SSL_get_verify_result: { parameters: ["pointer"], result: "i64" },
  // int SSL_pending(const SSL *ssl);
  SSL_pending: { parameters: ["pointer"], result: "i32" },
  // const char *SSL_get_version(const SSL *ssl);
  SSL_get_version: { parameters: ["pointer"], result: "pointer" },
  // const SSL_CIPHER *SSL_get_current_cipher(const SSL *ssl);
  SSL_get_current_cipher: { parameters: ["pointer"], result: "pointer" },
  // const char *SSL_CIPHER_get_name(const SSL_CIPHER *cipher);
  SSL_CIPHER_get_name: { parameters: ["pointer"], result: "pointer" },
  // BIO *SSL_get_rbio(const SSL *ssl);
  SSL_get_rbio: { parameters: ["pointer"], result: "pointer" },
  // BIO *SSL_get_wbio(const SSL *ssl);
  SSL_get_wbio: { parameters: ["pointer"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

const CRYPTO_SYMBOLS = {
  // unsigned long ERR_get_error(void);
  ERR_get_error: { parameters: [], result: "u64" },
  // void ERR_clear_error(void);
  ERR_clear_error: { parameters: [], result: "void" },
  // void ERR_error_string_n(unsigned long e, char *buf, size_t len);
  ERR_error_string_n: { parameters: ["u64", "buffer", "usize"], result: "void" },
  // const char *ERR_reason_error_string(unsigned long e);
  ERR_reason_error_string: { parameters: ["u64"], result: "pointer" },
  // const char *X509_verify_cert_error_string(long n);
  X509_verify_cert_error_string: { parameters: ["i64"], result: "pointer" },
  // int X509_VERIFY_PARAM_set1_ip_asc(X509_VERIFY_PARAM *param, const char *ipasc);
  X509_VERIFY_PARAM_set1_ip_asc: { parameters: ["pointer", "buffer"], result: "i32" },
  // long BIO_ctrl(BIO *bp, int cmd, long larg, void *parg);
  BIO_ctrl: { parameters: ["pointer", "i32", "i64", "pointer"], result: "i64" },
} as const satisfies Deno.ForeignLibraryInterface;

/** Values of OpenSSL 3.0's macros (ssl.h, tls1.h, prov_ssl.h, bio.h, x509_vfy.h, err.h). */
const O = {
  TLS1_2_VERSION: 0x0303,
  SSL_CTRL_SET_TLSEXT_HOSTNAME: 55,
  SSL_CTRL_SET_MIN_PROTO_VERSION: 123,
  SSL_CTRL_SET_MAX_PROTO_VERSION: 124,
  TLSEXT_NAMETYPE_host_name: 0,
  /** SSL_OP_BIT(3): let OpenSSL hand the keys to the kernel (SSL_CTX_set_options(3)). */
  SSL_OP_ENABLE_KTLS: 1n << 3n,
  /** SSL_OP_BIT(30): refuse renegotiation, which kTLS cannot follow. */
  SSL_OP_NO_RENEGOTIATION: 1n << 30n,
  SSL_VERIFY_PEER: 0x01,
  SSL_FILETYPE_PEM: 1,
  /** x509v3.h: `*` only as a whole label (the SSL_set1_host(3) example). */
  X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS: 0x4,
  SSL_ERROR_SSL: 1,
  SSL_ERROR_WANT_READ: 2,
  SSL_ERROR_WANT_WRITE: 3,
  SSL_ERROR_SYSCALL: 5,
  SSL_ERROR_ZERO_RETURN: 6,
  BIO_CTRL_GET_KTLS_SEND: 73,
  BIO_CTRL_GET_KTLS_RECV: 76,
  X509_V_OK: 0,
  X509_V_ERR_HOSTNAME_MISMATCH: 62,
  X509_V_ERR_IP_ADDRESS_MISMATCH: 64,
  /** err.h: a system error carries errno in its low 31 bits. */
  ERR_SYSTEM_FLAG: 0x80000000n,
  ERR_LIB_SSL: 20,
  /** ssl.h: SSL_R_* reason = this + the alert the peer sent. */
  SSL_AD_REASON_OFFSET: 1000,
  SSL_R_UNEXPECTED_EOF_WHILE_READING: 294,
} as const;

/** The only suites offered: see the module doc. */
export const KTLS_CIPHERS = "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

type Ssl = Deno.DynamicLibrary<typeof SSL_SYMBOLS>["symbols"];
type Crypto = Deno.DynamicLibrary<typeof CRYPTO_SYMBOLS>["symbols"];
let libs: { ssl: Ssl; crypto: Crypto } | undefined;

/** Opens libcrypto and libssl on first use; TlsClientError `library` when they are missing. */
function openssl(): { ssl: Ssl; crypto: Crypto } {
  if (libs) return libs;
  const open = <S extends Deno.ForeignLibraryInterface>(name: string, symbols: S) => {
    try {
      return Deno.dlopen(name, symbols);
    } catch (e) {
      if (e instanceof Deno.errors.NotCapable) throw e;
      const why = errorMessage(e);
      throw new TlsClientError(
        "library",
        `Cannot load OpenSSL 3 (${name}), which kernel TLS needs: ${why}`,
        `${name} cannot be loaded (Debian and Ubuntu: install the package libssl3)`,
        [],
        { cause: e },
      );
    }
  };
  const crypto = open("libcrypto.so.3", CRYPTO_SYMBOLS);
  let ssl;
  try {
    ssl = open("libssl.so.3", SSL_SYMBOLS);
  } catch (e) {
    crypto.close();
    throw e;
  }
  return libs = { ssl: ssl.symbols, crypto: crypto.symbols };
}

/** What went wrong in a {@linkcode KtlsSession}. */
export type TlsClientFailure =
  /** libssl.so.3 or libcrypto.so.3 is missing, or OpenSSL refused a setting. */
  | "library"
  /** The certificate, key or CA file cannot be used. */
  | "credentials"
  /** The handshake failed: the server refused it (an alert, or it hung up) or spoke no usable TLS. */
  | "handshake"
  /** The server's certificate does not verify or does not match the expected name. */
  | "verify"
  /** The connection failed (a reset, say), or closed after the handshake. */
  | "io"
  /** The time limit passed. */
  | "timeout";

/**
 * A TLS client failure, worded for a user: `Cannot set up TLS: the server's certificate does
 * not verify against /etc/usbipgw/ca.pem: unable to get local issuer certificate`.
 */
export class TlsClientError extends Error {
  /** What kind of failure, for programs. */
  readonly reason: TlsClientFailure;
  /** The reason alone, without what was being done: `the server's certificate does not ...`. */
  readonly detail: string;
  /** OpenSSL's own error strings (ERR_error_string_n(3)), oldest first, for logs. */
  readonly openssl: readonly string[];

  /** Builds the error. */
  constructor(
    reason: TlsClientFailure,
    message: string,
    detail: string,
    openssl: readonly string[] = [],
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "TlsClientError";
    this.reason = reason;
    this.detail = detail;
    this.openssl = openssl;
  }
}

/** One entry of OpenSSL's error queue. */
interface QueuedError {
  code: bigint;
  /** ERR_error_string_n's form: `error:0A000086:SSL routines::certificate verify failed`. */
  text: string;
  /** The reason alone (`certificate verify failed`), or errno's words for a system error. */
  reason: string;
}

/** Empties this thread's error queue, as SSL_get_error(3) requires before each call. */
function clearErrors(): void {
  openssl().crypto.ERR_clear_error();
}

/** Takes every entry of this thread's error queue (it holds 16 at most). */
function takeErrors(): QueuedError[] {
  const { crypto } = openssl();
  const out: QueuedError[] = [];
  const buf = new Uint8Array(256);
  for (let i = 0; i < 32; i++) {
    const code = BigInt(crypto.ERR_get_error());
    if (code === 0n) break;
    crypto.ERR_error_string_n(code, buf, BigInt(buf.length));
    const text = cStringAt(buf);
    let reason: string;
    if ((code & O.ERR_SYSTEM_FLAG) !== 0n) {
      reason = describeErrno(Number(code & 0x7fffffffn));
    } else {
      reason = pointerString(crypto.ERR_reason_error_string(code)) || text;
    }
    out.push({ code, text, reason });
  }
  return out;
}

/** The library number and reason number of a queued error (err.h ERR_GET_LIB, ERR_GET_REASON). */
function libAndReason(code: bigint): [number, number] {
  if ((code & O.ERR_SYSTEM_FLAG) !== 0n) return [2, Number(code & 0x7fffffffn)];
  return [Number((code >> 23n) & 0xffn), Number(code & 0x7fffffn)];
}

function cStringAt(buf: Uint8Array): string {
  const end = buf.indexOf(0);
  return new TextDecoder().decode(buf.subarray(0, end < 0 ? buf.length : end));
}

function pointerString(p: Deno.PointerValue): string {
  return p === null ? "" : Deno.UnsafePointerView.getCString(p);
}

/** A NUL-terminated C string; a NUL inside would cut the string short, so it is refused. */
function cString(s: string, what: string): Uint8Array {
  if (s.includes("\0")) throw new RangeError(`Invalid ${what}: it contains a NUL character`);
  const b = new TextEncoder().encode(s);
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
}

/** `0.3 s`, `10 s`. */
function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

/** Where the client's credentials and trust come from, and whom it expects. */
export interface KtlsClientOptions {
  /** PEM: the client's certificate, optionally followed by its intermediate CAs. */
  certFile: string;
  /** PEM: the client certificate's private key (unencrypted). */
  keyFile: string;
  /** PEM: the CAs that the server's certificate must chain to. */
  caFile: string;
  /**
   * The host name or IP address the server's certificate must be for (a DNS name or an IP
   * address among its subject alternative names); a host name is also sent as SNI (RFC 6066
   * allows no IP addresses there). An IPv6 address may be in brackets.
   */
  serverName: string;
  /** Milliseconds the handshake may take, and each read or write (default 10000). */
  timeoutMs?: number;
}

/** What ktls() reports: whether the kernel encrypts what is sent, and decrypts what arrives. */
export interface KtlsState {
  /** BIO_get_ktls_send(3) on the SSL's write BIO. */
  send: boolean;
  /** BIO_get_ktls_recv(3) on the SSL's read BIO. */
  recv: boolean;
}

/** Options of one read or write. */
export interface KtlsIoOptions {
  /** Milliseconds for the whole operation (default: the session's `timeoutMs`). */
  timeoutMs?: number;
  /** Gives up when aborted, with the signal's reason; the session is unusable after that. */
  signal?: AbortSignal;
}

/** How long one poll(2) on the worker thread may block, so that a release() is seen soon. */
const POLL_SLICE_MS = 200;
/** The most bytes passed to one SSL_read or SSL_write (whose length is an `int`). */
const CHUNK = 1 << 20;

/** Reads `fd`'s file-status flags and makes it non-blocking (fcntl(2)): the flags as found. */
function makeNonBlocking(fd: number): number {
  const flags = libc().fcntl(fd, C.F_GETFL, 0);
  if (flags < 0 || libc().fcntl(fd, C.F_SETFL, flags | C.O_NONBLOCK) < 0) {
    const code = errno();
    throw new TlsClientError(
      "io",
      `Cannot set up TLS on fd ${fd}: ${describeErrno(code)}`,
      `fd ${fd} cannot be used: ${describeErrno(code)}`,
    );
  }
  return flags;
}

/** Words a PEM file OpenSSL could not use, from its error queue. */
function credentialsError(
  role: "certificate" | "key" | "CA",
  file: string,
  errors: QueuedError[],
  fallback: string,
): TlsClientError {
  const system = errors.find((e) => (e.code & O.ERR_SYSTEM_FLAG) !== 0n);
  let detail: string;
  if (system) {
    const code = Number(system.code & 0x7fffffffn);
    detail = code === Errno.ENOENT
      ? "there is no such file (ENOENT)"
      : code === Errno.EACCES
      ? "permission denied: the file is not readable for this user (EACCES)"
      : describeErrno(code);
  } else {
    const reasons = errors.map((e) => e.reason).filter((r) => r !== "system lib");
    detail = reasons.length > 0 ? `${fallback} (${[...new Set(reasons)].join("; ")})` : fallback;
  }
  return new TlsClientError(
    "credentials",
    `Cannot use the TLS ${role} file ${file}: ${detail}`,
    detail,
    errors.map((e) => e.text),
  );
}

/** A context with the kTLS settings and the client's credentials; freed on any failure. */
function makeContext(o: KtlsClientOptions): Deno.PointerObject {
  const { ssl } = openssl();
  const libraryError = (what: string) => {
    const errors = takeErrors();
    return new TlsClientError(
      "library",
      `Cannot set up TLS: OpenSSL refused ${what}`,
      `OpenSSL refused ${what}`,
      errors.map((e) => e.text),
    );
  };
  clearErrors();
  const ctx = ssl.SSL_CTX_new(ssl.TLS_client_method());
  if (ctx === null) throw libraryError("to make a context (SSL_CTX_new)");
  try {
    // SSL_CTX_set_min_proto_version(3) and _max_: macros over SSL_CTX_ctrl.
    for (const cmd of [O.SSL_CTRL_SET_MIN_PROTO_VERSION, O.SSL_CTRL_SET_MAX_PROTO_VERSION]) {
      if (Number(ssl.SSL_CTX_ctrl(ctx, cmd, BigInt(O.TLS1_2_VERSION), null)) !== 1) {
        throw libraryError("TLS 1.2 as the protocol version");
      }
    }
    ssl.SSL_CTX_set_options(ctx, O.SSL_OP_ENABLE_KTLS | O.SSL_OP_NO_RENEGOTIATION);
    if (ssl.SSL_CTX_set_cipher_list(ctx, cString(KTLS_CIPHERS, "cipher list")) !== 1) {
      throw libraryError(`the cipher list ${KTLS_CIPHERS}`);
    }
    ssl.SSL_CTX_set_verify(ctx, O.SSL_VERIFY_PEER, null);
    // SSL_CTX_load_verify_locations(3); the CA file must hold at least one certificate.
    if (ssl.SSL_CTX_load_verify_locations(ctx, cString(o.caFile, "CA file"), null) !== 1) {
      throw credentialsError("CA", o.caFile, takeErrors(), "it holds no certificate");
    }
    if (
      ssl.SSL_CTX_use_certificate_chain_file(ctx, cString(o.certFile, "certificate file")) !== 1
    ) {
      throw credentialsError("certificate", o.certFile, takeErrors(), "it holds no certificate");
    }
    const key = cString(o.keyFile, "key file");
    if (ssl.SSL_CTX_use_PrivateKey_file(ctx, key, O.SSL_FILETYPE_PEM) !== 1) {
      const errors = takeErrors();
      const mismatch = errors.some((e) => e.reason === "key values mismatch");
      throw credentialsError(
        "key",
        o.keyFile,
        errors,
        mismatch
          ? `the key does not belong to the certificate in ${o.certFile}`
          : "it holds no private key that can be read",
      );
    }
    if (ssl.SSL_CTX_check_private_key(ctx) !== 1) {
      throw credentialsError(
        "key",
        o.keyFile,
        takeErrors(),
        `the key does not belong to the certificate in ${o.certFile}`,
      );
    }
    return ctx;
  } catch (e) {
    ssl.SSL_CTX_free(ctx);
    clearErrors();
    throw e;
  }
}

/** Sets whom the server's certificate must name, and SNI for a host name. */
function expectServer(s: Deno.PointerObject, serverName: string): void {
  const { ssl, crypto } = openssl();
  const bare = /^\[(.*)\]$/.exec(serverName)?.[1] ?? serverName;
  const name = cString(bare, "server name");
  const refused = (what: string) =>
    new TlsClientError(
      "library",
      `Cannot set up TLS: OpenSSL refused ${what} ${serverName}`,
      `OpenSSL refused ${what} ${serverName}`,
      takeErrors().map((e) => e.text),
    );
  if (isIP(bare) !== 0) {
    if (crypto.X509_VERIFY_PARAM_set1_ip_asc(ssl.SSL_get0_param(s), name) !== 1) {
      throw refused("the IP address");
    }
    return;
  }
  ssl.SSL_set_hostflags(s, O.X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (ssl.SSL_set1_host(s, name) !== 1) throw refused("the host name");
  // SSL_set_tlsext_host_name(3): a macro over SSL_ctrl; OpenSSL keeps a copy of the name.
  const sni = ssl.SSL_ctrl(
    s,
    O.SSL_CTRL_SET_TLSEXT_HOSTNAME,
    BigInt(O.TLSEXT_NAMETYPE_host_name),
    name,
  );
  if (Number(sni) !== 1) throw refused("the server name (SNI)");
}

/** Words the alert a peer sent, from OpenSSL's reason (`tlsv13 alert certificate required`). */
function alertOf(errors: QueuedError[]): string | undefined {
  for (const e of errors) {
    const [lib, reason] = libAndReason(e.code);
    if (lib === O.ERR_LIB_SSL && reason >= O.SSL_AD_REASON_OFFSET && reason < 1256) {
      return e.reason.replace(/^(sslv3|tlsv1|tlsv13) alert /, "alert ");
    }
  }
  return undefined;
}

function unexpectedEof(errors: QueuedError[]): boolean {
  return errors.some((e) => {
    const [lib, reason] = libAndReason(e.code);
    return lib === O.ERR_LIB_SSL && reason === O.SSL_R_UNEXPECTED_EOF_WHILE_READING;
  });
}

/**
 * A TLS 1.2 session of OpenSSL over a socket the caller owns, with kernel TLS asked for.
 * Hand the socket to the kernel with {@linkcode KtlsSession.release} once {@linkcode
 * KtlsSession.ktls} reports both directions and {@linkcode KtlsSession.pending} is 0.
 */
export class KtlsSession {
  /** The protocol version, e.g. `TLSv1.2` (SSL_get_version(3)). */
  readonly version: string;
  /** The suite in OpenSSL's name, e.g. `ECDHE-ECDSA-CHACHA20-POLY1305`. */
  readonly cipher: string;
  /** The socket. */
  readonly fd: number;
  #ctx: Deno.PointerObject | null;
  #ssl: Deno.PointerObject | null;
  #flags: number;
  #timeoutMs: number;
  /** A fatal error happened: no more I/O, and no SSL_shutdown (SSL_shutdown(3)). */
  #fatal = false;
  /** An operation failed: the stream's position is unknown, so no more I/O. */
  #broken: TlsClientError | undefined;
  #reading = false;
  #writing = false;

  private constructor(
    fd: number,
    ctx: Deno.PointerObject,
    ssl: Deno.PointerObject,
    flags: number,
    timeoutMs: number,
  ) {
    this.fd = fd;
    this.#ctx = ctx;
    this.#ssl = ssl;
    this.#flags = flags;
    this.#timeoutMs = timeoutMs;
    const lib = openssl().ssl;
    this.version = pointerString(lib.SSL_get_version(ssl));
    this.cipher = pointerString(lib.SSL_CIPHER_get_name(lib.SSL_get_current_cipher(ssl)));
  }

  /**
   * Runs the TLS 1.2 handshake as a client on `fd`, a connected TCP socket the caller owns
   * and keeps owning (blocking, as the kernel wants it; it is non-blocking while the session
   * uses it, see the module doc). Nothing has been read from or written to it by then.
   *
   * @throws {TlsClientError} `library`, `credentials` (naming the file), `verify` (the
   * server's certificate), `handshake` (the server refused with an alert or by closing the
   * connection, or spoke no TLS 1.2 with these suites), `io` (the connection failed) or
   * `timeout`. The fd's flags are then as they were, and nothing is left allocated.
   * @throws {RangeError} For an empty server name or a time limit that is not positive.
   */
  static async connect(fd: number, o: KtlsClientOptions): Promise<KtlsSession> {
    const timeoutMs = o.timeoutMs ?? 10000;
    if (!(timeoutMs > 0 && Number.isFinite(timeoutMs))) {
      throw new RangeError(`Invalid TLS time limit ${timeoutMs}: expected a positive number`);
    }
    if (o.serverName === "") throw new RangeError("Invalid server name: it is empty");
    const deadline = performance.now() + timeoutMs;
    const { ssl } = openssl();
    const ctx = makeContext(o);
    let s: Deno.PointerObject | null = null;
    let flags: number | undefined;
    try {
      clearErrors();
      s = ssl.SSL_new(ctx);
      if (s === null || ssl.SSL_set_fd(s, fd) !== 1) {
        throw new TlsClientError(
          "library",
          "Cannot set up TLS: OpenSSL cannot make a session (SSL_new, SSL_set_fd)",
          "OpenSSL cannot make a session",
          takeErrors().map((e) => e.text),
        );
      }
      expectServer(s, o.serverName);
      flags = makeNonBlocking(fd);
      const handshake = s;
      while (true) {
        clearErrors();
        const r = ssl.SSL_connect(handshake);
        const code = errno();
        if (r === 1) break;
        const error = ssl.SSL_get_error(handshake, r);
        if (error === O.SSL_ERROR_WANT_READ || error === O.SSL_ERROR_WANT_WRITE) {
          const events = error === O.SSL_ERROR_WANT_READ ? C.POLLIN : C.POLLOUT;
          if (!await waitFor(fd, events, deadline)) {
            throw new TlsClientError(
              "timeout",
              `Cannot set up TLS: the handshake did not finish within ${seconds(timeoutMs)}`,
              `the handshake did not finish within ${seconds(timeoutMs)}`,
            );
          }
          continue;
        }
        throw handshakeError(handshake, error, code, takeErrors(), o);
      }
      // SSL_VERIFY_PEER fails the handshake on a bad certificate; checked again all the same.
      if (Number(ssl.SSL_get_verify_result(handshake)) !== O.X509_V_OK) {
        throw handshakeError(handshake, O.SSL_ERROR_SSL, 0, takeErrors(), o);
      }
      return new KtlsSession(fd, ctx, handshake, flags, timeoutMs);
    } catch (e) {
      if (s !== null) ssl.SSL_free(s);
      ssl.SSL_CTX_free(ctx);
      if (flags !== undefined) libc().fcntl(fd, C.F_SETFL, flags);
      clearErrors();
      throw e;
    }
  }

  /** Whether the kernel took over sending and receiving (BIO_get_ktls_send/recv(3)). */
  ktls(): KtlsState {
    const s = this.#live();
    const { ssl, crypto } = openssl();
    const on = (bio: Deno.PointerValue, cmd: number) =>
      bio !== null && Number(crypto.BIO_ctrl(bio, cmd, 0n, null)) > 0;
    return {
      send: on(ssl.SSL_get_wbio(s), O.BIO_CTRL_GET_KTLS_SEND),
      recv: on(ssl.SSL_get_rbio(s), O.BIO_CTRL_GET_KTLS_RECV),
    };
  }

  /**
   * Bytes OpenSSL has decrypted and not yet returned (SSL_pending(3)); they would be lost if
   * the socket went to the kernel now.
   */
  pending(): number {
    return openssl().ssl.SSL_pending(this.#live());
  }

  /**
   * Sends all of `bytes` (SSL_write(3)), within the time limit.
   *
   * @throws {TlsClientError} `io` or `timeout`; the session is unusable after that, as after
   * an abort.
   * @throws {Deno.errors.BadResource} Once released or closed, or after a failure.
   * @throws {Deno.errors.Busy} While another write is pending.
   */
  async writeAll(bytes: Uint8Array, options: KtlsIoOptions = {}): Promise<void> {
    this.#live();
    if (this.#writing) throw new Deno.errors.Busy("A TLS write is pending already");
    this.#writing = true;
    try {
      const limit = this.#limit(options);
      let off = 0;
      while (off < bytes.length) {
        // A retry after WANT_WRITE must pass the same buffer and length (SSL_write(3)).
        const chunk = bytes.subarray(off, off + Math.min(CHUNK, bytes.length - off));
        const n = await this.#io("send", chunk, limit);
        if (n === 0) throw this.#eof("send", off, bytes.length);
        off += n;
      }
    } finally {
      this.#writing = false;
    }
  }

  /**
   * Reads exactly `n` bytes (SSL_read(3)), never more: what follows stays for the next read,
   * or in {@linkcode KtlsSession.pending}. The time limit is for the whole read.
   *
   * @throws {Deno.errors.UnexpectedEof} When the server closes first.
   * @throws {TlsClientError} `io` or `timeout`; the session is unusable after that, as after
   * an abort or an end of stream.
   * @throws {Deno.errors.BadResource} Once released or closed, or after a failure.
   * @throws {Deno.errors.Busy} While another read is pending.
   */
  async readExactly(n: number, options: KtlsIoOptions = {}): Promise<Uint8Array> {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new RangeError(`Invalid length ${n}: expected a whole number of bytes`);
    }
    this.#live();
    if (this.#reading) throw new Deno.errors.Busy("A TLS read is pending already");
    this.#reading = true;
    try {
      const limit = this.#limit(options);
      const out = new Uint8Array(n);
      let off = 0;
      while (off < n) {
        const got = await this.#io(
          "receive",
          out.subarray(off, off + Math.min(CHUNK, n - off)),
          limit,
        );
        if (got === 0) throw this.#eof("receive", off, n);
        off += got;
      }
      return out;
    } finally {
      this.#reading = false;
    }
  }

  /**
   * Frees OpenSSL's session and context without SSL_shutdown(3), so that the TLS session goes
   * on in the kernel, and puts the fd's flags back as they were (blocking). The fd stays open
   * and the caller's. Safe to call twice.
   */
  release(): void {
    this.#free(false);
  }

  /**
   * Sends close_notify (SSL_shutdown(3), once, best effort: the socket is not waited for),
   * then does what {@linkcode KtlsSession.release} does. The fd stays open and the caller's.
   * Safe to call twice.
   */
  close(): void {
    this.#free(true);
  }

  #free(shutdown: boolean): void {
    const s = this.#ssl;
    if (s === null) return;
    const { ssl } = openssl();
    clearErrors();
    if (shutdown && !this.#fatal) ssl.SSL_shutdown(s);
    ssl.SSL_free(s);
    if (this.#ctx !== null) ssl.SSL_CTX_free(this.#ctx);
    clearErrors();
    this.#ssl = null;
    this.#ctx = null;
    libc().fcntl(this.fd, C.F_SETFL, this.#flags);
  }

  /** The SSL of a usable session. */
  #live(): Deno.PointerObject {
    if (this.#ssl === null) throw new Deno.errors.BadResource("The TLS session is closed");
    if (this.#broken) {
      throw new Deno.errors.BadResource(
        `The TLS session failed earlier: ${this.#broken.detail}`,
        { cause: this.#broken },
      );
    }
    return this.#ssl;
  }

  /** The time limit and signal of one operation. */
  #limit(options: KtlsIoOptions): IoLimit {
    const ms = options.timeoutMs ?? this.#timeoutMs;
    if (!(ms > 0 && Number.isFinite(ms))) {
      throw new RangeError(`Invalid TLS time limit ${ms}: expected a positive number`);
    }
    return { ms, deadline: performance.now() + ms, signal: options.signal };
  }

  /**
   * One SSL_read or SSL_write of `buf`, retried after WANT_READ/WANT_WRITE until the deadline:
   * the bytes moved, or 0 at the server's end of stream.
   */
  async #io(dir: "send" | "receive", buf: Uint8Array, limit: IoLimit): Promise<number> {
    const { ssl } = openssl();
    const what = `Cannot ${dir} through TLS`;
    const { signal } = limit;
    while (true) {
      const s = this.#live();
      if (signal?.aborted) {
        this.#fail(new TlsClientError("io", `${what}: aborted`, "aborted"));
        throw signal.reason ?? new DOMException("Aborted", "AbortError");
      }
      clearErrors();
      const r = dir === "send"
        ? ssl.SSL_write(s, buf, buf.length)
        : ssl.SSL_read(s, buf, buf.length);
      const code = errno();
      if (r > 0) return r;
      const error = ssl.SSL_get_error(s, r);
      if (error === O.SSL_ERROR_WANT_READ || error === O.SSL_ERROR_WANT_WRITE) {
        const events = error === O.SSL_ERROR_WANT_READ ? C.POLLIN : C.POLLOUT;
        const stop = () => this.#ssl === null || signal?.aborted === true;
        if (await waitFor(this.fd, events, limit.deadline, stop)) continue;
        if (stop()) continue;
        const detail = dir === "send"
          ? `the server took nothing within ${seconds(limit.ms)}`
          : `nothing arrived within ${seconds(limit.ms)}`;
        throw this.#fail(new TlsClientError("timeout", `${what}: ${detail}`, detail));
      }
      const errors = takeErrors();
      if (error === O.SSL_ERROR_ZERO_RETURN) return 0;
      this.#fatal = true;
      if (error === O.SSL_ERROR_SYSCALL && code === 0 && errors.length === 0) return 0;
      if (unexpectedEof(errors)) return 0;
      const alert = alertOf(errors);
      const detail = alert !== undefined
        ? `the server ended the session with the ${alert}`
        : error === O.SSL_ERROR_SYSCALL && code !== 0
        ? `the connection failed: ${describeErrno(code)}`
        : `OpenSSL failed: ${errors.map((e) => e.reason).join("; ") || `error ${error}`}`;
      throw this.#fail(
        new TlsClientError("io", `${what}: ${detail}`, detail, errors.map((e) => e.text)),
      );
    }
  }

  #eof(dir: "send" | "receive", done: number, total: number): Error {
    this.#fatal = true;
    const e = new Deno.errors.UnexpectedEof(
      `Cannot ${dir} through TLS: the server closed the connection after ${done} of ${total} bytes`,
    );
    this.#broken = new TlsClientError("io", e.message, "the server closed the connection");
    return e;
  }

  #fail(e: TlsClientError): TlsClientError {
    this.#broken = e;
    return e;
  }
}

/** The time limit of one read or write. */
interface IoLimit {
  ms: number;
  deadline: number;
  signal: AbortSignal | undefined;
}

/**
 * Waits in poll(2), on a worker thread and in slices, until `fd` is ready for `events`;
 * false when `deadline` passes first or `stop()` says so.
 */
async function waitFor(
  fd: number,
  events: number,
  deadline: number,
  stop: () => boolean = () => false,
): Promise<boolean> {
  const pfd = new Uint8Array(8);
  const v = new DataView(pfd.buffer);
  while (true) {
    const left = deadline - performance.now();
    if (left <= 0 || stop()) return false;
    v.setInt32(0, fd, true);
    v.setInt16(4, events, true);
    v.setInt16(6, 0, true);
    const n = await libc().poll(pfd, 1n, Math.ceil(Math.min(left, POLL_SLICE_MS)));
    // Ready, or an error or hang-up (POLLERR, POLLHUP) that the next SSL call reports.
    if (n > 0) return !stop();
    // n < 0 is EINTR at worst (errno of the worker thread is not ours to read): poll again.
  }
}

/** Words a failed handshake; `code` is errno right after SSL_connect. */
function handshakeError(
  s: Deno.PointerObject,
  error: number,
  code: number,
  errors: QueuedError[],
  o: KtlsClientOptions,
): TlsClientError {
  const { ssl, crypto } = openssl();
  const texts = errors.map((e) => e.text);
  const fail = (reason: TlsClientFailure, detail: string) =>
    new TlsClientError(reason, `Cannot set up TLS: ${detail}`, detail, texts);
  const verify = Number(ssl.SSL_get_verify_result(s));
  if (verify !== O.X509_V_OK) {
    if (verify === O.X509_V_ERR_HOSTNAME_MISMATCH || verify === O.X509_V_ERR_IP_ADDRESS_MISMATCH) {
      return fail("verify", `the server's certificate does not match ${o.serverName}`);
    }
    const why = pointerString(crypto.X509_verify_cert_error_string(BigInt(verify)));
    return fail(
      "verify",
      `the server's certificate does not verify against ${o.caFile}: ${why}`,
    );
  }
  const alert = alertOf(errors);
  if (alert !== undefined) {
    // handshake_failure or protocol_version: most likely no TLS 1.2 with these suites.
    const hint = /handshake failure|protocol version|insufficient security/.test(alert)
      ? ` (kernel TLS needs TLS 1.2 with ChaCha20-Poly1305: does the server offer it?)`
      : "";
    return fail("handshake", `the server refused the handshake: ${alert}${hint}`);
  }
  if (
    error === O.SSL_ERROR_ZERO_RETURN || unexpectedEof(errors) ||
    (error === O.SSL_ERROR_SYSCALL && code === 0 && errors.length === 0)
  ) {
    // How a server that checks certificates itself drops a client it does not accept (the
    // gateway's TlsListener does); a server gone wrong would more likely reset or stay silent.
    return fail(
      "handshake",
      "the server closed the connection during the handshake (does it accept this client's certificate?)",
    );
  }
  if (error === O.SSL_ERROR_SYSCALL && code !== 0) {
    return fail("io", `the connection failed during the handshake: ${describeErrno(code)}`);
  }
  const reasons = [...new Set(errors.map((e) => e.reason))].join("; ");
  return fail("handshake", `the handshake failed: ${reasons || `OpenSSL error ${error}`}`);
}

/**
 * Why the kernel cannot take TLS sessions over, or `undefined` when it can: its `tls` module
 * must be loaded (it makes /proc/net/tls_stat). OpenSSL's offload also needs TLS 1.2 and a
 * suite the kernel knows; {@linkcode KtlsSession.ktls} tells what happened for a session.
 *
 * @example
 * ```ts
 * import { ktlsUnavailableReason } from "./libssl.ts";
 * console.log(ktlsUnavailableReason() ?? "kernel TLS is available");
 * ```
 */
export function ktlsUnavailableReason(): string | undefined {
  try {
    Deno.statSync("/proc/net/tls_stat");
    return undefined;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      return "the kernel's tls module is not loaded (no /proc/net/tls_stat)";
    }
    return `cannot tell whether the kernel's tls module is loaded: ${errorMessage(e)}`;
  }
}
