// Interop tests: the real Linux USB/IP client (vhci-hcd + Debian's usbip) against usbipgw,
// each scenario in its own QEMU guest (rig.ts; RIG.md). Run one alone with
// `deno test -A tests/interop/interop_test.ts --filter <scenario>`.

import {
  assertScenarioPassed,
  buildImage,
  describeRun,
  GATEWAY_SCENARIOS,
  type RigImage,
  rigMissingReason,
  runScenario,
  type ScenarioName,
  type ScenarioResult,
  type ScenarioRun,
  SCENARIOS,
} from "./rig.ts";

const missing = rigMissingReason();
if (missing !== null) {
  console.warn(`interop tests SKIPPED: ${missing}`);
}

let image: Promise<RigImage> | undefined;
function getImage(): Promise<RigImage> {
  image ??= buildImage();
  return image;
}

const gatewayPresent = (() => {
  try {
    return Deno.statSync(new URL("../../main.ts", import.meta.url)).isFile;
  } catch {
    return false;
  }
})();

interface TestRecord {
  status: string;
  seconds: number | null;
  wall_s: number;
  args: string;
  detail: string;
}

function _tests(run: ScenarioRun, r: ScenarioResult, field: string): Record<string, TestRecord> {
  const t = r[field];
  if (typeof t !== "object" || t === null) {
    throw new Error(describeRun(run, `result.json has no "${field}" object`));
  }
  return t as Record<string, TestRecord>;
}

/** Each listed test must be in `field` with status pass (guards the guest's own verdict). */
function _requirePassed(run: ScenarioRun, r: ScenarioResult, field: string, tests: number[]) {
  const got = _tests(run, r, field);
  const bad = tests.filter((n) => got[String(n)]?.status !== "pass").map((n) =>
    `${n}: ${got[String(n)]?.status ?? "missing"} ${got[String(n)]?.detail ?? ""}`.trim()
  );
  if (bad.length > 0) {
    throw new Error(describeRun(run, `testusb tests not passed in ${field}: ${bad.join("; ")}`));
  }
}

function _range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/** Per-test seconds as a printable table. */
function _table(run: ScenarioRun, r: ScenarioResult, fields: string[]): string {
  const rows: string[] = [`test | ${fields.join(" | ")}`];
  const all = new Set<string>();
  const maps = fields.map((f) => _tests(run, r, f));
  for (const m of maps) for (const k of Object.keys(m)) all.add(k);
  for (const k of [...all].sort((a, b) => Number(a) - Number(b))) {
    rows.push(
      `${k.padStart(4)} | ${
        maps.map((m) => {
          const t = m[k];
          return t === undefined ? "-" : t.status === "pass" ? String(t.seconds) : t.status;
        }).join(" | ")
      }`,
    );
  }
  return rows.join("\n");
}

const checks: Partial<Record<ScenarioName, (run: ScenarioRun, r: ScenarioResult) => void>> = {
  testusb(run, r) {
    _requirePassed(run, r, "tests", [..._range(0, 14), ..._range(17, 21), 24, ..._range(27, 29)]);
    _requirePassed(run, r, "iso_tests", [15, 16, 22, 23]);
    console.log(_table(run, r, ["tests", "iso_tests"]));
  },
  kernel_baseline(run, r) {
    _requirePassed(run, r, "vhci", [
      ..._range(0, 10),
      13,
      14,
      ..._range(17, 21),
      ..._range(27, 29),
    ]);
    console.log(_table(run, r, ["direct", "vhci"]));
  },
  unix_attach(run, r) {
    _requirePassed(run, r, "tests", [1]);
  },
};

for (const scenario of SCENARIOS) {
  Deno.test({
    name: `interop ${scenario}`,
    ignore: missing !== null,
    async fn() {
      if (GATEWAY_SCENARIOS.includes(scenario) && !gatewayPresent) {
        throw new Error(`interop scenario ${scenario} failed: main.ts does not exist (no gateway)`);
      }
      const run = await runScenario(await getImage(), scenario);
      const r = assertScenarioPassed(run);
      checks[scenario]?.(run, r);
      console.log(
        `${scenario}: passed in ${run.wallSeconds} s wall (guest ready at ${r.ready_uptime_s} s ` +
          `uptime, scenario ${r.scenario_seconds} s); results in ${run.runDir}`,
      );
    },
  });
}
