// The gateway_ab table from a made-up result: medians per side, paired ratios, refusals.
import { assertEquals, assertStringIncludes, assertThrows } from "@std/assert";
import { gatewayAb } from "./gateway_ab.ts";
import type { ScenarioResult } from "./rig.ts";

const turn = (side: string, reads: number[], ticks: number) => ({
  side,
  read_mbs: reads,
  read_cpu_ticks: ticks,
});

function result(turns: unknown[], before = ".cache/interop/tree-x"): ScenarioResult {
  return { workload: "passthrough", before_tree: before, turns } as unknown as ScenarioResult;
}

Deno.test("gateway_ab: medians per side and the median of the pairs' ratios", () => {
  const { table, ratios } = gatewayAb(result([
    turn("before", [10, 11, 12], 400),
    turn("after", [20, 22, 24], 300),
    turn("after", [15, 15, 15], 350),
    turn("before", [10, 10, 10], 350),
  ]));
  // Pairs: 22/11 = 2 and 15/10 = 1.5; ticks 300/400 = 0.75 and 350/350 = 1.
  assertEquals(ratios.get("read_mbs"), 1.75);
  assertEquals(ratios.get("read_cpu_ticks"), 0.875);
  assertEquals(ratios.has("write_mbs"), false);
  assertStringIncludes(table, "workload passthrough; 4 turns; before against after");
  assertStringIncludes(table, "|     10.0 |     17.5 | 2.00, 1.50 (1.75)");
  assertStringIncludes(table, "|    375.0 |    325.0 | 0.75, 1.00 (0.88)");
});

Deno.test("gateway_ab: says when both sides were this checkout; refuses turns that do not pair", () => {
  const same = gatewayAb(result([turn("before", [1], 1), turn("after", [1], 1)], ""));
  assertStringIncludes(same.table, "before (= after: no --before) against after");
  assertThrows(() => gatewayAb(result([turn("before", [1], 1)])), Error, "even number");
  assertThrows(
    () => gatewayAb(result([turn("after", [1], 1), turn("after", [1], 1)])),
    Error,
    "both after",
  );
});
