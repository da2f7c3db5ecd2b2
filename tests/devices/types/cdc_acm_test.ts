// Tests of the cdc-acm device type: its keys, back-end paths, and describe against create.
import { assertEquals } from "@std/assert";
import { assertDescribedAsCreated, assertParsedIn, parsed } from "./_describe.ts";

Deno.test("cdc-acm parses the back-end, the IDs in hex, the serial and the speed", () => {
  assertEquals(parsed("cdc-acm", { backend: "loopback" }).options, {
    backend: { kind: "loopback" },
    speed: "high",
  });
  assertEquals(
    parsed("cdc-acm", {
      backend: "tcp:[::1]:4555",
      vid: "0x1D50",
      pid: "6018",
      serial: "A1",
      speed: "full",
    }).options,
    {
      backend: { kind: "tcp", hostname: "::1", port: 4555 },
      vendorId: 0x1d50,
      productId: 0x6018,
      serial: "A1",
      speed: "full",
    },
  );
});

Deno.test("cdc-acm resolves unix: and file: back-end paths against the context's folder", () => {
  assertParsedIn("/etc/gw", "cdc-acm", "backend", [
    ["unix:acm.sock", { kind: "unix", path: "/etc/gw/acm.sock" }],
    ["file:/var/log/acm", { kind: "file", path: "/var/log/acm" }],
    ["pty", { kind: "pty" }],
  ]);
});

Deno.test("cdc-acm describes the descriptors it is created with, at each speed", async () => {
  await assertDescribedAsCreated(
    parsed("cdc-acm", { backend: "loopback", vid: "1d50", pid: "6018", serial: "S" }),
  );
  await assertDescribedAsCreated(parsed("cdc-acm", { backend: "loopback", speed: "full" }));
});
