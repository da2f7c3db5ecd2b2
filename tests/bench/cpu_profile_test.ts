// The CPU profile summary of bench/profile.ts and run.ts --profile: time of a function's own and
// with its callees, over the samples that are not idle.
import { assertEquals, assertStringIncludes } from "@std/assert";
import { type CpuProfile, profileRows, profileTable } from "../../bench/_cpu_profile.ts";

const frame = (functionName: string, line = 0) => ({
  functionName,
  url: "file:///work/repo/lib/server/session.ts",
  lineNumber: line,
});

// (root) -> main -> send -> op_write; main -> parse; (root) -> (idle)
const nodes = [
  { id: 1, callFrame: frame("(root)"), children: [2, 6] },
  { id: 2, callFrame: frame("main", 9), children: [3, 5] },
  { id: 3, callFrame: frame("send", 19), children: [4] },
  { id: 4, callFrame: { functionName: "op_write", url: "", lineNumber: -1 } },
  { id: 5, callFrame: frame("parse", 29) },
  { id: 6, callFrame: frame("(idle)") },
];

function byKey(profile: CpuProfile) {
  const { rows, busy } = profileRows(profile);
  return { busy, rows: Object.fromEntries(rows.map((r) => [r.key, [r.self, r.total]])) };
}

Deno.test("profileRows() counts each busy sample once per function on its stack; idle is left out", () => {
  const profile: CpuProfile = { nodes, samples: [4, 4, 3, 5, 6, 6, 6, 6] };
  assertEquals(byKey(profile), {
    busy: 4,
    rows: {
      "main lib/server/session.ts:10": [0, 1],
      "send lib/server/session.ts:20": [0.25, 0.75],
      "op_write :0": [0.5, 0.5],
      "parse lib/server/session.ts:30": [0.25, 0.25],
    },
  });
});

Deno.test("profileRows() takes each node's hitCount when the profile has no sample list", () => {
  const counted = nodes.map((n) => ({ ...n, hitCount: { 4: 2, 3: 1, 5: 1, 6: 9 }[n.id] ?? 0 }));
  assertEquals(byKey({ nodes: counted }), byKey({ nodes, samples: [4, 4, 3, 5, 6] }));
});

Deno.test("profileTable() lists the busiest functions by their own time, then with callees", () => {
  const table = profileTable({ nodes, samples: [4, 4, 3, 5] }, 2);
  const lines = table.split("\n");
  assertEquals(lines[0], "4 busy samples");
  assertStringIncludes(lines[2]!, "op_write :0");
  assertStringIncludes(lines[2]!, " 50.0%  50.0%");
  assertStringIncludes(lines[5]!, "main lib/server/session.ts:10");
  assertEquals(lines.length, 7);
});
