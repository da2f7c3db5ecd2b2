// A seeded, time-bounded fuzz test over TCP on 127.0.0.1: malformed, truncated and oversized
// frames, random op codes and versions, garbage after an import, unlink storms, URB, reply and
// connection floods, while a control session keeps moving verified data through Gadget Zero.
// First against the real gateway process with its default limits, then against an in-process
// server with small limits. Every loop is bounded in count and in time. FUZZ_SEED replays a run.
import { errorMessage } from "../../lib/util/error_message.ts";
import { configureSync, type LogRecord, resetSync } from "@logtape/logtape";
import { assert, assertEquals } from "@std/assert";
import {
  connectTcp,
  DEFAULT_SESSION_LIMITS,
  DescriptorType,
  encodeSetupPacket,
  GadgetZero,
  importDevice,
  Request,
  requestDeviceList,
  RequestType,
  type SessionLimits,
  TcpListener,
  type UrbChannel,
  UsbipServer,
} from "../../mod.ts";
import {
  encodeCmdSubmit,
  encodeCmdUnlink,
  encodeOpReqDevlist,
  encodeOpReqImport,
} from "../../protocol.ts";
import { startGateway } from "./_gateway.ts";

const SEED = Number(Deno.env.get("FUZZ_SEED") ?? 0x5eed0b1d);
const HOST = "127.0.0.1";
const FUZZ_BUSIDS = ["1-2", "1-3", "1-4"];
const ALL_BUSIDS = ["1-1", ...FUZZ_BUSIDS];
const WORKERS = 4;
/** No single fuzz case may take longer than this; its socket is closed when it does. */
const CASE_MS = 3000;
const TIMEOUT = Symbol("timeout");

// ---------------------------------------------------------------------------------------------
// Randomness

/** mulberry32: small, fast and good enough to pick fuzz inputs reproducibly. */
class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  /** A float in [0, 1). */
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  u32(): number {
    return (this.int(0x10000) * 0x10000 + this.int(0x10000)) >>> 0;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

// ---------------------------------------------------------------------------------------------
// Bounded socket helpers

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function timed<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMEOUT> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<typeof TIMEOUT>((r) => timer = setTimeout(() => r(TIMEOUT), ms));
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

/** A raw TCP connection whose every operation is bounded in time; any failure closes it. */
class Raw {
  #conn: Deno.TcpConn;
  #buf = new Uint8Array(0);
  closed = false;
  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    conn.setNoDelay(true);
  }

  static async open(port: number): Promise<Raw | null> {
    const connecting = Deno.connect({ hostname: HOST, port });
    const r = await timed(connecting.catch(() => null), 2000);
    if (r === TIMEOUT) {
      connecting.then((c) => c.close(), () => {});
      return null;
    }
    return r === null ? null : new Raw(r);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }

  /** Writes all of `bytes`; false (and closed) if the peer hung up or it took too long. */
  async send(bytes: Uint8Array, ms = 1000): Promise<boolean> {
    if (this.closed) return false;
    const write = (async () => {
      let off = 0;
      while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
      return true;
    })().catch(() => false);
    const r = await timed(write, ms);
    if (r !== true) this.close();
    return r === true;
  }

  /** One read: the bytes, `null` at end of stream or error, TIMEOUT (and closed) if none came. */
  async #readSome(ms: number): Promise<Uint8Array | null | typeof TIMEOUT> {
    if (this.closed) return null;
    const chunk = new Uint8Array(64 * 1024);
    const r = await timed(this.#conn.read(chunk).catch(() => null), ms);
    if (r === TIMEOUT) {
      this.close();
      return TIMEOUT;
    }
    if (r === null) {
      this.close();
      return null;
    }
    return chunk.subarray(0, r);
  }

  /** Reads exactly `n` bytes within `ms`; `null` if the stream ended or time ran out. */
  async recv(n: number, ms = 2000): Promise<Uint8Array | null> {
    const end = Date.now() + ms;
    while (this.#buf.length < n) {
      const left = end - Date.now();
      if (left <= 0) return null;
      const got = await this.#readSome(left);
      if (got === null || got === TIMEOUT) return null;
      const next = new Uint8Array(this.#buf.length + got.length);
      next.set(this.#buf);
      next.set(got, this.#buf.length);
      this.#buf = next;
    }
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.slice(n);
    return out;
  }

  /** Discards input until the peer closes (true) or `ms` pass (false); closes either way. */
  async waitClosed(ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    while (true) {
      const left = end - Date.now();
      if (left <= 0) break;
      const got = await this.#readSome(left);
      if (got === null) return true;
      if (got === TIMEOUT) return false;
    }
    this.close();
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Frames

function u32be(view: DataView, off: number, v: number) {
  view.setUint32(off, v >>> 0);
}

function opFrame(version: number, code: number, status: number, body?: Uint8Array) {
  const b = new Uint8Array(8 + (body?.length ?? 0));
  const v = new DataView(b.buffer);
  v.setUint16(0, version & 0xffff);
  v.setUint16(2, code & 0xffff);
  u32be(v, 4, status);
  if (body) b.set(body, 8);
  return b;
}

interface SubmitSpec {
  seqnum: number;
  ep: number;
  dirIn: boolean;
  length: number;
  data?: Uint8Array;
  setup?: Uint8Array;
  numberOfPackets?: number;
}

function submit(s: SubmitSpec): Uint8Array {
  return encodeCmdSubmit({
    kind: "cmd_submit",
    seqnum: s.seqnum,
    devid: 0x10002,
    direction: s.dirIn ? 1 : 0,
    ep: s.ep,
    transferFlags: s.dirIn ? 0x200 : 0,
    transferBufferLength: s.length,
    startFrame: 0,
    numberOfPackets: s.numberOfPackets ?? 0,
    interval: 0,
    setup: s.setup ?? new Uint8Array(8),
    data: s.data ?? new Uint8Array(0),
    isoPackets: [],
  });
}

/** A raw CMD_SUBMIT header with arbitrary field values (no body). */
function rawSubmitHeader(r: Rng): Uint8Array {
  const b = new Uint8Array(48);
  const v = new DataView(b.buffer);
  u32be(v, 0, 1);
  u32be(v, 4, r.u32());
  u32be(v, 8, r.pick([0x10002, r.u32()]));
  u32be(v, 12, r.pick([0, 1, r.u32()]));
  u32be(v, 16, r.pick([0, 1, 2, 15, 16, r.u32()]));
  u32be(v, 0x14, r.u32());
  u32be(v, 0x18, r.pick([0, 8, 512, 4096, 0x7fffffff, 0xffffffff, 16 * 1024 * 1024 + 1, r.u32()]));
  u32be(v, 0x1c, r.u32());
  u32be(v, 0x20, r.pick([0, 0xffffffff, 1, 1024, 1025, r.u32()]));
  u32be(v, 0x24, r.u32());
  b.set(r.bytes(8), 0x28);
  return b;
}

function unlink(seqnum: number, target: number): Uint8Array {
  return encodeCmdUnlink({
    kind: "cmd_unlink",
    seqnum,
    devid: 0x10002,
    direction: 0,
    ep: 0,
    unlinkSeqnum: target,
  });
}

function setConfig(seqnum: number, value: number): Uint8Array {
  return submit({
    seqnum,
    ep: 0,
    dirIn: false,
    length: 0,
    setup: encodeSetupPacket({
      bmRequestType: 0,
      bRequest: Request.SET_CONFIGURATION,
      wValue: value,
      wIndex: 0,
      wLength: 0,
    }),
  });
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A random frame for the URB phase: garbage, odd submits, unlinks, op requests, cut frames. */
function randomUrbFrame(r: Rng, seqnum: number): Uint8Array {
  switch (r.int(9)) {
    case 0:
      return r.bytes(1 + r.int(300));
    case 1:
      return rawSubmitHeader(r);
    case 2:
      return unlink(seqnum, r.u32());
    case 3: {
      const b = r.bytes(48);
      new DataView(b.buffer).setUint32(0, r.pick([0, 3, 4, 5, 0x8003, r.u32()]));
      return b;
    }
    case 4:
      return r.pick([encodeOpReqDevlist(), encodeOpReqImport(r.pick(ALL_BUSIDS))]);
    case 5: {
      const whole = submit({ seqnum, ep: 1, dirIn: false, length: 4096, data: r.bytes(4096) });
      return whole.subarray(0, r.int(whole.length));
    }
    case 6:
      return submit({
        seqnum,
        ep: r.int(4),
        dirIn: true,
        length: r.pick([0, 1, 64, 512, 4096, 65536]),
        setup: r.bytes(8),
      });
    case 7:
      return submit({ seqnum, ep: 1, dirIn: false, length: 512, data: r.bytes(512) });
    default:
      return setConfig(seqnum, r.pick([0, 1, 2, 3, 4, 255]));
  }
}

// ---------------------------------------------------------------------------------------------
// Fuzz cases

interface Stats {
  frames: number;
  connections: number;
  cases: Record<string, number>;
  /** Connections the server closed on its own. */
  closedByServer: number;
}

/** Imports a random fuzz device over `raw`; the busid on success. */
async function rawImport(raw: Raw, r: Rng, stats: Stats): Promise<string | null> {
  const busid = r.pick(FUZZ_BUSIDS);
  stats.frames++;
  if (!(await raw.send(encodeOpReqImport(busid)))) return null;
  const head = await raw.recv(8);
  if (head === null) return null;
  if (new DataView(head.buffer).getUint32(4) !== 0) return null;
  return (await raw.recv(312)) === null ? null : busid;
}

type FuzzCase = (port: number, r: Rng, stats: Stats) => Promise<void>;

const randomCases: Record<string, FuzzCase> = {
  /** Random bytes as the first thing on a connection. */
  async garbage(port, r, stats) {
    const raw = await Raw.open(port);
    if (!raw) return;
    stats.frames++;
    await raw.send(r.bytes(1 + r.int(512)));
    if (await raw.waitClosed(300)) stats.closedByServer++;
  },
  /** A valid op request cut short, then a hang-up or a pause. */
  async truncatedOp(port, r, stats) {
    const raw = await Raw.open(port);
    if (!raw) return;
    const whole = r.pick([encodeOpReqDevlist(), encodeOpReqImport(r.pick(ALL_BUSIDS))]);
    stats.frames++;
    await raw.send(whole.subarray(0, 1 + r.int(whole.length - 1)));
    if (r.int(2) === 0) raw.close();
    else if (await raw.waitClosed(100)) stats.closedByServer++;
  },
  /** Random op codes and status values with the right version, and bodies. */
  async randomOpCode(port, r, stats) {
    const raw = await Raw.open(port);
    if (!raw) return;
    stats.frames++;
    await raw.send(
      opFrame(
        0x0111,
        r.pick([0, 3, 5, 0x8004, 0x8006, r.int(0x10000)]),
        r.u32(),
        r.bytes(r.int(64)),
      ),
    );
    if (await raw.waitClosed(300)) stats.closedByServer++;
  },
  /** Valid requests with a wrong version. */
  async wrongVersion(port, r, stats) {
    const raw = await Raw.open(port);
    if (!raw) return;
    stats.frames++;
    const version = r.pick([0, 0x0100, 0x0110, 0x0112, 0x1101, r.int(0x10000)]);
    const body = r.int(2) === 0 ? new Uint8Array(0) : new Uint8Array(32);
    await raw.send(opFrame(version, r.pick([0x8005, 0x8003]), 0, body));
    if (await raw.waitClosed(300)) stats.closedByServer++;
  },
  /** A DEVLIST, then garbage: the server answers the list and closes, as usbipd does. */
  async devlistThenGarbage(port, r, stats) {
    const raw = await Raw.open(port);
    if (!raw) return;
    stats.frames++;
    if (!(await raw.send(encodeOpReqDevlist()))) return;
    const head = await raw.recv(12);
    if (head === null) return;
    const ndev = new DataView(head.buffer).getUint32(8);
    assert(ndev <= ALL_BUSIDS.length, `DEVLIST announced ${ndev} devices`);
    if ((await raw.recv(ndev * (312 + 4))) === null) return;
    stats.frames++;
    await raw.send(r.bytes(8 + r.int(100)));
    assert(await raw.waitClosed(1000), "the connection stays open after a DEVLIST reply");
    stats.closedByServer++;
  },
  /** An import, then a burst of random URB-phase frames. */
  async importThenGarbage(port, r, stats) {
    const raw = await Raw.open(port);
    if (!raw) return;
    if ((await rawImport(raw, r, stats)) === null) return raw.close();
    const frames: Uint8Array[] = [];
    for (let i = 0, n = 1 + r.int(20); i < n; i++) frames.push(randomUrbFrame(r, 100 + i));
    stats.frames += frames.length;
    await raw.send(concat(frames));
    if (await raw.waitClosed(150)) stats.closedByServer++;
  },
  /** An import, ISO alternate setting, then ISO submits with hostile packet counts. */
  async isoPackets(port, r, stats) {
    const raw = await Raw.open(port);
    if (!raw) return;
    if ((await rawImport(raw, r, stats)) === null) return raw.close();
    const setAlt = submit({
      seqnum: 2,
      ep: 0,
      dirIn: false,
      length: 0,
      setup: encodeSetupPacket({
        bmRequestType: RequestType.RECIPIENT_INTERFACE,
        bRequest: Request.SET_INTERFACE,
        wValue: 1,
        wIndex: 0,
        wLength: 0,
      }),
    });
    stats.frames += 3;
    await raw.send(concat([setConfig(1, 3), setAlt]));
    const header = rawSubmitHeader(r);
    const v = new DataView(header.buffer);
    u32be(v, 12, r.int(2));
    u32be(v, 16, 2);
    await raw.send(concat([header, r.bytes(r.int(2048))]));
    if (await raw.waitClosed(200)) stats.closedByServer++;
  },
};

/** Thousands of CMD_UNLINK, for random seqnums and for every real pending URB. */
async function unlinkStorm(
  port: number,
  r: Rng,
  stats: Stats,
  pendingUrbs: number,
  unlinks: number,
) {
  const raw = await Raw.open(port);
  assert(raw, "cannot connect for the unlink storm");
  assert(await rawImport(raw, r, stats), "cannot import for the unlink storm");
  // Loopback with nothing looped: IN transfers stay pending until unlinked.
  stats.frames++;
  await raw.send(setConfig(1, 2));
  const ack = await raw.recv(48);
  assert(ack && new DataView(ack.buffer).getInt32(0x14) === 0, "SET_CONFIGURATION failed");
  const pending = Array.from({ length: pendingUrbs }, (_, i) => 1000 + i);
  stats.frames += pending.length;
  assert(
    await raw.send(
      concat(pending.map((s) => submit({ seqnum: s, ep: 1, dirIn: true, length: 512 }))),
    ),
  );
  // Unlink targets: random seqnums away from ours, plus each pending one (some twice).
  const targets: number[] = [];
  for (let i = 0; i < unlinks; i++) targets.push(0x80000000 + r.int(0x7fffffff));
  for (const s of pending) targets.splice(r.int(targets.length + 1), 0, s);
  for (let i = 0; i < 50; i++) targets.push(r.pick(pending));
  const own = targets.map((_, i) => 0x100000 + i);
  let retSubmits = 0;
  let cancelled = 0;
  let ok = 0;
  const reading = (async () => {
    for (let i = 0; i < targets.length; i++) {
      const h = await raw.recv(48, 5000);
      if (h === null) return false;
      const v = new DataView(h.buffer);
      const command = v.getUint32(0);
      if (command === 3) {
        retSubmits++;
        return false;
      }
      assertEquals(command, 4);
      assertEquals(v.getUint32(4), own[i], "RET_UNLINKs come back in order with their own seqnum");
      const status = v.getInt32(0x14);
      if (status === -104) cancelled++;
      else if (status === 0) ok++;
      else throw new Error(`RET_UNLINK status ${status}`);
    }
    return true;
  })();
  for (let off = 0; off < targets.length; off += 256) {
    const batch = targets.slice(off, off + 256).map((t, i) => unlink(own[off + i]!, t));
    stats.frames += batch.length;
    if (!(await raw.send(concat(batch), 5000))) break;
  }
  assert(await reading, "the unlink storm's replies did not all arrive");
  assertEquals(retSubmits, 0, "no RET_SUBMIT for an unlinked URB");
  assertEquals(cancelled, pending.length, "each pending URB is cancelled exactly once");
  assertEquals(ok, targets.length - pending.length);
  raw.close();
}

/** More URBs pending than maxPendingUrbs allows: the server must hang up. */
async function pendingFlood(port: number, r: Rng, stats: Stats, count: number): Promise<boolean> {
  const raw = await Raw.open(port);
  assert(raw && (await rawImport(raw, r, stats)), "cannot import for the pending flood");
  stats.frames++;
  await raw.send(setConfig(1, 2));
  await raw.recv(48);
  const urbs = Array.from(
    { length: count },
    (_, i) => submit({ seqnum: 10 + i, ep: 1, dirIn: true, length: 64 }),
  );
  stats.frames += urbs.length;
  await raw.send(concat(urbs), 5000);
  return await raw.waitClosed(3000);
}

/** Big IN transfers whose replies are never read: the server must hang up, not buffer. */
async function replyFlood(port: number, r: Rng, stats: Stats, count: number, length: number) {
  const raw = await Raw.open(port);
  assert(raw && (await rawImport(raw, r, stats)), "cannot import for the reply flood");
  stats.frames++;
  await raw.send(setConfig(1, 3));
  await raw.recv(48);
  for (let i = 0; i < count && !raw.closed; i++) {
    stats.frames++;
    if (!(await raw.send(submit({ seqnum: 10 + i, ep: 1, dirIn: true, length }), 2000))) break;
  }
  return raw;
}

/** Opens `n` connections at once; how many opened, and how many the server closed at once. */
async function connectionFlood(
  port: number,
  stats: Stats,
  n: number,
): Promise<{ opened: number; refused: number }> {
  const raws = (await Promise.all(Array.from({ length: n }, () => Raw.open(port)))).filter(
    (x): x is Raw => x !== null,
  );
  stats.connections += raws.length;
  const refused = await Promise.all(raws.map((raw) => raw.waitClosed(400)));
  for (const raw of raws) raw.close();
  return { opened: raws.length, refused: refused.filter(Boolean).length };
}

/**
 * Opens a connection that sends nothing and returns how long the server took to close it. A
 * connection closed much sooner was refused (slots of an earlier flood not yet freed) and is
 * opened again, a bounded number of times.
 */
async function silentConnection(port: number, timeoutMs: number): Promise<number> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const raw = await Raw.open(port);
    assert(raw, "cannot connect");
    const start = Date.now();
    const closed = await raw.waitClosed(timeoutMs + 3000);
    const ms = Date.now() - start;
    assert(closed, `a silent connection was still open after ${ms} ms`);
    if (ms >= timeoutMs * 0.9) return ms;
    await sleep(200);
  }
  throw new Error("every silent connection was refused");
}

/** Runs random cases on WORKERS connections at a time until `deadline`. */
async function fuzzUntil(port: number, seed: number, deadline: number, stats: Stats) {
  const names = Object.keys(randomCases);
  await Promise.all(Array.from({ length: WORKERS }, async (_, w) => {
    const r = new Rng(seed + 7919 * (w + 1));
    for (let i = 0; i < 5000 && Date.now() < deadline; i++) {
      const name = r.pick(names);
      stats.cases[name] = (stats.cases[name] ?? 0) + 1;
      stats.connections++;
      const run = randomCases[name]!(port, r, stats);
      if ((await timed(run, CASE_MS)) === TIMEOUT) throw new Error(`Fuzz case ${name} hung`);
    }
  }));
}

// ---------------------------------------------------------------------------------------------
// The control session

interface Control {
  transfers: number;
  bytes: number;
  maxLatencyMs: number;
  failure: string | undefined;
  stop(): Promise<void>;
}

/** Bulk IN and OUT on Gadget Zero (pattern 1) in a loop, checking every byte and status. */
async function controlSession(port: number): Promise<{ channel: UrbChannel; control: Control }> {
  const channel = await importDevice(await connectTcp(HOST, port), "1-1");
  const config = await channel.control({
    bmRequestType: 0,
    bRequest: Request.SET_CONFIGURATION,
    wValue: 3,
    wIndex: 0,
    wLength: 0,
  });
  assertEquals(config.status, 0);
  const pattern = new Uint8Array(16384).map((_, i) => (i % 512) % 63);
  let running = true;
  const control: Control = {
    transfers: 0,
    bytes: 0,
    maxLatencyMs: 0,
    failure: undefined,
    stop: async () => {
      running = false;
      await loop;
    },
  };
  const loop = (async () => {
    try {
      for (let i = 0; running && i < 1_000_000; i++) {
        const start = performance.now();
        const [a, b] = await Promise.all([
          channel.submit({ ep: 1, dirIn: true, length: pattern.length }).done,
          channel.submit({ ep: 1, dirIn: false, data: pattern }).done,
        ]);
        control.maxLatencyMs = Math.max(control.maxLatencyMs, performance.now() - start);
        if (a.status !== 0 || a.actualLength !== pattern.length) {
          throw new Error(`IN status ${a.status}, ${a.actualLength} bytes`);
        }
        for (let j = 0; j < pattern.length; j++) {
          if (a.data[j] !== pattern[j]) throw new Error(`IN byte ${j} is ${a.data[j]}`);
        }
        if (b.status !== 0 || b.actualLength !== pattern.length) {
          throw new Error(`OUT status ${b.status}, ${b.actualLength} bytes`);
        }
        control.transfers += 2;
        control.bytes += 2 * pattern.length;
        // Leave the CPU to the fuzzers now and then.
        if (i % 8 === 7) await sleep(1);
      }
    } catch (e) {
      control.failure = errorMessage(e);
    }
  })();
  return { channel, control };
}

async function checkReimport(port: number) {
  for (const busid of ALL_BUSIDS) {
    let ch: UrbChannel | undefined;
    // The server frees a device as soon as it sees the hang-up; allow it a moment.
    for (let attempt = 0; attempt < 20 && ch === undefined; attempt++) {
      ch = await importDevice(await connectTcp(HOST, port), busid).catch(() => undefined);
      if (ch === undefined) await sleep(100);
    }
    assert(ch, `${busid} cannot be imported again`);
    const d = await ch.control({
      bmRequestType: RequestType.DIR_IN,
      bRequest: Request.GET_DESCRIPTOR,
      wValue: DescriptorType.DEVICE << 8,
      wIndex: 0,
      wLength: 18,
    });
    assertEquals([d.status, d.actualLength], [0, 18]);
    await ch.close();
  }
}

function vm(pid: number): { rss: number; hwm: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
  return { rss: kb("VmRSS") * 1024, hwm: kb("VmHWM") * 1024 };
}

const mb = (n: number) => (n / 1024 / 1024).toFixed(1);

function newStats(): Stats {
  return { frames: 0, connections: 0, cases: {}, closedByServer: 0 };
}

// ---------------------------------------------------------------------------------------------

Deno.test({
  name:
    "the gateway process survives a fuzzing peer with bounded memory while a control session keeps working",
  async fn() {
    console.log(`fuzz seed ${SEED} (0x${SEED.toString(16)}); FUZZ_SEED=${SEED} replays it`);
    const r = new Rng(SEED);
    const gw = await startGateway([
      "--tcp",
      `${HOST}:0`,
      ...ALL_BUSIDS.flatMap((b) => ["--device", `gadget-zero:busid=${b},pattern=1`]),
      // TCP peers are denied unless a rule allows them.
      "--rule",
      "allow:source=127.0.0.1/32",
    ]);
    const pid = gw.process.pid;
    const stats = newStats();
    try {
      const { channel, control } = await controlSession(gw.port);
      await sleep(300);
      const before = vm(pid);
      const started = Date.now();

      // Directed scenarios first, then random cases until the time is up.
      await unlinkStorm(gw.port, r, stats, 500, 3000);
      assert(await pendingFlood(gw.port, r, stats, DEFAULT_SESSION_LIMITS.maxPendingUrbs + 100));
      await gw.waitFor(/closing: limit maxPendingUrbs=1024 exceeded/);
      // 120 MiB of IN replies to a peer that reads none: the gateway stops reading its
      // requests once about 1 MiB is queued (back-pressure) and keeps the session.
      const flood = await replyFlood(gw.port, r, stats, 120, 1024 * 1024);
      await sleep(1000);
      assert(!flood.closed, "a peer that does not read is held back, not disconnected");
      assert(
        !gw.lines.some((l) => /maxBufferedBytes/.test(l)),
        "no buffer limit was hit: back-pressure kept the queue small",
      );
      const flooded = vm(pid);
      flood.close();
      const perPeer = DEFAULT_SESSION_LIMITS.maxConnectionsPerPeer;
      const { opened, refused } = await connectionFlood(gw.port, stats, 2 * perPeer);
      // The control session holds one of the slots of 127.0.0.1.
      assert(refused >= opened - (perPeer - 1), `only ${refused} of ${opened} were refused`);
      await gw.waitFor(new RegExp(`limit maxConnectionsPerPeer=${perPeer} reached`));
      const timeout = DEFAULT_SESSION_LIMITS.opPhaseTimeoutMs;
      const [silentMs] = await Promise.all([
        silentConnection(gw.port, timeout),
        fuzzUntil(gw.port, SEED, started + 12_000, stats),
      ]);
      await gw.waitFor(/closing: limit opPhaseTimeoutMs=10000 exceeded: no device imported/);

      await control.stop();
      assertEquals(control.failure, undefined, "the control session was disturbed");
      await channel.close();
      await sleep(300);
      const after = vm(pid);
      // Alive, and serving.
      assertEquals(
        (await requestDeviceList(await connectTcp(HOST, gw.port))).map((d) => d.busid),
        ALL_BUSIDS,
      );
      await checkReimport(gw.port);
      const protocolErrors: Record<string, number> = {};
      for (const line of gw.lines) {
        const m = /closing on a protocol error: Cannot decode ([^:]+): (\S+)/.exec(line);
        if (m) protocolErrors[`${m[1]} ${m[2]}`] = (protocolErrors[`${m[1]} ${m[2]}`] ?? 0) + 1;
      }
      console.log(
        `fuzz (gateway process, default limits): ${stats.frames} frames on ${stats.connections} connections in ${
          Date.now() - started
        } ms; ${stats.closedByServer} closed by the gateway; ` +
          `${refused}/${opened} refused by maxConnectionsPerPeer, silent connection closed after ${silentMs} ms; cases ${
            JSON.stringify(stats.cases)
          }; protocol errors by frame and field ${JSON.stringify(protocolErrors)}`,
      );
      console.log(
        `control session: ${control.transfers} transfers, ${
          mb(control.bytes)
        } MB verified, slowest round trip ${control.maxLatencyMs.toFixed(0)} ms`,
      );
      console.log(`gateway VmRSS while 120 MiB of replies were unread: ${mb(flooded.rss)} MB`);
      assert(
        flooded.rss - before.rss < 64 * 1024 * 1024,
        `held back, the flood grew the gateway by ${mb(flooded.rss - before.rss)} MB`,
      );
      console.log(
        `gateway memory: VmRSS ${mb(before.rss)} MB -> ${mb(after.rss)} MB, VmHWM ${
          mb(before.hwm)
        } MB -> ${mb(after.hwm)} MB`,
      );
      assert(
        after.rss - before.rss < 200 * 1024 * 1024,
        "the gateway's memory grew by 200 MB or more",
      );
    } finally {
      assertEquals((await gw.stop()).code, 0, "the gateway exits cleanly after the fuzzing");
    }
  },
});

Deno.test({
  name: "an in-process server with small limits closes each offender and keeps the control session",
  async fn() {
    const hits: Record<string, number> = {};
    configureSync({
      reset: true,
      sinks: {
        count: (rec: LogRecord) => {
          const limit = rec.properties.limit;
          if (typeof limit === "string") hits[limit] = (hits[limit] ?? 0) + 1;
        },
      },
      loggers: [
        { category: ["usbipgw", "audit"], lowestLevel: "warning", sinks: ["count"] },
        { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
      ],
    });
    const limits: SessionLimits = {
      maxConnections: 12,
      maxConnectionsPerPeer: 8,
      opPhaseTimeoutMs: 500,
      maxPendingUrbs: 64,
      maxBufferedBytes: 1024 * 1024,
    };
    const r = new Rng(SEED ^ 0xa5a5a5a5);
    const server = new UsbipServer({ sessionLimits: limits });
    for (const busid of ALL_BUSIDS) server.addDevice(new GadgetZero({ pattern: 1 }), { busid });
    const listener = new TcpListener({ hostname: HOST, port: 0 });
    const serving = server.listen(listener);
    const port = listener.port;
    const stats = newStats();
    try {
      const { channel, control } = await controlSession(port);
      const before = Deno.memoryUsage().rss;
      const started = Date.now();
      await unlinkStorm(port, r, stats, 60, 2000);
      assert(await pendingFlood(port, r, stats, 100));
      const flood = await replyFlood(port, r, stats, 48, 1024 * 1024);
      assert(await flood.waitClosed(3000), "a peer that does not read was not closed");
      const { opened, refused } = await connectionFlood(port, stats, 20);
      assert(refused >= opened - (limits.maxConnectionsPerPeer - 1), `only ${refused} refused`);
      const [silentMs] = await Promise.all([
        silentConnection(port, limits.opPhaseTimeoutMs),
        fuzzUntil(port, SEED ^ 0x1234, started + 5000, stats),
      ]);
      assert(silentMs < 2500, `a silent connection was closed after ${silentMs} ms`);
      await control.stop();
      assertEquals(control.failure, undefined, "the control session was disturbed");
      for (
        const limit of [
          "maxPendingUrbs",
          "maxBufferedBytes",
          "opPhaseTimeoutMs",
          "maxConnectionsPerPeer",
        ]
      ) {
        assert(
          (hits[limit] ?? 0) > 0,
          `no connection was closed by ${limit}: ${JSON.stringify(hits)}`,
        );
      }
      await channel.close();
      for (let i = 0; i < 40 && server.sessions.length > 0; i++) await sleep(50);
      assertEquals(server.sessions.length, 0, "every session ended");
      await checkReimport(port);
      console.log(
        `fuzz (in-process, small limits): ${stats.frames} frames on ${stats.connections} connections; ` +
          `limit hits ${JSON.stringify(hits)}; control ${control.transfers} transfers; ` +
          `test process RSS ${mb(before)} -> ${mb(Deno.memoryUsage().rss)} MB`,
      );
    } finally {
      await server.close();
      await serving;
      resetSync();
    }
  },
});
