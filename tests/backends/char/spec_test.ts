/** Tests of the back-end description parser (QEMU `-chardev`-like specs). */

import { assertEquals, assertThrows } from "@std/assert";
import { parseBackendSpec } from "../../../lib/backends/char/mod.ts";

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
