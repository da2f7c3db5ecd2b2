// Tests of the TCP and unix transports over real sockets.
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import { type Connection, connectUnix, ListenError, TcpListener, UnixListener } from "../../mod.ts";
import { parseHostPort } from "../../lib/transport/tcp.ts";

Deno.test("parseHostPort() reads IPv4, IPv6 and bare hosts", () => {
  assertEquals(parseHostPort("127.0.0.1:3240", 1), { hostname: "127.0.0.1", port: 3240 });
  assertEquals(parseHostPort("[::1]:4000", 1), { hostname: "::1", port: 4000 });
  assertEquals(parseHostPort("[::1]", 3240), { hostname: "::1", port: 3240 });
  assertEquals(parseHostPort("::1", 3240), { hostname: "::1", port: 3240 });
  assertEquals(parseHostPort("[fe80::1%eth0]:1", 2), { hostname: "fe80::1%eth0", port: 1 });
  assertEquals(parseHostPort("[::ffff:192.0.2.1]:7", 2), {
    hostname: "::ffff:192.0.2.1",
    port: 7,
  });
  assertEquals(parseHostPort("example", 3240), { hostname: "example", port: 3240 });
  assertEquals(parseHostPort("gw.example.:80", 1), { hostname: "gw.example.", port: 80 });
  assertEquals(parseHostPort("0.0.0.0:0", 1), { hostname: "0.0.0.0", port: 0 }, "any free port");
});

Deno.test("parseHostPort() takes a port alone as 127.0.0.1 for a listener, never for a client", () => {
  assertEquals(parseHostPort("3240", 1), { hostname: "127.0.0.1", port: 3240 });
  assertEquals(parseHostPort("4000", 1, { role: "listen" }), { hostname: "127.0.0.1", port: 4000 });
  assertEquals(parseHostPort("0", 1), { hostname: "127.0.0.1", port: 0 });
  const e = assertThrows(() => parseHostPort("3240", 1, { role: "connect" }), TypeError);
  assertEquals(
    e.message,
    'Invalid address "3240": a number alone is not enough here: the host is missing; ' +
      "expected HOST:PORT (IPv6 as [ADDR]:PORT)",
  );
  // A host alone still takes the default port on either side.
  assertEquals(parseHostPort("gw", 3240, { role: "connect" }), { hostname: "gw", port: 3240 });
});

Deno.test("parseHostPort() refuses ports outside 1..65535 with a RangeError showing the form", () => {
  const high = assertThrows(() => parseHostPort("host:70000", 1), RangeError);
  assertEquals(
    high.message,
    'Invalid address "host:70000": the port must be 1..65535 (or 0 for any free port); ' +
      "expected HOST:PORT (IPv6 as [ADDR]:PORT) or a port alone for 127.0.0.1",
  );
  assertThrows(() => parseHostPort("65536", 1), RangeError, "1..65535");
  const zero = assertThrows(() => parseHostPort("[::1]:0", 1, { role: "connect" }), RangeError);
  assertEquals(
    zero.message,
    'Invalid address "[::1]:0": the port must be 1..65535; expected HOST:PORT (IPv6 as [ADDR]:PORT)',
  );
  assertEquals(parseHostPort("h:65535", 1, { role: "connect" }).port, 65535);
});

Deno.test("parseHostPort() reports malformed addresses itself, naming no flag", () => {
  const cases: [string, string][] = [
    ["", "the host is empty"],
    [":80", "the host is empty"],
    ["host:", 'the port is missing after ":"'],
    ["host:http", 'the port "http" is not a number'],
    ["host:-1", 'the port "-1" is not a number'],
    ["[::1", '"]" and then ":PORT" or nothing must follow'],
    ["[::1]3240", '"]" and then ":PORT" or nothing must follow'],
    ["[gw]:1", '"gw" is not an IPv6 address'],
    ["a:b:c", '"a:b:c" is not an IPv6 address (with a port, write [ADDR]:PORT)'],
    ["1.2.3:80", '"1.2.3" is not an IPv4 address (A.B.C.D, each 0..255)'],
    ["256.1.1.1", '"256.1.1.1" is not an IPv4 address'],
    ["my host:80", '"my host" is not a host name or an IP address'],
    ["-gw:80", '"-gw" is not a host name or an IP address'],
    ["gw/x:80", '"gw/x" is not a host name or an IP address'],
  ];
  for (const [text, why] of cases) {
    for (const role of ["listen", "connect"] as const) {
      const e = assertThrows(() => parseHostPort(text, 3240, { role }), TypeError);
      assert(e.message.startsWith(`Invalid address "${text}": ${why}`), e.message);
      assert(e.message.includes("HOST:PORT (IPv6 as [ADDR]:PORT)"), e.message);
      assert(!/--|tcp|remote/.test(e.message), `names no flag: ${e.message}`);
    }
  }
});

Deno.test("a TCP connection offers direct I/O and describes its peer", async () => {
  const listener = new TcpListener({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener[Symbol.asyncIterator]().next();
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.port });
  const conn = (await accepted).value!;
  assertEquals(conn.peer.transport, "tcp");
  assertEquals(conn.peer.address, `127.0.0.1:${client.localAddr.port}`);
  assert(conn.direct !== undefined);
  await conn.direct.write(new Uint8Array([1, 2, 3]));
  const buf = new Uint8Array(3);
  assertEquals(await client.read(buf), 3);
  client.close();
  conn.close();
  listener.close();
});

Deno.test("a unix listener sets the socket's mode and reports the peer's credentials", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/t.sock`;
  const listener = await UnixListener.listen({ path, mode: 0o640 });
  try {
    assertEquals((await Deno.stat(path)).mode! & 0o777, 0o640);
    const accepted = listener[Symbol.asyncIterator]().next();
    const client = await connectUnix(path);
    const conn = (await accepted).value!;
    assertEquals([conn.peer.uid, conn.peer.gid, conn.peer.pid], [Deno.uid(), Deno.gid(), Deno.pid]);
    client.close();
    conn.close();
  } finally {
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a unix listener serves a client that connects while its mode and owner are being set", async () => {
  const ROUNDS = 50;
  const dir = await Deno.makeTempDir();
  let early = 0;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const path = `${dir}/r${round}.sock`;
      let ready = false;
      const listening = UnixListener.listen({
        path,
        mode: 0o640,
        uid: Deno.uid()!,
        gid: Deno.gid()!,
      })
        .finally(() => ready = true);
      // Connects at the first moment the socket accepts, while listen() may still be at work.
      let client: Deno.UnixConn | undefined;
      while (client === undefined) {
        client = await Deno.connect({ transport: "unix", path }).catch(() => undefined);
        // A refused connect fails at once, without a turn of the event loop: this takes one.
        if (client === undefined) await Deno.lstat(dir);
      }
      if (!ready) {
        early++;
        // Until the mode comes, the file lets only its owner in.
        const mode = (await Deno.lstat(path)).mode! & 0o777;
        assert(mode === 0o640 || (mode & 0o077) === 0, `mode ${mode.toString(8)} before the mode`);
      }
      await client.write(new Uint8Array([round, 1, 2, 3]));
      const listener = await listening;
      const timer = setTimeout(() => listener.close(), 5000);
      try {
        const accepted = await listener[Symbol.asyncIterator]().next();
        assert(!accepted.done, `round ${round}: the connection was never handed out`);
        const got = new Uint8Array(4);
        let n = 0;
        while (n < 4) n += (await accepted.value.direct!.read(got.subarray(n))) ?? 4;
        assertEquals([...got], [round, 1, 2, 3]);
        accepted.value.close();
      } finally {
        clearTimeout(timer);
        client.close();
        listener.close();
      }
    }
    // Not a check of the listener: whether the rounds met the window at all (on a loaded machine
    // listen() may finish before every first connect).
    if (early === 0) console.log(`no client of ${ROUNDS} connected before listen() ended`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a unix listener sets the mode without the permission to set the umask", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/t.sock`;
    const unix = new URL("../../lib/transport/unix.ts", import.meta.url).href;
    const script = `import { UnixListener } from ${JSON.stringify(unix)};
      const l = await UnixListener.listen({ path: ${JSON.stringify(path)}, mode: 0o640 });
      console.log((Deno.lstatSync(${JSON.stringify(path)}).mode & 0o777).toString(8));
      l.close();`;
    const file = `${dir}/listen.ts`;
    await Deno.writeTextFile(file, script);
    // Every permission the listener uses (files, the socket, SO_PEERCRED through FFI), not sys.
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-read",
        "--allow-write",
        "--allow-net",
        "--allow-ffi",
        "--allow-env",
        file,
      ],
      stderr: "inherit",
    }).output();
    assert(out.success, "the listener works without --allow-sys");
    assertEquals(new TextDecoder().decode(out.stdout).trim(), "640");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a unix listener replaces a stale socket file and refuses a live one or a plain file", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/t.sock`;
  try {
    // A socket file nobody accepts on, as a killed server leaves behind.
    const leave = `Deno.listen({ transport: "unix", path: ${
      JSON.stringify(path)
    } }); Deno.exit(0);`;
    assert((await new Deno.Command(Deno.execPath(), { args: ["eval", leave] }).output()).success);
    assert((await Deno.lstat(path)).isSocket, "the stale socket file is there");
    const first = await UnixListener.listen({ path });
    const live = await assertRejects(() => UnixListener.listen({ path }), ListenError);
    assertEquals(
      [live.failure, live.message],
      [
        "address_in_use",
        `Cannot listen on ${path}: a server is accepting on this socket already; ` +
        "is another usbipgw running?",
      ],
    );
    assert((await Deno.lstat(path)).isSocket, "the live socket is left alone");
    first.close();
    await Deno.writeTextFile(path, "not a socket");
    const file = await assertRejects(() => UnixListener.listen({ path }), ListenError);
    assertEquals(
      [file.failure, file.message],
      [
        "not_a_socket",
        `Cannot listen on ${path}: a file that is not a socket is in the way; ` +
        "remove it or choose another path",
      ],
    );
    assertEquals(await Deno.readTextFile(path), "not a socket", "the file is left alone");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * Runs `fn` with both ends of a unix connection to a {@linkcode UnixListener} in a new folder:
 * the client's, made by `connect`, and the accepted one; removes the folder after.
 */
async function withUnixPair<C>(
  connect: (path: string) => Promise<C>,
  fn: (client: C, conn: Connection) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/t.sock`;
  const listener = await UnixListener.listen({ path });
  try {
    const accepted = listener[Symbol.asyncIterator]().next();
    const client = await connect(path);
    await fn(client, (await accepted).value!);
  } finally {
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a unix connection's write resolves only once the socket is done with the buffer", async () => {
  await withUnixPair(connectUnix, async (client, conn) => {
    // Writes under node's high-water mark, more of them than the kernel's socket buffer holds
    // while the peer does not read yet: later ones cannot complete at once. Each buffer is
    // overwritten as soon as its write resolves, as a caller that reuses buffers does.
    const size = 16000;
    const count = 100;
    const writing = (async () => {
      for (let i = 0; i < count; i++) {
        const buffer = new Uint8Array(size).fill(i);
        assertEquals(await conn.direct!.write(buffer), size);
        buffer.fill(0xff);
      }
    })();
    await new Promise((r) => setTimeout(r, 200));
    const got = new Uint8Array(size * count);
    let have = 0;
    while (have < got.length) {
      const n = await client.direct!.read(got.subarray(have));
      if (n === null) break;
      have += n;
    }
    await writing;
    assertEquals(have, got.length);
    const changed = got.findIndex((b, at) => b !== Math.floor(at / size));
    assertEquals(changed, -1, `byte ${changed} changed after its write resolved`);
    client.close();
    conn.close();
  });
});

Deno.test("a unix connection's reads deliver every byte in order: early data, a slow reader, small reads", async () => {
  await withUnixPair((path) => Deno.connect({ transport: "unix", path }), async (client, conn) => {
    const total = 8 * 1024 * 1024; // eight times the queue's limit: the socket must pause
    const byte = (at: number) => (at * 7 + 3) % 251;
    const writing = (async () => {
      const block = new Uint8Array(100_003);
      for (let sent = 0; sent < total;) {
        const n = Math.min(block.length, total - sent);
        for (let i = 0; i < n; i++) block[i] = byte(sent + i);
        let done = 0;
        while (done < n) done += await client.write(block.subarray(done, n));
        sent += n;
      }
      client.close();
    })();
    // The first bytes come before the connection's reads are set up (node:net reads them).
    await new Promise((r) => setTimeout(r, 100));
    let have = 0;
    let bad = -1;
    for (let round = 0;; round++) {
      // Reads of every size from 1 byte up, and now and then a pause longer than a transfer.
      const buffer = new Uint8Array(1 + (round * 7919) % 150_000);
      const n = await conn.direct!.read(buffer);
      if (n === null) break;
      for (let i = 0; i < n && bad < 0; i++) if (buffer[i] !== byte(have + i)) bad = have + i;
      have += n;
      if (round % 50 === 0) await new Promise((r) => setTimeout(r, 20));
    }
    await writing;
    assertEquals(bad, -1, `byte ${bad} differs`);
    assertEquals(have, total);
    conn.close();
  });
});

Deno.test("a unix peer that sends a byte at a time to a reader that does not read gets the socket paused, not a buffer per byte", async () => {
  await withUnixPair((path) => Deno.connect({ transport: "unix", path }), async (client, conn) => {
    const io = conn.direct as unknown as { queued: number; held: number };
    // One byte, then wait until the connection has queued it (each byte is a read of its own),
    // until it takes no more: the socket is paused, and later bytes wait in the kernel.
    let sent = 0;
    let mostHeld = 0;
    for (; sent < 4000; sent++) {
      await client.write(new Uint8Array([sent & 0xff]));
      let spins = 0;
      while (io.queued <= sent && spins++ < 20) await new Promise((r) => setTimeout(r, 1));
      mostHeld = Math.max(mostHeld, io.held);
      if (io.queued <= sent) break;
    }
    sent++;
    // The old queue kept each byte in a 64 KiB buffer (32 MB for 500 bytes) and paused only at
    // 1 MiB of bytes; now each queued read counts what it holds in memory (1 KiB at least).
    assert(io.queued < 1100, `${io.queued} one-byte reads queued before the socket paused`);
    assert(mostHeld <= 1024 * 1024 + 2048, `${mostHeld} bytes held at most`);
    const got = new Uint8Array(sent);
    let have = 0;
    while (have < sent) have += (await conn.direct!.read(got.subarray(have)))!;
    assertEquals(got.findIndex((b, i) => b !== (i & 0xff)), -1, "every byte, in order");
    client.close();
    conn.close();
  });
});
