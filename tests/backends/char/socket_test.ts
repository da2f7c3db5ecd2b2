/** Tests of the socket back-ends (tcp and unix servers, tcp-connect) over real sockets. */

import { assert, assertEquals, assertRejects } from "@std/assert";
import { openCharBackend } from "../../../lib/backends/char/mod.ts";
import { dec, enc, NEVER, readConn, readN, until } from "./_helpers.ts";

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
