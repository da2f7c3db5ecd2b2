// URB round trips on one session: Gadget Zero through the gateway against a raw Deno socket
// ping-pong of the same sizes (bench/_raw_echo_server.ts), one case after the other, driven
// by one lean client loop in this process.
import {
  connectTo,
  type Endpoints,
  importGadgetZero,
  rawRequest,
  readFull,
  type Request,
  SECONDS,
  startBaseline,
  startGateway,
  urbRequest,
  WARMUP_SECONDS,
  withSeqnum,
  writeAll,
} from "./_common.ts";
import { num, ratio, type Row, verdict } from "./_table.ts";

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

/** Keeps `depth` requests in flight for SECONDS; returns round trips per second. */
export async function drive(conn: Deno.Conn, request: Request, depth: number): Promise<number> {
  const reply = new Uint8Array(request.replyLength);
  let seq = 1;
  // Each request is written before the next one reuses the buffer.
  for (let i = 0; i < depth; i++) await writeAll(conn, withSeqnum(request, seq++));
  const warm = performance.now() + WARMUP_SECONDS * 1000;
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

async function gatewayRate(ep: Endpoints, transport: "tcp" | "unix", c: Case): Promise<number> {
  const conn = await connectTo(ep, transport);
  try {
    const devid = await importGadgetZero(conn, "1-1");
    return await drive(conn, urbRequest(devid, c.dirIn, c.size), c.depth);
  } finally {
    conn.close();
  }
}

async function rawRate(ep: Endpoints, transport: "tcp" | "unix", c: Case): Promise<number> {
  const conn = await connectTo(ep, transport);
  try {
    return await drive(conn, rawRequest(c.dirIn, c.size), c.depth);
  } finally {
    conn.close();
  }
}

/** Runs every case over TCP and the unix socket; two rows (URB/s, MB/s) per case. */
export async function urbSection(dir: string): Promise<Row[]> {
  const rows: Row[] = [];
  const gateway = await startGateway(dir, 1);
  const raw = await startBaseline("_raw_echo_server.ts", dir);
  try {
    for (const transport of ["tcp", "unix"] as const) {
      for (const c of CASES) {
        const g = await gatewayRate(gateway, transport, c);
        const r = await rawRate(raw, transport, c);
        const label = `${c.name}, ${c.depth} in flight`;
        const small = c.size < 1024;
        rows.push({
          section: "URB",
          transport,
          figure: `${label}: URB/s`,
          usbipgw: num(g),
          baseline: num(r),
          ratio: ratio(g, r),
          // Issue 20: one URB in flight at least 0.9 of the raw server's rate at either size.
          target: c.depth === 1 ? verdict(">= 0.90 of raw", g / r >= 0.9) : "",
        });
        const mb = (rate: number) => rate * c.size / 1e6;
        rows.push({
          section: "URB",
          transport,
          figure: `${label}: MB/s`,
          usbipgw: num(mb(g), small ? 2 : 0),
          baseline: num(mb(r), small ? 2 : 0),
          ratio: ratio(g, r),
          target: !small && c.depth > 1 ? verdict("> 1000 MB/s", mb(g) > 1000) : "",
        });
      }
    }
  } finally {
    await gateway.stop();
    await raw.stop();
  }
  return rows;
}
