// Tests of the gotemp device type: its keys, source paths, and describe against create.
import { assertEquals } from "@std/assert";
import { pathsRelativeTo } from "../../../lib/devices/registry.ts";
import { assertDescribedAsCreated, assertParsedIn, parsed } from "./_describe.ts";

Deno.test("gotemp parses the source, the rate and the serial; the source defaults to 21.5 °C", () => {
  assertEquals(parsed("gotemp", {}).options, { source: { kind: "constant", celsius: 21.5 } });
  assertEquals(parsed("gotemp", { source: "sine:18:25:60", rate: "0.5", serial: "G" }).options, {
    source: { kind: "sine", min: 18, max: 25, periodS: 60 },
    rate: 0.5,
    serial: "G",
  });
  assertEquals(parsed("gotemp", { rate: "1000" }).options.rate, 1000);
});

Deno.test("gotemp resolves file: and unix: source paths against the context's folder", () => {
  assertParsedIn("/etc/gw", "gotemp", "source", [
    ["file:temps.txt", { kind: "file", path: "/etc/gw/temps.txt" }],
    ["unix:t.sock", { kind: "unix", path: "/etc/gw/t.sock" }],
  ]);
});

Deno.test("gotemp describes the descriptors it is created with", async () => {
  await assertDescribedAsCreated(parsed("gotemp", {}));
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/temps.txt`, "20\n21\n");
    await assertDescribedAsCreated(
      parsed("gotemp", { source: "file:temps.txt", serial: "G1" }, pathsRelativeTo(dir)),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
