// Tests of the gadget-zero device type: its keys, and describe against create.
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { Speed } from "../../../lib/protocol/constants.ts";
import { GADGET_ZERO_TYPE } from "../../../lib/devices/types/gadget_zero.ts";
import { parseDevice, PATHS_AS_GIVEN } from "../../../lib/devices/registry.ts";
import { assertDescribedAsCreated, parsed } from "./_describe.ts";

Deno.test("gadget-zero parses pattern and speed, with defaults 0 and high", () => {
  const cases: [Record<string, string>, unknown][] = [
    [{}, { pattern: 0, speed: "high" }],
    [{ pattern: "1" }, { pattern: 1, speed: "high" }],
    [{ pattern: "0", speed: "full" }, { pattern: 0, speed: "full" }],
    [{ iso: "1" }, { pattern: 0, speed: "high" }],
    [{ iso: "0" }, { pattern: 0, speed: "high", iso: false }],
    [{ iso: "0", speed: "super" }, {
      pattern: 0,
      speed: "super",
      maxBurst: 0,
      isoMult: 0,
      iso: false,
    }],
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
  await assertDescribedAsCreated(parsed("gadget-zero", { iso: "0" }));
  const r = parseDevice("gadget-zero", { iso: "2" }, [], PATHS_AS_GIVEN);
  assert(!r.ok && r.key === "iso", "iso=2 is refused");
});

Deno.test("gadget-zero speed=super takes maxburst and mult, with defaults 0", () => {
  const cases: [Record<string, string>, unknown][] = [
    [{ speed: "super" }, { pattern: 0, speed: "super", maxBurst: 0, isoMult: 0 }],
    [{ speed: "super", maxburst: "15", mult: "2" }, {
      pattern: 0,
      speed: "super",
      maxBurst: 15,
      isoMult: 2,
    }],
    [{ speed: "super", pattern: "1", maxburst: "3" }, {
      pattern: 1,
      speed: "super",
      maxBurst: 3,
      isoMult: 0,
    }],
  ];
  for (const [options, expected] of cases) {
    assertEquals(parsed("gadget-zero", options).options, expected);
  }
});

Deno.test("gadget-zero refuses maxburst and mult out of range, or without speed=super", () => {
  const refused: [Record<string, string>, string, string][] = [
    [{ speed: "super", maxburst: "16" }, "maxburst", "expected an integer 0..15"],
    [{ speed: "super", maxburst: "-1" }, "maxburst", "expected an integer 0..15"],
    [{ speed: "super", maxburst: "two" }, "maxburst", 'Invalid maxburst="two" for gadget-zero'],
    [{ speed: "super", maxburst: "" }, "maxburst", "expected an integer 0..15"],
    [{ speed: "super", mult: "3" }, "mult", 'Invalid mult="3" for gadget-zero: expected an'],
    [{ speed: "super", mult: "1.0" }, "mult", "expected an integer 0..2"],
    [{ maxburst: "1" }, "maxburst", "needs speed=super (speed is high)"],
    [{ speed: "full", mult: "0" }, "mult", "needs speed=super (speed is full)"],
    [{ speed: "high", maxburst: "0" }, "maxburst", "SuperSpeed endpoint companion"],
  ];
  for (const [options, key, message] of refused) {
    const r = parseDevice("gadget-zero", options, [], PATHS_AS_GIVEN);
    assert(!r.ok, JSON.stringify(options));
    assertEquals(r.key, key, JSON.stringify(options));
    assertStringIncludes(r.message, message);
  }
});

Deno.test("gadget-zero speed=super describes speed 5 and the descriptors it is created with", async () => {
  const options = { pattern: 0, speed: "super", maxBurst: 4, isoMult: 1 } as const;
  const described = await GADGET_ZERO_TYPE.describe(options);
  assertEquals(described?.speed, Speed.SUPER);
  assertEquals(described?.descriptors.device.bcdUSB, 0x0300);
  assertEquals(described?.descriptors.capabilities?.length, 2);
  await assertDescribedAsCreated(parsed("gadget-zero", { speed: "super" }));
  await assertDescribedAsCreated(
    parsed("gadget-zero", { speed: "super", maxburst: "4", mult: "1" }),
  );
});
