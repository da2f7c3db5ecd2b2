// Tests of the session limits over in-memory connections: each limit closes only the
// connection that exceeds it, with an audit line naming the limit and its value, while another
// session keeps transferring.
import { assert, assertEquals, assertMatch, assertThrows } from "@std/assert";
import {
  type Connection,
  DEFAULT_SESSION_LIMITS,
  GadgetZero,
  memoryConnectionPair,
  OpStatus,
  type PeerInfo,
  type SessionLimits,
  type UrbChannel,
  UsbipServer,
} from "../../mod.ts";
import {
  encodeCmdSubmit,
  encodeOpReqDevlist,
  encodeOpReqStatus,
  FrameReader,
} from "../../protocol.ts";
import { peerKey, resolveSessionLimits } from "../../lib/server/session_limits.ts";
import { ProbeDevice } from "./_probe_device.ts";
import { captureLogs } from "./_logs.ts";
import { eventually, importOver, importRaw, setConfiguration } from "./_session_helpers.ts";

const logs = captureLogs();
globalThis.addEventListener("unload", () => logs.stop());

/** The audit lines logged so far, rendered. */
function auditLines(): string[] {
  return logs.lines("audit").map(([, line]) => line);
}

/** Waits for an audit line matching `pattern` and returns it. */
async function auditLine(pattern: RegExp): Promise<string> {
  await eventually(() => auditLines().some((l) => pattern.test(l)));
  return auditLines().find((l) => pattern.test(l))!;
}

/** A server with Gadget Zero on 1-1 (for the session that must keep working) and a probe on 1-2. */
function serverWith(sessionLimits: Partial<SessionLimits>) {
  const server = new UsbipServer({ sessionLimits });
  server.addDevice(new GadgetZero({ pattern: 1 }), { busid: "1-1" });
  const probe = new ProbeDevice();
  server.addDevice(probe, { busid: "1-2" });
  return { server, probe };
}

/** Imports Gadget Zero and selects its source/sink configuration. */
async function goodSession(server: UsbipServer) {
  const good = await importOver(server, "1-1");
  assertEquals((await setConfiguration(good.channel, 3)).status, 0);
  return good;
}

/** Checks that a Gadget Zero session still moves data, in the pattern. */
async function assertWorks(channel: UrbChannel): Promise<void> {
  const urbs = [1, 2, 3].map(() => channel.submit({ ep: 1, dirIn: true, length: 1024 }).done);
  for (const r of await Promise.all(urbs)) {
    assertEquals([r.status, r.actualLength, r.data[600]], [0, 1024, (600 % 512) % 63]);
  }
  assertEquals(channel.closedReason, undefined);
}

/** Resolves true once the far end has closed `client` (end of stream). */
async function closedByServer(client: Connection): Promise<boolean> {
  const reader = client.readable.getReader();
  while (true) {
    const { done } = await reader.read();
    if (done) return true;
  }
}

/** An in-memory connection whose server end reports `peer`. */
function pairFrom(peer: PeerInfo): [Connection, Connection] {
  const [client, end] = memoryConnectionPair();
  return [client, { ...end, peer }];
}

function bulk(seqnum: number, ep: number, dirIn: boolean, length: number) {
  return encodeCmdSubmit({
    kind: "cmd_submit",
    seqnum,
    devid: 0x10003,
    direction: dirIn ? 1 : 0,
    ep,
    transferFlags: dirIn ? 0x200 : 0,
    transferBufferLength: length,
    startFrame: 0,
    numberOfPackets: 0,
    interval: 0,
    setup: new Uint8Array(8),
    data: dirIn ? new Uint8Array(0) : new Uint8Array(length),
    isoPackets: [],
  });
}

Deno.test("the defaults apply when no session limits are given", async () => {
  const server = new UsbipServer();
  assertEquals(server.sessionLimits, { ...DEFAULT_SESSION_LIMITS });
  assertEquals(DEFAULT_SESSION_LIMITS, {
    maxConnections: 256,
    maxConnectionsPerPeer: 32,
    opPhaseTimeoutMs: 10_000,
    maxPendingUrbs: 1024,
    maxBufferedBytes: 64 * 1024 * 1024,
  });
  await server.close();
});

Deno.test("a partial override changes only the limits it names", async () => {
  const server = new UsbipServer({ sessionLimits: { maxPendingUrbs: 8, opPhaseTimeoutMs: 500 } });
  assertEquals(server.sessionLimits, {
    ...DEFAULT_SESSION_LIMITS,
    maxPendingUrbs: 8,
    opPhaseTimeoutMs: 500,
  });
  assertEquals(resolveSessionLimits({ maxConnections: Infinity }).maxConnections, Infinity);
  await server.close();
});

Deno.test("resolveSessionLimits() rejects zero, negative, fractional and unknown limits", () => {
  for (const bad of [0, -1, 1.5, NaN, "8" as unknown as number]) {
    assertThrows(
      () => resolveSessionLimits({ maxPendingUrbs: bad }),
      RangeError,
      "Cannot set session limit maxPendingUrbs",
    );
  }
  assertThrows(
    () => resolveSessionLimits({ opPhaseTimeoutMs: 2 ** 31 }),
    RangeError,
    "use Infinity for no limit",
  );
  assertThrows(
    () => new UsbipServer({ sessionLimits: { maxUrbs: 3 } as Partial<SessionLimits> }),
    RangeError,
    "no such limit",
  );
});

Deno.test("peerKey() counts a uid for unix peers and an address without the port for TCP", () => {
  assertEquals(peerKey({ transport: "tcp", address: "192.0.2.7:40000" }), "tcp:192.0.2.7");
  assertEquals(peerKey({ transport: "tcp", address: "[2001:db8::1]:3240" }), "tcp:2001:db8::1");
  assertEquals(peerKey({ transport: "tcp", address: "[::ffff:192.0.2.7]:1" }), "tcp:192.0.2.7");
  assertEquals(
    peerKey({ transport: "unix", address: "/run/usbipgw.sock", uid: 1000, gid: 1000, pid: 7 }),
    "uid:1000",
  );
  assertEquals(
    peerKey({ transport: "unix", address: "/run/usbipgw.sock" }),
    "unix:/run/usbipgw.sock",
  );
});

Deno.test("peerKey() counts a TLS peer per certificate fingerprint, wherever it connects from", () => {
  const cert = (fingerprint: string) => ({
    cn: "bench-3",
    ou: ["lab"],
    sans: ["DNS:bench-3.example"],
    fingerprint,
    pubkey: "cd".repeat(32),
  });
  const fp = "ab".repeat(32);
  const tls = (address: string, fingerprint = fp): PeerInfo => ({
    transport: "tls",
    address,
    certificate: cert(fingerprint),
  });
  // [peer, key]
  const cases: [PeerInfo, string][] = [
    // One certificate from many addresses is one peer...
    [tls("192.0.2.7:40000"), `tls:${fp}`],
    [tls("198.51.100.1:1"), `tls:${fp}`],
    [tls("[2001:db8::1]:3240"), `tls:${fp}`],
    // ... two certificates behind one NAT address are two, whatever else they share.
    [tls("192.0.2.7:40001", "ef".repeat(32)), `tls:${"ef".repeat(32)}`],
    // A fingerprint in openssl's notation counts as the same certificate.
    [tls("192.0.2.7:1", "AB:".repeat(31) + "AB"), `tls:${fp}`],
    // A TLS peer without a certificate is known only by its address, as over TCP.
    [{ transport: "tls", address: "192.0.2.7:40000" }, "tcp:192.0.2.7"],
    [{ transport: "tls", address: "[::ffff:192.0.2.7]:1" }, "tcp:192.0.2.7"],
  ];
  for (const [peer, key] of cases) assertEquals(peerKey(peer), key, JSON.stringify(peer));
});

Deno.test("maxConnections refuses the connection over the limit at once and keeps the others", async () => {
  const { server } = serverWith({ maxConnections: 2 });
  const good = await goodSession(server);
  const [idle, idleEnd] = memoryConnectionPair();
  const idleDone = server.accept(idleEnd);
  const [extra, extraEnd] = memoryConnectionPair();
  await server.accept(extraEnd);
  assert(await closedByServer(extra));
  assertEquals(server.sessions.length, 2);
  assertEquals(server.refusedConnections, 1);
  assertMatch(
    await auditLine(/Refused a connection/),
    /Refused a connection from memory memory:b: limit maxConnections=2 reached \(2 open in all\)/,
  );
  await assertWorks(good.channel);
  // A slot freed is a slot for the next connection.
  idle.close();
  await idleDone;
  const devices = await (async () => {
    const [c, e] = memoryConnectionPair();
    const done = server.accept(e);
    const w = c.writable.getWriter();
    await w.write(encodeOpReqDevlist());
    const list = await new FrameReader(c.readable).readOpRepDevlist();
    c.close();
    await done;
    return list.devices;
  })();
  assertEquals(devices.length, 2);
  await good.channel.close();
  await server.close();
});

Deno.test("maxConnectionsPerPeer counts one TCP address over every port, and one unix uid", async () => {
  const { server } = serverWith({ maxConnectionsPerPeer: 2 });
  const good = await goodSession(server);
  const open: Promise<void>[] = [];
  const clients: Connection[] = [];
  for (const port of [1000, 1001]) {
    const [c, e] = pairFrom({ transport: "tcp", address: `192.0.2.1:${port}` });
    clients.push(c);
    open.push(server.accept(e));
  }
  const [third, thirdEnd] = pairFrom({ transport: "tcp", address: "192.0.2.1:1002" });
  await server.accept(thirdEnd);
  assert(await closedByServer(third));
  assertMatch(
    await auditLine(/tcp 192\.0\.2\.1:1002/),
    /limit maxConnectionsPerPeer=2 reached \(2 open from tcp:192\.0\.2\.1\)/,
  );
  // Another address is another peer.
  const [other, otherEnd] = pairFrom({ transport: "tcp", address: "192.0.2.2:1000" });
  const otherDone = server.accept(otherEnd);
  assertEquals(server.sessions.length, 4);
  // Unix peers count by uid, whatever their pid.
  const unix = (pid: number) =>
    pairFrom({ transport: "unix", address: "/run/gw.sock", uid: 1000, gid: 1000, pid });
  const [u1, u1End] = unix(1);
  const [u2, u2End] = unix(2);
  const [u3, u3End] = unix(3);
  const u1Done = server.accept(u1End);
  const u2Done = server.accept(u2End);
  await server.accept(u3End);
  assert(await closedByServer(u3));
  assertEquals(server.refusedConnections, 2);
  await assertWorks(good.channel);
  for (const c of [...clients, other, u1, u2]) c.close();
  await Promise.all([...open, otherDone, u1Done, u2Done]);
  await good.channel.close();
  await server.close();
});

Deno.test("a refused connection does not count against its peer", async () => {
  const { server } = serverWith({ maxConnectionsPerPeer: 1 });
  const peer: PeerInfo = { transport: "tcp", address: "192.0.2.9:1" };
  const [a, aEnd] = pairFrom(peer);
  const aDone = server.accept(aEnd);
  for (let i = 0; i < 5; i++) {
    const [b, bEnd] = pairFrom(peer);
    await server.accept(bEnd);
    assert(await closedByServer(b));
  }
  a.close();
  await aDone;
  const [c, cEnd] = pairFrom(peer);
  const cDone = server.accept(cEnd);
  assertEquals(server.sessions.length, 1);
  c.close();
  await cDone;
  await server.close();
});

// A DEVLIST ends its connection at once (as Linux usbipd); OP_REQ_STATUS leaves it open, so a
// peer asking only for the status is the one the timeout must close.
Deno.test("opPhaseTimeoutMs closes a silent and a status-only connection, not an imported one", async () => {
  const { server } = serverWith({ opPhaseTimeoutMs: 150 });
  const good = await goodSession(server);
  const start = Date.now();
  const [silent, silentEnd] = memoryConnectionPair();
  const silentDone = server.accept(silentEnd);
  const silentSession = server.sessions.at(-1)!;
  const [asker, askerEnd] = memoryConnectionPair();
  const askerDone = server.accept(askerEnd);
  const askerSession = server.sessions.at(-1)!;
  const w = asker.writable.getWriter();
  const reader = new FrameReader(asker.readable);
  for (let i = 0; i < 3; i++) {
    await w.write(encodeOpReqStatus());
    assertEquals((await reader.readOpRepStatus()).status, OpStatus.ST_NA);
  }
  await Promise.all([silentDone, askerDone]);
  assert(Date.now() - start >= 140, `closed after ${Date.now() - start} ms`);
  for (const s of [silentSession, askerSession]) {
    assertEquals(s.endReason, "limit opPhaseTimeoutMs=150 exceeded: no device imported in time");
  }
  assertMatch(
    await auditLine(/opPhaseTimeoutMs/),
    /Session \d+ \(memory memory:b, device -\): closing: limit opPhaseTimeoutMs=150 exceeded/,
  );
  assert(await closedByServer(silent));
  // The imported session outlived the timeout several times over.
  await new Promise((r) => setTimeout(r, 200));
  await assertWorks(good.channel);
  w.releaseLock();
  await reader.cancel();
  await good.channel.close();
  await server.close();
});

Deno.test("maxPendingUrbs closes the session that submits one URB too many", async () => {
  const { server, probe } = serverWith({ maxPendingUrbs: 4 });
  const good = await goodSession(server);
  const bad = await importOver(server, "1-2");
  await setConfiguration(bad.channel, 1);
  const session = server.holderOf("1-2")!;
  // Completed and unlinked URBs free their slots.
  const first = bad.channel.submit({ ep: 1, dirIn: true, length: 8 });
  await probe.waitHeld(1);
  probe.held[0]!.complete({ status: "ok", data: new Uint8Array(8) });
  assertEquals((await first.done).status, 0);
  const held = Array.from(
    { length: 4 },
    () => bad.channel.submit({ ep: 1, dirIn: true, length: 8 }),
  );
  for (const h of held) h.done.catch(() => {});
  await probe.waitHeld(2);
  await bad.channel.unlink(held[3]!.seqnum);
  const refill = bad.channel.submit({ ep: 2, dirIn: true, length: 8 });
  refill.done.catch(() => {});
  await eventually(() => session.usage.pendingUrbs === 4);
  assertEquals(session.endReason, undefined);
  // The fifth pending URB is one too many.
  bad.channel.submit({ ep: 2, dirIn: true, length: 8 }).done.catch(() => {});
  await bad.done;
  assertEquals(
    session.endReason,
    `limit maxPendingUrbs=4 exceeded: URB ${refill.seqnum + 1} would be pending number 5`,
  );
  await auditLine(/closing: limit maxPendingUrbs=4 exceeded/);
  assertEquals(server.holderOf("1-2"), undefined);
  assert(probe.held.slice(1).every((h) => h.transfer.signal.aborted));
  await assertWorks(good.channel);
  await bad.channel.close();
  await good.channel.close();
  await server.close();
});

Deno.test("maxBufferedBytes counts OUT data of pending URBs and releases it when they end", async () => {
  const { server, probe } = serverWith({ maxBufferedBytes: 10_000 });
  const good = await goodSession(server);
  const bad = await importOver(server, "1-2");
  await setConfiguration(bad.channel, 1);
  const session = server.holderOf("1-2")!;
  const a = bad.channel.submit({ ep: 1, dirIn: false, data: new Uint8Array(4000) });
  const b = bad.channel.submit({ ep: 1, dirIn: false, data: new Uint8Array(4000) });
  b.done.catch(() => {});
  await probe.waitHeld(1);
  await eventually(() => session.usage.bufferedBytes === 8000);
  probe.held[0]!.complete({ status: "ok" });
  assertEquals((await a.done).actualLength, 4000);
  await eventually(() => session.usage.bufferedBytes === 4000);
  await bad.channel.unlink(b.seqnum);
  assertEquals(session.usage.bufferedBytes, 0);
  // 4000 + 4000 fits; 2001 more does not.
  for (const n of [4000, 4000, 2001]) {
    bad.channel.submit({ ep: 1, dirIn: false, data: new Uint8Array(n) }).done.catch(() => {});
  }
  await bad.done;
  assertEquals(
    session.endReason,
    "limit maxBufferedBytes=10000 exceeded: 10001 bytes held (10001 of OUT data in pending URBs, 0 of replies the peer has not read)",
  );
  await auditLine(/closing: limit maxBufferedBytes=10000 exceeded/);
  await assertWorks(good.channel);
  await bad.channel.close();
  await good.channel.close();
  await server.close();
});

/** A connection pair whose server-side writes can be held back and let through again. */
function gatedPair(): { client: Connection; server: Connection; hold(): void; open(): void } {
  const [client, end] = memoryConnectionPair();
  const inner = end.writable.getWriter();
  let gate: PromiseWithResolvers<void> | undefined;
  const writable = new WritableStream<Uint8Array>({
    async write(chunk) {
      if (gate) await gate.promise;
      return inner.write(chunk);
    },
  });
  return {
    client,
    server: {
      readable: end.readable,
      writable,
      peer: end.peer,
      close() {
        gate?.reject(new Deno.errors.BrokenPipe("closed"));
        inner.releaseLock();
        end.close();
      },
    },
    hold: () => gate = Promise.withResolvers<void>(),
    open: () => gate?.resolve(),
  };
}

/** Imports `busid` over `pair` and selects configuration 3; returns the writer and reader. */
async function importGated(server: UsbipServer, pair: ReturnType<typeof gatedPair>, busid: string) {
  const { done, writer: w, reader } = await importRaw(server, pair.client, pair.server, busid);
  const session = server.sessions.at(-1)!;
  await w.write(encodeCmdSubmit({
    kind: "cmd_submit",
    seqnum: 1,
    devid: 0x10004,
    direction: 0,
    ep: 0,
    transferFlags: 0,
    transferBufferLength: 0,
    startFrame: 0,
    numberOfPackets: 0,
    interval: 0,
    setup: new Uint8Array([0, 9, busid === "1-3" ? 3 : 1, 0, 0, 0, 0, 0]),
    data: new Uint8Array(0),
    isoPackets: [],
  }));
  await reader.readExact(48);
  return { done, session, w, reader };
}

Deno.test("a peer that stops reading its replies is held back, not served without bound", async () => {
  const limit = 256 * 1024;
  const { server } = serverWith({ maxBufferedBytes: limit });
  server.addDevice(new GadgetZero({ pattern: 1 }), { busid: "1-3" });
  const good = await goodSession(server);
  const pair = gatedPair();
  const { done, session, w, reader } = await importGated(server, pair, "1-3");
  pair.hold();
  // Gadget Zero answers each 16 KiB IN at once; the replies pile up unwritten until the
  // session stops reading requests (a quarter of the limit: 64 KiB).
  const sent = (async () => {
    for (let seqnum = 2; seqnum < 42; seqnum++) await w.write(bulk(seqnum, 1, true, 16 * 1024));
  })();
  let most = 0;
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 1));
    most = Math.max(most, session.usage.bufferedBytes);
  }
  assert(most > 0, "replies were queued");
  assert(most <= limit / 4 + 2 * (16 * 1024 + 48), `at most about 64 KiB queued, saw ${most}`);
  assertEquals(session.endReason, undefined, "the session is paused, not closed");
  assert(session.stats.submitted < 41, `reading paused (${session.stats.submitted} read)`);
  await assertWorks(good.channel);
  // Once the peer reads again, every reply arrives, in order.
  pair.open();
  for (let seqnum = 2; seqnum < 42; seqnum++) {
    const head = (await reader.readExact(48))!;
    assertEquals(new DataView(head.buffer, head.byteOffset).getUint32(4), seqnum);
    await reader.readExact(16 * 1024);
  }
  await sent;
  assertEquals(session.endReason, undefined);
  w.releaseLock();
  await reader.cancel();
  pair.server.close();
  await done;
  await good.channel.close();
  await server.close();
});

Deno.test("maxBufferedBytes closes a session whose pending URBs complete into more than it", async () => {
  const limit = 256 * 1024;
  const { server, probe } = serverWith({ maxBufferedBytes: limit });
  const good = await goodSession(server);
  const pair = gatedPair();
  const { done, session, w, reader } = await importGated(server, pair, "1-2");
  // 20 IN URBs of 16 KiB, held by the probe; then the peer stops reading and all complete.
  for (let seqnum = 2; seqnum < 22; seqnum++) await w.write(bulk(seqnum, 1, true, 16 * 1024));
  await probe.waitHeld(1);
  pair.hold();
  // The probe's endpoint runs one transfer at a time: complete each as the next arrives.
  for (let i = 0; i < 20 && session.endReason === undefined; i++) {
    await probe.waitHeld(i + 1);
    probe.held[i]!.complete({ status: "ok", data: new Uint8Array(16 * 1024) });
    await new Promise((r) => setTimeout(r, 0));
  }
  await done;
  assertMatch(
    session.endReason ?? "",
    /^limit maxBufferedBytes=262144 exceeded: \d+ bytes held \(0 of OUT data in pending URBs, \d+ of replies the peer has not read\)$/,
  );
  await auditLine(/closing: limit maxBufferedBytes=262144/);
  await assertWorks(good.channel);
  w.releaseLock();
  await reader.cancel();
  await good.channel.close();
  await server.close();
});
