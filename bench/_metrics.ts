// The cost of `serve --metrics` (issue 19: at most 5% of the 64-byte URB rate): in each round
// two fresh gateway processes, one with the metrics listener and one without, driven one after
// the other by the same client loop, alternating which goes first; the figures are the medians
// of the rounds (BENCH_METRICS_ROUNDS, default 20: fewer do not resolve 5% here), the URB/s
// ratio the median of the rounds' ratios (a round's two runs share the machine's load). Fresh processes each round, because two
// processes of the same code differ by more than 5% between themselves (JIT, memory layout).
// The gateway's CPU time per URB is read from /proc around each measured window. The metrics
// are scraped at the end of each round and their URB count set beside the URBs the client had
// answered. Last, what the metrics add per URB is timed in this process (the session's two
// reports, submitted and completed, with and without the metrics observer), which the load of
// other processes on the machine moves far less than a round trip.
import {
  connectTo,
  cpuSeconds,
  freePort,
  importGadgetZero,
  median,
  pairedRatio,
  readFull,
  type Request,
  SECONDS,
  type ServerProcess,
  startGateway,
  urbRequest,
  WARMUP_SECONDS,
  withSeqnum,
  writeAll,
} from "./_common.ts";
import { num, ratio, type Row, verdict } from "./_table.ts";
import { GadgetZero, UsbipServer } from "../mod.ts";
import { ServerMetrics } from "../lib/metrics/server_metrics.ts";
import type { CmdSubmit } from "../protocol.ts";

const ROUNDS = Number(Deno.env.get("BENCH_METRICS_ROUNDS") ?? 20);

const CASES = [
  { name: "64 B bulk IN", dirIn: true, size: 64 },
  { name: "64 B bulk OUT", dirIn: false, size: 64 },
];

interface Measured {
  /** Round trips per second in the measured window. */
  rate: number;
  /** The gateway's CPU time per URB in that window, µs. */
  cpuUs: number;
  /** URBs the gateway answered on this connection, the import's SET_CONFIGURATION included. */
  urbs: number;
}

/** One URB in flight: WARMUP_SECONDS uncounted, then SECONDS measured. */
async function measure(conn: Deno.Conn, request: Request, pid: number): Promise<Measured> {
  const reply = new Uint8Array(request.replyLength);
  let seq = 1;
  let urbs = 1;
  const roundTrip = async () => {
    await writeAll(conn, withSeqnum(request, seq++));
    await readFull(conn, reply);
    urbs++;
  };
  const warm = performance.now() + WARMUP_SECONDS * 1000;
  while (performance.now() < warm) await roundTrip();
  const cpu0 = cpuSeconds(pid);
  const start = performance.now();
  const end = start + SECONDS * 1000;
  let done = 0;
  while (performance.now() < end) {
    await roundTrip();
    done++;
  }
  const elapsed = (performance.now() - start) / 1000;
  const cpu = cpuSeconds(pid) - cpu0;
  return { rate: done / elapsed, cpuUs: cpu * 1e6 / done, urbs };
}

async function run(
  gw: ServerProcess,
  transport: "tcp" | "unix",
  c: (typeof CASES)[number],
): Promise<Measured> {
  const conn = await connectTo(gw, transport);
  try {
    const devid = await importGadgetZero(conn, "1-1");
    return await measure(conn, urbRequest(devid, c.dirIn, c.size), gw.pid);
  } finally {
    conn.close();
  }
}

/**
 * Nanoseconds per URB of what a session reports to the server's observers (a submit and a
 * completion of a 64-byte bulk IN), without and with {@linkcode ServerMetrics}: the median of
 * 5 runs of 200,000 URBs each, after one uncounted run. Each URB ends with a turn of the
 * microtask queue, as a session's does, in which the completion is delivered.
 */
async function observerCost(): Promise<{ without: number; with: number }> {
  const server = new UsbipServer();
  const exported = server.addDevice(new GadgetZero(), { busid: "1-1" });
  const i = { session: 1, transport: "tcp" as const, exported };
  const cmd = { seqnum: 0, ep: 1, direction: 1 } as CmdSubmit & { seqnum: number };
  const c = {
    status: 0,
    actualLength: 64,
    errorCount: 0,
    data: new Uint8Array(64),
    isoPackets: [],
  };
  const observers = server.observers;
  const time = async () => {
    const n = 200_000;
    const start = performance.now();
    for (let k = 0; k < n; k++) {
      cmd.seqnum = k;
      if (observers.active) observers.report("submitted", i, cmd);
      // As a session reports it: after the reply, delivered in the next microtask.
      if (observers.active) observers.reportCompleted(i, cmd, c);
      await null;
    }
    return (performance.now() - start) * 1e6 / n;
  };
  const runs = async () => {
    await time();
    const times = [];
    for (let r = 0; r < 5; r++) times.push(await time());
    return median(times);
  };
  const without = await runs();
  const metrics = new ServerMetrics(server);
  const withMetrics = await runs();
  metrics.close();
  await server.close();
  return { without, with: withMetrics };
}

/** The URBs in `usbipgw_urbs_total` of the metrics at `url`. */
async function countedUrbs(url: string): Promise<number> {
  const text = await (await fetch(url)).text();
  return text.split("\n")
    .filter((l) => l.startsWith("usbipgw_urbs_total{"))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}

/** Metrics on against off, per transport and direction: URB/s and server CPU per URB. */
export async function metricsSection(dir: string): Promise<Row[]> {
  const keys = ["tcp", "unix"].flatMap((t) => CASES.map((c) => `${t} ${c.name}`));
  const runs = new Map(keys.map((k) => [k, { on: [] as Measured[], off: [] as Measured[] }]));
  let answered = 0;
  let counted = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const url = `http://127.0.0.1:${freePort()}/metrics`;
    const off = await startGateway(dir, 1);
    const on = await startGateway(dir, 1, undefined, ["--metrics", new URL(url).host]);
    try {
      for (const transport of ["tcp", "unix"] as const) {
        for (const c of CASES) {
          // Alternate which goes first, so that a drift of the machine's load hits both.
          for (const metrics of r % 2 === 0 ? [false, true] : [true, false]) {
            // The previous connection's session may still be letting the device go.
            await new Promise((resolve) => setTimeout(resolve, 50));
            const m = await run(metrics ? on : off, transport, c);
            runs.get(`${transport} ${c.name}`)![metrics ? "on" : "off"].push(m);
            if (metrics) answered += m.urbs;
          }
        }
      }
      counted += await countedUrbs(url);
    } finally {
      await on.stop();
      await off.stop();
    }
  }
  const rows: Row[] = [];
  for (const transport of ["tcp", "unix"] as const) {
    for (const c of CASES) {
      const { on, off } = runs.get(`${transport} ${c.name}`)!;
      const rate = [median(on.map((m) => m.rate)), median(off.map((m) => m.rate))];
      const cpu = [median(on.map((m) => m.cpuUs)), median(off.map((m) => m.cpuUs))];
      const paired = pairedRatio(on.map((m) => m.rate), off.map((m) => m.rate));
      rows.push({
        section: "metrics",
        transport,
        figure: `${c.name}, 1 in flight, metrics on/off: URB/s`,
        usbipgw: num(rate[0]!),
        baseline: num(rate[1]!),
        ratio: paired.toFixed(2),
        target: verdict(">= 0.95 of off", paired >= 0.95),
      });
      rows.push({
        section: "metrics",
        transport,
        figure: `${c.name}, metrics on/off: server CPU per URB, µs`,
        usbipgw: num(cpu[0]!, 1),
        baseline: num(cpu[1]!, 1),
        ratio: ratio(cpu[0]!, cpu[1]!),
        target: "",
      });
    }
  }
  const cost = await observerCost();
  const added = (cost.with - cost.without) / 1000;
  const offCpu = median(
    ["tcp", "unix"].map((t) => median(runs.get(`${t} 64 B bulk IN`)!.off.map((m) => m.cpuUs))),
  );
  rows.push({
    section: "metrics",
    transport: "-",
    figure: "what the metrics add per URB (in-process), µs / server CPU per 64 B URB off",
    usbipgw: num(added, 2),
    baseline: num(offCpu, 1),
    ratio: ratio(added, offCpu),
    target: verdict("<= 0.05", added <= 0.05 * offCpu),
  });
  rows.push({
    section: "metrics",
    transport: "-",
    figure: "URBs in usbipgw_urbs_total / URBs the client had answered",
    usbipgw: num(counted),
    baseline: num(answered),
    ratio: ratio(counted, answered),
    target: verdict("equal", counted === answered),
  });
  return rows;
}
