// The storage_latency benchmark's table (issue 18; guest/scenarios/storage_latency.sh):
// sequential MB/s through vhci per configuration and netem delay on the guest's loopback, and
// the issue's two targets for UAS.

import { describeRun, type ScenarioResult, type ScenarioRun } from "./rig.ts";

/** The configurations, in the table's order: result.json prefix and label. */
export const LATENCY_CONFS: readonly (readonly [string, string])[] = [
  ["ours", "usbipgw Bulk-Only, high speed"],
  ["ours_ss", "usbipgw Bulk-Only, SuperSpeed"],
  ["ours_uas", "usbipgw UAS, high speed"],
  ["kernel", "kernel f_mass_storage, high speed"],
  ["kernel_ss", "kernel f_mass_storage, SuperSpeed"],
];

/** Configurations that must have every row; UAS may be left out with its reason. */
const REQUIRED = ["ours", "ours_ss", "kernel", "kernel_ss"];

/** The one-way delays (ms) the guest ran, from `lat_delays_ms`. */
function _delays(r: ScenarioResult): number[] {
  return String(r["lat_delays_ms"] ?? "").trim().split(/\s+/).filter((w) => w !== "").map(
    Number,
  );
}

function _median(r: ScenarioResult, conf: string, delay: number, dir: string): number | null {
  const v = r[`${conf}_d${delay}_${dir}_median_mbs`];
  return typeof v === "number" && v > 0 ? v : null;
}

/** Ping's round trip at `delay`, with the range of TCP's smoothed RTT over the connections. */
function _rtt(r: ScenarioResult, delay: number): string {
  const ping = r[`d${delay}_ping_rtt_ms`];
  const tcp = r[`d${delay}_tcp_srtt_ms`];
  const range = Array.isArray(tcp) && tcp.length > 0
    ? ` (TCP ${Math.min(...tcp)}-${Math.max(...tcp)})`
    : "";
  return typeof ping === "number" ? `${ping} ms${range}` : "-";
}

function _cell(r: ScenarioResult, conf: string, delay: number, dir: string): string {
  const median = _median(r, conf, delay, dir);
  return median === null ? "-" : `${median} (${r[`${conf}_d${delay}_${dir}_best_mbs`]})`;
}

/** "UAS / other" for both directions at `delay`, or why it cannot be computed. */
function _ratio(r: ScenarioResult, other: string, delay: number): string {
  const parts: string[] = [];
  for (const dir of ["write", "read"]) {
    const uas = _median(r, "ours_uas", delay, dir);
    const base = _median(r, other, delay, dir);
    parts.push(`${dir} ${uas === null || base === null ? "-" : (uas / base).toFixed(2)}`);
  }
  return parts.join(", ");
}

/**
 * The benchmark as Markdown: one row per configuration and delay (median and best MB/s of the
 * runs, MiB per run, the average request size), then the targets at a 50 ms round trip (25 ms
 * each way) and at 100 ms. Tolerates missing rows (printed as "-").
 */
export function storageLatencyTable(r: ScenarioResult): string {
  const delays = _delays(r);
  const lines = [
    `Sequential MB/s (10^6 B/s) through vhci, netem delay on the guest's loopback; ` +
    `${r["lat_streams"]} dd streams at once, O_DIRECT, bs=1M (write dd ${r["write_args"]}; ` +
    `read dd ${r["read_args"]}); median (best) of the runs.`,
    "",
    "| configuration | delay each way | RTT: ping (TCP srtt) | write MB/s | read MB/s | MiB per run w/r | KiB per request w/r | max_sectors_kb | queue_depth |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const [conf, label] of LATENCY_CONFS) {
    const error = r[`${conf}_error`];
    if (typeof error === "string") {
      lines.push(`| ${label} | - | - | left out: ${error.replaceAll("|", "/")} | | | | | |`);
      continue;
    }
    for (const d of delays) {
      lines.push(
        `| ${label} | ${d} ms | ${_rtt(r, d)} | ${_cell(r, conf, d, "write")} | ${
          _cell(r, conf, d, "read")
        } | ${r[`${conf}_d${d}_write_mib`] ?? "-"}/${r[`${conf}_d${d}_read_mib`] ?? "-"} | ${
          r[`${conf}_d${d}_write_req_kib`] ?? "-"
        }/${r[`${conf}_d${d}_read_req_kib`] ?? "-"} | ${r[`${conf}_max_sectors_kb`] ?? "-"} | ${
          r[`${conf}_queue_depth`] ?? "-"
        } |`,
      );
    }
  }
  lines.push("");
  for (const d of [25, 50].filter((v) => delays.includes(v))) {
    lines.push(
      `At ${d} ms each way (${2 * d} ms round trip): UAS / Bulk-Only high speed ${
        _ratio(r, "ours", d)
      } (target at 50 ms RTT: at least 5); UAS / kernel f_mass_storage SuperSpeed ${
        _ratio(r, "kernel_ss", d)
      } (target: at least 1).`,
    );
  }
  return lines.join("\n");
}

/**
 * Host-side check of a storage_latency run: the delay was real (ping's round trip at least
 * 1.8 x twice the delay), every configuration but UAS has every row; prints the table. No
 * verdict on speed: the targets are printed, with a warning when one is missed.
 */
export function checkStorageLatency(run: ScenarioRun, r: ScenarioResult): void {
  const delays = _delays(r);
  if (delays.length === 0) throw new Error(describeRun(run, "no lat_delays_ms"));
  for (const d of delays) {
    const rtt = r[`d${d}_ping_rtt_ms`];
    if (typeof rtt !== "number" || rtt < 1.8 * d) {
      throw new Error(describeRun(run, `d${d}_ping_rtt_ms is ${rtt}, expected about ${2 * d}`));
    }
  }
  const confs = [...REQUIRED, ...(typeof r["ours_uas_error"] === "string" ? [] : ["ours_uas"])];
  for (const conf of confs) {
    for (const d of delays) {
      for (const dir of ["write", "read"]) {
        if (_median(r, conf, d, dir) === null) {
          throw new Error(
            describeRun(run, `no ${conf}_d${d}_${dir}_median_mbs (${r[`${conf}_error`] ?? ""})`),
          );
        }
      }
    }
  }
  console.log(storageLatencyTable(r));
  if (typeof r["ours_uas_error"] === "string") {
    console.warn(`storage_latency: UAS left out: ${r["ours_uas_error"]}`);
    return;
  }
  for (const dir of ["write", "read"]) {
    const uas = _median(r, "ours_uas", 25, dir);
    const bot = _median(r, "ours", 25, dir);
    const kss = _median(r, "kernel_ss", 25, dir);
    if (uas !== null && bot !== null && kss !== null && (uas < 5 * bot || uas < kss)) {
      console.warn(
        `storage_latency: ${dir} target missed at 50 ms RTT: UAS ${uas}, 5 x Bulk-Only high ` +
          `speed ${(5 * bot).toFixed(2)}, kernel SuperSpeed ${kss} MB/s`,
      );
    }
  }
}
