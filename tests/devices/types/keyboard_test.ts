// Tests of the keyboard device type: its keys, the text check, and describe against create.
import { assertEquals } from "@std/assert";
import { pathsRelativeTo } from "../../../lib/devices/registry.ts";
import {
  assertDescribedAsCreated,
  assertDescribedAsCreatedWithSocket,
  parsed,
} from "./_describe.ts";

Deno.test("keyboard parses text, socket and serial", () => {
  assertEquals(parsed("keyboard", {}).options, {});
  assertEquals(
    parsed("keyboard", { text: "Hello, World!\n", socket: "/run/kbd.sock", serial: "K1" }).options,
    { text: "Hello, World!\n", socket: "/run/kbd.sock", serial: "K1" },
  );
  assertEquals(parsed("keyboard", { text: "" }).options, { text: "" });
});

Deno.test("keyboard resolves a relative socket path against the context's folder", () => {
  const options = parsed("keyboard", { socket: "kbd.sock" }, pathsRelativeTo("/etc/gw")).options;
  assertEquals(options, { socket: "/etc/gw/kbd.sock" });
});

Deno.test("keyboard describes the descriptors it is created with, socket included", async () => {
  await assertDescribedAsCreated(parsed("keyboard", { text: "hi", serial: "K1" }));
  // Closing the created keyboard removes its socket again.
  await assertDescribedAsCreatedWithSocket("keyboard");
});
