/** Tests of the emulated CDC-ACM serial port, driven through submit() (CDC 1.2, PSTN 1.2). */

import { assert, assertEquals } from "@std/assert";
import { DescriptorType } from "../../mod.ts";
import { openCharBackend } from "../../lib/backends/char/mod.ts";
import {
  CdcAcm,
  type ControlLines,
  encodeLineCoding,
  type LineCoding,
} from "../../lib/devices/cdc_acm.ts";
import { Speed } from "../../lib/protocol/constants.ts";
import { control, data, getDescriptor, setConfiguration } from "./_transfers.ts";

const CLASS_OUT = 0x21;
const CLASS_IN = 0xa1;

/** Splits a configuration descriptor into its descriptors. */
function split(bytes: Uint8Array): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < bytes.length; i += bytes[i]!) out.push([...bytes.subarray(i, i + bytes[i]!)]);
  return out;
}

async function configured(options: Partial<ConstructorParameters<typeof CdcAcm>[0]> = {}) {
  const backend = options.backend ?? await openCharBackend("loopback");
  const dev = new CdcAcm({ ...options, backend });
  dev.imported();
  assertEquals((await setConfiguration(dev, 1)).status, "ok");
  return { dev, backend };
}

Deno.test("CdcAcm describes an IAD, an ACM communication interface and a data interface", async () => {
  const backend = await openCharBackend("loopback");
  const dev = new CdcAcm({ backend, serial: "S1" });
  assertEquals(dev.speed, Speed.HIGH);
  const d = (await getDescriptor(dev, DescriptorType.DEVICE, 0)).data!;
  assertEquals([d[4], d[5], d[6]], [0xef, 0x02, 0x01]);
  assertEquals(d[8]! | (d[9]! << 8), 0x1209);
  assertEquals(d[10]! | (d[11]! << 8), 0x0006);
  assert(d[16] !== 0, "has a serial number string");
  const parts = split((await getDescriptor(dev, DescriptorType.CONFIGURATION, 0)).data!);
  assertEquals(parts, [
    [9, 2, 75, 0, 2, 1, 0, 0x80, 50],
    [8, 11, 0, 2, 2, 2, 1, 0], // IAD: interfaces 0..1, CDC ACM V.250
    [9, 4, 0, 0, 1, 2, 2, 1, 0], // communication interface
    [5, 0x24, 0x00, 0x20, 0x01], // header, bcdCDC 1.20
    [5, 0x24, 0x01, 0x00, 1], // call management: data interface 1
    [4, 0x24, 0x02, 0x06], // ACM: line coding, control lines, serial state, break
    [5, 0x24, 0x06, 0, 1], // union: 0 controls 1
    [7, 5, 0x83, 3, 16, 0, 9], // notification endpoint
    [9, 4, 1, 0, 2, 0x0a, 0, 0, 0], // data interface
    [7, 5, 0x81, 2, 0, 2, 0],
    [7, 5, 0x02, 2, 0, 2, 0],
  ]);
  const other = split(
    (await getDescriptor(dev, DescriptorType.OTHER_SPEED_CONFIGURATION, 0)).data!,
  );
  assertEquals(other.at(-1), [7, 5, 0x02, 2, 64, 0, 0]);
  assertEquals((await getDescriptor(dev, DescriptorType.DEVICE_QUALIFIER, 0)).status, "ok");
  const full = new CdcAcm({ backend, speed: "full", vendorId: 0x1234, productId: 0x5678 });
  assertEquals(full.speed, Speed.FULL);
  const fd = (await getDescriptor(full, DescriptorType.DEVICE, 0)).data!;
  assertEquals([fd[8], fd[9], fd[10], fd[11]], [0x34, 0x12, 0x78, 0x56]);
  const fullConfig = split((await getDescriptor(full, DescriptorType.CONFIGURATION, 0)).data!);
  assertEquals(fullConfig[7], [7, 5, 0x83, 3, 16, 0, 32]);
  assertEquals((await getDescriptor(full, DescriptorType.DEVICE_QUALIFIER, 0)).status, "stall");
  await backend.close();
});

Deno.test("CdcAcm answers the line coding, control line and break requests", async () => {
  const codings: LineCoding[] = [];
  const lines: ControlLines[] = [];
  const breaks: [boolean, number][] = [];
  const { dev, backend } = await configured({
    onLineCoding: (c) => codings.push(c),
    onControlLines: (l) => lines.push(l),
    onBreak: (on, ms) => breaks.push([on, ms]),
  });
  const get = () =>
    control(dev, { bmRequestType: CLASS_IN, bRequest: 0x21, wValue: 0, wIndex: 0, wLength: 7 });
  assertEquals([...(await get()).data!], [0x80, 0x25, 0, 0, 0, 0, 8]);
  const coding = { dwDTERate: 115200, bCharFormat: 2, bParityType: 2, bDataBits: 7 };
  const set = (bytes: Uint8Array) =>
    control(dev, {
      bmRequestType: CLASS_OUT,
      bRequest: 0x20,
      wValue: 0,
      wIndex: 0,
      wLength: bytes.length,
    }, bytes);
  assertEquals((await set(encodeLineCoding(coding))).status, "ok");
  assertEquals(codings, [coding]);
  assertEquals(dev.lineCoding, coding);
  assertEquals(backend.lineSettings, {
    baudRate: 115200,
    dataBits: 7,
    parity: "even",
    stopBits: 2,
  });
  assertEquals([...(await get()).data!], [...encodeLineCoding(coding)]);
  assertEquals((await set(new Uint8Array(6))).status, "stall");
  assertEquals((await set(encodeLineCoding({ ...coding, bDataBits: 9 }))).status, "stall");
  assertEquals((await set(encodeLineCoding({ ...coding, bParityType: 5 }))).status, "stall");
  assertEquals(codings.length, 1);

  const lineState = (wValue: number) =>
    control(dev, { bmRequestType: CLASS_OUT, bRequest: 0x22, wValue, wIndex: 0, wLength: 0 });
  assertEquals((await lineState(3)).status, "ok");
  assertEquals((await lineState(3)).status, "ok");
  assertEquals((await lineState(2)).status, "ok");
  assertEquals(lines, [{ dtr: true, rts: true }, { dtr: false, rts: true }]);
  assertEquals(dev.controlLines, { dtr: false, rts: true });

  const sendBreak = (wValue: number) =>
    control(dev, { bmRequestType: CLASS_OUT, bRequest: 0x23, wValue, wIndex: 0, wLength: 0 });
  assertEquals((await sendBreak(0xffff)).status, "ok");
  assertEquals((await sendBreak(0)).status, "ok");
  assertEquals(breaks, [[true, 0xffff], [false, 0]]);

  // Wrong interface, unknown request, wrong direction.
  assertEquals(
    (await control(dev, {
      bmRequestType: CLASS_OUT,
      bRequest: 0x22,
      wValue: 1,
      wIndex: 1,
      wLength: 0,
    }))
      .status,
    "stall",
  );
  assertEquals(
    (await control(dev, {
      bmRequestType: CLASS_OUT,
      bRequest: 0x42,
      wValue: 0,
      wIndex: 0,
      wLength: 0,
    }))
      .status,
    "stall",
  );
  assertEquals(
    (await control(dev, {
      bmRequestType: CLASS_IN,
      bRequest: 0x20,
      wValue: 0,
      wIndex: 0,
      wLength: 7,
    }))
      .status,
    "stall",
  );
  // A bus reset restores 9600 8N1 with DTR and RTS off.
  dev.reset();
  assertEquals(dev.lineCoding.dwDTERate, 9600);
  assertEquals(dev.controlLines, { dtr: false, rts: false });
  assertEquals((await get()).status, "stall", "class requests need the configured state");
  await backend.close();
});

Deno.test("CdcAcm stays pending on an idle bulk IN until data arrives, and honours abort", async () => {
  const { dev, backend } = await configured();
  const ac = new AbortController();
  let done = false;
  const idle = data(dev, 1, true, { length: 512, signal: ac.signal }).then((r) => {
    done = true;
    return r;
  });
  await new Promise((r) => setTimeout(r, 30));
  assert(!done, "an idle bulk IN stays pending");
  ac.abort();
  assertEquals((await idle).status, "cancelled");

  const waiting = data(dev, 1, true, { length: 512 });
  await new Promise((r) => setTimeout(r, 10));
  assertEquals(
    (await data(dev, 2, false, { data: new TextEncoder().encode("hello") })).status,
    "ok",
  );
  const r = await waiting;
  assertEquals(r.status, "ok");
  assertEquals(new TextDecoder().decode(r.data), "hello");
  await backend.close();
});

Deno.test("CdcAcm sends SERIAL_STATE when the back-end's peer connects and goes away", async () => {
  const backend = await openCharBackend("tcp:127.0.0.1:0");
  const { dev } = await configured({ backend });
  try {
    const notify = (signal?: AbortSignal) =>
      data(dev, 3, true, { length: 16, ...(signal ? { signal } : {}) });
    // The first notification after configuration tells the current state: no carrier.
    assertEquals([...(await notify()).data!], [0xa1, 0x20, 0, 0, 0, 0, 2, 0, 0, 0]);
    const next = notify();
    let done = false;
    next.then(() => done = true);
    await new Promise((r) => setTimeout(r, 20));
    assert(!done, "an idle notification IN stays pending");
    const port = Number(backend.address.split(":").at(-1));
    const client = await Deno.connect({ hostname: "127.0.0.1", port });
    assertEquals([...(await next).data!], [0xa1, 0x20, 0, 0, 0, 0, 2, 0, 3, 0]);
    assertEquals(dev.serialState, 3);
    const gone = notify();
    client.close();
    assertEquals([...(await gone).data!].slice(8), [0, 0]);
    // One-shot events are reported once.
    dev.signalEvent(0x08);
    assertEquals([...(await notify()).data!].slice(8), [0x08, 0]);
    const ac = new AbortController();
    const idle = notify(ac.signal);
    ac.abort();
    assertEquals((await idle).status, "cancelled");
  } finally {
    await backend.close();
  }
});

Deno.test("CdcAcm echoes 1 MB of random data through a loopback back-end", async () => {
  const { dev, backend } = await configured();
  const total = 1024 * 1024;
  const input = new Uint8Array(total);
  for (let i = 0; i < total; i += 65536) crypto.getRandomValues(input.subarray(i, i + 65536));
  const output = new Uint8Array(total);
  let received = 0;
  for (let sent = 0; sent < total;) {
    const chunk = input.subarray(sent, Math.min(total, sent + 10240)); // cdc-acm's writesize
    assertEquals((await data(dev, 2, false, { data: chunk })).status, "ok");
    sent += chunk.length;
    while (received < sent) {
      const r = await data(dev, 1, true, { length: 1024 }); // cdc-acm's readsize
      assertEquals(r.status, "ok");
      output.set(r.data!, received);
      received += r.data!.length;
    }
  }
  assertEquals(received, total);
  assertEquals(output, input);
  assertEquals(backend.stats.droppedOut, 0);
  await backend.close();
});

Deno.test("CdcAcm keeps memory bounded and counts dropped bytes when nobody reads", async () => {
  const backend = await openCharBackend("loopback", { queueBytes: 4096, stallTimeoutMs: 30 });
  const { dev } = await configured({ backend });
  const chunk = new Uint8Array(1024);
  for (let i = 0; i < 2000; i++) {
    assertEquals((await data(dev, 2, false, { data: chunk })).status, "ok");
    assert(backend.inputAvailable <= 4096);
  }
  assertEquals(backend.stats.bytesOut, 4096);
  assertEquals(backend.stats.droppedOut, 2000 * 1024 - 4096);
  await backend.close();
});
