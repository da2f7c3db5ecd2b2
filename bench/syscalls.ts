// What one URB costs each thread and the kernel, for the gateway and the raw server (bench/
// _raw_echo_server.ts) side by side on one case. A plain run gives each server's CPU time and
// wake-ups per URB by thread (/proc/PID/task/TID/stat, and voluntary_ctxt_switches of status:
// each time a thread slept, to be woken again). A run under `strace -c -f` then counts the
// system calls per URB; strace slows the server until requests wait for it, so its counts of
// calls that wait (epoll_wait, futex) are low, and the wake-ups come from the plain run.
// Usage: deno run -A bench/syscalls.ts [in|out] [SIZE] [DEPTH] [tcp|unix] [-- SERVE-ARGS...]
// (default: in 64 1 tcp; BENCH_SECONDS per run; the serve arguments go to the gateway only).
import {
  connectTo,
  importGadgetZero,
  rawRequest,
  type Request,
  SECONDS,
  type ServerProcess,
  splitServeArgs,
  startBaseline,
  startGateway,
  threadSeconds,
  urbRequest,
} from "./_common.ts";
import { drive } from "./_urb.ts";

const { own, serve: serveExtra } = splitServeArgs(Deno.args);
const [dir = "in", sizeText = "64", depthText = "1", transport = "tcp"] = own;
if (transport !== "tcp" && transport !== "unix") throw new Error(`Unknown transport ${transport}`);
const dirIn = dir === "in";
const size = Number(sizeText);
const depth = Number(depthText);

/** What a server spent per URB: CPU µs and waits by thread name, and system calls by name. */
interface Costs {
  rate: number;
  cpu: Map<string, { user: number; system: number; waits: number }>;
  /** `undefined` when strace could not be run (the reason is printed). */
  calls: Map<string, number> | undefined;
}

/** The request of this case for `server`: a Gadget Zero import first for the gateway. */
type Connect = () => Promise<{ conn: Deno.Conn; request: Request }>;

async function measure(server: ServerProcess, connect: Connect): Promise<Costs> {
  const { conn, request } = await connect();
  try {
    await drive(conn, request, depth); // warm-up, not counted
    const before = threadSeconds(server.pid);
    const started = performance.now();
    const rate = await drive(conn, request, depth, 0);
    const urbs = rate * (performance.now() - started) / 1000;
    const cpu: Costs["cpu"] = new Map();
    for (const [tid, t] of threadSeconds(server.pid)) {
      const b = before.get(tid) ?? { user: 0, system: 0, waits: 0 };
      const sum = cpu.get(t.name) ?? { user: 0, system: 0, waits: 0 };
      sum.user += (t.user - b.user) * 1e6 / urbs;
      sum.system += (t.system - b.system) * 1e6 / urbs;
      sum.waits += (t.waits - b.waits) / urbs;
      cpu.set(t.name, sum);
    }
    return { rate, cpu, calls: await countCalls(server.pid, conn, request) };
  } finally {
    conn.close();
  }
}

/** System calls per URB of process `pid` while `request` goes round on `conn` under strace. */
async function countCalls(
  pid: number,
  conn: Deno.Conn,
  request: Request,
): Promise<Map<string, number> | undefined> {
  const out = await Deno.makeTempFile({ prefix: "usbipgw-strace-" });
  try {
    return await traceInto(out, pid, conn, request);
  } finally {
    await Deno.remove(out);
  }
}

/** {@linkcode countCalls}, with strace's summary written to the file `out`. */
async function traceInto(
  out: string,
  pid: number,
  conn: Deno.Conn,
  request: Request,
): Promise<Map<string, number> | undefined> {
  let strace: Deno.ChildProcess;
  try {
    strace = new Deno.Command("strace", {
      args: ["-c", "-f", "-o", out, "-p", String(pid)],
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    console.log(`No system call counts: strace cannot be run (${(e as Error).message})`);
    return undefined;
  }
  // strace says "Process PID attached" once it traces; only then do the URBs count.
  const reader = strace.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let said = "";
  while (!/attached/.test(said)) {
    const { done, value } = await reader.read();
    if (done) {
      console.log(`No system call counts: strace did not attach (${said.trim()})`);
      await strace.status;
      return undefined;
    }
    said += value;
  }
  const started = performance.now();
  const rate = await drive(conn, request, depth, 0);
  // Every URB the client sent went through the server, those it kept in flight included.
  const urbs = rate * (performance.now() - started) / 1000 + depth;
  strace.kill("SIGINT");
  reader.releaseLock();
  await strace.stderr.cancel().catch(() => {});
  await strace.status;
  const calls = new Map<string, number>();
  // "% time seconds usecs/call calls errors syscall"; the errors column may be empty.
  for (const line of (await Deno.readTextFile(out)).split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5 || !/^\d/.test(f[0]!) || f.at(-1) === "total") continue;
    calls.set(f.at(-1)!, Number(f[3]) / urbs);
  }
  return calls;
}

const tmp = await Deno.makeTempDir({ prefix: "usbipgw-syscalls-" });
const gateway = await startGateway(tmp, 1, undefined, serveExtra);
const raw = await startBaseline("_raw_echo_server.ts", tmp);
try {
  const ours = await measure(gateway, async () => {
    const conn = await connectTo(gateway, transport);
    const devid = await importGadgetZero(conn, "1-1");
    return { conn, request: urbRequest(devid, dirIn, size) };
  });
  const theirs = await measure(raw, async () => ({
    conn: await connectTo(raw, transport),
    request: rawRequest(dirIn, size),
  }));
  const rows: [string, string, string][] = [
    ["URB/s (the plain run)", ours.rate.toFixed(0), theirs.rate.toFixed(0)],
  ];
  const threads = [...new Set([...ours.cpu.keys(), ...theirs.cpu.keys()])].sort();
  const cost = (c: Costs, name: string, kind: "user" | "system" | "waits") =>
    (c.cpu.get(name)?.[kind] ?? 0).toFixed(kind === "waits" ? 2 : 1);
  for (const name of threads) {
    for (const kind of ["user", "system", "waits"] as const) {
      const a = cost(ours, name, kind);
      const b = cost(theirs, name, kind);
      if (Number(a) === 0 && Number(b) === 0) continue;
      rows.push([
        kind === "waits" ? `wake-ups per URB: ${name}` : `CPU µs per URB: ${name}, ${kind}`,
        a,
        b,
      ]);
    }
  }
  if (ours.calls !== undefined && theirs.calls !== undefined) {
    const names = [...new Set([...ours.calls.keys(), ...theirs.calls.keys()])];
    const per = (c: Costs, name: string) => c.calls!.get(name) ?? 0;
    names.sort((a, b) => per(ours, b) - per(ours, a));
    for (const name of names) {
      if (per(ours, name) < 0.005 && per(theirs, name) < 0.005) continue;
      rows.push([
        `${name} calls per URB (under strace)`,
        per(ours, name).toFixed(2),
        per(theirs, name).toFixed(2),
      ]);
    }
  }
  console.log(
    `${dir} ${size} B, ${depth} in flight, ${transport}${
      serveExtra.length > 0 ? `, serve ${serveExtra.join(" ")}` : ""
    }; ${SECONDS} s per run`,
  );
  console.log("| figure | usbipgw | raw server |");
  console.log("| --- | ---: | ---: |");
  for (const [figure, a, b] of rows) console.log(`| ${figure} | ${a} | ${b} |`);
} finally {
  await gateway.stop();
  await raw.stop();
  await Deno.remove(tmp, { recursive: true });
}
