// Startup: the time from spawning `deno run -A main.ts serve` (the demo set: Gadget Zero and a
// keyboard, on a TCP port and a unix socket) to its "usbipgw serving" log line, after which it
// accepts connections; against `deno run` of a script that only calls Deno.listen. The median
// of RUNS runs each, after one warm-up run of each (so both are compiled and cached).
import { freePort, median, ROOT } from "./_common.ts";
import { num, ratio, type Row, verdict } from "./_table.ts";

/** Runs per program (BENCH_STARTUP_RUNS, default 5). */
const RUNS = Number(Deno.env.get("BENCH_STARTUP_RUNS") ?? 5);

/**
 * Milliseconds from spawn to a stderr line matching `ready`; checks that the TCP port accepts
 * a connection at that point, then stops the process.
 */
async function timeToReady(args: string[], ready: RegExp, port: number): Promise<number> {
  const t0 = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let ms: number | undefined;
  let log = "";
  try {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) {
      log += decoder.decode(chunk, { stream: true });
      if (ready.test(log)) {
        ms = performance.now() - t0;
        break;
      }
    }
    if (ms === undefined) throw new Error(`Cannot time the startup: no ${ready} in:\n${log}`);
    (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    return ms;
  } finally {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await child.status;
  }
}

/** The gateway's startup against the listen-only script. */
export async function startupSection(dir: string): Promise<Row[]> {
  const gateway = () => {
    const port = freePort();
    return timeToReady(
      [`${ROOT}main.ts`, "serve", "--tcp", `127.0.0.1:${port}`, "--unix", `${dir}/startup.sock`],
      /usbipgw serving/,
      port,
    );
  };
  const baseline = () => {
    const port = freePort();
    return timeToReady([`${ROOT}bench/_listen_only.ts`, String(port)], /listening/, port);
  };
  await gateway();
  await baseline();
  const g: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    g.push(await gateway());
    b.push(await baseline());
  }
  const gm = median(g);
  const bm = median(b);
  return [{
    section: "startup",
    transport: "-",
    figure: `spawn to accepting, ms (median of ${RUNS})`,
    usbipgw: num(gm),
    baseline: num(bm),
    ratio: ratio(gm, bm),
    target: verdict("< 300 ms", gm < 300),
  }];
}
