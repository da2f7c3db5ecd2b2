// Tests of the ftdi device type: its keys, back-end paths, and describe against create.
import { assertEquals } from "@std/assert";
import { pathsRelativeTo } from "../../../lib/devices/registry.ts";
import { assertDescribedAsCreated, parsed } from "./_describe.ts";

Deno.test("ftdi parses the back-end and the serial", () => {
  assertEquals(parsed("ftdi", { backend: "loopback" }).options, { backend: { kind: "loopback" } });
  assertEquals(parsed("ftdi", { backend: "tcp-connect:127.0.0.1:7", serial: "F1" }).options, {
    backend: { kind: "tcp-connect", hostname: "127.0.0.1", port: 7 },
    serial: "F1",
  });
  assertEquals(
    parsed("ftdi", { backend: "file:out.log" }, pathsRelativeTo("/etc/gw/")).options.backend,
    { kind: "file", path: "/etc/gw/out.log" },
  );
});

Deno.test("ftdi describes the descriptors it is created with", async () => {
  await assertDescribedAsCreated(parsed("ftdi", { backend: "loopback" }));
  await assertDescribedAsCreated(parsed("ftdi", { backend: "loopback", serial: "FT1" }));
});
