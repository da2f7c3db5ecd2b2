// The capture's records of real sessions (in memory): an 'S' and a 'C' per URB with
// id = session << 32 | seqnum, the setup packet, data where usbmon puts it, an unlinked URB as
// a 'C' with -ECONNRESET, the URBs a hang-up left as 'C's with -ESHUTDOWN, ISO descriptors and
// ISO IN data at their offsets, a snap length, and the synthetic descriptor transfers (a real
// device asked for its report descriptors only by a capture that began after its import, and
// given a second to answer).
import { assert, assertEquals } from "@std/assert";
import {
  GadgetZero,
  HidKeyboard,
  type MaybePromise,
  type TransferResult,
  UsbipServer,
  type UsbTransfer,
} from "../../mod.ts";
import { CaptureRecorder } from "../../lib/capture/capture_recorder.ts";
import { Capture, serverSource } from "../../lib/capture/capture.ts";
import { ProbeDevice } from "../server/_probe_device.ts";
import { eventually, importOver, setConfiguration } from "../server/_session_helpers.ts";
import { readCapture, type UsbmonRecord } from "./_pcapng.ts";

/** A server whose every block goes into `bytes()`. */
function recorded(snaplen?: number) {
  const server = new UsbipServer({});
  const blocks: Uint8Array[] = [];
  const recorder = new CaptureRecorder(space(blocks), snaplen ? { snaplen } : {});
  blocks.push(recorder.header());
  server.observers.add(recorder);
  const bytes = () => new Uint8Array(blocks.flatMap((b) => [...b]));
  return { server, bytes };
}

const SYNTHETIC = 1n << 63n;

/** Space for each block, kept in `blocks`; reused memory is stood in for by 0xee bytes. */
function space(blocks: Uint8Array[]): (size: number) => Uint8Array {
  return (size) => {
    const b = new Uint8Array(size).fill(0xee);
    blocks.push(b);
    return b;
  };
}

/** Every 'S' has one 'C' with its id, after it. */
function assertPaired(usb: UsbmonRecord[]): void {
  const open = new Set<bigint>();
  for (const r of usb) {
    if (r.type === "S") {
      assert(!open.has(r.id), `id ${r.id.toString(16)} submitted twice`);
      open.add(r.id);
    } else {
      assert(open.delete(r.id), `a 'C' without its 'S': ${r.id.toString(16)}`);
    }
  }
  assertEquals(open.size, 0, `submits without completion: ${[...open]}`);
}

Deno.test("a session's URBs are recorded as S and C pairs; an unlink and a hang-up complete theirs", async () => {
  const { server, bytes } = recorded();
  const probe = new ProbeDevice();
  const exported = server.addDevice(probe, { busid: "1-1" });
  const { channel, done } = await importOver(server, "1-1");
  assertEquals((await setConfiguration(channel, 1)).status, 0);
  const bulkIn = channel.submit({ ep: 1, dirIn: true, length: 64 });
  const interrupt = channel.submit({ ep: 2, dirIn: true, length: 8, interval: 4 });
  interrupt.done.catch(() => {});
  await probe.waitHeld(2);
  probe.held[0]!.complete({ status: "ok", data: new Uint8Array([1, 2, 3]) });
  await bulkIn.done;
  const unlink = await channel.unlink(interrupt.seqnum);
  const stalled = channel.submit({ ep: 1, dirIn: false, data: new Uint8Array([9, 9]) });
  await probe.waitHeld(3);
  probe.held[2]!.complete({ status: "stall" });
  assertEquals((await stalled.done).status, -32);
  const left = channel.submit({ ep: 1, dirIn: true, length: 64 });
  left.done.catch(() => {});
  await probe.waitHeld(4);
  await channel.close();
  await done;

  const { usb, events } = readCapture(bytes());
  assertPaired(usb);
  const session = usb.at(-1)!.id >> 32n;
  const real = usb.filter((r) => (r.id & SYNTHETIC) === 0n);
  const id = (seqnum: number) => (session << 32n) | BigInt(seqnum);
  for (const r of usb) assertEquals([r.busnum, r.devnum], [exported.busnum, exported.devnum]);
  // The synthetic GET_DESCRIPTOR(DEVICE) and (CONFIGURATION) come first, bit 63 set.
  const synthetic = usb.filter((r) => (r.id & SYNTHETIC) !== 0n);
  assertEquals(synthetic.map((r) => `${r.type}${r.type === "S" ? ` ${r.setup[3]}` : ""}`), [
    "S 1",
    "C",
    "S 2",
    "C",
  ]);
  assertEquals(synthetic[1]!.data, probe.descriptors.device);
  assertEquals(synthetic[3]!.data, probe.descriptors.configurations[0]);
  const flag = (x: number) => x === 0 ? "0" : String.fromCharCode(x);
  const line = (r: UsbmonRecord) =>
    `${r.type} ${Number(r.id & 0xffffffffn)} x${r.xferType} ep${
      r.epnum.toString(16)
    } ${r.status} ${r.length}/${r.lenCap} ${flag(r.flagSetup)}${flag(r.flagData)}${
      r.comment ? ` (${r.comment})` : ""
    }`;
  assertEquals(real.map((r) => r.id >> 32n), real.map(() => session), "the session's number");
  assertEquals(real.map(line), [
    "S 1 x2 ep0 -115 0/0 00", // SET_CONFIGURATION: a setup packet, an empty OUT stage
    "C 1 x2 ep0 0 0/0 ->",
    `S ${bulkIn.seqnum} x3 ep81 -115 64/0 -<`,
    `S ${interrupt.seqnum} x1 ep82 -115 8/0 -<`,
    `C ${bulkIn.seqnum} x3 ep81 0 3/3 -0`,
    `C ${interrupt.seqnum} x1 ep82 -104 0/0 -0 (unlinked by CMD_UNLINK seqnum ${unlink.seqnum})`,
    `S ${stalled.seqnum} x3 ep1 -115 2/2 -0`,
    `C ${stalled.seqnum} x3 ep1 -32 0/0 ->`,
    `S ${left.seqnum} x3 ep81 -115 64/0 -<`,
    `C ${left.seqnum} x3 ep81 -108 0/0 -0 (not answered: the session ended (shown as -ESHUTDOWN))`,
  ]);
  assertEquals(real[0]!.setup, new Uint8Array([0, 9, 1, 0, 0, 0, 0, 0]));
  assertEquals(Array.from(real[4]!.data), [1, 2, 3]);
  assertEquals(Array.from(real[6]!.data), [9, 9]);
  assertEquals(real[3]!.interval, 4);
  assertEquals(id(bulkIn.seqnum), real[2]!.id);
  assertEquals(events, [
    `session ${session} (memory) imported 1-1 (ProbeDevice, 1209:0001)`,
    `session ${session} released 1-1; 1 URB(s) were left unanswered (completed here with -ESHUTDOWN)`,
  ]);
  await server.close();
});

Deno.test("a snap length keeps the first bytes of the data; length and the original length keep the truth", async () => {
  const { server, bytes } = recorded(16);
  server.addDevice(new GadgetZero(), { busid: "1-1" });
  const { channel, done } = await importOver(server, "1-1");
  assertEquals((await setConfiguration(channel, 3)).status, 0);
  assertEquals((await channel.submit({ ep: 1, dirIn: true, length: 100 }).done).actualLength, 100);
  await channel.close();
  await done;
  const { usb } = readCapture(bytes());
  const c = usb.findLast((r) => r.type === "C" && r.epnum === 0x81)!;
  assertEquals([c.length, c.lenCap, c.data.length], [100, 16, 16]);
  await server.close();
});

Deno.test("isochronous URBs carry their descriptors; IN data lie at the packets' offsets", async () => {
  const { server, bytes } = recorded();
  server.addDevice(new GadgetZero({ pattern: 1 }), { busid: "1-1" });
  const { channel, done } = await importOver(server, "1-1");
  assertEquals((await setConfiguration(channel, 3)).status, 0);
  const alt1 = { bmRequestType: 0x01, bRequest: 11, wValue: 1, wIndex: 0, wLength: 0 };
  assertEquals((await channel.control(alt1)).status, 0);
  const packets = [{ offset: 0, length: 100 }, { offset: 1024, length: 50 }];
  const ret = await channel.submit({ ep: 2, dirIn: true, length: 2048, isoPackets: packets })
    .done;
  assertEquals(ret.status, 0);
  await channel.close();
  await done;
  const { usb } = readCapture(bytes());
  const [s, c] = usb.filter((r) => r.epnum === 0x82);
  assertEquals([s!.xferType, s!.ndesc, s!.numdesc, s!.length], [0, 2, 2, 2048]);
  assertEquals(s!.descs.map((d) => [d.offset, d.length]), [[0, 100], [1024, 50]]);
  assertEquals(c!.descs.map((d) => [d.offset, d.length]), [[0, 100], [1024, 50]]);
  assertEquals([c!.length, c!.lenCap, c!.data.length], [150, 32 + 1074, 1074]);
  // The second packet's bytes sit at offset 1024, as in the host's buffer.
  assertEquals(c!.data.subarray(1024, 1074), ret.data.subarray(100, 150));
  assertEquals(c!.data.subarray(0, 100), ret.data.subarray(0, 100));
  await server.close();
});

Deno.test("a capture started later describes the devices imported already, a HID report descriptor included, and keeps to its device", async () => {
  const server = new UsbipServer({});
  const keyboard = new HidKeyboard();
  server.addDevice(keyboard, { busid: "1-1" });
  server.addDevice(new GadgetZero(), { busid: "1-2" });
  const kbd = await importOver(server, "1-1");
  const gz = await importOver(server, "1-2");
  const blocks: Uint8Array[] = [];
  const capture = new Capture(serverSource(server), {
    reserve: space(blocks),
    pending: 0,
  }, { maxQueued: 1 << 20, label: "test", includes: (e) => e.busid === "1-1" });
  capture.start("started");
  assertEquals((await setConfiguration(gz.channel, 3)).status, 0);
  assertEquals((await setConfiguration(kbd.channel, 1)).status, 0);
  await kbd.channel.close();
  await gz.channel.close();
  await Promise.all([kbd.done, gz.done]);
  capture.stop();
  const { usb, events } = readCapture(new Uint8Array(blocks.flatMap((b) => [...b])));
  assertEquals(events[0], "started");
  assert(
    events[1]!.endsWith(
      "imported 1-1 (HidKeyboard, 1209:0001) before this file began; its descriptors follow",
    ),
  );
  const report = usb.find((r) =>
    r.type === "C" && r.length > 0 &&
    usb.some((s) => s.id === r.id && s.type === "S" && s.setup[0] === 0x81 && s.setup[3] === 0x22)
  );
  assert(report !== undefined, "a synthetic GET_DESCRIPTOR(REPORT)");
  assertEquals(report.data[0], 0x05, "the report descriptor starts with a Usage Page item");
  assert(usb.every((r) => r.devnum === server.devices[0]!.devnum), "only 1-1's records");
  assertPaired(usb);
  await server.close();
});

/** A keyboard that counts the GET_DESCRIPTOR(REPORT) requests it is asked, or leaves them unanswered. */
class CountingKeyboard extends HidKeyboard {
  reportRequests = 0;
  aborted = 0;
  constructor(readonly silent = false) {
    super();
  }
  override submit(t: UsbTransfer): MaybePromise<TransferResult> {
    const s = t.setup;
    if (t.endpoint === 0 && s?.bmRequestType === 0x81 && s.wValue >> 8 === 0x22) {
      this.reportRequests++;
      if (this.silent) {
        return new Promise<TransferResult>((resolve) =>
          t.signal.addEventListener("abort", () => {
            this.aborted++;
            resolve({ status: "cancelled" });
          })
        );
      }
    }
    return super.submit(t);
  }
}

/** The synthetic GET_DESCRIPTOR(REPORT) completions in `usb`. */
function reportDescriptors(usb: UsbmonRecord[]): UsbmonRecord[] {
  return usb.filter((r) =>
    r.type === "C" && r.length > 0 &&
    usb.some((s) => s.id === r.id && s.type === "S" && s.setup[0] === 0x81 && s.setup[3] === 0x22)
  );
}

Deno.test("a real device's report descriptor is asked for by a capture started later, not at an import the capture sees", async () => {
  const server = new UsbipServer({});
  const real = new CountingKeyboard();
  server.addDevice(real, { busid: "1-1", origin: "passthrough" });
  const blocks: Uint8Array[] = [];
  const capture = new Capture(serverSource(server), { reserve: space(blocks), pending: 0 }, {
    maxQueued: 1 << 20,
    label: "test",
  });
  // Running before the import: the host asks the device itself; the capture does not.
  capture.start("first");
  const kbd = await importOver(server, "1-1");
  assertEquals(real.reportRequests, 0);
  // A capture that begins now asks, so that Wireshark can decode the reports that follow.
  capture.begin("second");
  await eventually(() => real.reportRequests === 1);
  await kbd.channel.close();
  await kbd.done;
  capture.stop();
  const { usb } = readCapture(new Uint8Array(blocks.flatMap((b) => [...b])));
  const reports = reportDescriptors(usb);
  assertEquals(reports.length, 1);
  assertEquals(reports[0]!.data[0], 0x05, "the report descriptor starts with a Usage Page item");
  assertPaired(usb);
  await server.close();
});

Deno.test("a real device that does not answer the report request is given up on after a second", async () => {
  const server = new UsbipServer({});
  const real = new CountingKeyboard(true);
  server.addDevice(real, { busid: "1-1", origin: "passthrough" });
  const kbd = await importOver(server, "1-1");
  const blocks: Uint8Array[] = [];
  const capture = new Capture(serverSource(server), { reserve: space(blocks), pending: 0 }, {
    maxQueued: 1 << 20,
    label: "test",
  });
  capture.start("started");
  assertEquals([real.reportRequests, real.aborted], [1, 0]);
  await eventually(() => real.aborted === 1, 3000);
  await kbd.channel.close();
  await kbd.done;
  capture.stop();
  const { usb } = readCapture(new Uint8Array(blocks.flatMap((b) => [...b])));
  assertEquals(reportDescriptors(usb), [], "no report descriptor was made up");
  assertPaired(usb);
  await server.close();
});
