/**
 * The process metrics every Prometheus client library exports under the same names
 * ("Process metrics" in the Prometheus client library guidelines, prometheus.io/docs/
 * instrumenting/writing_clientlibs/): CPU seconds, resident and virtual memory, open and
 * maximum file descriptors and the start time, read from Linux's procfs (proc(5):
 * `/proc/self/stat`, `status`, `fd/`, `limits`, and `btime` of `/proc/stat`). They keep the
 * standard `process_` names, without usbipgw's prefix, so that existing dashboards work.
 *
 * @module
 */

import type { ExpositionWriter } from "./exposition.ts";

/**
 * Clock ticks per second of `/proc/PID/stat` times: USER_HZ, which Linux fixes at 100 for
 * user space on every architecture it runs on (`sysconf(_SC_CLK_TCK)`).
 */
const CLOCK_TICKS = 100;

/** The process's figures; each is absent when procfs could not tell it. */
export interface ProcessFigures {
  /** User plus system CPU time, in seconds. */
  cpuSeconds?: number;
  /** Resident set size (VmRSS), in bytes. */
  residentBytes?: number;
  /** Virtual memory size (VmSize), in bytes. */
  virtualBytes?: number;
  /** Open file descriptors. */
  openFds?: number;
  /** The soft limit on open file descriptors (RLIMIT_NOFILE). */
  maxFds?: number;
  /** When the process started, in seconds since the Unix epoch. */
  startTimeSeconds?: number;
}

/** Runs `f`; `undefined` when it throws (a file procfs does not have here). */
function tryRead<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}

/**
 * Parses the texts of `/proc/self/stat`, `/proc/self/status`, `/proc/self/limits` and
 * `/proc/stat` (each may be absent); `openFds` is passed through.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseProcessFigures } from "./process_metrics.ts";
 * const stat = "42 (deno (x)) S 1 42 42 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 9 0 1000 0 0";
 * const f = parseProcessFigures({ stat, procStat: "cpu 1 2\nbtime 1700000000\n" });
 * assertEquals([f.cpuSeconds, f.startTimeSeconds], [3, 1700000010]);
 * ```
 */
export function parseProcessFigures(texts: {
  stat?: string | undefined;
  status?: string | undefined;
  limits?: string | undefined;
  procStat?: string | undefined;
  openFds?: number | undefined;
}): ProcessFigures {
  const figures: ProcessFigures = {};
  if (texts.stat !== undefined) {
    // The fields after the command name, which is in parentheses and may hold anything.
    const fields = texts.stat.slice(texts.stat.lastIndexOf(")") + 2).split(" ");
    // proc(5): utime (14) and stime (15), starttime (22); field 3 is fields[0] here.
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    if (Number.isFinite(utime + stime)) figures.cpuSeconds = (utime + stime) / CLOCK_TICKS;
    const btime = /^btime (\d+)$/m.exec(texts.procStat ?? "")?.[1];
    const start = Number(fields[19]);
    if (btime !== undefined && Number.isFinite(start)) {
      figures.startTimeSeconds = Number(btime) + start / CLOCK_TICKS;
    }
  }
  const kib = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB$`, "m").exec(texts.status ?? "");
    return m ? Number(m[1]) * 1024 : undefined;
  };
  const rss = kib("VmRSS");
  if (rss !== undefined) figures.residentBytes = rss;
  const vsize = kib("VmSize");
  if (vsize !== undefined) figures.virtualBytes = vsize;
  const max = /^Max open files\s+(\d+)/m.exec(texts.limits ?? "")?.[1];
  if (max !== undefined) figures.maxFds = Number(max);
  if (texts.openFds !== undefined) figures.openFds = texts.openFds;
  return figures;
}

/** This process's figures, read from procfs now (synchronously: a few small files). */
export function readProcessFigures(): ProcessFigures {
  const read = (path: string) => tryRead(() => Deno.readTextFileSync(path));
  return parseProcessFigures({
    stat: read("/proc/self/stat"),
    status: read("/proc/self/status"),
    limits: read("/proc/self/limits"),
    procStat: read("/proc/stat"),
    openFds: tryRead(() => [...Deno.readDirSync("/proc/self/fd")].length),
  });
}

/** Writes the standard process metrics of `figures`; a figure procfs did not give is left out. */
export function writeProcessMetrics(w: ExpositionWriter, figures: ProcessFigures): void {
  const one = (
    name: string,
    type: "counter" | "gauge",
    help: string,
    value: number | undefined,
  ) => {
    if (value === undefined) return;
    w.family(name, type, help);
    w.sample(name, {}, value);
  };
  one(
    "process_cpu_seconds_total",
    "counter",
    "User and system CPU time spent in seconds.",
    figures.cpuSeconds,
  );
  one(
    "process_resident_memory_bytes",
    "gauge",
    "Resident memory size in bytes.",
    figures.residentBytes,
  );
  one(
    "process_virtual_memory_bytes",
    "gauge",
    "Virtual memory size in bytes.",
    figures.virtualBytes,
  );
  one("process_open_fds", "gauge", "Number of open file descriptors.", figures.openFds);
  one("process_max_fds", "gauge", "Maximum number of open file descriptors.", figures.maxFds);
  one(
    "process_start_time_seconds",
    "gauge",
    "Start time of the process since unix epoch in seconds.",
    figures.startTimeSeconds,
  );
}
