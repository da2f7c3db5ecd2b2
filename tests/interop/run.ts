// Runs interop scenarios from the command line and prints each one's result.json
// (usage: deno run -A tests/interop/run.ts [--timeout SECONDS] [--standin] SCENARIO...).

import { errorMessage } from "../../lib/util/error_message.ts";
import {
  assertScenarioPassed,
  buildImage,
  rigMissingReason,
  runScenario,
  type ScenarioName,
  SCENARIOS,
} from "./rig.ts";
import { storageLatencyTable } from "./storage_latency.ts";
import { testusbBaseline } from "./testusb_baseline.ts";

function usage(): never {
  console.error(
    `usage: deno run -A tests/interop/run.ts [--timeout SECONDS] [--standin] SCENARIO...\n` +
      `scenarios: ${SCENARIOS.join(" ")} (or "all")`,
  );
  Deno.exit(2);
}

const names: ScenarioName[] = [];
let timeoutSeconds: number | undefined;
const extraArgs: string[] = [];
for (let i = 0; i < Deno.args.length; i++) {
  const a = Deno.args[i];
  if (a === "--timeout") {
    timeoutSeconds = Number(Deno.args[++i]);
    if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) usage();
  } else if (a === "--standin") {
    // Developer aid: the kernel's own Gadget Zero + usbipd play the gateway (plumbing checks).
    extraArgs.push("standin=kernel");
  } else if (a === "all") {
    names.push(...SCENARIOS);
  } else if ((SCENARIOS as readonly string[]).includes(a ?? "")) {
    names.push(a as ScenarioName);
  } else {
    usage();
  }
}
if (names.length === 0) usage();

const missing = rigMissingReason();
if (missing !== null) {
  console.error(`interop rig unavailable: ${missing}`);
  Deno.exit(3);
}

const image = await buildImage();
let failed = 0;
for (const name of names) {
  const run = await runScenario(image, name, {
    extraArgs,
    ...(timeoutSeconds ? { timeoutSeconds } : {}),
  });
  console.log(JSON.stringify({ wall_s: run.wallSeconds, ...run.result }, null, 2));
  if (name === "storage_latency" && run.result) console.log(storageLatencyTable(run.result));
  if (name === "testusb_baseline" && run.result) console.log(testusbBaseline(run.result).table);
  try {
    assertScenarioPassed(run);
    console.error(`PASS ${name} (${run.wallSeconds} s)`);
  } catch (e) {
    failed++;
    console.error(errorMessage(e));
    console.error(`FAIL ${name} (${run.wallSeconds} s)`);
  }
}
Deno.exit(failed === 0 ? 0 : 1);
