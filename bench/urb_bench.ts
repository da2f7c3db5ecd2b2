// URB round trips to Gadget Zero through the gateway, against a raw Deno socket ping-pong of
// the same sizes, in the same run. Both servers run as their own processes; one lean client
// loop drives both. Prints a table; `deno task bench` runs it.
import { encodeCmdSubmit, encodeOpReqImport, encodeSetupPacket, TransferFlags } from "../mod.ts";

const HEADER = 48;
const SECONDS = Number(Deno.env.get("BENCH_SECONDS") ?? 2);
const ROOT = new URL("..", import.meta.url).pathname;

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

async function waitForSocket(connect: () => Promise<Deno.Conn>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      (await connect()).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error("The server did not start");
}

async function readFull(conn: Deno.Conn, buf: Uint8Array): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const n = await conn.read(buf.subarray(off));
    if (n === null) throw new Error("The server closed the connection");
    off += n;
  }
}

async function writeAll(conn: Deno.Conn, buf: Uint8Array): Promise<void> {
  let off = 0;
  while (off < buf.length) off += await conn.write(buf.subarray(off));
}

/** One benchmark case: how to frame a request and how long its reply is. */
interface Case {
  name: string;
  dirIn: boolean;
  size: number;
  depth: number;
}

/** Runs `depth` requests in flight for SECONDS; returns round trips per second. */
async function drive(
  conn: Deno.Conn,
  request: (seq: number) => Uint8Array,
  replyLength: number,
  depth: number,
): Promise<number> {
  const reply = new Uint8Array(replyLength);
  let seq = 1;
  for (let i = 0; i < depth; i++) await writeAll(conn, request(seq++));
  let done = 0;
  const end = performance.now() + SECONDS * 1000;
  const start = performance.now();
  while (performance.now() < end) {
    await readFull(conn, reply);
    done++;
    await writeAll(conn, request(seq++));
  }
  const elapsed = (performance.now() - start) / 1000;
  for (let i = 0; i < depth; i++) await readFull(conn, reply);
  return done / elapsed;
}

function urbRequest(c: Case): (seq: number) => Uint8Array {
  const template = encodeCmdSubmit({
    kind: "cmd_submit",
    seqnum: 0,
    devid: 0x10002,
    direction: c.dirIn ? 1 : 0,
    ep: 1,
    transferFlags: c.dirIn ? TransferFlags.URB_DIR_IN : 0,
    transferBufferLength: c.size,
    startFrame: 0,
    numberOfPackets: 0,
    interval: 0,
    setup: new Uint8Array(8),
    data: new Uint8Array(c.dirIn ? 0 : c.size),
    isoPackets: [],
  });
  const view = new DataView(template.buffer);
  return (seq) => {
    view.setUint32(4, seq);
    return template;
  };
}

function rawRequest(c: Case): (seq: number) => Uint8Array {
  const template = new Uint8Array(HEADER + (c.dirIn ? 0 : c.size));
  const view = new DataView(template.buffer);
  view.setUint32(0x18, c.dirIn ? 0 : c.size);
  view.setUint32(0x1c, c.dirIn ? c.size : 0);
  return (seq) => {
    view.setUint32(4, seq);
    return template;
  };
}

async function importGadgetZero(conn: Deno.Conn): Promise<void> {
  await writeAll(conn, encodeOpReqImport("1-1"));
  await readFull(conn, new Uint8Array(320));
  const setConfig = encodeCmdSubmit({
    kind: "cmd_submit",
    seqnum: 0xffff0000,
    devid: 0x10002,
    direction: 0,
    ep: 0,
    transferFlags: 0,
    transferBufferLength: 0,
    startFrame: 0,
    numberOfPackets: 0,
    interval: 0,
    setup: encodeSetupPacket({ bmRequestType: 0, bRequest: 9, wValue: 3, wIndex: 0, wLength: 0 }),
    data: new Uint8Array(0),
    isoPackets: [],
  });
  await writeAll(conn, setConfig);
  await readFull(conn, new Uint8Array(HEADER));
}

const dir = await Deno.makeTempDir({ prefix: "usbipgw-bench-" });
const gwPort = freePort();
const rawPort = freePort();
const gwSock = `${dir}/gw.sock`;
const rawSock = `${dir}/raw.sock`;
const gateway = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "-A",
    `${ROOT}main.ts`,
    "serve",
    "--tcp",
    `127.0.0.1:${gwPort}`,
    "--unix",
    gwSock,
    "--device",
    "gadget-zero:busid=1-1",
    "--log-level",
    "warning",
    "--rule",
    "allow:transport=tcp",
  ],
  stdin: "null",
  stdout: "null",
}).spawn();
const raw = new Deno.Command(Deno.execPath(), {
  args: ["run", "-A", `${ROOT}bench/_raw_echo_server.ts`, String(rawPort), rawSock],
  stdin: "null",
  stdout: "null",
}).spawn();

const connect = {
  gateway: {
    tcp: async () => {
      const c = await Deno.connect({ hostname: "127.0.0.1", port: gwPort });
      c.setNoDelay(true);
      return c as Deno.Conn;
    },
    unix: () => Deno.connect({ transport: "unix", path: gwSock }) as Promise<Deno.Conn>,
  },
  raw: {
    tcp: async () => {
      const c = await Deno.connect({ hostname: "127.0.0.1", port: rawPort });
      c.setNoDelay(true);
      return c as Deno.Conn;
    },
    unix: () => Deno.connect({ transport: "unix", path: rawSock }) as Promise<Deno.Conn>,
  },
};

const cases: Case[] = [
  { name: "64 B bulk OUT", dirIn: false, size: 64, depth: 1 },
  { name: "64 B bulk IN", dirIn: true, size: 64, depth: 1 },
  { name: "64 KiB bulk IN", dirIn: true, size: 65536, depth: 1 },
  { name: "64 KiB bulk OUT", dirIn: false, size: 65536, depth: 1 },
  { name: "64 KiB bulk IN", dirIn: true, size: 65536, depth: 8 },
  { name: "64 KiB bulk OUT", dirIn: false, size: 65536, depth: 8 },
];

const rows: string[][] = [];
try {
  await waitForSocket(connect.gateway.tcp);
  await waitForSocket(connect.raw.tcp);
  for (const transport of ["tcp", "unix"] as const) {
    for (const c of cases) {
      const g = await connect.gateway[transport]();
      await importGadgetZero(g);
      const gwRate = await drive(g, urbRequest(c), HEADER + (c.dirIn ? c.size : 0), c.depth);
      g.close();
      const r = await connect.raw[transport]();
      const rawRate = await drive(r, rawRequest(c), HEADER + (c.dirIn ? c.size : 0), c.depth);
      r.close();
      const mb = (rate: number) => (rate * c.size / 1e6).toFixed(c.size >= 65536 ? 0 : 2);
      rows.push([
        transport,
        c.name,
        String(c.depth),
        Math.round(gwRate).toLocaleString("en-US"),
        Math.round(rawRate).toLocaleString("en-US"),
        (gwRate / rawRate).toFixed(2),
        mb(gwRate),
        mb(rawRate),
      ]);
    }
  }
} finally {
  gateway.kill("SIGTERM");
  raw.kill("SIGTERM");
  await gateway.status;
  await raw.status;
  await Deno.remove(dir, { recursive: true });
}

const head = [
  "transport",
  "transfer",
  "in flight",
  "usbipgw URB/s",
  "raw ping-pong/s",
  "ratio",
  "usbipgw MB/s",
  "raw MB/s",
];
const all = [head, ...rows];
const widths = head.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
console.log(
  `usbipgw URB round trips vs a raw Deno socket ping-pong, ${SECONDS} s per case, Deno ${Deno.version.deno}`,
);
console.log(line(head));
console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
for (const r of rows) console.log(line(r));
