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
import { extractTree, median, splitServeArgs, startGateway, startGatewayAt } from "./_common.ts";
import { gatewayRun, inRounds, warmupOf } from "./_urb.ts";

const ROUNDS = Number(Deno.env.get("BENCH_AB_ROUNDS") ?? 9);

const { own, serve: serveExtra } = splitServeArgs(Deno.args);
const [rev = "HEAD", dir = "in", sizeText = "65536", depthText = "1", transport = "tcp"] = own;
if (transport !== "tcp" && transport !== "unix") throw new Error(`Unknown transport ${transport}`);
const size = Number(sizeText);
const depth = Number(depthText);

const work = await Deno.makeTempDir({ prefix: "usbipgw-ab-" });
const tree = await extractTree(rev, work);
if (typeof tree !== "string") throw new Error(tree.missing);
const sideArgs = (side: string) => serveExtra.map((a) => a.replaceAll("{side}", side));
const before = await startGatewayAt(tree, work, sideArgs("before"));
const after = await startGateway(work, 1, undefined, sideArgs("after"));
try {
  const [befores = [], afters = []] = await inRounds(
    ROUNDS,
    [{ server: before, label: rev }, { server: after, label: "tree" }].map(
      ({ server, label }) => async (round: number) => {
        const r = await gatewayRun(server, transport, dir === "in", size, depth, warmupOf(round));
        if (Deno.env.get("BENCH_AB_VERBOSE")) {
          console.log(
            `round ${round} ${label} ${r.rate.toFixed(0)} URB/s ${r.cpuUs.toFixed(1)} µs`,
          );
        }
        return r;
      },
    ),
  );
  const ratios = afters.map((r, i) => r.rate / befores[i]!.rate);
  const rates = [befores.map((r) => r.rate), afters.map((r) => r.rate)] as const;
  const cpus = [befores.map((r) => r.cpuUs), afters.map((r) => r.cpuUs)] as const;
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
