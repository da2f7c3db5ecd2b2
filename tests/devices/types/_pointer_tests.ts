// The tests of a pointer device type (mouse, tablet: lib/devices/types/_pointer.ts): its keys,
// and describe against create.
import { assertEquals } from "@std/assert";
import { pathsRelativeTo } from "../../../lib/devices/registry.ts";
import {
  assertDescribedAsCreated,
  assertDescribedAsCreatedWithSocket,
  parsed,
} from "./_describe.ts";

/** Registers the tests of the pointer type `type`, with `serial` as a serial number. */
export function pointerTypeTests(type: "mouse" | "tablet", serial: string): void {
  Deno.test(`${type} parses socket and serial; a relative socket resolves`, () => {
    assertEquals(parsed(type, {}).options, {});
    assertEquals(parsed(type, { socket: "/run/p.sock", serial }).options, {
      socket: "/run/p.sock",
      serial,
    });
    assertEquals(parsed(type, { socket: "p.sock" }, pathsRelativeTo("/etc/gw")).options, {
      socket: "/etc/gw/p.sock",
    });
  });

  Deno.test(`${type} describes the descriptors it is created with`, async () => {
    await assertDescribedAsCreated(parsed(type, { serial }));
    await assertDescribedAsCreatedWithSocket(type);
  });
}
