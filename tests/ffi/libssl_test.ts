// Tests of the kernel-TLS client through the system's OpenSSL (lib/ffi/libssl.ts) against the
// gateway's own TLS listener (node:tls, rustls underneath) on real sockets, with the test PKI of
// tests/transport/_certs.ts: the handshake and its settings, bytes both ways, each way to fail
// and how it is worded, what release() and close() leave, and that no descriptor leaks.
import {
  assert,
  assertEquals,
  assertGreaterOrEqual,
  assertInstanceOf,
  assertLess,
  assertMatch,
  assertRejects,
} from "@std/assert";
import {
  KTLS_CIPHERS,
  type KtlsClientOptions,
  KtlsSession,
  ktlsUnavailableReason,
  TlsClientError,
  type TlsClientFailure,
} from "../../lib/ffi/libssl.ts";
import { FdSocket } from "../../lib/client/fd_socket.ts";
import { TlsListener, type TlsListenOptions } from "../../lib/transport/tls.ts";
import type { Connection } from "../../lib/transport/connection.ts";
import { C, lib as clientLib } from "../../lib/client/_libc_socket.ts";
import { makeTestPki, opensslProblem, type TestPki } from "../transport/_certs.ts";
import { fdFlags, fileOf, ownProcessTests, withoutFdLeak } from "./_fds.ts";

const ignore = opensslProblem !== undefined;
if (ignore) console.log(`Skipping the kernel-TLS client tests: ${opensslProblem}`);

/** One PKI for the whole file, removed when the module unloads. */
const pki: TestPki = ignore ? undefined as unknown as TestPki : await makeTestPki();
if (!ignore) addEventListener("unload", () => Deno.removeSync(pki.dir, { recursive: true }));

const te = new TextEncoder();
const td = new TextDecoder();
const O_NONBLOCK = 0o4000;

/** A TLS listener on 127.0.0.1 with the test server certificate, trusting the test CA. */
async function listen(options: Partial<TlsListenOptions> = {}) {
  const refusals: string[] = [];
  const listener = await TlsListener.listen({
    hostname: "127.0.0.1",
    port: 0,
    certFile: pki.server.cert,
    keyFile: pki.server.key,
    caFile: pki.ca,
    onRefused: (_address, reason, certificate) =>
      refusals.push(`${reason}${certificate ? ` cn=${certificate.cn}` : ""}`),
    ...options,
  });
  const iterator = listener[Symbol.asyncIterator]();
  return { listener, refusals, accept: () => iterator.next() };
}

/** A blocking TCP socket of this process connected to `port`, as the kernel client makes it. */
async function socketTo(port: number): Promise<FdSocket> {
  const sock = await FdSocket.connect({ transport: "tcp", host: "127.0.0.1", port }, {
    timeoutMs: 5000,
  });
  sock.setBlocking();
  return sock;
}

/** Alice's options for the test server at 127.0.0.1. */
function alice(more: Partial<KtlsClientOptions> = {}): KtlsClientOptions {
  return {
    certFile: pki.alice.cert,
    keyFile: pki.alice.key,
    caFile: pki.ca,
    serverName: "127.0.0.1",
    timeoutMs: 5000,
    ...more,
  };
}

/** Reads exactly `n` bytes from the server's side of a connection. */
async function serverRead(conn: Connection, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let off = 0;
  while (off < n) {
    const got = await conn.direct!.read(out.subarray(off));
    if (got === null) throw new Error(`EOF after ${off} of ${n} bytes`);
    off += got;
  }
  return out;
}

/** Writes all of `bytes` from the server's side. */
async function serverWrite(conn: Connection, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.direct!.write(bytes.subarray(off));
}

/** Whether the server's next read ends the stream within `ms` (true), or nothing comes (false). */
async function serverSeesEof(conn: Connection, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"quiet">((r) => timer = setTimeout(() => r("quiet"), ms));
  const read = conn.direct!.read(new Uint8Array(16));
  try {
    const got = await Promise.race([read, timeout]);
    return got === null;
  } finally {
    clearTimeout(timer);
  }
}

/** Connects with `options` and expects a TlsClientError of `reason`, which it returns. */
async function failure(
  port: number,
  options: KtlsClientOptions,
  reason: TlsClientFailure,
): Promise<TlsClientError> {
  const sock = await socketTo(port);
  try {
    const e = await assertRejects(() => KtlsSession.connect(sock.fd, options), TlsClientError);
    assertEquals(e.reason, reason, e.message);
    assertEquals(e.message, `${e.message.split(": ")[0]}: ${e.detail}`);
    // The fd is left open, and as blocking as it came.
    assert(fileOf(sock.fd).startsWith("socket:["));
    assertEquals(fdFlags(sock.fd) & O_NONBLOCK, 0);
    return e;
  } finally {
    sock.close();
  }
}

/** Reads `n` bytes from the bare socket, without blocking the event loop (5 s at most). */
async function rawRead(fd: number, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let off = 0;
  const deadline = performance.now() + 5000;
  while (off < n && performance.now() < deadline) {
    const rest = out.subarray(off);
    const got = Number(clientLib().recv(fd, rest, BigInt(rest.length), C.MSG_DONTWAIT));
    if (got === 0) break;
    if (got > 0) off += got;
    else await new Promise((r) => setTimeout(r, 10));
  }
  return out.subarray(0, off);
}

/** 64 KiB that are not all alike. */
function pattern(seed: number): Uint8Array {
  return Uint8Array.from({ length: 65536 }, (_, i) => (i * 31 + seed) & 0xff);
}

/** What {@linkcode withSession} hands its body. */
interface SessionParts {
  session: KtlsSession;
  /** The server's side. */
  conn: Connection;
  sock: FdSocket;
  listener: TlsListener;
}

/**
 * Runs `body` with alice's session (options `more`) to a fresh listener (`listenOptions`); then
 * closes the session, the server's side, the socket and the listener (the body may close or
 * release the session first: both are safe to repeat).
 */
async function withSession(
  body: (parts: SessionParts) => void | Promise<void>,
  more: Partial<KtlsClientOptions> = {},
  listenOptions: Partial<TlsListenOptions> = {},
): Promise<void> {
  const { listener, accept } = await listen(listenOptions);
  const sock = await socketTo(listener.port);
  try {
    const [session, next] = await Promise.all([
      KtlsSession.connect(sock.fd, alice(more)),
      accept(),
    ]);
    const conn = next.value!;
    try {
      await body({ session, conn, sock, listener });
    } finally {
      session.close();
      conn.close();
    }
  } finally {
    sock.close();
    listener.close();
  }
}

Deno.test({
  name: "a TLS 1.2 session with ChaCha20-Poly1305 carries bytes both ways; the server sees alice",
  ignore,
  async fn() {
    await withSession(async ({ session, conn, sock }) => {
      assertEquals(session.version, "TLSv1.2");
      assert(KTLS_CIPHERS.split(":").includes(session.cipher), session.cipher);
      // The server's key is P-256: the ECDSA suite.
      assertEquals(session.cipher, "ECDHE-ECDSA-CHACHA20-POLY1305");
      assertEquals(conn.peer.certificate?.cn, "alice");
      // While the session runs the socket is non-blocking.
      assertEquals(fdFlags(sock.fd) & O_NONBLOCK, O_NONBLOCK);

      await session.writeAll(te.encode("ping"));
      assertEquals(td.decode(await serverRead(conn, 4)), "ping");
      await serverWrite(conn, te.encode("pong"));
      assertEquals(td.decode(await session.readExactly(4)), "pong");

      const up = pattern(1);
      const down = pattern(2);
      const [, atServer] = await Promise.all([session.writeAll(up), serverRead(conn, up.length)]);
      assertEquals(atServer, up);
      const [, atClient] = await Promise.all([
        serverWrite(conn, down),
        session.readExactly(down.length),
      ]);
      assertEquals(atClient, down);
      assertEquals(session.pending(), 0);
      assertEquals((await session.readExactly(0)).length, 0);
      session.close();
      assertEquals(fdFlags(sock.fd) & O_NONBLOCK, 0, "blocking again");
    });
  },
});

Deno.test({
  name: "a host name as server name is checked against the certificate's DNS names (and is SNI)",
  ignore,
  async fn() {
    await withSession(({ session }) => {
      assertEquals(session.version, "TLSv1.2");
    }, { serverName: "localhost" });
  },
});

Deno.test({
  name: "ktls() reports what the kernel took over, as ktlsUnavailableReason() predicts",
  ignore,
  async fn() {
    await withSession(async ({ session, conn }) => {
      // Asked after the handshake: OpenSSL's setsockopt(TCP_ULP, "tls") may load the module.
      const why = ktlsUnavailableReason();
      let loaded = true;
      try {
        Deno.statSync("/proc/net/tls_stat");
      } catch {
        loaded = false;
      }
      assertEquals(why === undefined, loaded, why);
      if (why !== undefined) assertMatch(why, /tls module is not loaded/);
      const on = why === undefined;
      assertEquals(session.ktls(), { send: on, recv: on }, why ?? "the tls module is loaded");
      console.log(`ktls() on this host: ${JSON.stringify(session.ktls())} (${why ?? "loaded"})`);
      // Bytes still flow, through the kernel or through OpenSSL.
      await session.writeAll(te.encode("k"));
      assertEquals(td.decode(await serverRead(conn, 1)), "k");
    });
  },
});

Deno.test({
  name: "pending() counts what OpenSSL decrypted and readExactly() has not returned yet",
  ignore,
  async fn() {
    await withSession(async ({ session, conn }) => {
      await serverWrite(conn, te.encode("0123456789"));
      assertEquals(td.decode(await session.readExactly(4)), "0123");
      assertEquals(session.pending(), 6, "the rest of the record");
      assertEquals(td.decode(await session.readExactly(6)), "456789");
      assertEquals(session.pending(), 0);
    });
  },
});

Deno.test({
  name: "release() leaves the session in the socket: no close_notify, fd open and blocking",
  ignore,
  async fn() {
    // The helper's close() afterwards finds nothing left to close.
    await withSession(async ({ session, conn, sock }) => {
      session.release();
      session.release();
      assertEquals(fdFlags(sock.fd) & O_NONBLOCK, 0);
      assert(fileOf(sock.fd).startsWith("socket:["));
      assertEquals(await serverSeesEof(conn, 300), false, "no close_notify was sent");
      // Without kTLS here, what the server sends now arrives as a TLS record on the bare fd:
      // application data (23), version 3.3.
      await serverWrite(conn, te.encode("after"));
      assertEquals([...await rawRead(sock.fd, 3)], [23, 3, 3]);
      await assertRejects(() => session.readExactly(1), Deno.errors.BadResource);
      await assertRejects(() => session.writeAll(te.encode("x")), Deno.errors.BadResource);
    });
  },
});

Deno.test({
  name: "close() sends close_notify and leaves the fd open; a server that closes gives EOF",
  ignore,
  async fn() {
    const { listener, accept } = await listen();
    const a = await socketTo(listener.port);
    const b = await socketTo(listener.port);
    try {
      const [first, firstConn] = await Promise.all([KtlsSession.connect(a.fd, alice()), accept()]);
      const [second, secondConn] = await Promise.all([
        KtlsSession.connect(b.fd, alice()),
        accept(),
      ]);
      try {
        first.close();
        first.close();
        assert(await serverSeesEof(firstConn.value!, 3000), "the server saw the end");
        assert(fileOf(a.fd).startsWith("socket:["), "the fd is still the caller's");
        assertEquals(fdFlags(a.fd) & O_NONBLOCK, 0);

        await serverWrite(secondConn.value!, te.encode("ab"));
        secondConn.value!.close();
        const eof = await assertRejects(
          () => second.readExactly(5),
          Deno.errors.UnexpectedEof,
          "after 2 of 5 bytes",
        );
        assertMatch(eof.message, /the server closed the connection/);
        await assertRejects(() => second.readExactly(1), Deno.errors.BadResource);
      } finally {
        first.close();
        second.close();
        firstConn.value!.close();
      }
    } finally {
      a.close();
      b.close();
      listener.close();
    }
  },
});

Deno.test({
  name: "a read that gets nothing fails at the time limit, and the session is done",
  ignore,
  async fn() {
    // The session's limit, then one given to the read itself.
    for (const [sessionMs, readMs] of [[300, undefined], [5000, 200]] as const) {
      await withSession(async ({ session }) => {
        const limit = readMs ?? sessionMs;
        const started = performance.now();
        const e = await assertRejects(
          () => session.readExactly(1, readMs === undefined ? {} : { timeoutMs: readMs }),
          TlsClientError,
        );
        const took = performance.now() - started;
        assertEquals(e.reason, "timeout");
        assertEquals(
          e.message,
          `Cannot receive through TLS: nothing arrived within ${limit / 1000} s`,
        );
        assertGreaterOrEqual(took, limit - 10);
        assertLess(took, limit + 2500);
        await assertRejects(() => session.readExactly(1), Deno.errors.BadResource, "within");
      }, { timeoutMs: sessionMs });
    }
  },
});

Deno.test({
  name: "an aborted read rejects with the signal's reason, and the session is done",
  ignore,
  async fn() {
    await withSession(async ({ session }) => {
      const ac = new AbortController();
      const reading = session.readExactly(1, { signal: ac.signal });
      setTimeout(() => ac.abort(new Error("stop reading")), 50);
      const started = performance.now();
      await assertRejects(() => reading, Error, "stop reading");
      assertLess(performance.now() - started, 2000);
      await assertRejects(() => session.readExactly(1), Deno.errors.BadResource, "aborted");
    }, { timeoutMs: 5000 });
  },
});

Deno.test({
  name: "a server certificate of a CA not in caFile fails verification, saying so",
  ignore,
  async fn() {
    const { listener } = await listen();
    try {
      const e = await failure(listener.port, alice({ caFile: pki.otherCa }), "verify");
      // The listener sends its CA along with its certificate: a self-signed root not trusted.
      assertEquals(
        e.message,
        `Cannot set up TLS: the server's certificate does not verify against ${pki.otherCa}: ` +
          "self-signed certificate in certificate chain",
      );
      assertMatch(e.openssl.join("\n"), /certificate verify failed/);
    } finally {
      listener.close();
    }
  },
});

Deno.test({
  name: "a server name the certificate is not for fails verification, for an IP and a host name",
  ignore,
  async fn() {
    const { listener } = await listen();
    try {
      for (const serverName of ["127.0.0.2", "example.org", "[::1]"]) {
        const e = await failure(listener.port, alice({ serverName }), "verify");
        assertEquals(e.detail, `the server's certificate does not match ${serverName}`);
      }
    } finally {
      listener.close();
    }
  },
});

Deno.test({
  name: "a client certificate the server does not accept ends the handshake, and it is refused",
  ignore,
  async fn() {
    const { listener, refusals, accept } = await listen();
    const next = accept();
    try {
      const stranger = alice({ certFile: pki.stranger.cert, keyFile: pki.stranger.key });
      const e = await failure(listener.port, stranger, "handshake");
      assertEquals(
        e.detail,
        "the server closed the connection during the handshake " +
          "(does it accept this client's certificate?)",
      );
      for (let i = 0; i < 100 && refusals.length === 0; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assertEquals(refusals, ["unable to verify the first certificate cn=mallory"]);
    } finally {
      listener.close();
    }
    assertEquals((await next).done, true, "no connection was yielded");
  },
});

Deno.test({
  name: "a server that wants TLS 1.3 refuses with an alert, and the message names it",
  ignore,
  async fn() {
    const { listener } = await listen({ minVersion: "TLSv1.3" });
    try {
      const e = await failure(listener.port, alice(), "handshake");
      assertMatch(e.detail, /^the server refused the handshake: alert protocol version \(/);
      assertMatch(e.detail, /kernel TLS needs TLS 1\.2 with ChaCha20-Poly1305/);
    } finally {
      listener.close();
    }
  },
});

Deno.test({
  name: "credentials that cannot be used are refused before connecting, naming the file",
  ignore,
  async fn() {
    const { listener } = await listen();
    try {
      const missing = `${pki.dir}/missing.pem`;
      const cases: [Partial<KtlsClientOptions>, string][] = [
        [
          { certFile: missing },
          `Cannot use the TLS certificate file ${missing}: there is no such file (ENOENT)`,
        ],
        [{ keyFile: missing }, `Cannot use the TLS key file ${missing}: there is no such file`],
        [{ caFile: missing }, `Cannot use the TLS CA file ${missing}: there is no such file`],
        [{ caFile: pki.alice.key }, `Cannot use the TLS CA file ${pki.alice.key}: it holds no`],
        [{ certFile: pki.alice.key }, `Cannot use the TLS certificate file ${pki.alice.key}: `],
        [
          { keyFile: pki.stranger.key },
          `Cannot use the TLS key file ${pki.stranger.key}: the key does not belong to the ` +
          `certificate in ${pki.alice.cert}`,
        ],
      ];
      for (const [more, message] of cases) {
        const e = await failure(listener.port, alice(more), "credentials");
        assert(e.message.startsWith(message), `${e.message}\ndoes not start with\n${message}`);
      }
    } finally {
      listener.close();
    }
  },
});

Deno.test({
  name: "a server that never answers the handshake fails it at the time limit",
  ignore,
  async fn() {
    const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const accepted = silent.accept();
    try {
      const started = performance.now();
      const e = await failure(silent.addr.port, alice({ timeoutMs: 400 }), "timeout");
      const took = performance.now() - started;
      assertEquals(e.message, "Cannot set up TLS: the handshake did not finish within 0.4 s");
      assertGreaterOrEqual(took, 390);
      assertLess(took, 3000);
    } finally {
      (await accepted).close();
      silent.close();
    }
  },
});

Deno.test({
  name: "invalid options and a descriptor that is not open are refused",
  ignore,
  async fn() {
    await assertRejects(
      () => KtlsSession.connect(0, alice({ serverName: "" })),
      RangeError,
      "server name",
    );
    await assertRejects(() => KtlsSession.connect(0, alice({ timeoutMs: 0 })), RangeError);
    await assertRejects(
      () => KtlsSession.connect(0, alice({ certFile: "a\0b" })),
      RangeError,
      "NUL",
    );
    const e = await assertRejects(() => KtlsSession.connect(-1, alice()), TlsClientError);
    assertEquals(e.reason, "io");
    assertMatch(e.message, /EBADF/);
    assertInstanceOf(e, Error);
  },
});

/** Tests that look at the whole process, each run in a process of its own. */
const ownProcess = ownProcessTests(import.meta.url);

if (!ignore) {
  ownProcess("no descriptor is left open by sessions that succeed or fail", async () => {
    const { listener, accept } = await listen();
    const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const held: Deno.Conn[] = [];
    const holding = (async () => {
      for await (const c of silent) held.push(c);
    })();
    /** A session that exchanges a few bytes and ends by `end`. */
    const good = async (end: "release" | "close") => {
      const sock = await socketTo(listener.port);
      const [session, next] = await Promise.all([KtlsSession.connect(sock.fd, alice()), accept()]);
      await session.writeAll(te.encode("hi"));
      assertEquals(td.decode(await serverRead(next.value!, 2)), "hi");
      session[end]();
      next.value!.close();
      sock.close();
    };
    const all = async () => {
      await good("release");
      await good("close");
      await failure(listener.port, alice({ caFile: pki.otherCa }), "verify");
      await failure(listener.port, alice({ serverName: "example.org" }), "verify");
      await failure(
        listener.port,
        alice({ certFile: pki.stranger.cert, keyFile: pki.stranger.key }),
        "handshake",
      );
      await failure(listener.port, alice({ keyFile: `${pki.dir}/missing.pem` }), "credentials");
      await failure(silent.addr.port, alice({ timeoutMs: 200 }), "timeout");
      // The silent server's end of that connection is the test's own descriptor.
      while (held.length === 0) await new Promise((r) => setTimeout(r, 10));
      held.splice(0).forEach((c) => c.close());
    };
    try {
      // Once first, so that whatever OpenSSL and Deno open once and keep is open before counting.
      await all();
      await withoutFdLeak(all);
    } finally {
      listener.close();
      silent.close();
      await holding.catch(() => {});
      for (const c of held) c.close();
    }
  });
}
