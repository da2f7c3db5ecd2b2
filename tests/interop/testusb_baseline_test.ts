// The testusb_baseline table from a made-up result: medians per test, totals per round, the
// median ratio, and the refusals (a test that did not pass, rounds of different tests).
import { assertEquals, assertStringIncludes, assertThrows } from "@std/assert";
import { testusbBaseline } from "./testusb_baseline.ts";
import type { ScenarioResult } from "./rig.ts";

const pass = (seconds: number) => ({ status: "pass", seconds });

function result(overrides: Record<string, unknown> = {}): ScenarioResult {
  return {
    passed: true,
    rounds: 3,
    ours_1: { "1": pass(0.2), "9": pass(1.0) },
    kernel_1: { "1": pass(0.1), "9": pass(0.5) },
    ours_2: { "1": pass(0.3), "9": pass(1.3) },
    kernel_2: { "1": pass(0.1), "9": pass(0.7) },
    ours_3: { "1": pass(0.25), "9": pass(0.6) },
    kernel_3: { "1": pass(0.2), "9": pass(0.6) },
    ...overrides,
  } as unknown as ScenarioResult;
}

Deno.test("testusb_baseline: per-test medians, round totals and the median of their ratios", () => {
  const { table, ratio } = testusbBaseline(result());
  // Round ratios 1.2/0.6 = 2, 1.6/0.8 = 2, 0.85/0.8 = 1.0625: the median is 2.
  assertEquals(ratio, 2);
  assertStringIncludes(table, "   1 |    0.250 |    0.100 | 2.50");
  assertStringIncludes(table, "   9 |    1.000 |    0.600 | 1.67");
  assertStringIncludes(table, "round 3 total: usbipgw 0.85 s, kernel 0.80 s, ratio 1.06");
  assertStringIncludes(table, "median ratio of the totals: 2.00");
});

Deno.test("testusb_baseline: a failed test or rounds of different tests are errors", () => {
  assertThrows(
    () => testusbBaseline(result({ kernel_2: { "1": pass(0.1), "9": { status: "fail" } } })),
    Error,
    "test 9 of kernel round 2 is fail",
  );
  assertThrows(
    () => testusbBaseline(result({ ours_3: { "1": pass(0.2) } })),
    Error,
    "the rounds did not run the same tests",
  );
  assertThrows(() => testusbBaseline(result({ rounds: 0 })), Error, "no rounds");
});
