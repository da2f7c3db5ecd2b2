// Memory: the RSS an idle imported session costs the gateway, against a Deno server holding
// the same number of idle connections (bench/_idle_server.ts); and the gateway's RSS under a
// client that submits 64 KiB IN URBs without reading the replies, against the raw echo server
// under the same client.
import {
  busidOf,
  connectTo,
  importGadgetZero,
  rawRequest,
  readFull,
  type Request,
  rssKiB,
  SECONDS,
  type ServerProcess,
  settledRss,
  sleep,
  startBaseline,
  startGateway,
  urbRequest,
  withSeqnum,
  writeAll,
} from "./_common.ts";
import { num, ratio, type Row, verdict } from "./_table.ts";

/** Idle sessions opened at once (BENCH_IDLE_N, default 256). */
const IDLE = Number(Deno.env.get("BENCH_IDLE_N") ?? 256);
/** How long the server is left alone before its RSS is read. */
const SETTLE_MS = 1000;

/** Opens a session the way the measured ones are opened: import and configure, or connect. */
async function openSession(
  server: ServerProcess,
  transport: "tcp" | "unix",
  gateway: boolean,
  i: number,
): Promise<Deno.Conn> {
  const conn = await connectTo(server, transport);
  if (gateway) await importGadgetZero(conn, busidOf(i));
  return conn;
}

/**
 * KiB of RSS per idle session: one session is opened and closed first (one-time costs such as
 * compiling the import path are not per session), the RSS is read after SETTLE_MS, then IDLE
 * sessions are opened and the RSS read again after SETTLE_MS; each reading is the median of
 * five samples 100 ms apart.
 */
async function idleCost(
  server: ServerProcess,
  transport: "tcp" | "unix",
  gateway: boolean,
): Promise<number> {
  (await openSession(server, transport, gateway, 0)).close();
  await sleep(SETTLE_MS);
  const before = await settledRss(server.pid);
  const conns: Deno.Conn[] = [];
  try {
    for (let i = 0; i < IDLE; i += 32) {
      const batch = Array.from({ length: Math.min(32, IDLE - i) }, (_, k) => i + k);
      conns.push(
        ...await Promise.all(batch.map((k) => openSession(server, transport, gateway, k))),
      );
    }
    await sleep(SETTLE_MS);
    const after = await settledRss(server.pid);
    return (after - before) / IDLE;
  } finally {
    for (const c of conns) c.close();
  }
}

/** What a run with a client that does not read its replies showed. */
interface NoReader {
  /** RSS growth over the whole run and over its second half, KiB. */
  growth: number;
  lateGrowth: number;
  /** Requests the client wrote in full, and replies it got once it read again. */
  written: number;
  answered: number;
  /** Whether the client's last write had been blocked for the last half second. */
  blocked: boolean;
  /** Whether a round trip worked after the replies were read. */
  open: boolean;
}

/**
 * Writes 64 KiB IN requests without reading for SECONDS (at least 2 s), sampling the server's
 * RSS; then reads every reply and makes one more round trip.
 */
async function noReader(
  server: ServerProcess,
  transport: "tcp" | "unix",
  gateway: boolean,
): Promise<NoReader> {
  const conn = await connectTo(server, transport);
  try {
    const request: Request = gateway
      ? urbRequest(await importGadgetZero(conn, "1-1"), true, 65536)
      : rawRequest(true, 65536);
    await sleep(200);
    const start = rssKiB(server.pid);
    const seconds = Math.max(SECONDS, 2);
    let stop = false;
    let written = 0;
    let lastWrite = performance.now();
    const writer = (async () => {
      let seq = 1;
      while (!stop) {
        await writeAll(conn, withSeqnum(request, seq++));
        written++;
        lastWrite = performance.now();
      }
    })();
    let peak = start;
    let middle = start;
    const t0 = performance.now();
    while (performance.now() - t0 < seconds * 1000) {
      await sleep(100);
      peak = Math.max(peak, rssKiB(server.pid));
      if (performance.now() - t0 < seconds * 500) middle = peak;
    }
    const blocked = performance.now() - lastWrite > 500;
    stop = true;
    // Read every reply while the writer finishes the request it is in.
    const reply = new Uint8Array(request.replyLength);
    let answered = 0;
    let writerDone = false;
    writer.then(() => writerDone = true, () => writerDone = true);
    while (!writerDone || answered < written) {
      await readFull(conn, reply);
      answered++;
    }
    await writer;
    await writeAll(conn, withSeqnum(request, 0xfffffff0));
    await readFull(conn, reply);
    const v = new DataView(reply.buffer);
    return {
      growth: peak - start,
      lateGrowth: peak - middle,
      written,
      answered,
      blocked,
      // The raw server echoes the seqnum too, with status 0.
      open: v.getUint32(4) === 0xfffffff0 && v.getInt32(0x14) === 0,
    };
  } finally {
    conn.close();
  }
}

/** The idle and no-reader figures over TCP and the unix socket. */
export async function memorySection(dir: string): Promise<Row[]> {
  const rows: Row[] = [];
  for (const transport of ["tcp", "unix"] as const) {
    let g: number;
    let gw = await startGateway(dir, IDLE, 1);
    try {
      g = await idleCost(gw, transport, true);
    } finally {
      await gw.stop();
    }
    let r: number;
    let base = await startBaseline("_idle_server.ts", dir, 1);
    try {
      r = await idleCost(base, transport, false);
    } finally {
      await base.stop();
    }
    rows.push({
      section: "memory",
      transport,
      figure: `RSS per idle imported session (N=${IDLE}), KiB`,
      usbipgw: num(g, 1),
      baseline: num(r, 1),
      ratio: ratio(g, r),
      target: verdict("< 64 KiB", g < 64),
    });

    let gn: NoReader;
    gw = await startGateway(dir, 1, 1);
    try {
      gn = await noReader(gw, transport, true);
    } finally {
      await gw.stop();
    }
    let rn: NoReader;
    base = await startBaseline("_raw_echo_server.ts", dir, 1);
    try {
      rn = await noReader(base, transport, false);
    } finally {
      await base.stop();
    }
    const bounded = gn.lateGrowth < 1024 && gn.blocked && gn.open && gn.answered === gn.written;
    rows.push(
      {
        section: "memory",
        transport,
        figure: "no-reader client (64 KiB IN URBs): RSS growth, MiB",
        usbipgw: num(gn.growth / 1024, 1),
        baseline: num(rn.growth / 1024, 1),
        ratio: "",
        target: "",
      },
      {
        section: "memory",
        transport,
        figure: "no-reader client: RSS growth in the second half, MiB",
        usbipgw: num(gn.lateGrowth / 1024, 1),
        baseline: num(rn.lateGrowth / 1024, 1),
        ratio: "",
        target: verdict("bounded (< 1 MiB)", gn.lateGrowth < 1024),
      },
      {
        section: "memory",
        transport,
        figure: "no-reader client: writes blocked; replies read afterwards",
        usbipgw: `${gn.blocked ? "yes" : "no"}; ${num(gn.answered)}/${num(gn.written)}`,
        baseline: `${rn.blocked ? "yes" : "no"}; ${num(rn.answered)}/${num(rn.written)}`,
        ratio: "",
        target: verdict("session stays open", bounded),
      },
    );
  }
  return rows;
}
