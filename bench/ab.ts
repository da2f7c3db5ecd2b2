// Before and after of a change to the data path: the gateway of this working tree against the
// one of commit REV (extracted with `git archive`), with the same serve arguments, on one URB
// case through Gadget Zero. The two run in turns, ROUNDS times, each turn a fresh session; the
// figure is the median of the ratios of the two turns of each round (the second of each pair
// changes place every round), so that the machine's load, which drifts over seconds here,
// moves both sides of each ratio alike.
// Usage: deno run -A bench/ab.ts REV [in|out] [SIZE] [DEPTH] [tcp|unix] [-- SERVE-ARGS...]
// (default: HEAD in 65536 1 tcp; BENCH_AB_ROUNDS rounds, default 9; BENCH_SECONDS per turn).
// `{side}` in a serve argument becomes "before" or "after", so that the two gateways can be given
// files of their own: `-- --capture /dev/shm/ab-{side}.pcapng`.
import {
  connectTo,
  cpuSeconds,
  extractTree,
  importGadgetZero,
  median,
  type ServerProcess,
  splitServeArgs,
  startGateway,
  startGatewayAt,
  urbRequest,
} from "./_common.ts";
import { drive } from "./_urb.ts";

const ROUNDS = Number(Deno.env.get("BENCH_AB_ROUNDS") ?? 9);
/** Uncounted seconds before each turn: the session's own warm-up (the JIT is warm after the first). */
const REWARM_SECONDS = 0.3;

const { own, serve: serveExtra } = splitServeArgs(Deno.args);
const [rev = "HEAD", dir = "in", sizeText = "65536", depthText = "1", transport = "tcp"] = own;
if (transport !== "tcp" && transport !== "unix") throw new Error(`Unknown transport ${transport}`);
const size = Number(sizeText);
const depth = Number(depthText);

/** One turn: URBs per second, and the server's CPU time per URB in µs. */
async function turn(server: ServerProcess, warmup: number): Promise<[number, number]> {
  const conn = await connectTo(server, transport as "tcp" | "unix");
  try {
    const devid = await importGadgetZero(conn, "1-1");
    const cpu = cpuSeconds(server.pid);
    const started = performance.now();
    const rate = await drive(conn, urbRequest(devid, dir === "in", size), depth, warmup);
    const urbs = rate * (performance.now() - started) / 1000;
    return [rate, (cpuSeconds(server.pid) - cpu) / urbs * 1e6];
  } finally {
    conn.close();
  }
}

const work = await Deno.makeTempDir({ prefix: "usbipgw-ab-" });
const tree = await extractTree(rev, work);
if (typeof tree !== "string") throw new Error(tree.missing);
const sideArgs = (side: string) => serveExtra.map((a) => a.replaceAll("{side}", side));
const before = await startGatewayAt(tree, work, sideArgs("before"));
const after = await startGateway(work, 1, undefined, sideArgs("after"));
try {
  const ratios: number[] = [];
  const rates: [number[], number[]] = [[], []];
  const cpus: [number[], number[]] = [[], []];
  for (let i = 0; i < ROUNDS; i++) {
    const warmup = i === 0 ? 1 : REWARM_SECONDS;
    const order = i % 2 === 0 ? [0, 1] as const : [1, 0] as const;
    const got: number[] = [];
    for (const side of order) {
      const [rate, cpu] = await turn(side === 0 ? before : after, warmup);
      if (Deno.env.get("BENCH_AB_VERBOSE")) {
        console.log(
          `round ${i} ${side === 0 ? rev : "tree"} ${rate.toFixed(0)} URB/s ${cpu.toFixed(1)} µs`,
        );
      }
      got[side] = rate;
      rates[side].push(rate);
      cpus[side].push(cpu);
    }
    ratios.push(got[1]! / got[0]!);
  }
  const name = `${dir} ${size} B, ${depth} in flight, ${transport}${
    serveExtra.length > 0 ? `, serve ${serveExtra.join(" ")}` : ""
  }`;
  console.log(`${name}; ${ROUNDS} rounds`);
  console.log(`| figure                 | ${rev} | working tree | ratio |`);
  console.log(`| ---------------------- | ---: | ---: | ---: |`);
  console.log(
    `| URB/s (median)         | ${median(rates[0]).toFixed(0)} | ${median(rates[1]).toFixed(0)} | ${
      median(ratios).toFixed(2)
    } (median of paired ratios; range ${Math.min(...ratios).toFixed(2)}-${
      Math.max(...ratios).toFixed(2)
    }) |`,
  );
  console.log(
    `| server CPU per URB, µs | ${median(cpus[0]).toFixed(1)} | ${median(cpus[1]).toFixed(1)} | ${
      (median(cpus[1]) / median(cpus[0])).toFixed(2)
    } |`,
  );
} finally {
  await before.stop();
  await after.stop();
  await Deno.remove(work, { recursive: true });
}
