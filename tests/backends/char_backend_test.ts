/** Tests of the character back-ends over real sockets, files and ptys (QEMU chardev model). */

import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import {
  type CharBackend,
  formatLineSettings,
  openCharBackend,
  parseBackendSpec,
} from "../../lib/backends/char_backend.ts";
import { ByteQueue } from "../../lib/backends/byte_queue.ts";

const NEVER = new AbortController().signal;
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Waits until `cond()` holds, polling every 5 ms, for at most `ms`. */
async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error("Timed out waiting for a condition");
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Reads from the back-end until `n` bytes arrived. */
async function readN(b: CharBackend, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const chunk = await b.read(n - got, NEVER);
    assert(chunk !== null);
    out.set(chunk, got);
    got += chunk.length;
  }
  return out;
}

/** Reads from a socket until `n` bytes arrived. */
async function readConn(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await conn.read(out.subarray(got));
    if (r === null) throw new Error("Unexpected end of stream");
    got += r;
  }
  return out;
}

Deno.test("parseBackendSpec() accepts every kind", () => {
  assertEquals(parseBackendSpec("stdio"), { kind: "stdio" });
  assertEquals(parseBackendSpec("pty"), { kind: "pty" });
  assertEquals(parseBackendSpec("loopback"), { kind: "loopback" });
  assertEquals(parseBackendSpec("tcp:127.0.0.1:4555"), {
    kind: "tcp",
    hostname: "127.0.0.1",
    port: 4555,
  });
  assertEquals(parseBackendSpec("tcp:[::1]:0"), { kind: "tcp", hostname: "::1", port: 0 });
  assertEquals(parseBackendSpec("tcp-connect:localhost:23"), {
    kind: "tcp-connect",
    hostname: "localhost",
    port: 23,
  });
  assertEquals(parseBackendSpec("unix:/run/a:b.sock"), { kind: "unix", path: "/run/a:b.sock" });
  assertEquals(parseBackendSpec("file:/tmp/out.log"), { kind: "file", path: "/tmp/out.log" });
});

Deno.test("parseBackendSpec() rejects malformed descriptions", () => {
  for (
    const bad of [
      "",
      "serial",
      "tcp",
      "tcp:host",
      "tcp:host:port",
      "tcp:host:70000",
      "tcp-connect:host:0",
      "unix",
      "unix:",
      "file:",
      "pty:x",
      "loopback:1",
    ]
  ) {
    assertThrows(() => parseBackendSpec(bad), TypeError, "Invalid back-end");
  }
});

Deno.test("ByteQueue never holds more than its capacity and wraps around", () => {
  const q = new ByteQueue(5);
  assertEquals(q.push(new Uint8Array([1, 2, 3])), 3);
  assertEquals([...q.take(2)], [1, 2]);
  assertEquals(q.push(new Uint8Array([4, 5, 6, 7, 8])), 4);
  assertEquals(q.size, 5);
  assertEquals(q.room, 0);
  assertEquals([...q.peek(10)], [3, 4, 5]);
  assertEquals([...q.take(10)], [3, 4, 5, 6, 7]);
  assertThrows(() => new ByteQueue(0), RangeError);
});

Deno.test("loopback echoes, reads in order, times out empty and stops on abort", async () => {
  const b = await openCharBackend("loopback");
  assertEquals(b.description, "loopback");
  assert(b.connected);
  const first = b.read(2, NEVER);
  const second = b.read(10, NEVER);
  assertEquals(await b.write(enc.encode("abcdef"), NEVER), 6);
  assertEquals(dec.decode((await first)!), "ab");
  assertEquals(dec.decode((await second)!), "cdef");
  const t0 = performance.now();
  assertEquals((await b.read(10, NEVER, 20))?.length, 0);
  assert(performance.now() - t0 >= 15);
  const ac = new AbortController();
  const pending = b.read(10, ac.signal);
  ac.abort();
  assertEquals(await pending, null);
  assertEquals(b.stats, { bytesIn: 6, bytesOut: 6, droppedOut: 0 });
  await b.close();
});

Deno.test("a back-end that stops taking output stays bounded and counts what it drops", async () => {
  const b = await openCharBackend("loopback", { queueBytes: 1024, stallTimeoutMs: 50 });
  assertEquals(await b.write(new Uint8Array(1000), NEVER), 1000);
  const t0 = performance.now();
  assertEquals(await b.write(new Uint8Array(500), NEVER), 500);
  assert(performance.now() - t0 >= 40, "the write waited for room first");
  assertEquals(b.stats.droppedOut, 476);
  // Still full and stalled: further output is dropped at once.
  const t1 = performance.now();
  for (let i = 0; i < 1000; i++) await b.write(new Uint8Array(1024), NEVER);
  assert(performance.now() - t1 < 1000);
  assertEquals(b.stats.droppedOut, 476 + 1024 * 1000);
  assertEquals(b.inputAvailable, 1024);
  // Once the reader takes bytes, output flows again.
  assertEquals((await b.read(100, NEVER))?.length, 100);
  assertEquals(await b.write(new Uint8Array(100), NEVER), 100);
  assertEquals(b.stats.bytesOut, 1124);
  assertEquals(b.stats.droppedOut, 476 + 1024 * 1000);
  await b.close();
});

Deno.test("a write waiting for room ends with what was queued when aborted", async () => {
  const b = await openCharBackend("loopback", { queueBytes: 10, stallTimeoutMs: 10_000 });
  const ac = new AbortController();
  const pending = b.write(new Uint8Array(25), ac.signal);
  await until(() => b.inputAvailable === 10);
  ac.abort();
  assertEquals(await pending, 10);
  assertEquals(b.stats.droppedOut, 0);
  await b.close();
});

Deno.test("tcp serves one client at a time with data both ways", async () => {
  const b = await openCharBackend("tcp:127.0.0.1:0", { stallTimeoutMs: 100 });
  try {
    assert(!b.connected);
    assertEquals(await b.write(enc.encode("lost"), NEVER), 4);
    assertEquals(b.stats.droppedOut, 4);
    const port = Number(b.address.split(":").at(-1));
    const states: boolean[] = [];
    const unsubscribe = b.onStateChange((c) => states.push(c));
    const client = await Deno.connect({ hostname: "127.0.0.1", port });
    await until(() => b.connected);
    await client.write(enc.encode("hello"));
    assertEquals(dec.decode(await readN(b, 5)), "hello");
    await b.write(enc.encode("world"), NEVER);
    assertEquals(dec.decode(await readConn(client, 5)), "world");
    // A second client is refused while the first is connected.
    const second = await Deno.connect({ hostname: "127.0.0.1", port });
    assertEquals(await second.read(new Uint8Array(1)), null);
    second.close();
    client.close();
    await until(() => !b.connected);
    // The next client is served.
    const third = await Deno.connect({ hostname: "127.0.0.1", port });
    await until(() => b.connected);
    await b.write(enc.encode("again"), NEVER);
    assertEquals(dec.decode(await readConn(third, 5)), "again");
    third.close();
    await until(() => !b.connected);
    assertEquals(states, [true, false, true, false]);
    unsubscribe();
  } finally {
    await b.close();
  }
});

Deno.test("tcp keeps memory bounded when the client stops reading", async () => {
  const queueBytes = 64 * 1024;
  const b = await openCharBackend("tcp:127.0.0.1:0", { queueBytes, stallTimeoutMs: 200 });
  const port = Number(b.address.split(":").at(-1));
  const client = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await until(() => b.connected);
    const chunk = new Uint8Array(64 * 1024);
    const total = 32 * 1024 * 1024;
    for (let sent = 0; sent < total; sent += chunk.length) {
      assertEquals(await b.write(chunk, NEVER), chunk.length);
      assert(b.outputPending <= queueBytes);
    }
    const s = b.stats;
    assertEquals(s.bytesOut + s.droppedOut, total);
    assert(s.droppedOut > 0, "bytes were dropped");
    assert(s.bytesOut < 16 * 1024 * 1024, `queued and sent ${s.bytesOut} bytes`);
  } finally {
    client.close();
    await b.close();
  }
});

Deno.test("tcp-connect connects, reconnects after the server drops it, and backs off", async () => {
  // Find a free port, then start with nothing listening there.
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  const b = await openCharBackend(`tcp-connect:127.0.0.1:${port}`, {
    reconnectMinMs: 20,
    reconnectMaxMs: 80,
  });
  const server = Deno.listen({ hostname: "127.0.0.1", port });
  try {
    assertEquals(b.description, `tcp-connect 127.0.0.1:${port}`);
    const a = await server.accept();
    await until(() => b.connected);
    await a.write(enc.encode("ping"));
    assertEquals(dec.decode(await readN(b, 4)), "ping");
    await b.write(enc.encode("pong"), NEVER);
    assertEquals(dec.decode(await readConn(a, 4)), "pong");
    a.close();
    const again = await server.accept();
    await until(() => b.connected);
    await b.write(enc.encode("back"), NEVER);
    assertEquals(dec.decode(await readConn(again, 4)), "back");
    await b.close();
    assertEquals(await again.read(new Uint8Array(1)), null);
    again.close();
  } finally {
    await b.close();
    server.close();
  }
});

Deno.test("unix serves a client on a socket file and removes it on close", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/serial.sock`;
  const b = await openCharBackend(`unix:${path}`);
  try {
    assertEquals((await Deno.lstat(path)).mode! & 0o777, 0o600);
    const client = await Deno.connect({ transport: "unix", path });
    await until(() => b.connected);
    await client.write(enc.encode("over unix"));
    assertEquals(dec.decode(await readN(b, 9)), "over unix");
    await b.write(enc.encode("reply"), NEVER);
    assertEquals(dec.decode(await readConn(client, 5)), "reply");
    client.close();
    await until(() => !b.connected);
  } finally {
    await b.close();
  }
  await assertRejects(() => Deno.lstat(path), Deno.errors.NotFound);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("file appends output, has no input and writes what is queued before closing", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/out.log`;
  await Deno.writeTextFile(path, "before\n");
  const b = await openCharBackend(`file:${path}`);
  assert(b.connected);
  await b.write(enc.encode("line 1\n"), NEVER);
  await b.write(enc.encode("line 2\n"), NEVER);
  assertEquals(await b.read(10, NEVER, 10), new Uint8Array(0));
  await b.close();
  assertEquals(await Deno.readTextFile(path), "before\nline 1\nline 2\n");
  assertEquals(b.stats.droppedOut, 0);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("pty gives a raw slave, carries data both ways and sees the slave hang up", async () => {
  let b: CharBackend;
  try {
    b = await openCharBackend("pty");
  } catch (e) {
    console.log(`Skipping the pty test: cannot open a pty (${(e as Error).message})`);
    return;
  }
  try {
    assert(b.address.startsWith("/dev/pts/"), b.address);
    assertEquals(b.description, `pty ${b.address}`);
    const slave = await Deno.open(b.address, { read: true, write: true });
    await slave.write(enc.encode("from slave\n"));
    assertEquals(dec.decode(await readN(b, 11)), "from slave\n");
    await b.write(enc.encode("to slave\n"), NEVER);
    const got = new Uint8Array(9);
    let n = 0;
    while (n < 9) n += (await slave.read(got.subarray(n))) ?? 0;
    assertEquals(dec.decode(got), "to slave\n");
    // Raw mode: nothing was echoed back and no CR was added.
    assertEquals((await b.read(64, NEVER, 50))?.length, 0);
    slave.close();
    await until(() => !b.connected);
    assertEquals(await b.write(enc.encode("nobody"), NEVER), 6);
    assertEquals(b.stats.droppedOut, 6);
    const reopened = await Deno.open(b.address, { read: true, write: true });
    await until(() => b.connected);
    reopened.close();
  } finally {
    await b.close();
  }
});

Deno.test("writes waiting for room keep their order", async () => {
  const b = await openCharBackend("loopback", { queueBytes: 10 });
  const first = b.write(enc.encode("a".repeat(15)), NEVER);
  const second = b.write(enc.encode("bbbbb"), NEVER);
  const third = b.write(enc.encode("cc"), NEVER);
  let text = "";
  while (text.length < 22) text += dec.decode((await b.read(3, NEVER))!);
  assertEquals(text, "a".repeat(15) + "bbbbb" + "cc");
  assertEquals(await Promise.all([first, second, third]), [15, 5, 2]);
  await b.close();
});

Deno.test("setLineSettings() records changes and tells listeners once per change", async () => {
  const b = await openCharBackend("loopback");
  const seen: string[] = [];
  const unsubscribe = b.onLineSettings((s) => seen.push(formatLineSettings(s)));
  assertEquals(b.lineSettings, undefined);
  const s = { baudRate: 115200, dataBits: 8, parity: "none", stopBits: 1 } as const;
  b.setLineSettings(s);
  b.setLineSettings(s);
  b.setLineSettings({ ...s, parity: "odd", stopBits: 2 });
  unsubscribe();
  b.setLineSettings(s);
  assertEquals(seen, ["115200 8N1", "115200 8O2"]);
  assertEquals(b.lineSettings, s);
  await b.close();
});
