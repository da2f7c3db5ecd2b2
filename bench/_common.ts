// Shared pieces of the benchmark (bench/main.ts): sockets, the gateway and baseline processes,
// /proc readings (RSS, CPU time), the USB/IP requests the clients send, and latency histograms.
import { encodeSetupPacket, Request, TransferFlags } from "../mod.ts";
import { encodeCmdSubmit, encodeOpReqImport } from "../protocol.ts";

/** The USB/IP URB header size, also the raw baseline's header size. */
export const HEADER = 48;
/** The repository root, with a trailing slash. */
export const ROOT: string = new URL("..", import.meta.url).pathname;
/** Seconds each measured case runs (BENCH_SECONDS, default 2). */
export const SECONDS: number = Number(Deno.env.get("BENCH_SECONDS") ?? 2);
/**
 * Seconds of the same traffic before each measured case, not counted (BENCH_WARMUP, default
 * 1): the figures are the steady state, after the JIT compiled the data path of every session
 * and the heap grew to its working size, for the gateway and the baseline alike.
 */
export const WARMUP_SECONDS: number = Number(Deno.env.get("BENCH_WARMUP") ?? 1);

/** A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

/** Reads exactly `buf.length` bytes; throws if the peer closes first. */
export async function readFull(conn: Deno.Conn, buf: Uint8Array): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const n = await conn.read(off === 0 ? buf : buf.subarray(off));
    if (n === null) throw new Error("The server closed the connection");
    off += n;
  }
}

/** Writes all of `buf`. */
export async function writeAll(conn: Deno.Conn, buf: Uint8Array): Promise<void> {
  let off = 0;
  while (off < buf.length) off += await conn.write(off === 0 ? buf : buf.subarray(off));
}

/** Where a server listens. */
export interface Endpoints {
  tcpPort: number;
  unixPath: string;
}

/** Connects over `transport` (TCP with TCP_NODELAY). */
export async function connectTo(
  ep: Endpoints,
  transport: "tcp" | "unix",
): Promise<Deno.Conn> {
  if (transport === "unix") {
    return await Deno.connect({ transport: "unix", path: ep.unixPath }) as Deno.Conn;
  }
  const c = await Deno.connect({ hostname: "127.0.0.1", port: ep.tcpPort });
  c.setNoDelay(true);
  return c as Deno.Conn;
}

/** Resident set size of process `pid` in KiB (VmRSS of /proc/PID/status). */
export function rssKiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!m) throw new Error(`Cannot read the RSS of process ${pid}: no VmRSS line`);
  return Number(m[1]);
}

/** User and system CPU seconds in a /proc stat file's text (100 ticks/s), and its command name. */
export function statTimes(stat: string): { name: string; user: number; system: number } {
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return {
    name: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")),
    user: Number(fields[11]) / 100,
    system: Number(fields[12]) / 100,
  };
}

/** User + system CPU seconds used so far by process `pid` (/proc/PID/stat). */
export function cpuSeconds(pid: number): number {
  const { user, system } = statTimes(Deno.readTextFileSync(`/proc/${pid}/stat`));
  return user + system;
}

/** A thread's name, the user and system CPU seconds it has used so far, and how often it slept. */
export interface ThreadTimes {
  name: string;
  user: number;
  system: number;
  /** Times it gave up the CPU to wait (voluntary_ctxt_switches): each one a wake-up later. */
  waits: number;
}

/**
 * The CPU seconds and waits of each thread of process `pid` so far, by thread id
 * (/proc/PID/task/TID/stat and status); names are Linux's, cut to 15 bytes ("tokio-runtime-w").
 */
export function threadSeconds(pid: number): Map<string, ThreadTimes> {
  const threads = new Map<string, ThreadTimes>();
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    const dir = `/proc/${pid}/task/${task.name}`;
    try {
      const status = Deno.readTextFileSync(`${dir}/status`);
      const waits = Number(/^voluntary_ctxt_switches:\s+(\d+)$/m.exec(status)?.[1] ?? NaN);
      threads.set(task.name, { ...statTimes(Deno.readTextFileSync(`${dir}/stat`)), waits });
    } catch {
      // The thread ended.
    }
  }
  return threads;
}

/**
 * A tool's own arguments and the gateway's, which follow `--` on its command line:
 * `[in, 64] -- --capture F` gives `{ own: ["in", "64"], serve: ["--capture", "F"] }`.
 */
export function splitServeArgs(args: readonly string[]): { own: string[]; serve: string[] } {
  const dashes = args.indexOf("--");
  return dashes < 0
    ? { own: [...args], serve: [] }
    : { own: args.slice(0, dashes), serve: args.slice(dashes + 1) };
}

/** The median of `values` (0 for none). */
export function median(values: number[]): number {
  if (values.length === 0) return 0;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * The median of the ratios `a[i] / b[i]` of runs made in pairs, one right after the other: on
 * this machine the load drifts over seconds, and a pair's two runs share it, so this figure
 * is steadier than the ratio of the two medians.
 */
export function pairedRatio(a: readonly number[], b: readonly number[]): number {
  return median(a.map((x, i) => x / b[i]!));
}

/** The median of `count` RSS samples taken `everyMs` apart, in KiB. */
export async function settledRss(pid: number, count = 5, everyMs = 100): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    if (i > 0) await sleep(everyMs);
    samples.push(rssKiB(pid));
  }
  return median(samples);
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * CPU pinning, off unless BENCH_PIN=1: then the server under test runs on CPU 1 and the
 * client processes on CPU 0 (with `taskset`, on a machine with two or more CPUs). Off, the
 * kernel shares all CPUs between them, which copes far better with other load on the machine.
 */
export const PIN: boolean = (() => {
  if (Deno.env.get("BENCH_PIN") !== "1" || navigator.hardwareConcurrency < 2) return false;
  try {
    return new Deno.Command("taskset", { args: ["-V"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
})();

/** A `Deno.Command` for `deno run -A ARGS`, pinned to `cpu` when pinning is on. */
export function denoCommand(
  args: string[],
  cpu: number | undefined,
  options: Omit<Deno.CommandOptions, "args">,
): Deno.Command {
  const deno = ["run", "-A", ...args];
  if (PIN && cpu !== undefined) {
    return new Deno.Command("taskset", {
      ...options,
      args: ["-c", String(cpu), Deno.execPath(), ...deno],
    });
  }
  return new Deno.Command(Deno.execPath(), { ...options, args: deno });
}

/** A server process started for a measurement. */
export interface ServerProcess extends Endpoints {
  /** The server's process id (taskset execs it, so this is the Deno process). */
  pid: number;
  /** Sends SIGTERM and waits for it to exit. */
  stop(): Promise<void>;
}

/** A server this process started, whose stderr it relays. */
export interface StartedServer extends ServerProcess {
  /** The last 64 KiB it wrote to stderr (which is passed on to this process's stderr as well). */
  stderr(): string;
}

/** The most of a server's stderr kept for {@linkcode ServerProcess.stderr}. */
const STDERR_KEPT = 64 * 1024;

/** The bus id of the `i`-th (0-based) emulated device: 1-1 .. 1-128, 2-1 .. 2-128, ... */
export function busidOf(i: number): string {
  return `${1 + Math.floor(i / 128)}-${1 + (i % 128)}`;
}

/** Waits until `connect` succeeds (the server accepts), for up to 20 s. */
export async function waitForSocket(connect: () => Promise<Deno.Conn>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    try {
      (await connect()).close();
      return;
    } catch {
      await sleep(50);
    }
  }
  throw new Error("The server did not start");
}

/**
 * Runs `deno run -A ARGS` as a server on `ep`; resolves once it accepts connections on both
 * endpoints, or stops it and throws.
 */
async function startServer(
  args: string[],
  cpu: number | undefined,
  ep: Endpoints,
): Promise<StartedServer> {
  const child = denoCommand(args, cpu, { stdin: "null", stdout: "null", stderr: "piped" })
    .spawn();
  let stderr = "";
  const decoder = new TextDecoder();
  const relayed = child.stderr.pipeTo(
    new WritableStream({
      async write(chunk) {
        stderr = (stderr + decoder.decode(chunk, { stream: true })).slice(-STDERR_KEPT);
        await Deno.stderr.write(chunk);
      },
    }),
  ).catch(() => {});
  const server: StartedServer = {
    ...ep,
    pid: child.pid,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
      await child.status;
      await relayed;
    },
    stderr: () => stderr,
  };
  try {
    await waitForSocket(() => connectTo(ep, "tcp"));
    await waitForSocket(() => connectTo(ep, "unix"));
  } catch (e) {
    await server.stop();
    throw e;
  }
  return server;
}

/** `serve` on `ep`'s TCP port (127.0.0.1) and unix path, logging warnings and worse. */
export function serveArgs(ep: Endpoints): string[] {
  return [
    "serve",
    "--tcp",
    `127.0.0.1:${ep.tcpPort}`,
    "--unix",
    ep.unixPath,
    "--log-level",
    "warning",
  ];
}

/**
 * Starts `main.ts serve` with `devices` Gadget Zeros (bus ids from {@linkcode busidOf}) on a
 * free TCP port and a unix socket in `dir`, with the connection limits lifted and TCP peers
 * allowed, and `extraArgs` after; resolves once it accepts connections.
 */
export async function startGateway(
  dir: string,
  devices: number,
  cpu?: number,
  extraArgs: readonly string[] = [],
  root: string = ROOT,
): Promise<StartedServer> {
  const ep = { tcpPort: freePort(), unixPath: `${dir}/gw-${crypto.randomUUID()}.sock` };
  const args = [
    `${root}main.ts`,
    ...serveArgs(ep),
    "--rule",
    "allow:transport=tcp",
    "--max-connections",
    "unlimited",
    "--max-connections-per-peer",
    "unlimited",
  ];
  for (let i = 0; i < devices; i++) args.push("--device", `gadget-zero:busid=${busidOf(i)}`);
  args.push(...extraArgs);
  return await startServer(args, cpu, ep);
}

/** `main.ts serve` of the source tree at `root` (with a trailing slash), as {@linkcode startGateway}. */
export function startGatewayAt(
  root: string,
  dir: string,
  extraArgs: readonly string[] = [],
): Promise<StartedServer> {
  return startGateway(dir, 1, undefined, extraArgs, root);
}

/**
 * The source tree of commit `rev` extracted into a new folder in `dir` (`git archive`), with a
 * trailing slash, or why it cannot be had (no git, no such commit).
 */
export async function extractTree(rev: string, dir: string): Promise<string | { missing: string }> {
  const tree = `${dir}/tree-${crypto.randomUUID()}/`;
  await Deno.mkdir(tree);
  try {
    const git = new Deno.Command("git", {
      args: ["-C", ROOT, "archive", "--format=tar", rev],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const tar = new Deno.Command("tar", { args: ["-x", "-C", tree], stdin: "piped" }).spawn();
    await git.stdout.pipeTo(tar.stdin);
    const [g, t] = await Promise.all([git.output(), tar.status]);
    if (!g.success || !t.success) {
      return { missing: `git archive ${rev}: ${new TextDecoder().decode(g.stderr).trim()}` };
    }
    return tree;
  } catch (e) {
    return { missing: `git archive ${rev}: ${(e as Error).message}` };
  }
}

/** Starts a baseline server script from bench/ with a TCP port and a unix path, as the gateway. */
export async function startBaseline(
  script: string,
  dir: string,
  cpu?: number,
): Promise<StartedServer> {
  const ep = { tcpPort: freePort(), unixPath: `${dir}/base-${crypto.randomUUID()}.sock` };
  return await startServer([`${ROOT}bench/${script}`, String(ep.tcpPort), ep.unixPath], cpu, ep);
}

/** SET_CONFIGURATION(`value`) as a CMD_SUBMIT on ep0. */
function setConfiguration(devid: number, value: number): Uint8Array {
  return encodeCmdSubmit({
    kind: "cmd_submit",
    seqnum: 0xffff0000,
    devid,
    direction: 0,
    ep: 0,
    transferFlags: 0,
    transferBufferLength: 0,
    startFrame: 0,
    numberOfPackets: 0,
    interval: 0,
    setup: encodeSetupPacket({
      bmRequestType: 0,
      bRequest: Request.SET_CONFIGURATION,
      wValue: value,
      wIndex: 0,
      wLength: 0,
    }),
    data: new Uint8Array(0),
    isoPackets: [],
  });
}

/**
 * Imports `busid` and selects Gadget Zero's source/sink configuration (3); returns the devid.
 * Throws if the gateway refuses the import.
 */
export async function importGadgetZero(conn: Deno.Conn, busid: string): Promise<number> {
  await writeAll(conn, encodeOpReqImport(busid));
  const head = new Uint8Array(8);
  await readFull(conn, head);
  const status = new DataView(head.buffer).getUint32(4);
  if (status !== 0) throw new Error(`Cannot import ${busid}: OP_REP_IMPORT status ${status}`);
  const record = new Uint8Array(312);
  await readFull(conn, record);
  const v = new DataView(record.buffer);
  const devid = (v.getUint32(288) << 16) | v.getUint32(292);
  await writeAll(conn, setConfiguration(devid, 3));
  const ret = new Uint8Array(HEADER);
  await readFull(conn, ret);
  const urbStatus = new DataView(ret.buffer).getInt32(0x14);
  if (urbStatus !== 0) throw new Error(`Cannot configure ${busid}: status ${urbStatus}`);
  return devid;
}

/** One kind of request a client repeats: its bytes (seqnum at offset 4) and reply length. */
export interface Request {
  bytes: Uint8Array;
  replyLength: number;
}

/** A bulk CMD_SUBMIT on ep 1 (`size` bytes IN or OUT) for device `devid`. */
export function urbRequest(devid: number, dirIn: boolean, size: number): Request {
  const bytes = encodeCmdSubmit({
    kind: "cmd_submit",
    seqnum: 0,
    devid,
    direction: dirIn ? 1 : 0,
    ep: 1,
    transferFlags: dirIn ? TransferFlags.URB_DIR_IN : 0,
    transferBufferLength: size,
    startFrame: 0,
    numberOfPackets: 0,
    interval: 0,
    setup: new Uint8Array(8),
    data: new Uint8Array(dirIn ? 0 : size),
    isoPackets: [],
  });
  return { bytes, replyLength: HEADER + (dirIn ? size : 0) };
}

/** The raw baseline's request of the same shape: the same bytes on the wire each way. */
export function rawRequest(dirIn: boolean, size: number): Request {
  const bytes = new Uint8Array(HEADER + (dirIn ? 0 : size));
  const view = new DataView(bytes.buffer);
  view.setUint32(0x18, dirIn ? 0 : size);
  view.setUint32(0x1c, dirIn ? size : 0);
  return { bytes, replyLength: HEADER + (dirIn ? size : 0) };
}

/** Sets the seqnum field of a request in place and returns its bytes. */
export function withSeqnum(r: Request, seqnum: number): Uint8Array {
  new DataView(r.bytes.buffer, r.bytes.byteOffset).setUint32(4, seqnum);
  return r.bytes;
}

/**
 * A latency histogram in log-spaced buckets (16 per doubling, about 4.4% wide) from 1 µs up;
 * mergeable by adding the counts.
 */
export class Histogram {
  readonly counts: number[] = [];
  total = 0;

  /** Records one latency in microseconds. */
  add(us: number): void {
    const b = us <= 1 ? 0 : Math.floor(Math.log2(us) * 16);
    while (this.counts.length <= b) this.counts.push(0);
    this.counts[b]!++;
    this.total++;
  }

  /** Adds the counts of another histogram (as sent between processes). */
  merge(counts: number[]): void {
    for (let b = 0; b < counts.length; b++) {
      while (this.counts.length <= b) this.counts.push(0);
      this.counts[b]! += counts[b]!;
      this.total += counts[b]!;
    }
  }

  /** The `q` quantile (0..1) in microseconds: the middle of its bucket. */
  quantile(q: number): number {
    const rank = Math.ceil(q * this.total);
    let seen = 0;
    for (let b = 0; b < this.counts.length; b++) {
      seen += this.counts[b]!;
      if (seen >= rank && seen > 0) return 2 ** ((b + 0.5) / 16);
    }
    return 0;
  }
}

/** A Chrome DevTools Protocol session with a V8 inspector (`deno run --inspect=...`). */
export interface InspectorSession {
  /** Calls `method` and resolves with its result. */
  call(method: string, params?: unknown): Promise<Record<string, unknown>>;
  close(): void;
}

/** Opens a session with the first target of the inspector listening on 127.0.0.1:`port`. */
export async function openInspector(port: number): Promise<InspectorSession> {
  const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
  if (targets.length === 0) throw new Error("The inspector has no target yet");
  const socket = new WebSocket(targets[0].webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new Error("Cannot connect to the inspector"));
  });
  const calls = new Map<number, (result: Record<string, unknown>) => void>();
  socket.onmessage = (e) => {
    const m = JSON.parse(e.data);
    calls.get(m.id)?.(m.result ?? {});
    calls.delete(m.id);
  };
  let id = 0;
  return {
    call: (method, params = {}) =>
      new Promise((resolve) => {
        calls.set(++id, resolve);
        socket.send(JSON.stringify({ id, method, params }));
      }),
    close: () => socket.close(),
  };
}
