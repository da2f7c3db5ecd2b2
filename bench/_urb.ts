// URB round trips on one session: Gadget Zero through the gateway against a raw Deno socket
// ping-pong of the same sizes (bench/_raw_echo_server.ts), one case after the other, driven
// by one lean client loop in this process. Over unix sockets also against the same ping-pong
// over node:net (bench/_raw_node_server.ts), the socket layer the gateway's unix listener uses.
import {
  connectTo,
  cpuSeconds,
  type Endpoints,
  importGadgetZero,
  median,
  pairedRatio,
  rawRequest,
  readFull,
  type Request,
  SECONDS,
  type ServerProcess,
  startBaseline,
  startGateway,
  urbRequest,
  WARMUP_SECONDS,
  withSeqnum,
  writeAll,
} from "./_common.ts";
import { num, type Row, verdict } from "./_table.ts";

/** One case: direction, payload size and how many URBs the client keeps in flight. */
interface Case {
  name: string;
  dirIn: boolean;
  size: number;
  depth: number;
}

const CASES: Case[] = [
  { name: "64 B bulk OUT", dirIn: false, size: 64, depth: 1 },
  { name: "64 B bulk IN", dirIn: true, size: 64, depth: 1 },
  { name: "64 KiB bulk IN", dirIn: true, size: 65536, depth: 1 },
  { name: "64 KiB bulk OUT", dirIn: false, size: 65536, depth: 1 },
  { name: "64 KiB bulk IN", dirIn: true, size: 65536, depth: 8 },
  { name: "64 KiB bulk OUT", dirIn: false, size: 65536, depth: 8 },
];

/**
 * Keeps `depth` requests in flight for SECONDS after `warmupSeconds` uncounted; returns round
 * trips per second.
 */
export async function drive(
  conn: Deno.Conn,
  request: Request,
  depth: number,
  warmupSeconds = WARMUP_SECONDS,
): Promise<number> {
  const reply = new Uint8Array(request.replyLength);
  let seq = 1;
  // Each request is written before the next one reuses the buffer.
  for (let i = 0; i < depth; i++) await writeAll(conn, withSeqnum(request, seq++));
  const warm = performance.now() + warmupSeconds * 1000;
  while (performance.now() < warm) {
    await readFull(conn, reply);
    await writeAll(conn, withSeqnum(request, seq++));
  }
  let done = 0;
  const start = performance.now();
  const end = start + SECONDS * 1000;
  while (performance.now() < end) {
    await readFull(conn, reply);
    done++;
    await writeAll(conn, withSeqnum(request, seq++));
  }
  const elapsed = (performance.now() - start) / 1000;
  for (let i = 0; i < depth; i++) await readFull(conn, reply);
  return done / elapsed;
}

/**
 * Measured rounds per case and server (`BENCH_URB_ROUNDS`); each rate is their median, each
 * ratio the median of the rounds' ratios.
 */
const ROUNDS = Number(Deno.env.get("BENCH_URB_ROUNDS") ?? 5);
/** Uncounted seconds before each round after a server's first on a case (the JIT is warm). */
const REWARM_SECONDS = 0.3;

/** The uncounted seconds before a run of round `round`: the full warm-up in the first only. */
export function warmupOf(round: number): number {
  return round === 0 ? WARMUP_SECONDS : REWARM_SECONDS;
}

/**
 * Runs each of `runs` `rounds` times, in rounds in which they go one after the other (in reverse
 * order every other round), and returns each one's results in round order: a change of the
 * machine's load then moves every run of a round alike, where one run each left ratios 0.1-0.3
 * apart between runs. Compare them with {@linkcode pairedRatio}.
 */
export async function inRounds<T>(
  rounds: number,
  runs: ((round: number) => Promise<T>)[],
): Promise<T[][]> {
  const results: T[][] = runs.map(() => []);
  for (let round = 0; round < rounds; round++) {
    const order = [...runs.keys()];
    if (round % 2 === 1) order.reverse();
    for (const k of order) results[k]!.push(await runs[k]!(round));
  }
  return results;
}

/** A run on a fresh session: URBs per second, and the server's CPU time per URB in µs. */
export interface GatewayRun {
  rate: number;
  /** User + system time of all the server's threads; the warm-up's URBs count against it. */
  cpuUs: number;
}

/** Seconds past a run's own length after which a server that stopped answering fails it. */
const STALL_SECONDS = 30;

/**
 * Bulk URBs of `size` through Gadget Zero 1-1 of `server` on a fresh session (see drive). A
 * server that stops answering fails the run with an error instead of holding the bench.
 */
export async function gatewayRun(
  server: ServerProcess,
  transport: "tcp" | "unix",
  dirIn: boolean,
  size: number,
  depth: number,
  warmupSeconds = WARMUP_SECONDS,
): Promise<GatewayRun> {
  const conn = await connectTo(server, transport);
  let stalled = false;
  const watchdog = setTimeout(() => {
    stalled = true;
    conn.close();
  }, (warmupSeconds + SECONDS + STALL_SECONDS) * 1000);
  try {
    const devid = await importGadgetZero(conn, "1-1");
    const cpu = cpuSeconds(server.pid);
    const started = performance.now();
    const rate = await drive(conn, urbRequest(devid, dirIn, size), depth, warmupSeconds);
    // The warm-up ran at about the measured rate: its URBs are counted against its CPU time.
    const urbs = rate * (performance.now() - started) / 1000;
    return { rate, cpuUs: (cpuSeconds(server.pid) - cpu) / urbs * 1e6 };
  } catch (e) {
    if (!stalled) throw e;
    throw new Error(
      `The server (pid ${server.pid}) stopped answering over ${transport}: the run was not done ` +
        `${STALL_SECONDS} s after its time`,
      { cause: e },
    );
  } finally {
    clearTimeout(watchdog);
    if (!stalled) conn.close();
  }
}

async function rawRate(
  ep: Endpoints,
  transport: "tcp" | "unix",
  c: Case,
  warmup: number,
): Promise<number> {
  const conn = await connectTo(ep, transport);
  try {
    return await drive(conn, rawRequest(c.dirIn, c.size), c.depth, warmup);
  } finally {
    conn.close();
  }
}

/** Runs every case over TCP and the unix socket; two rows (URB/s, MB/s) per case. */
export async function urbSection(dir: string): Promise<Row[]> {
  const rows: Row[] = [];
  const gateway = await startGateway(dir, 1);
  const raw = await startBaseline("_raw_echo_server.ts", dir);
  const rawNode = await startBaseline("_raw_node_server.ts", dir);
  try {
    for (const transport of ["tcp", "unix"] as const) {
      for (const c of CASES) {
        const [gs = [], rs = [], ns = []] = await inRounds(ROUNDS, [
          async (round) =>
            (await gatewayRun(gateway, transport, c.dirIn, c.size, c.depth, warmupOf(round))).rate,
          (round) => rawRate(raw, transport, c, warmupOf(round)),
          ...(transport === "unix"
            ? [(round: number) => rawRate(rawNode, transport, c, warmupOf(round))]
            : []),
        ]);
        const [g, r, n] = [median(gs), median(rs), median(ns)];
        const toRaw = pairedRatio(gs, rs);
        const label = `${c.name}, ${c.depth} in flight`;
        const small = c.size < 1024;
        rows.push({
          section: "URB",
          transport,
          figure: `${label}: URB/s`,
          usbipgw: num(g),
          baseline: num(r),
          ratio: toRaw.toFixed(2),
          // Issue 20: one URB in flight at least 0.9 of the raw server's rate at either size.
          target: c.depth === 1 ? verdict(">= 0.90 of raw", toRaw >= 0.9) : "",
        });
        const mb = (rate: number) => rate * c.size / 1e6;
        rows.push({
          section: "URB",
          transport,
          figure: `${label}: MB/s`,
          usbipgw: num(mb(g), small ? 2 : 0),
          baseline: num(mb(r), small ? 2 : 0),
          ratio: toRaw.toFixed(2),
          target: !small && c.depth > 1 ? verdict("> 1000 MB/s", mb(g) > 1000) : "",
        });
        if (transport === "unix") {
          rows.push({
            section: "URB",
            transport,
            figure: `${label}: URB/s, baseline raw over node:net`,
            usbipgw: num(g),
            baseline: num(n),
            ratio: pairedRatio(gs, ns).toFixed(2),
            target: "",
          });
        }
      }
    }
  } finally {
    await gateway.stop();
    await raw.stop();
    await rawNode.stop();
  }
  return rows;
}
