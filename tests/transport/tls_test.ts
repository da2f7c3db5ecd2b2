// Tests of the TLS listener over real sockets, with node:tls clients showing certificates from a
// test PKI that openssl(1) makes in a temporary folder (tests/transport/_certs.ts): who is
// accepted, with which identity; who is refused, with which reason; bytes both ways; TCP_NODELAY
// and keep-alive; the handshake time limit; reloading the certificates; listen errors.
import { assert, assertEquals, assertInstanceOf, assertMatch, assertRejects } from "@std/assert";
import * as tls from "node:tls";
import { X509Certificate } from "node:crypto";
import {
  type Connection,
  describePeer,
  ListenError,
  type PeerCertificate,
  TlsCredentialsError,
  TlsListener,
  type TlsListenOptions,
} from "../../mod.ts";
import { DEFAULT_KEEPALIVE } from "../../lib/transport/_tcp_keepalive.ts";
import { parsePeerCertificate } from "../../lib/transport/tls.ts";
import { fdOfSocket, readKeepalive, socketInodes } from "../../lib/transport/_tcp_keepalive.ts";
import { getIntOption, SockOpt } from "../../lib/ffi/sockopt.ts";
import {
  ALICE_SANS,
  type CertFiles,
  makeTestPki,
  opensslFingerprint,
  opensslProblem,
  opensslPubkeyPin,
  type TestPki,
  TRICKY_SANS,
} from "./_certs.ts";

const ignore = opensslProblem !== undefined;
if (ignore) console.log(`Skipping the TLS tests: ${opensslProblem}`);

/** One PKI for the whole file, removed when the module unloads. */
const pki: TestPki = ignore ? undefined as unknown as TestPki : await makeTestPki();
if (!ignore) addEventListener("unload", () => Deno.removeSync(pki.dir, { recursive: true }));

const te = new TextEncoder();
const td = new TextDecoder();
const ESTABLISHED = "01";

/** A refusal as the listener reported it. */
interface Refusal {
  address: string;
  reason: string;
  certificate?: PeerCertificate;
}

/** A listener on 127.0.0.1 with the test PKI's server certificate, and its refusals. */
async function listen(options: Partial<TlsListenOptions> = {}) {
  const refusals: Refusal[] = [];
  const waiters: ((r: Refusal) => void)[] = [];
  const listener = await TlsListener.listen({
    hostname: "127.0.0.1",
    port: 0,
    certFile: pki.server.cert,
    keyFile: pki.server.key,
    caFile: pki.ca,
    onRefused: (address, reason, certificate) => {
      const r = { address, reason, ...(certificate ? { certificate } : {}) };
      const w = waiters.shift();
      if (w) w(r);
      else refusals.push(r);
    },
    ...options,
  });
  const iterator = listener[Symbol.asyncIterator]();
  return {
    listener,
    /** The next connection the listener yields. */
    accept: () => iterator.next(),
    /** The next refusal. */
    refused: () =>
      refusals.length > 0
        ? Promise.resolve(refusals.shift()!)
        : new Promise<Refusal>((r) => waiters.push(r)),
  };
}

/** A node:tls client of `port` showing `files` (or no certificate), trusting the test CA. */
function client(port: number, files?: CertFiles): tls.TLSSocket {
  return tls.connect({
    host: "127.0.0.1",
    port,
    ca: Deno.readTextFileSync(pki.ca),
    ...(files
      ? { cert: Deno.readTextFileSync(files.cert), key: Deno.readTextFileSync(files.key) }
      : {}),
  });
}

/** Resolves once the client's handshake is done; rejects on an error first. */
function secured(c: tls.TLSSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    c.once("secureConnect", resolve);
    c.once("error", reject);
  });
}

/** Resolves when the socket has closed; an error on the way is ignored. */
function closed(c: tls.TLSSocket): Promise<void> {
  c.on("error", () => {});
  return new Promise((resolve) => c.destroyed && c.closed ? resolve() : c.once("close", resolve));
}

/** Closes the client and waits for it. */
async function hangUp(c: tls.TLSSocket): Promise<void> {
  const done = closed(c);
  c.destroy();
  await done;
}

/** The next chunk the client receives, as text. */
function received(c: tls.TLSSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    c.once("data", (d: Uint8Array) => resolve(td.decode(d)));
    c.once("error", reject);
  });
}

/** Echoes one chunk back through the connection's streams. */
async function echoOnce(conn: Connection): Promise<void> {
  const reader = conn.readable.getReader();
  const writer = conn.writable.getWriter();
  const { value } = await reader.read();
  await writer.write(value!);
  reader.releaseLock();
  writer.releaseLock();
}

/** Sends `text` from the client and checks that it comes back through `conn`. */
async function roundTrip(c: tls.TLSSocket, conn: Connection, text: string): Promise<void> {
  const back = received(c);
  c.write(text);
  await echoOnce(conn);
  assertEquals(await back, text);
}

/** Runs a client that the listener must refuse, and returns the refusal. */
async function refusedClient(port: number, refused: () => Promise<Refusal>, files?: CertFiles) {
  const c = client(port, files);
  let localPort: number | undefined;
  c.once("connect", () => localPort = c.localPort);
  const [refusal] = await Promise.all([refused(), closed(c)]);
  return { refusal, localPort };
}

/**
 * Connects a client showing `files` (none when absent) to a fresh listener, hands its refusal
 * and local port to `check`, and checks that the listener yielded no connection.
 */
async function assertRefused(
  files: CertFiles | undefined,
  check: (refusal: Refusal, localPort: number | undefined) => void | Promise<void>,
): Promise<void> {
  const { listener, accept, refused } = await listen();
  const next = accept();
  try {
    const { refusal, localPort } = await refusedClient(listener.port, refused, files);
    await check(refusal, localPort);
  } finally {
    listener.close();
  }
  assertEquals((await next).done, true, "no connection was yielded");
}

Deno.test({
  name: "a TLS listener accepts a client of its CA, with the certificate's identity in the peer",
  ignore,
  async fn() {
    const { listener, accept } = await listen();
    const c = client(listener.port, pki.alice);
    try {
      await secured(c);
      const conn = (await accept()).value!;
      try {
        const peer = conn.peer;
        assertEquals(peer.transport, "tls");
        assertEquals(peer.address, `127.0.0.1:${c.localPort}`);
        const cert = peer.certificate!;
        assertEquals(cert.cn, "alice");
        assertEquals(cert.ou, ["lab"]);
        assertEquals(cert.sans, [...ALICE_SANS]);
        assertEquals(cert.fingerprint, await opensslFingerprint(pki.dir, pki.alice.cert));
        assertEquals(cert.pubkey, await opensslPubkeyPin(pki.dir, pki.alice.cert));
        assertMatch(cert.fingerprint, /^[0-9a-f]{64}$/);
        assertEquals(
          describePeer(peer),
          `tls 127.0.0.1:${c.localPort} cn=alice fp=${cert.fingerprint.slice(0, 8)}`,
        );
        assertEquals(listener.description, `tls 127.0.0.1:${listener.port}`);
      } finally {
        conn.close();
      }
    } finally {
      await hangUp(c);
      listener.close();
    }
  },
});

Deno.test({
  name: "bytes flow both ways through an accepted TLS connection, by streams and by direct I/O",
  ignore,
  async fn() {
    const { listener, accept } = await listen();
    const a = client(listener.port, pki.alice);
    const b = client(listener.port, pki.alice);
    try {
      await Promise.all([secured(a), secured(b)]);
      const first = (await accept()).value!;
      const second = (await accept()).value!;
      const [byStreams, byDirect] = first.peer.address.endsWith(`:${a.localPort}`)
        ? [first, second]
        : [second, first];
      try {
        await roundTrip(a, byStreams, "ping through streams");
        await roundTrip(a, byStreams, "and again");
        // Direct I/O, as a session reads and writes.
        const back = received(b);
        b.write("ping direct");
        const buf = new Uint8Array(64);
        const n = await byDirect.direct!.read(buf);
        assertEquals(td.decode(buf.subarray(0, n!)), "ping direct");
        await byDirect.direct!.write(te.encode("pong direct"));
        assertEquals(await back, "pong direct");
        // The client's end of stream reaches the reader.
        const ended = closed(b);
        b.end();
        assertEquals(await byDirect.direct!.read(buf), null);
        byDirect.close();
        await ended;
      } finally {
        first.close();
        second.close();
      }
    } finally {
      await Promise.all([hangUp(a), hangUp(b)]);
      listener.close();
    }
  },
});

Deno.test({
  name: "a TLS listener refuses a client without a certificate, and yields nothing",
  ignore,
  async fn() {
    await assertRefused(undefined, (refusal, localPort) => {
      assertEquals(refusal, { address: `127.0.0.1:${localPort}`, reason: "no client certificate" });
    });
  },
});

Deno.test({
  name: "a TLS listener refuses a certificate of another CA, naming it in the refusal",
  ignore,
  async fn() {
    await assertRefused(pki.stranger, async (refusal, localPort) => {
      assertEquals(refusal.address, `127.0.0.1:${localPort}`);
      assertEquals(refusal.reason, "unable to verify the first certificate");
      assertEquals(refusal.certificate?.cn, "mallory");
      assertEquals(
        refusal.certificate?.fingerprint,
        await opensslFingerprint(pki.dir, pki.stranger.cert),
      );
    });
  },
});

Deno.test({
  name: "a TLS listener refuses a server certificate of its own CA as a client certificate",
  ignore,
  async fn() {
    // server2 is for serverAuth only (extendedKeyUsage): it does not verify as a client.
    await assertRefused(pki.server2, (refusal) => {
      assertEquals(refusal.reason, "unable to verify the first certificate");
      assertEquals(refusal.certificate?.cn, "server2");
    });
  },
});

Deno.test({
  name: "a TLS listener refuses an expired certificate of its own CA and says it expired",
  ignore,
  async fn() {
    await assertRefused(pki.expired, (refusal) => {
      assertEquals(refusal.reason, "certificate has expired (valid until 2020-01-02T00:00:00Z)");
      assertEquals(refusal.certificate?.cn, "bob");
    });
  },
});

Deno.test({
  name: "a self-signed client certificate is accepted when the CA file lists it, else refused",
  ignore,
  async fn() {
    const pinning = await listen({ caFile: pki.caAndPinned });
    const c = client(pinning.listener.port, pki.pinned);
    try {
      await secured(c);
      const conn = (await pinning.accept()).value!;
      assertEquals(conn.peer.certificate?.cn, "pinned");
      assertEquals(
        conn.peer.certificate?.fingerprint,
        await opensslFingerprint(pki.dir, pki.pinned.cert),
      );
      await roundTrip(c, conn, "pinned");
      conn.close();
    } finally {
      await hangUp(c);
      pinning.listener.close();
    }
    const plain = await listen();
    const next = plain.accept();
    try {
      const { refusal } = await refusedClient(plain.listener.port, plain.refused, pki.pinned);
      assertEquals(refusal.certificate?.cn, "pinned");
    } finally {
      plain.listener.close();
    }
    assertEquals((await next).done, true, "no connection was yielded");
  },
});

Deno.test({
  name: "an accepted TLS socket has TCP_NODELAY and the gateway's keep-alive",
  ignore,
  async fn() {
    const { listener, accept } = await listen();
    const c = client(listener.port, pki.alice);
    try {
      await secured(c);
      const conn = (await accept()).value!;
      try {
        // The accepted socket: local port = the listener's, remote port = the client's.
        const fd = fdOfSocket(socketInodes(listener.port, ESTABLISHED, c.localPort));
        if (fd === undefined) {
          console.log("Skipped: the accepted socket is not among this process's descriptors");
          return;
        }
        assertEquals(getIntOption(fd, SockOpt.IPPROTO_TCP, SockOpt.TCP_NODELAY), 1);
        const keepalive = readKeepalive(fd);
        assertEquals(keepalive.enabled, true);
        if (listener.keepaliveProblem === undefined) {
          assertEquals(keepalive, { enabled: true, ...DEFAULT_KEEPALIVE });
        } else {
          console.log(`Keep-alive timings not checked: ${listener.keepaliveProblem}`);
        }
      } finally {
        conn.close();
      }
    } finally {
      await hangUp(c);
      listener.close();
    }
  },
});

Deno.test({
  name: "a client that never starts the handshake is dropped at the time limit, and reported",
  ignore,
  async fn() {
    const { listener, accept, refused } = await listen({ handshakeTimeoutMs: 300 });
    const silent = await Deno.connect({ hostname: "127.0.0.1", port: listener.port });
    // A client that finished its handshake stays beyond the limit.
    const c = client(listener.port, pki.alice);
    try {
      await secured(c);
      const conn = (await accept()).value!;
      const started = Date.now();
      const refusal = await refused();
      const took = Date.now() - started;
      assertEquals(refusal, {
        address: `127.0.0.1:${silent.localAddr.port}`,
        reason: "the TLS handshake did not finish within 0.3 s",
      });
      assert(took < 3000, `dropped after ${took} ms`);
      assertEquals(await silent.read(new Uint8Array(16)).catch(() => null), null, "closed");
      await new Promise((r) => setTimeout(r, 200));
      await roundTrip(c, conn, "still here");
      conn.close();
    } finally {
      silent.close();
      await hangUp(c);
      listener.close();
    }
  },
});

Deno.test({
  name: "handshakes beyond the limits are closed at once and reported; the others go on",
  ignore,
  async fn() {
    const { listener, accept, refused } = await listen({
      maxHandshakes: 3,
      maxHandshakesPerAddress: 2,
    });
    const connect = () => Deno.connect({ hostname: "127.0.0.1", port: listener.port });
    // Two silent clients hold 127.0.0.1's two handshakes; a third is closed at once.
    const silent = [await connect(), await connect()];
    const third = await connect();
    const opened: Deno.Conn[] = [...silent, third];
    try {
      assertEquals(await refused(), {
        address: `127.0.0.1:${third.localAddr.port}`,
        reason: "too many TLS handshakes under way from 127.0.0.1 (the limit is 2)",
      });
      assertEquals(await third.read(new Uint8Array(16)).catch(() => null), null, "closed");
      // One silent client leaves: a real client gets its handshake and its connection.
      silent.shift()!.close();
      await new Promise((r) => setTimeout(r, 100));
      const c = client(listener.port, pki.alice);
      try {
        await secured(c);
        const conn = (await accept()).value!;
        await roundTrip(c, conn, "after the flood");
        conn.close();
      } finally {
        await hangUp(c);
      }
      // The total limit, on a listener whose per-address limit is higher.
      const wide = await listen({ maxHandshakes: 1, maxHandshakesPerAddress: 5 });
      const first = await Deno.connect({ hostname: "127.0.0.1", port: wide.listener.port });
      const second = await Deno.connect({ hostname: "127.0.0.1", port: wide.listener.port });
      opened.push(first, second);
      assertEquals(
        (await wide.refused()).reason,
        "too many TLS handshakes under way (the limit is 1)",
      );
      wide.listener.close();
    } finally {
      for (const c of opened) {
        try {
          c.close();
        } catch {
          // closed by the test
        }
      }
      listener.close();
    }
  },
});

Deno.test({
  name: "a client that speaks something else than TLS is refused with its address",
  ignore,
  async fn() {
    const { listener, refused } = await listen();
    const plain = await Deno.connect({ hostname: "127.0.0.1", port: listener.port });
    try {
      await plain.write(te.encode("GET / HTTP/1.0\r\n\r\n"));
      const refusal = await refused();
      assertEquals(refusal.address, `127.0.0.1:${plain.localAddr.port}`);
      assertEquals(refusal.reason, "the client does not speak TLS (it sent no TLS record)");
      await plain.read(new Uint8Array(256)).catch(() => null);
    } finally {
      plain.close();
      listener.close();
    }
  },
});

Deno.test({
  name: "reload() swaps the server certificate for new connections; running ones carry on",
  ignore,
  async fn() {
    const { listener, accept } = await listen();
    const serverCn = (c: tls.TLSSocket) => String(c.getPeerCertificate().subject.CN);
    const old = client(listener.port, pki.alice);
    let fresh: tls.TLSSocket | undefined;
    try {
      await secured(old);
      const oldConn = (await accept()).value!;
      assertEquals(serverCn(old), "server");
      await listener.reload({
        certFile: pki.server2.cert,
        keyFile: pki.server2.key,
        caFile: pki.ca,
      });
      fresh = client(listener.port, pki.alice);
      await secured(fresh);
      const freshConn = (await accept()).value!;
      assertEquals(serverCn(fresh), "server2");
      await roundTrip(old, oldConn, "old still works");
      await roundTrip(fresh, freshConn, "new works");
      oldConn.close();
      freshConn.close();
    } finally {
      await hangUp(old);
      if (fresh) await hangUp(fresh);
      listener.close();
    }
  },
});

Deno.test({
  name: "reload() with a key of another certificate or a missing file throws and keeps the old",
  ignore,
  async fn() {
    const { listener, accept } = await listen();
    try {
      const mismatch = await assertRejects(
        () =>
          listener.reload({ certFile: pki.server2.cert, keyFile: pki.server.key, caFile: pki.ca }),
        TlsCredentialsError,
      );
      assertEquals([mismatch.failure, mismatch.file], ["key_mismatch", pki.server.key]);
      const missing = await assertRejects(
        () =>
          listener.reload({
            certFile: `${pki.dir}/nope.pem`,
            keyFile: pki.server2.key,
            caFile: pki.ca,
          }),
        TlsCredentialsError,
      );
      assertEquals(missing.failure, "file_missing");
      assertEquals(
        missing.message,
        `Cannot use the TLS certificate file ${pki.dir}/nope.pem: there is no such file (ENOENT)`,
      );
      const notPem = await assertRejects(
        () =>
          listener.reload({
            certFile: pki.server2.cert,
            keyFile: pki.server2.key,
            caFile: pki.server2.key,
          }),
        TlsCredentialsError,
      );
      assertEquals(notPem.failure, "no_certificate");
      const c = client(listener.port, pki.alice);
      try {
        await secured(c);
        (await accept()).value!.close();
        assertEquals(String(c.getPeerCertificate().subject.CN), "server", "the old context");
      } finally {
        await hangUp(c);
      }
    } finally {
      listener.close();
    }
    await assertRejects(
      () => listener.reload({ certFile: pki.server.cert, keyFile: pki.server.key, caFile: pki.ca }),
      Deno.errors.BadResource,
    );
  },
});

Deno.test({
  name: "closing a TLS listener ends its iteration and leaves accepted connections open",
  ignore,
  async fn() {
    const { listener, accept } = await listen();
    const c = client(listener.port, pki.alice);
    try {
      await secured(c);
      const conn = (await accept()).value!;
      const next = accept();
      listener.close();
      listener.close();
      assertEquals((await next).done, true);
      await roundTrip(c, conn, "after close");
      conn.close();
    } finally {
      await hangUp(c);
    }
  },
});

Deno.test({
  name: "a TLS listener on a port in use or an address not of this host throws a ListenError",
  ignore,
  async fn() {
    const blocker = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      const port = blocker.addr.port;
      const e = await assertRejects(() => listen({ port }), ListenError);
      assertEquals(e.failure, "address_in_use");
      assertEquals(
        e.message,
        `Cannot listen on 127.0.0.1:${port}: the address is in use (EADDRINUSE); ` +
          "is another usbipgw or usbipd running?",
      );
    } finally {
      blocker.close();
    }
    const foreign = await assertRejects(() => listen({ hostname: "192.0.2.1" }), ListenError);
    assertEquals(foreign.failure, "address_not_available");
    const badKey = await assertRejects(() => listen({ keyFile: pki.alice.key }), ListenError);
    assertInstanceOf(badKey.cause, TlsCredentialsError);
    assertEquals(
      badKey.message,
      `Cannot listen on 127.0.0.1:0: cannot use the TLS key file ${pki.alice.key}: ` +
        `the key does not belong to the certificate in ${pki.server.cert}`,
    );
  },
});

Deno.test({
  name: "parsePeerCertificate() keeps a name holding ', ' whole and drops a doubled CN",
  ignore,
  async fn() {
    const der = new X509Certificate(await Deno.readTextFile(pki.tricky.cert)).raw;
    const id = parsePeerCertificate(der);
    assertEquals(id.cn, undefined, "two CNs: neither is the CN");
    assertEquals(id.ou, ["lab", "usb"]);
    assertEquals(id.sans, [...TRICKY_SANS]);
    assert(!id.sans.includes("DNS:evil"));
    assertEquals(id.fingerprint, await opensslFingerprint(pki.dir, pki.tricky.cert));
    assertEquals(id.pubkey, await opensslPubkeyPin(pki.dir, pki.tricky.cert));
    // A CN that would break a log line is quoted.
    const peer = { transport: "tls" as const, address: "192.0.2.7:1", certificate: id };
    assertEquals(
      describePeer({ ...peer, certificate: { ...id, cn: "x\nfake line" } }),
      `tls 192.0.2.7:1 cn="x\\nfake line" fp=${id.fingerprint.slice(0, 8)}`,
    );
    assertEquals(describePeer(peer), `tls 192.0.2.7:1 fp=${id.fingerprint.slice(0, 8)}`);
  },
});

Deno.test("parsePeerCertificate() rejects bytes that are not a certificate", () => {
  for (const bytes of [new Uint8Array(0), te.encode("not DER"), new Uint8Array([0x30, 0x82, 1])]) {
    let error: unknown;
    try {
      parsePeerCertificate(bytes);
    } catch (e) {
      error = e;
    }
    assertInstanceOf(error, TypeError);
    assertMatch(error.message, /^Cannot read the certificate: /);
  }
});
