// Runs interop scenarios from the command line and prints each one's result.json
// (usage: deno run -A tests/interop/run.ts [--timeout SECONDS] [--standin] [--profile]
// [--before REV] [--workload NAME] SCENARIO...). --before and --workload are for gateway_ab: the
// gateway of commit REV against this checkout's, on passthrough, storage, storage_super or
// control. --profile runs the gateway that rig_start_gateway starts with `--cpu-prof` and prints
// where its JavaScript thread spent its time (the profile stays in the run's share/prof).

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
import { gatewayAb } from "./gateway_ab.ts";
import { extractTree } from "../../bench/_common.ts";
import { type CpuProfile, profileTable } from "../../bench/_cpu_profile.ts";

function usage(): never {
  console.error(
    `usage: deno run -A tests/interop/run.ts [--timeout SECONDS] [--standin] [--profile] ` +
      `[--before REV] [--workload NAME] SCENARIO...\n` +
      `scenarios: ${SCENARIOS.join(" ")} (or "all")`,
  );
  Deno.exit(2);
}

/** Prints where the gateway's time went, for each profile that `--profile` left in `dir`. */
async function printProfiles(dir: string): Promise<void> {
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch {
    return;
  }
  for (const { name } of entries.filter((e) => e.name.endsWith(".cpuprofile"))) {
    const profile = JSON.parse(await Deno.readTextFile(`${dir}/${name}`)) as CpuProfile;
    console.log(`gateway CPU profile ${dir}/${name}:\n${profileTable(profile)}`);
  }
}

const names: ScenarioName[] = [];
let timeoutSeconds: number | undefined;
const extraArgs: string[] = [];
let before: string | undefined;
for (let i = 0; i < Deno.args.length; i++) {
  const a = Deno.args[i];
  if (a === "--timeout") {
    timeoutSeconds = Number(Deno.args[++i]);
    if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) usage();
  } else if (a === "--standin") {
    // Developer aid: the kernel's own Gadget Zero + usbipd play the gateway (plumbing checks).
    extraArgs.push("standin=kernel");
  } else if (a === "--profile") {
    extraArgs.push("gw_profile=1");
  } else if (a === "--before") {
    before = Deno.args[++i] ?? usage();
  } else if (a === "--workload") {
    extraArgs.push(`ab_workload=${Deno.args[++i] ?? usage()}`);
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

// gateway_ab's "before" side: commit REV's tree inside the checkout, which the guest sees.
const repo = new URL("../../", import.meta.url).pathname;
let beforeTree: string | undefined;
if (before !== undefined) {
  await Deno.mkdir(`${repo}.cache/interop`, { recursive: true });
  const tree = await extractTree(before, `${repo}.cache/interop`);
  if (typeof tree !== "string") {
    console.error(tree.missing);
    Deno.exit(2);
  }
  beforeTree = tree;
  extraArgs.push(`before=${tree.slice(repo.length).replace(/\/$/, "")}`);
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
  if (name === "gateway_ab" && run.result?.["turns"]) console.log(gatewayAb(run.result).table);
  await printProfiles(`${run.runDir}/share/prof`);
  try {
    assertScenarioPassed(run);
    console.error(`PASS ${name} (${run.wallSeconds} s)`);
  } catch (e) {
    failed++;
    console.error(errorMessage(e));
    console.error(`FAIL ${name} (${run.wallSeconds} s)`);
  }
}
if (beforeTree !== undefined) await Deno.remove(beforeTree, { recursive: true });
Deno.exit(failed === 0 ? 0 : 1);
