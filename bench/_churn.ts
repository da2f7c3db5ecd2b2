// Churn: import/release cycles and hang-ups with URBs pending, against the gateway's RSS (with
// and without a full GC forced through the V8 inspector), JS heap and open descriptors, beside
// the raw echo server (bench/_raw_echo_server.ts) under the same connects, requests, closes and
// hang-ups. tests/server/churn_test.ts runs the same churn (the client code here) and checks
// the descriptors.
import { encodeSetupPacket, HidRequest, Request, RequestType } from "../mod.ts";
import {
  decodeOpRepImport,
  encodeCmdSubmit,
  encodeOpReqImport,
  encodeOpReqStatus,
  OpStatus,
  TransferFlags,
} from "../protocol.ts";
import { TextLineStream } from "@std/streams";
import {
  connectTo,
  denoCommand,
  type Endpoints,
  freePort,
  HEADER,
  type InspectorSession,
  openInspector,
  rawRequest,
  readFull,
  ROOT,
  serveArgs,
  type ServerProcess,
  settledRss,
  sleep,
  waitForSocket,
  writeAll,
} from "./_common.ts";
import { num, ratio, type Row, verdict } from "./_table.ts";

/** Import/release cycles (BENCH_CHURN_CYCLES, default 10,000). */
const CYCLES = Number(Deno.env.get("BENCH_CHURN_CYCLES") ?? 10000);
/** Hang-ups with URBs pending (BENCH_CHURN_HANGUPS, default 1,000). */
const HANGUPS = Number(Deno.env.get("BENCH_CHURN_HANGUPS") ?? 1000);
/**
 * Cycles and hang-ups before the first reading (BENCH_CHURN_WARMUP cycles, default 2,000, and a
 * tenth as many hang-ups). Measured with the node:net leak of BENCHMARKS.md ("Churn") worked
 * around: after a warm-up of 200 cycles the gateway's RSS after a full GC grew by 21 MiB over
 * the 10,000 cycles (the baseline's by 12) with a flat JS heap; after 2,000, by 9-11 MiB, no
 * more than the baseline's.
 */
const WARMUP_CYCLES = Number(Deno.env.get("BENCH_CHURN_WARMUP") ?? 2000);
const WARMUP_HANGUPS = Math.round(WARMUP_CYCLES / 10);
/** How long the server is left alone before its RSS is read, as in bench/_memory.ts. */
const SETTLE_MS = 1000;
/** Rounds of CYCLES cycles and HANGUPS hang-ups after the warm-up (see churnSection). */
const ROUNDS = 3;
/** Growth after the warm-up that still counts as flat, after a full GC, KiB (see below). */
const FLAT_KIB = 2048;
const FLAT_HEAP_KIB = 1024;

/** Connections that run import/release cycles at once, each on a Gadget Zero of its own. */
export const CYCLE_WORKERS = 8;
/** Connections that hang up at once, each with a keyboard and a Gadget Zero of its own. */
export const HANGUP_WORKERS = 4;
/**
 * Whether hang-up `i` also leaves a bulk OUT cut off mid-payload on a Gadget Zero: a quarter of
 * them, as many over TCP as over the unix socket.
 */
const cutsOut = (i: number) => i % 8 < 2;
/** Refusals as busy in a row after which an import fails. */
const MAX_BUSY = 1000;

const cycleBusid = (worker: number) => `1-${worker + 1}`;
const cutOutBusid = (worker: number) => `2-${worker + 1}`;
const keyboardBusid = (worker: number) => `3-${worker + 1}`;

/**
 * The `serve` flags of the churn: the workers' Gadget Zeros and keyboards, and a rule that lets
 * TCP peers on loopback import them (a keyboard reaches TCP peers only through a rule that
 * names it).
 */
export function churnArgs(): string[] {
  const busids: string[] = [];
  const args: string[] = [];
  const device = (type: string, busid: string) => {
    busids.push(busid);
    args.push("--device", `${type}:busid=${busid}`);
  };
  for (let w = 0; w < CYCLE_WORKERS; w++) device("gadget-zero", cycleBusid(w));
  for (let w = 0; w < HANGUP_WORKERS; w++) {
    device("gadget-zero", cutOutBusid(w));
    device("keyboard", keyboardBusid(w));
  }
  return ["--rule", `allow:transport=tcp,source=127.0.0.0/8,busid=${busids.join("|")}`, ...args];
}

/** TCP for even-numbered cycles and hang-ups, the unix socket for odd ones. */
const transportOf = (i: number) => i % 2 === 0 ? "tcp" : "unix";

/**
 * What the churn does against one server: `cycle` connects, makes one request, checks the
 * answer and closes; `hangUp` leaves work pending and closes. Both resolve with the number of
 * busy refusals they met first (see {@linkcode importDevice}).
 */
export interface Churn {
  /** Connections opened so far, busy refusals included. */
  connections: number;
  cycle(worker: number, i: number): Promise<number>;
  hangUp(worker: number, i: number): Promise<number>;
}

/**
 * Runs `n` calls of `step`, `workers` at a time, each worker one call after the other; resolves
 * with the sum of what they returned.
 */
export async function runChurn(
  n: number,
  workers: number,
  step: (worker: number, i: number) => Promise<number>,
): Promise<number> {
  let next = 0;
  let sum = 0;
  let failed = false;
  await Promise.all(Array.from({ length: workers }, async (_, w) => {
    while (next < n && !failed) {
      try {
        sum += await step(w, next++);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  }));
  return sum;
}

/** A CMD_SUBMIT without ISO packets; `data` for OUT. */
function submit(
  devid: number,
  seqnum: number,
  ep: number,
  dirIn: boolean,
  length: number,
  setup: Uint8Array = new Uint8Array(8),
  interval = 0,
): Uint8Array {
  return encodeCmdSubmit({
    kind: "cmd_submit",
    seqnum,
    devid,
    direction: dirIn ? 1 : 0,
    ep,
    transferFlags: dirIn ? TransferFlags.URB_DIR_IN : 0,
    transferBufferLength: length,
    startFrame: 0,
    numberOfPackets: 0,
    interval,
    setup,
    data: new Uint8Array(dirIn ? 0 : length),
    isoPackets: [],
  });
}

/** A control transfer on ep0 with no data stage (OUT). */
function controlOut(
  devid: number,
  seqnum: number,
  bmRequestType: number,
  bRequest: number,
  wValue: number,
) {
  const setup = encodeSetupPacket({ bmRequestType, bRequest, wValue, wIndex: 0, wLength: 0 });
  return submit(devid, seqnum, 0, false, 0, setup);
}

/**
 * Reads one RET_SUBMIT and its IN data; throws unless it answers `seqnum` with status 0.
 * Returns the data's length.
 */
async function retSubmit(conn: Deno.Conn, seqnum: number): Promise<number> {
  const head = new Uint8Array(HEADER);
  await readFull(conn, head);
  const v = new DataView(head.buffer);
  const got = v.getUint32(4);
  const status = v.getInt32(0x14);
  if (got !== seqnum || status !== 0) {
    throw new Error(`Expected RET_SUBMIT ${seqnum} with status 0, got ${got} with ${status}`);
  }
  const length = v.getUint32(0x18);
  if (length > 0) await readFull(conn, new Uint8Array(length));
  return length;
}

/** Sends a control OUT transfer and waits for its answer. */
async function controlRoundTrip(
  conn: Deno.Conn,
  devid: number,
  seqnum: number,
  bmRequestType: number,
  bRequest: number,
  wValue: number,
): Promise<void> {
  await writeAll(conn, controlOut(devid, seqnum, bmRequestType, bRequest, wValue));
  await retSubmit(conn, seqnum);
}

/**
 * Sends OP_REQ_IMPORT of `busid`; resolves with the device's devid, or `undefined` when the
 * gateway refuses it as busy; throws on any other answer.
 */
async function requestImport(conn: Deno.Conn, busid: string): Promise<number | undefined> {
  await writeAll(conn, encodeOpReqImport(busid));
  const reply = new Uint8Array(8 + 312);
  await readFull(conn, reply.subarray(0, 8));
  const status = new DataView(reply.buffer).getUint32(4);
  if (status === OpStatus.ST_DEV_BUSY) return undefined;
  if (status !== OpStatus.ST_OK) {
    throw new Error(`Import of ${busid} refused with status ${status}`);
  }
  await readFull(conn, reply.subarray(8));
  const rep = decodeOpRepImport(reply);
  if (rep.device?.busid !== busid) throw new Error(`Imported ${rep.device?.busid}, not ${busid}`);
  return (rep.device.busnum << 16) | rep.device.devnum;
}

/**
 * Connects and imports `busid`, again after each busy refusal. A device of a worker of its own
 * is refused as busy only while the gateway has not yet ended that worker's previous session:
 * the worker's close and its next import race on the gateway's event loop, and nothing tells
 * the client when the previous session ended. The refusals are counted, not hidden.
 */
async function importDevice(
  churn: Churn,
  ep: Endpoints,
  transport: "tcp" | "unix",
  busid: string,
): Promise<{ conn: Deno.Conn; devid: number; busy: number }> {
  for (let busy = 0;; busy++) {
    churn.connections++;
    const conn = await connectTo(ep, transport);
    let devid: number | undefined;
    try {
      devid = await requestImport(conn, busid);
    } finally {
      if (devid === undefined) conn.close();
    }
    if (devid !== undefined) return { conn, devid, busy };
    if (busy >= MAX_BUSY) throw new Error(`${busid} was still busy after ${busy} refusals`);
    await sleep(1);
  }
}

/**
 * The churn against the gateway (devices from {@linkcode churnArgs}). A cycle imports the
 * worker's Gadget Zero and closes. A hang-up imports the worker's keyboard, configures it,
 * sets its idle rate to 0 (an interrupt IN then waits for a key), submits 4 interrupt IN URBs
 * and then a GET_STATUS whose answer shows the 4 were read, and closes; a quarter of the
 * hang-ups also import the worker's Gadget Zero first, configure it and send a 64 KiB bulk OUT
 * of which only 32 KiB arrive, and close that connection too.
 */
export function gatewayChurn(ep: Endpoints): Churn {
  const churn: Churn = {
    connections: 0,
    async cycle(worker, i) {
      const { conn, busy } = await importDevice(churn, ep, transportOf(i), cycleBusid(worker));
      conn.close();
      return busy;
    },
    async hangUp(worker, i) {
      const transport = transportOf(i);
      const conns: Deno.Conn[] = [];
      let busy = 0;
      try {
        if (cutsOut(i)) {
          const gz = await importDevice(churn, ep, transport, cutOutBusid(worker));
          conns.push(gz.conn);
          busy += gz.busy;
          await controlRoundTrip(gz.conn, gz.devid, 1, 0, Request.SET_CONFIGURATION, 3);
          const out = submit(gz.devid, 2, 1, false, 65536);
          await writeAll(gz.conn, out.subarray(0, HEADER + 32768));
        }
        const kb = await importDevice(churn, ep, transport, keyboardBusid(worker));
        conns.push(kb.conn);
        busy += kb.busy;
        await controlRoundTrip(kb.conn, kb.devid, 1, 0, Request.SET_CONFIGURATION, 1);
        const classOut = RequestType.TYPE_CLASS | RequestType.RECIPIENT_INTERFACE;
        await controlRoundTrip(kb.conn, kb.devid, 2, classOut, HidRequest.SET_IDLE, 0);
        const getStatus = encodeSetupPacket({
          bmRequestType: RequestType.DIR_IN,
          bRequest: Request.GET_STATUS,
          wValue: 0,
          wIndex: 0,
          wLength: 2,
        });
        const requests = [3, 4, 5, 6].map((seq) =>
          submit(kb.devid, seq, 1, true, 8, undefined, 10)
        );
        requests.push(submit(kb.devid, 7, 0, true, 2, getStatus));
        await writeAll(kb.conn, new Uint8Array(requests.flatMap((r) => [...r])));
        await retSubmit(kb.conn, 7);
      } finally {
        for (const c of conns) c.close();
      }
      return busy;
    },
  };
  return churn;
}

/**
 * The same churn against the raw echo server: a cycle is one request with a reply as long as
 * OP_REP_IMPORT's (320 bytes); a hang-up one round trip, then a request announcing 64 KiB of
 * payload of which 32 KiB arrive, then the close.
 */
export function rawChurn(ep: Endpoints): Churn {
  const importLike = rawRequest(true, 320 - HEADER);
  const small = rawRequest(true, 2);
  const cut = rawRequest(false, 65536);
  const connect = (i: number) => {
    churn.connections++;
    return connectTo(ep, transportOf(i));
  };
  const churn: Churn = {
    connections: 0,
    async cycle(_worker, i) {
      const conn = await connect(i);
      try {
        await writeAll(conn, importLike.bytes);
        await readFull(conn, new Uint8Array(importLike.replyLength));
      } finally {
        conn.close();
      }
      return 0;
    },
    async hangUp(_worker, i) {
      const conn = await connect(i);
      try {
        await writeAll(conn, small.bytes);
        await readFull(conn, new Uint8Array(small.replyLength));
        await writeAll(conn, cut.bytes.subarray(0, HEADER + 32768));
      } finally {
        conn.close();
      }
      return 0;
    },
  };
  return churn;
}

/** The entries of /proc/PID/fd: the open descriptors of process `pid`. */
export function openFds(pid: number): number {
  let n = 0;
  for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
  return n;
}

/**
 * The open descriptors of `pid` once they hold still: read every 50 ms until 10 readings in a
 * row agree (closes still in flight, such as node:net's in its close phase, are over), for at
 * most `ms`; then the last reading.
 */
export async function steadyFds(pid: number, ms = 5000): Promise<number> {
  const deadline = performance.now() + ms;
  let last = openFds(pid);
  let same = 0;
  while (same < 10 && performance.now() < deadline) {
    await sleep(50);
    const n = openFds(pid);
    same = n === last ? same + 1 : 0;
    last = n;
  }
  return last;
}

/** The gateway's open sessions and held devices, from OP_REQ_STATUS over its unix socket. */
export async function gatewayLoad(
  ep: Endpoints,
): Promise<{ sessions: number; held: number; total: number }> {
  const conn = await connectTo(ep, "unix");
  try {
    await writeAll(conn, encodeOpReqStatus());
    const head = new Uint8Array(12);
    await readFull(conn, head);
    const v = new DataView(head.buffer);
    if (v.getUint32(4) !== OpStatus.ST_OK) throw new Error("The gateway refused the status");
    const json = new Uint8Array(v.getUint32(8));
    await readFull(conn, json);
    const status = JSON.parse(new TextDecoder().decode(json)) as {
      sessions: unknown[];
      devices: { session: number | null }[];
      totals: { sessions: number };
    };
    return {
      // This request's own session is not counted.
      sessions: status.sessions.length - 1,
      held: status.devices.filter((d) => d.session !== null).length,
      total: status.totals.sessions,
    };
  } finally {
    conn.close();
  }
}

/**
 * Waits until the gateway has ended every session but the status request's and released every
 * device, for at most `ms`; throws if it has not. Resolves with the sessions the gateway has
 * served since it started (from the last status, whose own session is among them) and the
 * number of status requests made.
 */
export async function waitForNoSessions(
  ep: Endpoints,
  ms = 10000,
): Promise<{ total: number; requests: number }> {
  const deadline = performance.now() + ms;
  let load = await gatewayLoad(ep);
  let requests = 1;
  while ((load.sessions > 0 || load.held > 0) && performance.now() < deadline) {
    await sleep(100);
    load = await gatewayLoad(ep);
    requests++;
  }
  if (load.sessions > 0 || load.held > 0) {
    throw new Error(
      `After ${ms} ms the gateway still had ${load.sessions} sessions, ${load.held} devices held`,
    );
  }
  return { total: load.total, requests };
}

/**
 * A server started as bench/_common.ts starts them (`deno run -A`, pinned when BENCH_PIN=1),
 * with the V8 inspector on a loopback port, which lets the bench force a full GC before it reads
 * the RSS: the gateway cannot be told to collect otherwise. Nothing else is asked of the
 * inspector (no domain is enabled). The server's stderr is passed on, but for the inspector's
 * own lines and the warnings the cut-off bulk OUTs are expected to cause.
 */
interface InspectedServer extends ServerProcess {
  /** Runs a full GC; resolves with the bytes the JS heap still uses. */
  collect(): Promise<number>;
}

/** Lines of a churned server's stderr not passed on. */
const EXPECTED_STDERR = [
  /^Debugger (listening on|session started|session ended)|^Visit chrome:\/\/inspect/,
  /closing on a protocol error: Cannot decode CMD_SUBMIT: length ends after 32768 of 65536/,
  /^usbipgw: stopped on SIGTERM/,
];

async function startInspected(args: string[], ep: Endpoints): Promise<InspectedServer> {
  const inspectPort = freePort();
  const child = denoCommand([`--inspect=127.0.0.1:${inspectPort}`, ...args], 1, {
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const pump = (async () => {
    const lines = child.stderr.pipeThrough(new TextDecoderStream()).pipeThrough(
      new TextLineStream(),
    );
    for await (const line of lines) {
      if (!EXPECTED_STDERR.some((p) => p.test(line))) console.error(line);
    }
  })();
  let inspector: InspectorSession | undefined;
  const stop = async () => {
    inspector?.close();
    try {
      child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await child.status;
    await pump;
  };
  try {
    await waitForSocket(() => connectTo(ep, "tcp"));
    await waitForSocket(() => connectTo(ep, "unix"));
    const session = inspector = await openInspector(inspectPort);
    return {
      ...ep,
      pid: child.pid,
      stop,
      async collect() {
        await session.call("HeapProfiler.collectGarbage");
        return (await session.call("Runtime.getHeapUsage")).usedSize as number;
      },
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** RSS readings, KiB: settled (no GC forced, as bench/_memory.ts reads it), then after a GC. */
interface Reading {
  settled: number;
  collected: number;
  /** Bytes the JS heap uses after the GC. */
  heap: number;
}

/** What one server showed under the churn. */
interface Figures {
  /** After the warm-up, then after each round. */
  readings: Reading[];
  /** Open descriptors after the warm-up and at the end. */
  fds: [number, number];
  /** Cycles per second (the first round's), and busy refusals retried. */
  cyclesPerSecond: number;
  busy: number;
}

/**
 * Runs the warm-up, then ROUNDS rounds of the cycles and the hang-ups against `server`, reading
 * RSS and fds after each.
 */
async function measure(server: InspectedServer, churn: Churn, gateway: boolean): Promise<Figures> {
  const read = async (): Promise<Reading> => {
    if (gateway) await waitForNoSessions(server);
    await sleep(SETTLE_MS);
    const settled = await settledRss(server.pid);
    const heap = await server.collect();
    await sleep(SETTLE_MS);
    return { settled, collected: await settledRss(server.pid), heap };
  };
  let busy = await runChurn(WARMUP_CYCLES, CYCLE_WORKERS, churn.cycle);
  busy += await runChurn(WARMUP_HANGUPS, HANGUP_WORKERS, churn.hangUp);
  const warm = await read();
  const fdsBefore = await steadyFds(server.pid);
  let cyclesPerSecond = 0;
  const round = async (): Promise<Reading> => {
    const start = performance.now();
    busy += await runChurn(CYCLES, CYCLE_WORKERS, churn.cycle);
    cyclesPerSecond ||= CYCLES / ((performance.now() - start) / 1000);
    busy += await runChurn(HANGUPS, HANGUP_WORKERS, churn.hangUp);
    return await read();
  };
  const readings = [warm];
  for (let i = 0; i < ROUNDS; i++) readings.push(await round());
  return {
    readings,
    fds: [fdsBefore, await steadyFds(server.pid)],
    cyclesPerSecond,
    busy,
  };
}

/**
 * The churn rows. The RSS without a forced GC is shown, but it tells no leak: it holds whatever
 * was allocated since V8's last full GC, and it grew as much with a leak of 8 MiB of JS heap as
 * without. After a full GC the RSS of a Deno server still drifts under connection churn: the
 * raw echo server's grew by 5-13 MiB over the 10,000 cycles (glibc keeps the memory it was
 * given back: its bytes in use stayed at 9-15 MiB while its free bytes grew from 1 to 18 MiB).
 * Memory kept that way levels off (both servers' RSS after a GC grew by 20-26 MiB over the first
 * 20,000 cycles and not at all over the next 20,000); a leak grows with every session. So the
 * churn runs in ROUNDS rounds and "flat" is: RSS after a full GC grows by at most FLAT_KIB in the
 * last round, and the JS heap by less than FLAT_HEAP_KIB over all of them. A session left behind
 * whole (28 KiB of RSS per idle session in bench/_memory.ts) misses both many times over; the
 * bounds pass leaks of up to 190 bytes of RSS and 32 bytes of heap per session (11,000 a round).
 */
export async function churnSection(dir: string): Promise<Row[]> {
  let g: Figures;
  const gwEp = { tcpPort: freePort(), unixPath: `${dir}/gw-${crypto.randomUUID()}.sock` };
  const gw = await startInspected([
    `${ROOT}main.ts`,
    ...serveArgs(gwEp),
    "--max-connections-per-peer",
    "unlimited",
    ...churnArgs(),
  ], gwEp);
  try {
    g = await measure(gw, gatewayChurn(gw), true);
  } finally {
    await gw.stop();
  }
  let r: Figures;
  const baseEp = { tcpPort: freePort(), unixPath: `${dir}/base-${crypto.randomUUID()}.sock` };
  const base = await startInspected([
    `${ROOT}bench/_raw_echo_server.ts`,
    String(baseEp.tcpPort),
    baseEp.unixPath,
  ], baseEp);
  try {
    r = await measure(base, rawChurn(base), false);
  } finally {
    await base.stop();
  }
  const mib = (kib: number) => num(kib / 1024, 1);
  const both = (x: Reading) => `${mib(x.settled)} / ${mib(x.collected)}`;
  const last = ROUNDS;
  const growth = (f: Figures, k: "settled" | "collected" | "heap", from = 0, to = last) =>
    f.readings[to]![k] - f.readings[from]![k];
  const perRound = (f: Figures) =>
    f.readings.slice(1).map((x, k) => mib(x.collected - f.readings[k]!.collected)).join(" / ");
  const heapGrowth = (f: Figures) => growth(f, "heap") / 1024;
  const row = (figure: string, usbipgw: string, baseline: string, ratioText = "", target = "") => ({
    section: "churn",
    transport: "both",
    figure,
    usbipgw,
    baseline,
    ratio: ratioText,
    target,
  });
  const n = (x: number) => num(x);
  const at = [
    `after ${n(WARMUP_CYCLES)} cycles and ${n(WARMUP_HANGUPS)} hang-ups (warm-up)`,
    `after ${n(CYCLES)} import/release cycles and ${n(HANGUPS)} hang-ups with URBs pending`,
    ...Array.from({ length: ROUNDS - 1 }, (_, k) => `after round ${k + 2} of as many`),
  ];
  return [
    ...at.map((when, k) =>
      row(
        `RSS ${when}, MiB: settled / after a full GC`,
        both(g.readings[k]!),
        both(r.readings[k]!),
        ratio(g.readings[k]!.collected, r.readings[k]!.collected),
      )
    ),
    row(
      "RSS growth after a full GC in each round, MiB",
      perRound(g),
      perRound(r),
      "",
      verdict(
        `last round flat (<= ${FLAT_KIB / 1024} MiB)`,
        growth(g, "collected", last - 1, last) <= FLAT_KIB,
      ),
    ),
    row(
      "JS heap growth after a full GC over all rounds, MiB",
      mib(heapGrowth(g)),
      mib(heapGrowth(r)),
      "",
      verdict(`flat (< ${FLAT_HEAP_KIB / 1024} MiB)`, heapGrowth(g) < FLAT_HEAP_KIB),
    ),
    row(
      "open fds after the warm-up / at the end",
      `${g.fds[0]} / ${g.fds[1]}`,
      `${r.fds[0]} / ${r.fds[1]}`,
      "",
      verdict("flat (equal)", g.fds[0] === g.fds[1]),
    ),
    row(
      `cycles per second (${CYCLE_WORKERS} at a time); busy refusals retried`,
      `${n(g.cyclesPerSecond)}; ${n(g.busy)}`,
      `${n(r.cyclesPerSecond)}; ${n(r.busy)}`,
      ratio(g.cyclesPerSecond, r.cyclesPerSecond),
    ),
  ];
}
