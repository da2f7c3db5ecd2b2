// Tests of handing a unix listener's socket file to another user (UnixListener.setOwner and
// setMode) on real sockets; chown needs root, so those checks skip with a reason otherwise.
import { assertEquals, assertRejects } from "@std/assert";
import { UnixListener } from "../../lib/transport/unix.ts";

/**
 * Why the setOwner() tests cannot run, or undefined as root: chown(2) to another user needs
 * CAP_CHOWN (capabilities(7)). CI runs as root, so there they run.
 */
const notRoot = Deno.uid() === 0
  ? undefined
  : `needs root: chown(2) of the socket file to another user needs CAP_CHOWN (running as uid ${Deno.uid()})`;
if (notRoot) console.log(`Skipping the UnixListener.setOwner() tests: ${notRoot}`);

async function withListener(body: (listener: UnixListener, dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "unix_owner_" });
  const listener = await UnixListener.listen({ path: `${dir}/gw.sock`, mode: 0o660 });
  try {
    await body(listener, dir);
  } finally {
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "UnixListener.setOwner() gives the socket file to a user and group",
  ignore: notRoot !== undefined,
  fn: () =>
    withListener(async (listener) => {
      const before = await Deno.stat(listener.path);
      await listener.setOwner(12345, 23456);
      const after = await Deno.stat(listener.path);
      assertEquals([after.uid, after.gid], [12345, 23456]);
      assertEquals(after.mode! & 0o777, before.mode! & 0o777, "the mode is untouched");
      assertEquals(after.isSocket, true);
    }),
});

Deno.test({
  name: "UnixListener.setOwner() without a gid leaves the group as it was",
  ignore: notRoot !== undefined,
  fn: () =>
    withListener(async (listener) => {
      await listener.setOwner(12345, 777);
      await listener.setOwner(54321);
      const info = await Deno.stat(listener.path);
      assertEquals([info.uid, info.gid], [54321, 777]);
    }),
});

Deno.test("UnixListener.setMode() changes the socket file's mode", () =>
  withListener(async (listener) => {
    await listener.setMode(0o600);
    assertEquals((await Deno.stat(listener.path)).mode! & 0o7777, 0o600);
    await listener.setMode(0o666);
    assertEquals((await Deno.stat(listener.path)).mode! & 0o7777, 0o666);
  }));

Deno.test({
  name: "a socket handed over with setOwner() and setMode(0o600) still accepts connections",
  ignore: notRoot !== undefined,
  fn: () =>
    withListener(async (listener) => {
      await listener.setOwner(12345, 12345);
      await listener.setMode(0o600);
      const info = await Deno.stat(listener.path);
      assertEquals([info.uid, info.gid, info.mode! & 0o777], [12345, 12345, 0o600]);
      // Root passes the permission check; the point is that the listener is still live.
      const accepted = listener[Symbol.asyncIterator]().next();
      const client = await Deno.connect({ transport: "unix", path: listener.path });
      const conn = (await accepted).value!;
      assertEquals(conn.peer.uid, Deno.uid());
      client.close();
      conn.close();
    }),
});

Deno.test({
  name: "UnixListener.setOwner() refuses a path that no longer holds a socket",
  ignore: notRoot !== undefined,
  fn: () =>
    withListener(async (listener, dir) => {
      const target = `${dir}/precious`;
      await Deno.writeTextFile(target, "root's file");
      const before = await Deno.stat(target);
      await Deno.remove(listener.path);
      await Deno.symlink(target, listener.path);
      await assertRejects(() => listener.setOwner(12345), Deno.errors.NotFound, "not");
      await assertRejects(() => listener.setMode(0o666), Deno.errors.NotFound, "not");
      const info = await Deno.stat(target);
      assertEquals([info.uid, info.mode], [before.uid, before.mode]);
      await Deno.remove(listener.path);
      await assertRejects(() => listener.setOwner(12345), Deno.errors.NotFound);
    }),
});

Deno.test("UnixListener.setOwner() and setMode() reject once the listener is closed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "unix_owner_" });
  try {
    const listener = await UnixListener.listen({ path: `${dir}/gw.sock` });
    listener.close();
    await assertRejects(() => listener.setOwner(12345), Deno.errors.BadResource, "closed");
    await assertRejects(() => listener.setMode(0o600), Deno.errors.BadResource, "closed");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
