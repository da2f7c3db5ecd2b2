// The testusb_baseline benchmark's table (issue 20; guest/scenarios/testusb_baseline.sh):
// usbipgw's Gadget Zero against the kernel's, exported by usbip-host, through vhci in one VM,
// the same testusb tests in alternating rounds.
import type { ScenarioResult } from "./rig.ts";
import { median } from "../../bench/_common.ts";

interface TestRecord {
  status?: string;
  seconds?: number | null;
}

/** Per round and side, each test's seconds; a test that did not pass is an error. */
function roundsOf(r: ScenarioResult, side: "ours" | "kernel"): Map<string, number>[] {
  const rounds: Map<string, number>[] = [];
  for (let n = 1; n <= Number(r["rounds"] ?? 0); n++) {
    const tests = (r[`${side}_${n}`] ?? {}) as Record<string, TestRecord>;
    const seconds = new Map<string, number>();
    for (const [t, rec] of Object.entries(tests)) {
      if (rec.status !== "pass" || typeof rec.seconds !== "number") {
        throw new Error(`testusb_baseline: test ${t} of ${side} round ${n} is ${rec.status}`);
      }
      seconds.set(t, rec.seconds);
    }
    rounds.push(seconds);
  }
  if (rounds.length === 0) throw new Error(`testusb_baseline: no rounds of ${side} recorded`);
  return rounds;
}

/** What the run shows: per-test medians, each round's totals and the median ratio of totals. */
export interface TestusbBaseline {
  /** The table to print. */
  table: string;
  /** usbipgw's total over the kernel's, the median of the rounds (issue 20: at most 1.0). */
  ratio: number;
}

/**
 * The table of a testusb_baseline result: each test's median seconds on both sides, then the
 * totals of each round (every test that both ran) and their ratios. Throws when a test of any
 * round did not pass, or the two sides ran different tests.
 */
export function testusbBaseline(r: ScenarioResult): TestusbBaseline {
  const ours = roundsOf(r, "ours");
  const kernel = roundsOf(r, "kernel");
  const tests = [...ours[0]!.keys()].sort((a, b) => Number(a) - Number(b));
  for (const round of [...ours, ...kernel]) {
    if (round.size !== tests.length || tests.some((t) => !round.has(t))) {
      throw new Error("testusb_baseline: the rounds did not run the same tests");
    }
  }
  const fmt = (v: number) => v.toFixed(3).padStart(8);
  const lines = [`test | ${"usbipgw".padStart(8)} | ${"kernel".padStart(8)} | ratio`];
  for (const t of tests) {
    const o = median(ours.map((m) => m.get(t)!));
    const k = median(kernel.map((m) => m.get(t)!));
    lines.push(`${t.padStart(4)} | ${fmt(o)} | ${fmt(k)} | ${(o / k).toFixed(2)}`);
  }
  const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  const ratios = ours.map((m, i) => total(m) / total(kernel[i]!));
  ours.forEach((m, i) => {
    lines.push(
      `round ${i + 1} total: usbipgw ${total(m).toFixed(2)} s, kernel ${
        total(kernel[i]!).toFixed(2)
      } s, ratio ${ratios[i]!.toFixed(2)}`,
    );
  });
  const ratio = median(ratios);
  lines.push(`median ratio of the totals: ${ratio.toFixed(2)} (issue 20: at most 1.0)`);
  return { table: lines.join("\n"), ratio };
}
