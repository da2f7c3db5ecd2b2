// Scale: N Gadget Zeros in one gateway process, imported by N concurrent sessions, each
// alternating 16 KiB bulk OUT (sink) and 16 KiB bulk IN (source), one URB in flight; against
// the same client processes talking to the raw echo server over N connections. The server
// and the client processes share the CPUs (or are pinned apart: PIN in _common.ts).
import {
  busidOf,
  cpuSeconds,
  denoCommand,
  Histogram,
  median,
  PIN,
  ROOT,
  rssKiB,
  SECONDS,
  type ServerProcess,
  startBaseline,
  startGateway,
  WARMUP_SECONDS,
} from "./_common.ts";
import type { ScaleClientJob, ScaleClientResult } from "./_scale_client.ts";
import { num, ratio, type Row, verdict } from "./_table.ts";

/** Session counts (BENCH_SCALE_N, comma-separated, default 1,16,64,256). */
const COUNTS = (Deno.env.get("BENCH_SCALE_N") ?? "1,16,64,256").split(",").map(Number);
/**
 * Measured windows per case (BENCH_SCALE_WINDOWS, default 4), each half of BENCH_SECONDS long:
 * the throughput shown is the median window, which a burst of other load on the machine moves
 * far less than it moves one long run.
 */
const WINDOWS = Number(Deno.env.get("BENCH_SCALE_WINDOWS") ?? 4);
/** Client processes (BENCH_CLIENTS, default 2). */
const CLIENTS = Number(Deno.env.get("BENCH_CLIENTS") ?? 2);
const SIZE = 16 * 1024;

/** What one run measured. */
interface ScaleFigures {
  urbsPerSecond: number;
  mbPerSecond: number;
  p50: number;
  p99: number;
  /** The server's largest RSS during the run, KiB. */
  rss: number;
  /** The server's CPU use during the run, % of one core. */
  serverCpu: number;
  /** The client processes' CPU use together, % of one core. */
  clientCpu: number;
}

interface Client {
  child: Deno.ChildProcess;
  lines: ReadableStreamDefaultReader<string>;
  stdin: WritableStreamDefaultWriter<Uint8Array>;
}

function spawnClient(job: ScaleClientJob): Client {
  const child = denoCommand([`${ROOT}bench/_scale_client.ts`, JSON.stringify(job)], 0, {
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const lines = child.stdout
    .pipeThrough(new TextDecoderStream())
    .pipeThrough(splitLines())
    .getReader();
  return { child, lines, stdin: child.stdin.getWriter() };
}

function splitLines(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, controller) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const p of parts) controller.enqueue(p);
    },
    flush(controller) {
      if (rest !== "") controller.enqueue(rest);
    },
  });
}

async function nextLine(c: Client, what: string): Promise<string> {
  const { value, done } = await c.lines.read();
  if (done || value === undefined) {
    const status = await c.child.status;
    throw new Error(`Cannot ${what}: a client process exited with code ${status.code}`);
  }
  return value;
}

/** One run: `n` sessions against `server` over `transport`. */
async function run(
  server: ServerProcess,
  mode: ScaleClientJob["mode"],
  transport: "tcp" | "unix",
  n: number,
): Promise<ScaleFigures> {
  const busids = Array.from({ length: n }, (_, i) => busidOf(i));
  const count = Math.min(CLIENTS, n);
  const clients: Client[] = [];
  for (let c = 0; c < count; c++) {
    clients.push(spawnClient({
      transport,
      tcpPort: server.tcpPort,
      unixPath: server.unixPath,
      mode,
      busids: busids.filter((_, i) => i % count === c),
      size: SIZE,
      warmup: WARMUP_SECONDS,
      windows: WINDOWS,
      seconds: SECONDS / 2,
    }));
  }
  try {
    for (const c of clients) {
      const line = await nextLine(c, "open the sessions");
      if (line !== "ready") throw new Error(`Cannot open the sessions: a client said ${line}`);
    }
    const go = new TextEncoder().encode("go\n");
    await Promise.all(clients.map((c) => c.stdin.write(go)));
    // The clients warm up for as long, then measure.
    await new Promise((resolve) => setTimeout(resolve, WARMUP_SECONDS * 1000));
    const serverCpu0 = cpuSeconds(server.pid);
    const t0 = performance.now();
    let rss = rssKiB(server.pid);
    const sampler = setInterval(() => rss = Math.max(rss, rssKiB(server.pid)), 100);
    let results: ScaleClientResult[];
    let clientCpu: number;
    let serverCpu: number;
    try {
      results = await Promise.all(
        clients.map(async (c) => {
          const r = JSON.parse(await nextLine(c, "run the sessions")) as ScaleClientResult;
          return r;
        }),
      );
      // Taken after the last result: CPU time of the whole run, teardown excluded.
      const wall = (performance.now() - t0) / 1000;
      serverCpu = (cpuSeconds(server.pid) - serverCpu0) / wall * 100;
      clientCpu = results.reduce((s, r) => s + r.cpu, 0) / wall * 100;
    } finally {
      clearInterval(sampler);
    }
    const histogram = new Histogram();
    for (const r of results) histogram.merge(r.histogram);
    // Window k of every client covers the same span (they started together): its rate is the
    // sum of their URBs over the span.
    const rates = results[0]!.windows.map((_, k) => {
      const urbs = results.reduce((sum, r) => sum + (r.windows[k]?.urbs ?? 0), 0);
      const seconds = Math.max(...results.map((r) => r.windows[k]?.seconds ?? 0));
      return urbs / seconds;
    });
    const urbsPerSecond = median(rates);
    return {
      urbsPerSecond,
      mbPerSecond: urbsPerSecond * SIZE / 1e6,
      p50: histogram.quantile(0.5),
      p99: histogram.quantile(0.99),
      rss,
      serverCpu,
      clientCpu,
    };
  } finally {
    for (const c of clients) {
      await c.stdin.close().catch(() => {});
      c.lines.cancel().catch(() => {});
      await c.child.status;
    }
  }
}

/** Every count over TCP and the unix socket, gateway then baseline; rows per figure. */
export async function scaleSection(dir: string): Promise<Row[]> {
  const rows: Row[] = [];
  for (const transport of ["tcp", "unix"] as const) {
    const mb: Record<number, [number, number]> = {};
    for (const n of COUNTS) {
      const gateway = await startGateway(dir, n, 1);
      let g: ScaleFigures;
      try {
        g = await run(gateway, "gateway", transport, n);
      } finally {
        await gateway.stop();
      }
      const raw = await startBaseline("_raw_echo_server.ts", dir, 1);
      let r: ScaleFigures;
      try {
        r = await run(raw, "raw", transport, n);
      } finally {
        await raw.stop();
      }
      mb[n] = [g.mbPerSecond, r.mbPerSecond];
      const row = (figure: string, gv: number, rv: number, digits = 0): Row => ({
        section: "scale",
        transport,
        figure: `N=${n}: ${figure}`,
        usbipgw: num(gv, digits),
        baseline: num(rv, digits),
        ratio: ratio(gv, rv),
        target: "",
      });
      rows.push(
        row("URB/s (16 KiB OUT+IN)", g.urbsPerSecond, r.urbsPerSecond),
        row("MB/s", g.mbPerSecond, r.mbPerSecond),
        row("p50 latency, µs", g.p50, r.p50),
        row("p99 latency, µs", g.p99, r.p99),
        row("server RSS, MiB", g.rss / 1024, r.rss / 1024, 1),
        row("server CPU, % of a core", g.serverCpu, r.serverCpu),
        row(
          "server CPU per URB, µs",
          g.serverCpu * 1e4 / g.urbsPerSecond,
          r.serverCpu * 1e4 / r.urbsPerSecond,
          1,
        ),
        row("clients' CPU, % of a core", g.clientCpu, r.clientCpu),
      );
    }
    if (mb[16] !== undefined && mb[256] !== undefined) {
      const change = (pair16: number, pair256: number) => (pair256 / pair16 - 1) * 100;
      const g = change(mb[16][0], mb[256][0]);
      const r = change(mb[16][1], mb[256][1]);
      rows.push({
        section: "scale",
        transport,
        figure: "MB/s change from N=16 to N=256, %",
        usbipgw: num(g, 1),
        baseline: num(r, 1),
        ratio: "",
        target: verdict("drop <= 20%", g >= -20),
      });
    }
  }
  return rows;
}

/** How the scale runs shared the cores, for the table's heading. */
export function scaleSetup(): string {
  return PIN
    ? `scale: server on CPU 1, ${CLIENTS} client processes on CPU 0 (taskset)`
    : `scale: server and ${CLIENTS} client processes share the CPUs`;
}
