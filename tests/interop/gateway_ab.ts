// The table of the gateway_ab scenario (guest/scenarios/gateway_ab.sh): the turns of the
// "before" and "after" gateways in one VM, as medians per side and as the ratios after/before
// of each pair of neighbouring turns (before, after | after, before | ...), whose median moves
// least with the host's load.

import type { ScenarioResult } from "./rig.ts";

/** The figures a turn may carry, with what better means for each. */
const FIGURES = [
  { key: "read_mbs", label: "read MB/s", better: "higher" },
  { key: "read_cpu_ticks", label: "gateway CPU ticks over the reads", better: "lower" },
  { key: "read_wakeups", label: "gateway main thread wake-ups over the reads", better: "lower" },
  { key: "write_mbs", label: "write MB/s", better: "higher" },
  { key: "write_cpu_ticks", label: "gateway CPU ticks over the writes", better: "lower" },
  { key: "write_wakeups", label: "gateway main thread wake-ups over the writes", better: "lower" },
  { key: "control_s", label: "testusb tests 9 + 10, s", better: "lower" },
  { key: "control_cpu_ticks", label: "gateway CPU ticks over tests 9 + 10", better: "lower" },
] as const;

type Turn = { side: "before" | "after" } & Record<string, number | number[] | string>;

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** A turn's value of `key`: the median of its runs, or its single number. */
function turnValue(turn: Turn, key: string): number | undefined {
  const v = turn[key];
  if (typeof v === "number") return v;
  if (Array.isArray(v) && v.length > 0) return median(v);
  return undefined;
}

/**
 * The table of a gateway_ab result, and the median paired ratio (after/before) of each figure.
 * Throws when the result has no turns or the sides do not alternate in pairs.
 */
export function gatewayAb(result: ScenarioResult): { table: string; ratios: Map<string, number> } {
  const turns = result["turns"] as Turn[] | undefined;
  if (!Array.isArray(turns) || turns.length < 2 || turns.length % 2 !== 0) {
    throw new Error(`gateway_ab: expected an even number of turns, got ${JSON.stringify(turns)}`);
  }
  const pairs: [Turn, Turn][] = [];
  for (let i = 0; i < turns.length; i += 2) {
    const a = turns[i]!;
    const b = turns[i + 1]!;
    if (a.side === b.side) {
      throw new Error(`gateway_ab: turns ${i + 1} and ${i + 2} are both ${a.side}`);
    }
    pairs.push(a.side === "before" ? [a, b] : [b, a]);
  }
  const before = result["before_tree"] ? "before" : "before (= after: no --before)";
  const lines = [
    `workload ${result["workload"]}; ${turns.length} turns; ${before} against after`,
    `${"figure".padEnd(62)} | ${"before".padStart(8)} | ${
      "after".padStart(8)
    } | paired ratios after/before (median)`,
  ];
  const ratios = new Map<string, number>();
  for (const f of FIGURES) {
    if (turns.every((t) => turnValue(t, f.key) === undefined)) continue;
    const side = (s: Turn["side"]) =>
      turns.filter((t) => t.side === s).flatMap((t) => {
        const v = t[f.key];
        return Array.isArray(v) ? v : typeof v === "number" ? [v] : [];
      });
    const paired = pairs.map(([b, a]) => turnValue(a, f.key)! / turnValue(b, f.key)!);
    const m = median(paired);
    ratios.set(f.key, m);
    lines.push(
      `${`${f.label} (${f.better} is better)`.padEnd(62)} | ${
        median(side("before")).toFixed(1).padStart(8)
      } | ${median(side("after")).toFixed(1).padStart(8)} | ${
        paired.map((r) => r.toFixed(2)).join(", ")
      } (${m.toFixed(2)})`,
    );
  }
  return { table: lines.join("\n"), ratios };
}
