// Tests of the tablet device type: its keys, and describe against create.
import { assertEquals } from "@std/assert";
import { pathsRelativeTo } from "../../../lib/devices/registry.ts";
import { assertDescribedAsCreated, listFolder, parsed } from "./_describe.ts";

Deno.test("tablet parses socket and serial; a relative socket resolves", () => {
  assertEquals(parsed("tablet", {}).options, {});
  assertEquals(parsed("tablet", { socket: "/run/t.sock", serial: "T1" }).options, {
    socket: "/run/t.sock",
    serial: "T1",
  });
  assertEquals(parsed("tablet", { socket: "t.sock" }, pathsRelativeTo("/etc/gw")).options, {
    socket: "/etc/gw/t.sock",
  });
});

Deno.test("tablet describes the descriptors it is created with", async () => {
  await assertDescribedAsCreated(parsed("tablet", { serial: "T1" }));
  const dir = await Deno.makeTempDir();
  try {
    await assertDescribedAsCreated(parsed("tablet", { socket: `${dir}/t.sock` }));
    assertEquals(await listFolder(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
