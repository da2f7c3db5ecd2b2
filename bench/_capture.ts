// What the traffic capture costs (issue 19): 64 KiB bulk IN through Gadget Zero, one URB in
// flight, with capture off (no observer attached: the data path only asks whether one is)
// against the same gateway before the observer code path existed (commit BASE_REV, extracted
// with `git archive` into the bench folder), and with `--capture` to a file against capture off:
// in the bench folder (under /tmp, on disk here) with a limit no run reaches and again rotated
// every 256 MiB, where there is one in /dev/shm (memory), and to /dev/null (the capture's own
// work, nothing stored), which tells the gateway's own cost from the storage's. The gateways run
// alternately, ROUNDS times each (which goes first changes every round); each figure is the
// median of its rounds, and each ratio the median of the rounds' ratios, so that a drift of the
// host's load moves both sides of a ratio alike. A capture that cannot keep up drops records
// rather than slow the sessions, which would flatter its rate: each capturing gateway runs for
// one transport's rounds only, and the records it dropped (from its log line at the end) are in
// a row of their own; a rate with drops does not meet the target.
import {
  extractTree,
  median,
  pairedRatio,
  SECONDS,
  type ServerProcess,
  type StartedServer,
  startGateway,
  startGatewayAt,
} from "./_common.ts";
import { gatewayRun, inRounds } from "./_urb.ts";
import { num, ratio, type Row, verdict } from "./_table.ts";

/** The commit before the observers of the traffic (1f1e278): the gateway without that path. */
const BASE_REV = Deno.env.get("BENCH_CAPTURE_BASE") ?? "1f1e278^";
/** Alternate runs of each gateway per figure. */
const ROUNDS = Number(Deno.env.get("BENCH_CAPTURE_ROUNDS") ?? 5);
const SIZE = 65536;

/** One run: MB/s, and the server's CPU time (user + system, all its threads) per URB in µs. */
interface Run {
  mbps: number;
  cpuUs: number;
}

/** 64 KiB bulk IN on one fresh session of `server`. */
async function rate(server: ServerProcess, transport: "tcp" | "unix"): Promise<Run> {
  const r = await gatewayRun(server, transport, true, SIZE, 1);
  return { mbps: r.rate * SIZE / 1e6, cpuUs: r.cpuUs };
}

/** What ROUNDS alternate runs of `a` and `b` measured: medians, and paired ratios of a to b. */
interface Compared {
  a: Run;
  b: Run;
  /** Median of the per-round ratios of a's MB/s to b's. */
  rateRatio: number;
}

/** ROUNDS alternate runs of `a` and `b` (which goes first changes every round). */
async function alternate(
  a: ServerProcess,
  b: ServerProcess,
  transport: "tcp" | "unix",
): Promise<Compared> {
  const [as = [], bs = []] = await inRounds(ROUNDS, [
    () => rate(a, transport),
    () => rate(b, transport),
  ]);
  const med = (runs: Run[]) => ({
    mbps: median(runs.map((r) => r.mbps)),
    cpuUs: median(runs.map((r) => r.cpuUs)),
  });
  return {
    a: med(as),
    b: med(bs),
    rateRatio: pairedRatio(as.map((r) => r.mbps), bs.map((r) => r.mbps)),
  };
}

/** The records a stopped capturing gateway dropped, from its last warning about them. */
function droppedRecords(gateway: StartedServer): number {
  const all = [...gateway.stderr().matchAll(/(\d+) record\(s\) dropped in all/g)];
  return Number(all.at(-1)?.[1] ?? 0);
}

/** The row of the server's CPU time per URB of two runs. */
function cpuRow(transport: string, what: string, a: Run, b: Run): Row {
  return {
    section: "capture",
    transport,
    figure: `${what}: server CPU per URB, µs`,
    usbipgw: num(a.cpuUs, 1),
    baseline: num(b.cpuUs, 1),
    ratio: ratio(a.cpuUs, b.cpuUs),
    target: "",
  };
}

/** The capture rows: off against no observer path, on against off; TCP and unix. */
export async function captureSection(dir: string): Promise<Row[]> {
  const rows: Row[] = [];
  const figure = `64 KiB bulk IN, 1 in flight, ${SECONDS} s x ${ROUNDS}: MB/s`;
  const off = await startGateway(dir, 1);
  const capturing = (file: string, maxSize: string) =>
    startGateway(dir, 1, undefined, ["--capture", file, "--capture-max-size", maxSize]);
  const shm = await Deno.stat("/dev/shm").then((s) => s.isDirectory, () => false);
  const shmFile = `/dev/shm/usbipgw-bench-${crypto.randomUUID()}.pcapng`;
  const diskFile = `${dir}/bench.pcapng`;
  // What a capture costs while it writes (a limit no run reaches: about 12 GB go to the file
  // per transport), and what rotating it costs on top: a rotation frees the file before last,
  // and freeing is not free (on a file system mounted with `discard` the disk trims every
  // block freed, some 0.45 ms per MiB here).
  // Each capture with its limit, and the note in the target column of a row that is not held to
  // the target.
  const rotated = "(rotation's cost is the difference)";
  const files: [where: string, file: string, maxSize: string, note?: string][] = [
    ["a file in /tmp", diskFile, "32GiB"],
    ["a file in /tmp, rotated every 256 MiB", diskFile, "256MiB", rotated],
  ];
  if (shm) files.push(["a file in /dev/shm, rotated every 256 MiB", shmFile, "256MiB", rotated]);
  // The capture's own work with nothing stored (a device is never rotated).
  files.push([
    "/dev/null, nothing stored",
    "/dev/null",
    "256MiB",
    "(what storage costs is the rest)",
  ]);
  const tree = await extractTree(BASE_REV, dir);
  const base = typeof tree === "string" ? await startGatewayAt(tree, dir) : undefined;
  try {
    for (const transport of ["tcp", "unix"] as const) {
      if (base !== undefined) {
        const { a: o, b, rateRatio } = await alternate(off, base, transport);
        rows.push({
          section: "capture",
          transport,
          figure: `capture off vs ${BASE_REV} (no observer path), ${figure}`,
          usbipgw: num(o.mbps),
          baseline: num(b.mbps),
          ratio: rateRatio.toFixed(2),
          target: verdict(">= 0.95: nothing measurable", rateRatio >= 0.95),
        }, cpuRow(transport, `capture off vs ${BASE_REV}`, o, b));
      } else {
        rows.push({
          section: "capture",
          transport,
          figure: `capture off vs ${BASE_REV}: not measured (${
            (tree as { missing: string }).missing
          })`,
          usbipgw: "-",
          baseline: "-",
          ratio: "",
          target: "",
        });
      }
      for (const [where, file, maxSize, note] of files) {
        const gateway = await capturing(file, maxSize);
        let compared: Compared;
        try {
          compared = await alternate(gateway, off, transport);
        } finally {
          await gateway.stop();
          if (file !== "/dev/null") {
            for (const f of [file, `${file}.1`]) await Deno.remove(f).catch(() => {});
          }
        }
        const { a: c, b: o, rateRatio } = compared;
        const dropped = droppedRecords(gateway);
        rows.push(
          {
            section: "capture",
            transport,
            figure: `capture on (${where}) vs off, ${figure}`,
            usbipgw: num(c.mbps),
            baseline: num(o.mbps),
            ratio: rateRatio.toFixed(2),
            target: note ??
              verdict(">= 0.80 of off, no record dropped", rateRatio >= 0.8 && dropped === 0),
          },
          cpuRow(transport, `capture on (${where}) vs off`, c, o),
          {
            section: "capture",
            transport,
            figure: `capture on (${where}): records dropped (the writer behind)`,
            usbipgw: num(dropped),
            baseline: "",
            ratio: "",
            target: "",
          },
        );
      }
    }
  } finally {
    await off.stop();
    await base?.stop();
    for (const f of [shmFile, `${shmFile}.1`]) await Deno.remove(f).catch(() => {});
  }
  return rows;
}
