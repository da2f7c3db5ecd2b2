// The copies a payload goes through between a real TCP socket and a device (BENCHMARKS.md,
// "Data path"): the session's connection is wrapped so that every buffer the socket reads into
// or writes from is recorded, and the device is the probe, which holds each transfer so that
// the test can look at the buffer it was handed.
import { assert, assertEquals } from "@std/assert";
import { type Connection, connectTcp, importDevice, UsbipServer } from "../../mod.ts";
import type { DirectIo } from "../../lib/transport/connection.ts";
import { wrapTcpConn } from "../../lib/transport/tcp.ts";
import { ProbeDevice } from "./_probe_device.ts";
import { deviceInPool } from "../../lib/protocol/buffer_pool.ts";
import { setConfiguration } from "./_session_helpers.ts";

interface Recorded {
  /** Each read: the buffer handed to the socket and how many bytes landed in it. */
  reads: { view: Uint8Array; got: number }[];
  /** Each buffer handed to the socket to write. */
  writes: Uint8Array[];
}

/** `conn` with its direct I/O recorded. */
function recording(conn: Connection): { conn: Connection; log: Recorded } {
  const direct = conn.direct!;
  const log: Recorded = { reads: [], writes: [] };
  const io: DirectIo = {
    async read(view) {
      const got = await direct.read(view);
      log.reads.push({ view, got: got ?? 0 });
      return got;
    },
    write(view) {
      log.writes.push(view);
      return direct.write(view);
    },
  };
  return {
    log,
    conn: {
      get readable() {
        return conn.readable;
      },
      get writable() {
        return conn.writable;
      },
      peer: conn.peer,
      direct: io,
      close: () => conn.close(),
    },
  };
}

/** A gateway with the probe on 1-1 behind a recorded TCP connection, and a client of it. */
async function setUp() {
  const server = new UsbipServer();
  const probe = new ProbeDevice();
  server.addDevice(probe);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const client = await connectTcp("127.0.0.1", listener.addr.port);
  const { conn, log } = recording(wrapTcpConn(await accepted));
  listener.close();
  const done = server.accept(conn);
  const channel = await importDevice(client, "1-1");
  await setConfiguration(channel, 1);
  return {
    server,
    probe,
    log,
    channel,
    async tearDown() {
      await channel.close();
      await done;
      await server.close();
    },
  };
}

function pattern(n: number): Uint8Array {
  return new Uint8Array(n).map((_, i) => (i * 7) & 0xff);
}

Deno.test("64 KiB of OUT data reach the device in the buffer the socket read them into", async () => {
  const { probe, log, channel, tearDown } = await setUp();
  const sent = pattern(65536);
  const urb = channel.submit({ ep: 1, dirIn: false, data: sent });
  await probe.waitHeld(1);
  const data = probe.held[0]!.transfer.data;
  assertEquals(data, sent);
  // The socket read straight into the device's buffer; only what the frame reader's read-ahead
  // took in with the header (at most its 4 KiB) was copied over.
  const direct = log.reads.filter((r) => r.view.buffer === data.buffer);
  assert(direct.length > 0, "the socket never read into the buffer the device got");
  const readDirectly = direct.reduce((sum, r) => sum + r.got, 0);
  assert(
    readDirectly >= 65536 - 4096,
    `only ${readDirectly} of 65536 bytes were read into the device's buffer`,
  );
  probe.held[0]!.complete({ status: "ok" });
  assertEquals((await urb.done).actualLength, 65536);
  await tearDown();
});

Deno.test("small OUT data are copied once out of the read-ahead buffer", async () => {
  const { probe, log, channel, tearDown } = await setUp();
  const sent = pattern(64);
  const urb = channel.submit({ ep: 1, dirIn: false, data: sent });
  await probe.waitHeld(1);
  const data = probe.held[0]!.transfer.data;
  assertEquals(data, sent);
  // The deliberate copy: the read-ahead buffer is reused, and the URB may outlive the next read.
  assert(log.reads.every((r) => r.view.buffer !== data.buffer));
  probe.held[0]!.complete({ status: "ok" });
  await urb.done;
  await tearDown();
});

Deno.test("64 KiB of IN data with room in front go out in the device's buffer, header and all, in one write", async () => {
  const { probe, log, channel, tearDown } = await setUp();
  const urb = channel.submit({ ep: 1, dirIn: true, length: 65536 });
  await probe.waitHeld(1);
  const pool = deviceInPool();
  const lent = pool.lend(65536)!;
  lent.set(pattern(65536));
  const before = log.writes.length;
  probe.held[0]!.complete({ status: "ok", ...pool.handOver(lent, lent) });
  const ret = await urb.done;
  assertEquals(ret.actualLength, 65536);
  assertEquals(ret.data, pattern(65536));
  const writes = log.writes.slice(before);
  assertEquals(writes.map((w) => w.length), [48 + 65536]);
  assert(writes[0]!.buffer === lent.buffer, "the reply was not written from the device's buffer");
  assertEquals(writes[0]!.byteOffset, lent.byteOffset - 48);
  await tearDown();
});

Deno.test("IN data without room in front: copied behind the header up to 64 KiB, a second write beyond", async () => {
  const { probe, log, channel, tearDown } = await setUp();
  const cases = [[65536, [48 + 65536], false], [131072, [48, 131072], true]] as const;
  for (const [i, [n, lengths, ownBuffer]] of cases.entries()) {
    const urb = channel.submit({ ep: 1, dirIn: true, length: n });
    await probe.waitHeld(i + 1);
    const mine = pattern(n);
    const before = log.writes.length;
    probe.held[i]!.complete({ status: "ok", data: mine });
    assertEquals((await urb.done).data, mine);
    const writes = log.writes.slice(before);
    assertEquals(writes.map((w) => w.length), [...lengths]);
    assertEquals(writes.at(-1)!.buffer === mine.buffer, ownBuffer, `${n} bytes`);
  }
  await tearDown();
});

Deno.test("room in front is used only when the result says so and gives its buffer back", async () => {
  const { probe, log, channel, tearDown } = await setUp();
  const pool = deviceInPool();
  // Room in front, but no release (the device keeps the buffer) or no headroom claimed: copied.
  for (const [i, extra] of [[1, { headroom: 48 }], [2, { release: () => {} }]] as const) {
    const urb = channel.submit({ ep: 1, dirIn: true, length: 65536 });
    await probe.waitHeld(i);
    const lent = pool.lend(65536)!;
    const before = log.writes.length;
    probe.held[i - 1]!.complete({ status: "ok", data: lent, ...extra });
    await urb.done;
    const writes = log.writes.slice(before);
    assertEquals(writes.length, 1);
    assert(writes[0]!.buffer !== lent.buffer, `case ${i}: the device's memory was written into`);
  }
  await tearDown();
});

Deno.test("small IN data are written in one buffer with their RET_SUBMIT header", async () => {
  const { probe, log, channel, tearDown } = await setUp();
  const urb = channel.submit({ ep: 1, dirIn: true, length: 1024 });
  await probe.waitHeld(1);
  const mine = pattern(1024);
  const before = log.writes.length;
  probe.held[0]!.complete({ status: "ok", data: mine });
  const ret = await urb.done;
  assertEquals(ret.data, mine);
  // The deliberate copy: one write of header + data costs less than two writes.
  const writes = log.writes.slice(before);
  assertEquals(writes.map((w) => w.length), [48 + 1024]);
  assert(writes[0]!.buffer !== mine.buffer);
  await tearDown();
});

Deno.test("sessions share one pool: an OUT buffer freed by one session takes the next session's data", async () => {
  const server = new UsbipServer();
  const probes = [new ProbeDevice(1), new ProbeDevice(2)];
  for (const p of probes) server.addDevice(p);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const sessions = [];
  for (const busid of ["1-1", "1-2"]) {
    const accepted = listener.accept();
    const client = await connectTcp("127.0.0.1", listener.addr.port);
    const done = server.accept(wrapTcpConn(await accepted));
    const channel = await importDevice(client, busid);
    await setConfiguration(channel, 1);
    sessions.push({ channel, done });
  }
  listener.close();
  const [a, b] = sessions;
  const first = a!.channel.submit({ ep: 1, dirIn: false, data: pattern(16384) });
  await probes[0]!.waitHeld(1);
  const buffer = probes[0]!.held[0]!.transfer.data.buffer;
  assertEquals(server.bufferPool.bytes, 0, "a pending URB's buffer is not in the pool");
  probes[0]!.held[0]!.complete({ status: "ok" });
  await first.done;
  assertEquals(server.bufferPool.bytes, 16384, "completed: its buffer went back to the pool");
  const sent = pattern(16384).reverse();
  const second = b!.channel.submit({ ep: 1, dirIn: false, data: sent });
  await probes[1]!.waitHeld(1);
  const data = probes[1]!.held[0]!.transfer.data;
  assert(data.buffer === buffer, "the other session read into the pooled buffer");
  assertEquals(data, sent);
  probes[1]!.held[0]!.complete({ status: "ok" });
  await second.done;
  for (const s of sessions) {
    await s.channel.close();
    await s.done;
  }
  await server.close();
});

Deno.test("an unlinked OUT URB's buffer is not reused: the device may still hold it", async () => {
  const { probe, channel, tearDown } = await setUp();
  const sent = pattern(16384);
  const urb = channel.submit({ ep: 1, dirIn: false, data: sent });
  await probe.waitHeld(1);
  const held = probe.held[0]!.transfer.data;
  urb.done.catch(() => {});
  assertEquals((await channel.unlink(urb.seqnum)).status, -104);
  const next = channel.submit({ ep: 1, dirIn: false, data: pattern(16384).reverse() });
  await probe.waitHeld(2);
  assert(probe.held[1]!.transfer.data.buffer !== held.buffer);
  assertEquals(held, sent, "the unlinked transfer's data are intact");
  probe.held[1]!.complete({ status: "ok" });
  await next.done;
  await tearDown();
});

Deno.test("a device's IN buffer is released once the socket has written it, large or small", async () => {
  const { probe, log, channel, tearDown } = await setUp();
  const pool = deviceInPool();
  const cases = [[131072, false], [65536, true], [65536, false], [1024, false]] as const;
  for (const [i, [n, room]] of cases.entries()) {
    const urb = channel.submit({ ep: 1, dirIn: true, length: n });
    await probe.waitHeld(i + 1);
    const mine = room ? pool.lend(n)! : new Uint8Array(n);
    mine.set(pattern(n));
    let written = -1;
    probe.held[i]!.complete({
      status: "ok",
      data: mine,
      ...(room ? { headroom: pool.headroom } : {}),
      // How many buffers the socket had been handed when the device got this one back.
      release: () => written = written === -1 ? log.writes.length : -2,
    });
    const ret = await urb.done;
    assertEquals(ret.data, pattern(n));
    const what = `${n} bytes${room ? " with room in front" : ""}`;
    assert(written > 0, `${what}: release was called ${written === -1 ? "never" : "twice"}`);
    // The reply's data: the device's own buffer (room in front, or a second write), else a copy.
    const carrier = log.writes.findIndex((w) =>
      room || n > 65536 ? w.buffer === mine.buffer : w.length === 48 + n
    );
    assert(carrier >= 0 && carrier < written, `${what}: released before the socket had them`);
  }
  await tearDown();
});

Deno.test("an IN buffer goes back to the device only after every observer has seen it", async () => {
  const { server, probe, channel, tearDown } = await setUp();
  const events: string[] = [];
  const remove = server.observers.add({
    completed: (_i, _cmd, c) => events.push(`observer saw ${c.data[1]}`),
  });
  const urb = channel.submit({ ep: 1, dirIn: true, length: 65536 });
  await probe.waitHeld(1);
  const mine = pattern(65536);
  probe.held[0]!.complete({ status: "ok", data: mine, release: () => events.push("released") });
  await urb.done;
  await new Promise((r) => setTimeout(r, 10));
  assertEquals(events, ["observer saw 7", "released"]);
  remove();
  await tearDown();
});

Deno.test("an unlinked IN URB's buffer is never released: the session drops its result", async () => {
  const { probe, channel, tearDown } = await setUp();
  const urb = channel.submit({ ep: 1, dirIn: true, length: 65536 });
  await probe.waitHeld(1);
  urb.done.catch(() => {});
  assertEquals((await channel.unlink(urb.seqnum)).status, -104);
  let released = false;
  probe.held[0]!.complete({ status: "ok", data: pattern(65536), release: () => released = true });
  // A URB after it shows that the session has handled the late result.
  const next = channel.submit({ ep: 1, dirIn: true, length: 4 });
  await probe.waitHeld(2);
  probe.held[1]!.complete({ status: "ok", data: pattern(4) });
  await next.done;
  assertEquals(released, false);
  await tearDown();
});
