// Tests of the mouse device type: its keys, and describe against create.
import { assertEquals } from "@std/assert";
import { pathsRelativeTo } from "../../../lib/devices/registry.ts";
import { assertDescribedAsCreated, listFolder, parsed } from "./_describe.ts";

Deno.test("mouse parses socket and serial; a relative socket resolves", () => {
  assertEquals(parsed("mouse", {}).options, {});
  assertEquals(parsed("mouse", { socket: "/run/m.sock", serial: "M1" }).options, {
    socket: "/run/m.sock",
    serial: "M1",
  });
  assertEquals(parsed("mouse", { socket: "m.sock" }, pathsRelativeTo("/etc/gw")).options, {
    socket: "/etc/gw/m.sock",
  });
});

Deno.test("mouse describes the descriptors it is created with", async () => {
  await assertDescribedAsCreated(parsed("mouse", { serial: "M1" }));
  const dir = await Deno.makeTempDir();
  try {
    await assertDescribedAsCreated(parsed("mouse", { socket: `${dir}/m.sock` }));
    assertEquals(await listFolder(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
