// Tests of the gadget-zero device type: its keys, and describe against create.
import { assertEquals } from "@std/assert";
import { Speed } from "../../../lib/protocol/constants.ts";
import { GADGET_ZERO_TYPE } from "../../../lib/devices/types/gadget_zero.ts";
import { assertDescribedAsCreated, parsed } from "./_describe.ts";

Deno.test("gadget-zero parses pattern and speed, with defaults 0 and high", () => {
  const cases: [Record<string, string>, unknown][] = [
    [{}, { pattern: 0, speed: "high" }],
    [{ pattern: "1" }, { pattern: 1, speed: "high" }],
    [{ pattern: "0", speed: "full" }, { pattern: 0, speed: "full" }],
  ];
  for (const [options, expected] of cases) {
    assertEquals(parsed("gadget-zero", options).options, expected);
  }
});

Deno.test("gadget-zero describes the descriptors it is created with, at each speed", async () => {
  await assertDescribedAsCreated(parsed("gadget-zero", { pattern: "1" }));
  const full = parsed("gadget-zero", { speed: "full" });
  assertEquals((await GADGET_ZERO_TYPE.describe({ pattern: 0, speed: "full" }))?.speed, Speed.FULL);
  await assertDescribedAsCreated(full);
});
