// Tests of the TCP and unix transports over real sockets.
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import { connectUnix, parseHostPort, TcpListener, UnixListener } from "../../mod.ts";

Deno.test("parseHostPort() reads IPv4, IPv6 and bare hosts", () => {
  assertEquals(parseHostPort("127.0.0.1:3240", 1), { hostname: "127.0.0.1", port: 3240 });
  assertEquals(parseHostPort("[::1]:4000", 1), { hostname: "::1", port: 4000 });
  assertEquals(parseHostPort("[::1]", 3240), { hostname: "::1", port: 3240 });
  assertEquals(parseHostPort("::1", 3240), { hostname: "::1", port: 3240 });
  assertEquals(parseHostPort("example", 3240), { hostname: "example", port: 3240 });
  assertThrows(() => parseHostPort("host:70000", 1), TypeError, "0..65535");
  assertThrows(() => parseHostPort(":80", 1), TypeError, "host is empty");
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
    await assertRejects(() => UnixListener.listen({ path }), Deno.errors.AddrInUse);
    first.close();
    await Deno.writeTextFile(path, "not a socket");
    await assertRejects(
      () => UnixListener.listen({ path }),
      Deno.errors.AlreadyExists,
      "not a socket",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
