// Tests of sessions over in-memory connections: the op phase, URB queueing and ordering,
// CMD_UNLINK, hang-ups, malformed frames and devices that go away.
import { assert, assertEquals, assertRejects } from "@std/assert";
import {
  type Connection,
  DescriptorType,
  GadgetZero,
  importDevice,
  ImportRefusedError,
  memoryConnectionPair,
  OpStatus,
  type Policy,
  Request,
  requestDeviceList,
  RequestType,
  TransferFlags,
  UrbStatus,
  UsbipServer,
} from "../../mod.ts";
import {
  decodeRetUnlink,
  encodeCmdSubmit,
  encodeCmdUnlink,
  encodeOpReqDevlist,
  encodeOpReqImport,
  encodeOpReqStatus,
  FrameReader,
} from "../../protocol.ts";
import { ProbeDevice } from "./_probe_device.ts";
import {
  eventually,
  importOver,
  importRaw,
  refusingServer,
  setConfiguration,
} from "./_session_helpers.ts";

const never = () => new Promise<"pending">((r) => setTimeout(() => r("pending"), 30));

Deno.test("DEVLIST lists every device, and only what the policy lets a peer see", async () => {
  const hideProbe: Policy = {
    decide: (_peer, device) => ({
      effect: device.idVendor !== 0x1209 ? "allow" as const : "deny" as const,
      reason: "test rule",
    }),
  };
  for (const [policy, expected] of [[undefined, ["1-1", "1-2"]], [hideProbe, ["1-1"]]] as const) {
    const server = new UsbipServer(policy ? { policy } : {});
    server.addDevice(new GadgetZero());
    server.addDevice(new ProbeDevice());
    const [client, end] = memoryConnectionPair();
    const done = server.accept(end);
    const devices = await requestDeviceList(client);
    assertEquals(devices.map((d) => d.busid), [...expected]);
    assertEquals(devices[0]?.idVendor, 0x0525);
    assertEquals(devices[0]?.interfaces, [{
      bInterfaceClass: 0xff,
      bInterfaceSubClass: 0,
      bInterfaceProtocol: 0,
    }]);
    await done;
    await server.close();
  }
});

Deno.test("IMPORT answers NODEV for an unknown busid and DEV_BUSY for a held device", async () => {
  const server = new UsbipServer();
  server.addDevice(new ProbeDevice(), { busid: "2-3" });
  const unknown = await assertRejects(() => importOver(server, "9-9"), ImportRefusedError);
  assertEquals(unknown.status, OpStatus.ST_NODEV);
  const first = await importOver(server, "2-3");
  assertEquals(first.channel.device.busid, "2-3");
  assertEquals(first.channel.devid, (2 << 16) | 2);
  const busy = await assertRejects(() => importOver(server, "2-3"), ImportRefusedError);
  assertEquals(busy.status, OpStatus.ST_DEV_BUSY);
  await first.channel.close();
  await first.done;
  // Released at once: the next import succeeds without waiting.
  const again = await importOver(server, "2-3");
  await again.channel.close();
  await server.close();
});

Deno.test("IMPORT answers NA when the policy denies the import, and DEVLIST hides the device", async () => {
  const server = new UsbipServer({
    policy: { decide: () => ({ effect: "deny" as const, rule: 1, reason: "rule 1 (deny)" }) },
  });
  server.addDevice(new ProbeDevice());
  const e = await assertRejects(() => importOver(server, "1-1"), ImportRefusedError);
  assertEquals(e.status, OpStatus.ST_NA);
  const [client, end] = memoryConnectionPair();
  const done = server.accept(end);
  assertEquals(await requestDeviceList(client), []);
  await done;
  await server.close();
});

Deno.test("an idle IN transfer stays pending without blocking other endpoints", async () => {
  const server = new UsbipServer();
  const probe = new ProbeDevice();
  server.addDevice(probe);
  const { channel, done } = await importOver(server, "1-1");
  await setConfiguration(channel, 1);
  const idle = channel.submit({ ep: 2, dirIn: true, length: 8 });
  const bulkIn = channel.submit({ ep: 1, dirIn: true, length: 512 });
  await probe.waitHeld(2);
  // ep0 still answers while both are pending.
  const config = await channel.control({
    bmRequestType: RequestType.DIR_IN,
    bRequest: Request.GET_CONFIGURATION,
    wValue: 0,
    wIndex: 0,
    wLength: 1,
  });
  assertEquals([...config.data], [1]);
  assertEquals(await Promise.race([idle.done.then(() => "done"), never()]), "pending");
  probe.held[1]!.complete({ status: "ok", data: new Uint8Array([5]) });
  assertEquals([...(await bulkIn.done).data], [5]);
  assertEquals(await Promise.race([idle.done.then(() => "done"), never()]), "pending");
  probe.held[0]!.complete({ status: "ok", data: new Uint8Array(8).fill(1) });
  assertEquals((await idle.done).actualLength, 8);
  await channel.close();
  await done;
  await server.close();
});

Deno.test("URBs complete in order per endpoint, with many pending at once", async () => {
  const server = new UsbipServer();
  const probe = new ProbeDevice();
  server.addDevice(probe);
  const { channel, done } = await importOver(server, "1-1");
  await setConfiguration(channel, 1);
  const urbs = Array.from({ length: 16 }, () => channel.submit({ ep: 1, dirIn: true, length: 4 }));
  // The endpoint runs one transfer at a time: only the head is with the device.
  await probe.waitHeld(1);
  assertEquals(probe.held.length, 1);
  const order: number[] = [];
  urbs.forEach((u, i) => u.done.then(() => order.push(i)));
  for (let i = 0; i < 16; i++) {
    await probe.waitHeld(i + 1);
    probe.held[i]!.complete({ status: "ok", data: new Uint8Array([i]) });
  }
  const results = await Promise.all(urbs.map((u) => u.done));
  assertEquals(results.map((r) => r.data[0]), Array.from({ length: 16 }, (_, i) => i));
  assertEquals(order, Array.from({ length: 16 }, (_, i) => i));
  await channel.close();
  await done;
  await server.close();
});

Deno.test("control requests on ep0 complete in FIFO order even when the first is slowest", async () => {
  const server = new UsbipServer();
  server.addDevice(new ProbeDevice());
  const { channel, done } = await importOver(server, "1-1");
  const delays = [40, 1, 20, 0, 5];
  const order: number[] = [];
  const all = delays.map((ms) =>
    channel.control({ bmRequestType: 0xc0, bRequest: 0x01, wValue: ms, wIndex: 0, wLength: 1 })
      .then((r) => {
        order.push(r.data[0]!);
      })
  );
  await Promise.all(all);
  assertEquals(order, delays);
  await channel.close();
  await done;
  await server.close();
});

Deno.test("CMD_UNLINK cancels a pending URB with -ECONNRESET and no RET_SUBMIT", async () => {
  const server = new UsbipServer();
  const probe = new ProbeDevice();
  server.addDevice(probe);
  const { channel, done } = await importOver(server, "1-1");
  await setConfiguration(channel, 1);
  const running = channel.submit({ ep: 1, dirIn: true, length: 4 });
  const queued = channel.submit({ ep: 1, dirIn: true, length: 4 });
  const behind = channel.submit({ ep: 1, dirIn: true, length: 4 });
  await probe.waitHeld(1);
  // Cancel the one in the middle of the queue, then the one with the device.
  assertEquals((await channel.unlink(queued.seqnum)).status, UrbStatus.ECONNRESET);
  await assertRejects(() => queued.done, DOMException, "unlinked");
  assertEquals((await channel.unlink(running.seqnum)).status, UrbStatus.ECONNRESET);
  await assertRejects(() => running.done, DOMException, "unlinked");
  assertEquals(probe.aborted.length, 1);
  // The one behind them is next with the device; complete it.
  await probe.waitHeld(2);
  probe.held[1]!.complete({ status: "ok", data: new Uint8Array([9]) });
  assertEquals([...(await behind.done).data], [9]);
  // A stray RET_SUBMIT for a cancelled URB would have failed the channel's reader.
  const check = await channel.control({
    bmRequestType: RequestType.DIR_IN,
    bRequest: Request.GET_CONFIGURATION,
    wValue: 0,
    wIndex: 0,
    wLength: 1,
  });
  assertEquals(check.status, 0);
  assertEquals(channel.closedReason, undefined);
  await channel.close();
  await done;
  await server.close();
});

Deno.test("CMD_UNLINK of a completed or unknown URB answers status 0", async () => {
  const server = new UsbipServer();
  server.addDevice(new GadgetZero());
  const { channel, done } = await importOver(server, "1-1");
  await setConfiguration(channel, 3);
  const r = channel.submit({ ep: 1, dirIn: true, length: 64 });
  assertEquals((await r.done).status, 0);
  const unlink = await channel.unlink(r.seqnum);
  assertEquals(unlink.status, 0);
  assertEquals((await channel.unlink(123456)).status, 0);
  await channel.close();
  await done;
  await server.close();
});

Deno.test("a hang-up aborts every pending transfer and releases the device at once", async () => {
  const server = new UsbipServer();
  const probe = new ProbeDevice();
  server.addDevice(probe);
  const { channel, done } = await importOver(server, "1-1");
  await setConfiguration(channel, 1);
  const pending = [
    channel.submit({ ep: 1, dirIn: true, length: 4 }),
    channel.submit({ ep: 1, dirIn: false, data: new Uint8Array(4) }),
    channel.submit({ ep: 2, dirIn: true, length: 8 }),
  ];
  for (const p of pending) p.done.catch(() => {});
  await probe.waitHeld(3);
  await channel.close();
  await done;
  assertEquals(probe.aborted.length, 3);
  assert(probe.held.every((h) => h.transfer.signal.aborted));
  assertEquals(server.holderOf("1-1"), undefined);
  assertEquals(probe.configurationValue, 0, "the device is reset for the next import");
  const next = await importOver(server, "1-1");
  await next.channel.close();
  await server.close();
});

Deno.test("garbage closes that session with a logged reason while other sessions go on", async () => {
  const server = new UsbipServer();
  server.addDevice(new GadgetZero(), { busid: "1-1" });
  server.addDevice(new ProbeDevice(), { busid: "1-2" });
  const good = await importOver(server, "1-1");
  await setConfiguration(good.channel, 3);
  const [client, end] = memoryConnectionPair();
  const badDone = server.accept(end);
  const writer = client.writable.getWriter();
  await writer.write(encodeOpReqImport("1-2"));
  const reader = new FrameReader(client.readable);
  assertEquals((await reader.readOpRepImport()).status, 0);
  await writer.write(new Uint8Array(48).fill(0xee));
  await badDone;
  const session = server.sessions.find((s) => s.device?.busid === "1-2");
  assertEquals(session, undefined);
  assertEquals(server.holderOf("1-2"), undefined);
  // The other session still works.
  assertEquals(
    (await good.channel.submit({ ep: 1, dirIn: true, length: 512 }).done).actualLength,
    512,
  );
  await good.channel.close();
  await server.close();
});

Deno.test("a session ends with a reason that names the bad field", async () => {
  const server = new UsbipServer();
  server.addDevice(new GadgetZero());
  const [client, end] = memoryConnectionPair();
  const done = server.accept(end);
  const session = server.sessions[0]!;
  const writer = client.writable.getWriter();
  await writer.write(encodeOpReqImport("1-1"));
  await new FrameReader(client.readable).readOpRepImport();
  const huge = encodeCmdSubmit({
    kind: "cmd_submit",
    seqnum: 1,
    devid: 0x10002,
    direction: 1,
    ep: 1,
    transferFlags: 0,
    transferBufferLength: 0x40000000,
    startFrame: 0,
    numberOfPackets: 0,
    interval: 0,
    setup: new Uint8Array(8),
    data: new Uint8Array(0),
    isoPackets: [],
  });
  await writer.write(huge);
  await done;
  assert(session.endReason?.includes("transfer_buffer_length"), session.endReason);
  await server.close();
});

Deno.test("a device that goes away answers pending URBs with -ENODEV and hangs up", async () => {
  const server = new UsbipServer();
  const probe = new ProbeDevice();
  server.addDevice(probe);
  const { channel, done } = await importOver(server, "1-1");
  await setConfiguration(channel, 1);
  const a = channel.submit({ ep: 1, dirIn: true, length: 4 });
  const b = channel.submit({ ep: 2, dirIn: true, length: 8 });
  await probe.waitHeld(2);
  server.removeDevice("1-1");
  assertEquals((await a.done).status, UrbStatus.ENODEV);
  assertEquals((await b.done).status, UrbStatus.ENODEV);
  await done;
  await channel.closed;
  assertEquals(server.devices.length, 0);
  await channel.close();
  await server.close();
});

Deno.test("a short IN with URB_SHORT_NOT_OK completes with -EREMOTEIO", async () => {
  const server = new UsbipServer();
  const probe = new ProbeDevice();
  server.addDevice(probe);
  const { channel, done } = await importOver(server, "1-1");
  await setConfiguration(channel, 1);
  const r = channel.submit({
    ep: 1,
    dirIn: true,
    length: 16,
    transferFlags: TransferFlags.URB_SHORT_NOT_OK,
  });
  await probe.waitHeld(1);
  probe.held[0]!.complete({ status: "ok", data: new Uint8Array(3) });
  const ret = await r.done;
  assertEquals(ret.status, UrbStatus.EREMOTEIO);
  assertEquals(ret.actualLength, 3);
  await channel.close();
  await done;
  await server.close();
});

Deno.test("a device handler that throws fails only that URB with -EPROTO", async () => {
  const server = new UsbipServer();
  server.addDevice(new ProbeDevice());
  const { channel, done } = await importOver(server, "1-1");
  const failed = await channel.control({
    bmRequestType: 0x40,
    bRequest: 0x02,
    wValue: 0,
    wIndex: 0,
    wLength: 0,
  });
  assertEquals(failed.status, UrbStatus.EPROTO);
  const ok = await channel.control({
    bmRequestType: RequestType.DIR_IN,
    bRequest: Request.GET_CONFIGURATION,
    wValue: 0,
    wIndex: 0,
    wLength: 1,
  });
  assertEquals(ok.status, 0);
  await channel.close();
  await done;
  await server.close();
});

Deno.test("many sessions and many devices work at once", async () => {
  const server = new UsbipServer();
  const n = 12;
  for (let i = 0; i < n; i++) server.addDevice(new GadgetZero({ pattern: 1 }));
  const sessions = await Promise.all(server.devices.map((d) => importOver(server, d.busid)));
  await Promise.all(sessions.map((s) => setConfiguration(s.channel, 3)));
  const results = await Promise.all(
    sessions.flatMap((s) =>
      Array.from(
        { length: 8 },
        (_, i) => s.channel.submit({ ep: 1, dirIn: true, length: 64 * (i + 1) }).done,
      )
    ),
  );
  assertEquals(results.length, n * 8);
  assert(results.every((r, i) => r.status === 0 && r.actualLength === 64 * ((i % 8) + 1)));
  assertEquals(server.sessions.length, n);
  await Promise.all(sessions.map((s) => s.channel.close()));
  await Promise.all(sessions.map((s) => s.done));
  await eventually(() => server.sessions.length === 0);
  await server.close();
});

Deno.test("an op request in the URB phase is a protocol error naming the command", async () => {
  const server = new UsbipServer();
  server.addDevice(new GadgetZero());
  const [client, end] = memoryConnectionPair();
  const done = server.accept(end);
  const session = server.sessions[0]!;
  const w = client.writable.getWriter();
  await w.write(encodeOpReqImport("1-1"));
  assertEquals((await new FrameReader(client.readable).readOpRepImport()).status, 0);
  await w.write(new Uint8Array([...encodeOpReqDevlist(), ...new Uint8Array(40)]));
  await done;
  assert(
    session.endReason?.startsWith("protocol error") && session.endReason.includes("command"),
    session.endReason,
  );
  assertEquals(server.holderOf("1-1"), undefined);
  await server.close();
});

Deno.test("a peer that half-closes after its request still gets the whole answer", async () => {
  const server = new UsbipServer();
  server.addDevice(new GadgetZero());
  const request = encodeOpReqDevlist();
  let served = false;
  let written = 0;
  let closedAfter = -1;
  const conn: Connection = {
    get readable(): ReadableStream<Uint8Array> {
      throw new Error("not used");
    },
    get writable(): WritableStream<Uint8Array> {
      throw new Error("not used");
    },
    peer: { transport: "memory", address: "slow" },
    direct: {
      // The request, then end of stream at once (the peer shut down its sending side).
      read(buffer) {
        if (served) return Promise.resolve(null);
        served = true;
        buffer.set(request);
        return Promise.resolve(request.length);
      },
      // A slow socket: each write completes 30 ms later.
      write: (b) =>
        new Promise((resolve) => setTimeout(() => resolve((written += b.length, b.length)), 30)),
    },
    close() {
      closedAfter = written;
    },
  };
  await server.accept(conn);
  assertEquals(written, 12 + 312 + 4);
  assertEquals(closedAfter, written, "the socket closed only after the answer was written");
  await server.close();
});

Deno.test("a device that cannot be taken refuses the import with DEV_ERR and stays importable", async () => {
  class Stubborn extends ProbeDevice {
    refuse = true;
    releases = 0;
    override imported() {
      if (this.refuse) throw new Error("busy elsewhere");
      super.imported();
    }
    override released() {
      this.releases++;
      super.released();
    }
  }
  const server = new UsbipServer();
  const dev = new Stubborn();
  server.addDevice(dev);
  const e = await assertRejects(() => importOver(server, "1-1"), ImportRefusedError);
  assertEquals(e.status, OpStatus.ST_DEV_ERR);
  assertEquals(server.holderOf("1-1"), undefined);
  dev.refuse = false;
  const ok = await importOver(server, "1-1");
  await ok.channel.close();
  await ok.done;
  assertEquals(dev.releases >= 1, true, "released() runs when the session ends");
  await server.close();
});

Deno.test("a pipelined device gets every URB of an endpoint at once; ep0 stays FIFO", async () => {
  class Pipelined extends ProbeDevice {
    override readonly pipelined = true;
  }
  const server = new UsbipServer();
  const probe = new Pipelined();
  server.addDevice(probe);
  const { channel, done } = await importOver(server, "1-1");
  await setConfiguration(channel, 1);
  const urbs = [1, 2, 3].map(() => channel.submit({ ep: 1, dirIn: true, length: 4 }));
  await probe.waitHeld(3);
  assertEquals(probe.held.length, 3, "all three are with the device at once");
  // Unlinking the middle one cancels it at the device, as DISCARDURB would.
  assertEquals((await channel.unlink(urbs[1]!.seqnum)).status, UrbStatus.ECONNRESET);
  await assertRejects(() => urbs[1]!.done, DOMException);
  assertEquals(probe.aborted.length, 1);
  probe.held[0]!.complete({ status: "ok", data: new Uint8Array([1]) });
  probe.held[2]!.complete({ status: "ok", data: new Uint8Array([3]) });
  assertEquals([...(await urbs[0]!.done).data, ...(await urbs[2]!.done).data], [1, 3]);
  const order: number[] = [];
  await Promise.all(
    [30, 1].map((ms) =>
      channel.control({ bmRequestType: 0xc0, bRequest: 0x01, wValue: ms, wIndex: 0, wLength: 1 })
        .then((r) => {
          order.push(r.data[0]!);
        })
    ),
  );
  assertEquals(order, [30, 1]);
  await channel.close();
  await done;
  await server.close();
});

/** Resolves true when the server has closed the connection `reader` reads: end of stream. */
async function atEof(reader: FrameReader): Promise<boolean> {
  return (await reader.readExact(1)) === null;
}

Deno.test("a device list ends the connection once it is written, as Linux usbipd does", async () => {
  const server = new UsbipServer();
  server.addDevice(new GadgetZero());
  const [client, end] = memoryConnectionPair();
  const start = Date.now();
  const done = server.accept(end);
  const session = server.sessions[0]!;
  await client.writable.getWriter().write(encodeOpReqDevlist());
  const reader = new FrameReader(client.readable);
  assertEquals((await reader.readOpRepDevlist()).devices.map((d) => d.busid), ["1-1"]);
  assert(await atEof(reader), "the server closed the connection");
  await done;
  // Well before the op-phase timeout (10 s): the list itself ended the session.
  assert(Date.now() - start < 1000, `ended after ${Date.now() - start} ms`);
  assertEquals(session.endReason, "device list sent");
  await server.close();
});

Deno.test("a refused import ends the connection: NODEV, NA, DEV_BUSY and DEV_ERR", async () => {
  const { server, refusals } = refusingServer();
  const holder = await importOver(server, "1-1");
  for (const [busid, status] of refusals) {
    const [client, end] = memoryConnectionPair();
    const start = Date.now();
    const done = server.accept(end);
    const session = server.sessions.at(-1)!;
    await client.writable.getWriter().write(encodeOpReqImport(busid));
    const reader = new FrameReader(client.readable);
    assertEquals(await reader.readOpRepImport(), { kind: "op_rep_import", status });
    assert(await atEof(reader), `the server closed the connection after refusing ${busid}`);
    await done;
    assert(Date.now() - start < 1000, `${busid}: ended after ${Date.now() - start} ms`);
    assertEquals(session.endReason, `import of ${busid} refused (status ${status})`);
  }
  // The holder's session is untouched.
  assertEquals((await setConfiguration(holder.channel, 3)).status, 0);
  await holder.channel.close();
  await server.close();
});

Deno.test("a status request, answered or refused, leaves the connection open for the next one", async () => {
  for (const allowed of [true, false]) {
    const server = new UsbipServer({ statusAccess: () => allowed });
    server.addDevice(new GadgetZero());
    const [client, end] = memoryConnectionPair();
    const done = server.accept(end);
    const writer = client.writable.getWriter();
    await writer.write(encodeOpReqStatus());
    const reader = new FrameReader(client.readable);
    const status = await reader.readOpRepStatus();
    assertEquals(status.status, allowed ? OpStatus.ST_OK : OpStatus.ST_NA);
    if (allowed) assertEquals(JSON.parse(status.json).devices[0].busid, "1-1");
    // Then an import on the same connection, and a transfer through it.
    writer.releaseLock();
    reader.releaseLock();
    const channel = await importDevice(client, "1-1");
    assertEquals((await setConfiguration(channel, 3)).status, 0);
    await channel.close();
    await done;
    await server.close();
  }
});

Deno.test("a connection that repeats status requests gets eight answers, then is closed", async () => {
  for (const allowed of [true, false]) {
    const server = new UsbipServer({ statusAccess: () => allowed });
    server.addDevice(new GadgetZero());
    const [client, end] = memoryConnectionPair();
    const done = server.accept(end);
    const session = server.sessions[0]!;
    // Twenty requests in one write, as a peer looping on them would send.
    const requests = new Uint8Array(20 * encodeOpReqStatus().length);
    for (let i = 0; i < 20; i++) requests.set(encodeOpReqStatus(), i * encodeOpReqStatus().length);
    await client.writable.getWriter().write(requests);
    const reader = new FrameReader(client.readable);
    for (let i = 0; i < 8; i++) {
      const status = await reader.readOpRepStatus();
      assertEquals(status.status, allowed ? OpStatus.ST_OK : OpStatus.ST_NA, `answer ${i + 1}`);
    }
    assert(await atEof(reader), "closed after the eighth answer, the other twelve unanswered");
    await done;
    assertEquals(session.endReason, "more than 8 status requests on one connection");
    await server.close();
  }
});

Deno.test("RET_SUBMIT and RET_UNLINK carry devid, direction and ep 0, as the kernel's stub", async () => {
  const server = new UsbipServer();
  server.addDevice(new GadgetZero({ pattern: 1 }), { busid: "1-2" });
  const { channel, done } = await importOver(server, "1-2");
  assert(channel.devid !== 0, "the client sends a non-zero devid");
  const zeros = (r: { devid: number; direction: number; ep: number }) => [
    r.devid,
    r.direction,
    r.ep,
  ];
  const control = await channel.control({
    bmRequestType: RequestType.DIR_IN,
    bRequest: Request.GET_DESCRIPTOR,
    wValue: DescriptorType.DEVICE << 8,
    wIndex: 0,
    wLength: 18,
  });
  assertEquals([control.status, control.actualLength], [0, 18]);
  assertEquals(zeros(control), [0, 0, 0]);
  assertEquals((await setConfiguration(channel, 3)).status, 0);
  const bulkIn = await channel.submit({ ep: 1, dirIn: true, length: 64 }).done;
  assertEquals([bulkIn.status, bulkIn.actualLength], [0, 64]);
  assertEquals(zeros(bulkIn), [0, 0, 0], "not the IN endpoint 1 the URB went to");
  const bulkOut = await channel.submit({ ep: 1, dirIn: false, data: new Uint8Array(8) }).done;
  assertEquals(zeros(bulkOut), [0, 0, 0]);
  await channel.close();
  await done;
  // CMD_UNLINK with every field set, on a raw connection: the answer has them 0.
  const [client, end] = memoryConnectionPair();
  const { done: rawDone, writer, reader } = await importRaw(server, client, end, "1-2");
  await writer.write(encodeCmdUnlink({
    kind: "cmd_unlink",
    seqnum: 7,
    devid: 0x10002,
    direction: 1,
    ep: 1,
    unlinkSeqnum: 6,
  }));
  assertEquals(decodeRetUnlink((await reader.readExact(48))!), {
    kind: "ret_unlink",
    seqnum: 7,
    devid: 0,
    direction: 0,
    ep: 0,
    status: 0,
  });
  client.close();
  await rawDone;
  await server.close();
});
