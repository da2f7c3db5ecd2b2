// A client process of the scale benchmark (bench/_scale.ts): opens one session per bus id
// (importing the Gadget Zero there, or a plain connection to the raw baseline), prints "ready",
// waits for "go" on stdin, then has every session alternate bulk OUT and bulk IN transfers of
// `size` bytes, one in flight: `warmup` seconds not counted, then `windows` windows of
// `seconds` each. Prints one JSON line: URBs and time per window, its CPU time and a latency
// histogram.
import {
  connectTo,
  cpuSeconds,
  Histogram,
  importGadgetZero,
  rawRequest,
  readFull,
  type Request,
  urbRequest,
  withSeqnum,
  writeAll,
} from "./_common.ts";

/** What the parent asks for. */
export interface ScaleClientJob {
  transport: "tcp" | "unix";
  tcpPort: number;
  unixPath: string;
  /** "gateway": import each bus id; "raw": the raw echo server, no import. */
  mode: "gateway" | "raw";
  busids: string[];
  size: number;
  /** Seconds of traffic before the measurement starts. */
  warmup: number;
  /** Measured windows, each `seconds` long. */
  windows: number;
  seconds: number;
}

/** What the client reports. */
export interface ScaleClientResult {
  /** URBs completed in each window, and the window's length in seconds. */
  windows: { urbs: number; seconds: number }[];
  /** CPU seconds this process used during the run. */
  cpu: number;
  histogram: number[];
}

const job: ScaleClientJob = JSON.parse(Deno.args[0]!);

interface Sess {
  conn: Deno.Conn;
  out: Request;
  in: Request;
  reply: Uint8Array;
}

async function open(busid: string): Promise<Sess> {
  const conn = await connectTo(job, job.transport);
  let out: Request;
  let inReq: Request;
  if (job.mode === "gateway") {
    const devid = await importGadgetZero(conn, busid);
    out = urbRequest(devid, false, job.size);
    inReq = urbRequest(devid, true, job.size);
  } else {
    out = rawRequest(false, job.size);
    inReq = rawRequest(true, job.size);
  }
  return { conn, out, in: inReq, reply: new Uint8Array(inReq.replyLength) };
}

const sessions: Sess[] = [];
for (let i = 0; i < job.busids.length; i += 32) {
  sessions.push(...await Promise.all(job.busids.slice(i, i + 32).map(open)));
}

const stdin = Deno.stdin.readable.getReader();
const encoder = new TextEncoder();
await Deno.stdout.write(encoder.encode("ready\n"));
await stdin.read();

const histogram = new Histogram();
let urbs = 0;
let stop = false;
let measuring = false;
let cpu0 = 0;
/** The URB count at the start of each window and at the end of the last. */
const marks: { t: number; urbs: number }[] = [];
setTimeout(() => {
  measuring = true;
  cpu0 = cpuSeconds(Deno.pid);
  marks.push({ t: performance.now(), urbs: 0 });
  const tick = setInterval(() => {
    marks.push({ t: performance.now(), urbs });
    if (marks.length > job.windows) {
      clearInterval(tick);
      stop = true;
    }
  }, job.seconds * 1000);
}, job.warmup * 1000);

async function run(s: Sess): Promise<void> {
  let seq = 1;
  while (!stop) {
    for (const r of [s.out, s.in]) {
      const t0 = performance.now();
      await writeAll(s.conn, withSeqnum(r, seq++));
      await readFull(s.conn, s.reply.subarray(0, r.replyLength));
      if (!measuring) continue;
      histogram.add((performance.now() - t0) * 1000);
      urbs++;
    }
  }
}

await Promise.all(sessions.map(run));
const cpu = cpuSeconds(Deno.pid) - cpu0;
for (const s of sessions) s.conn.close();
const result: ScaleClientResult = {
  windows: marks.slice(1).map((m, i) => ({
    urbs: m.urbs - marks[i]!.urbs,
    seconds: (m.t - marks[i]!.t) / 1000,
  })),
  cpu,
  histogram: histogram.counts,
};
await Deno.stdout.write(encoder.encode(JSON.stringify(result) + "\n"));
stdin.releaseLock();
