/** Tests of the emulated Vernier Go!Temp (ldusb / GoIO report format, HID 1.11 requests). */

import { assertLess } from "@std/assert";
import { assertEquals, assertThrows } from "@std/assert";
import { DescriptorType, HidDescriptorType } from "../../mod.ts";
import { Speed } from "../../lib/protocol/constants.ts";
import {
  celsiusToRaw,
  encodeGoTempReport,
  GoTemp,
  GOTEMP_REPORT_DESCRIPTOR,
  type GoTempOptions,
} from "../../lib/devices/gotemp.ts";
import { sequenceSource } from "../../lib/backends/temperature_source.ts";
import type { TransferResult } from "../../lib/devices/usb_device.ts";
import {
  control,
  getDescriptor,
  interfaceDescriptor,
  interruptIn as interruptInOf,
  setConfiguration,
} from "./_transfers.ts";

function interruptIn(dev: GoTemp, signal?: AbortSignal) {
  return interruptInOf(dev, 8, signal);
}

function setReport(dev: GoTemp, bytes: number[], type = 2) {
  const data = new Uint8Array(bytes);
  return control(dev, {
    bmRequestType: 0x21,
    bRequest: 0x09,
    wValue: type << 8,
    wIndex: 0,
    wLength: data.length,
  }, data);
}

/** A configured device on a fake clock that starts at `t0` ms. */
async function configured(options: GoTempOptions = {}, t0 = 0) {
  const clock = { t: t0 };
  const dev = new GoTemp({ now: () => clock.t, ...options });
  assertEquals((await setConfiguration(dev, 1)).status, "ok");
  return { dev, clock };
}

async function settledWithin<T>(p: Promise<T>, ms: number): Promise<T | "pending"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"pending">((resolve) => {
    timer = setTimeout(() => resolve("pending"), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

function bytes(r: TransferResult): number[] {
  assertEquals(r.status, "ok");
  return [...r.data!];
}

function near(actual: number, expected: number, tolerance = 1e-7): void {
  assertLess(Math.abs(actual - expected), tolerance, `${actual} is not ${expected}`);
}

Deno.test("device descriptor: full speed, 08f7:0002, Vernier strings", async () => {
  const dev = new GoTemp({ serial: "GT0001" });
  assertEquals(dev.speed, Speed.FULL);
  const d = bytes(await getDescriptor(dev, DescriptorType.DEVICE, 0, 18));
  assertEquals(d.slice(8, 12), [0xf7, 0x08, 0x02, 0x00]);
  const decode = (b: number[]) =>
    String.fromCharCode(...new Uint16Array(new Uint8Array(b.slice(2)).buffer));
  const string = async (i: number) =>
    decode(bytes(await getDescriptor(dev, DescriptorType.STRING, i, 255)));
  assertEquals(await string(d[14]!), "Vernier Software & Technology");
  assertEquals(await string(d[15]!), "Go! Temp");
  assertEquals(await string(d[16]!), "GT0001");
});

Deno.test("configuration: one HID interface 3/0/0, HID descriptor, interrupt IN 0x81 of 8", async () => {
  const dev = new GoTemp();
  const c = bytes(await getDescriptor(dev, DescriptorType.CONFIGURATION, 0));
  assertEquals(c.length, 9 + 9 + 9 + 7);
  assertEquals(c.slice(9, 18), [9, 4, 0, 0, 1, 3, 0, 0, 0]);
  assertEquals(c.slice(18, 27), [
    9,
    0x21,
    0x11,
    0x01,
    0,
    1,
    0x22,
    GOTEMP_REPORT_DESCRIPTOR.length,
    0,
  ]);
  assertEquals(c.slice(27), [7, 5, 0x81, 3, 8, 0, 10]);
  await setConfiguration(dev, 1);
  const report = await interfaceDescriptor(dev, HidDescriptorType.REPORT, 0, 255);
  assertEquals(bytes(report), [...GOTEMP_REPORT_DESCRIPTOR]);
  // Vendor page, 8 input bytes and 8 output bytes.
  assertEquals(GOTEMP_REPORT_DESCRIPTOR.slice(0, 3), new Uint8Array([0x06, 0x00, 0xff]));
});

Deno.test("report bytes: 21.5 °C is raw 2752, c0 0a; negatives are two's complement", () => {
  assertEquals(celsiusToRaw(21.5), 2752);
  assertEquals([...encodeGoTempReport(5, [21.5])], [1, 5, 0xc0, 0x0a, 0, 0, 0, 0]);
  assertEquals([...encodeGoTempReport(0x1ff, [-1, 0, 100])], [
    3,
    0xff,
    0x80,
    0xff,
    0,
    0,
    0x00,
    0x32,
  ]);
  assertEquals(celsiusToRaw(1000), 32767);
  assertEquals(celsiusToRaw(-1000), -32768);
  assertThrows(() => encodeGoTempReport(0, [1, 2, 3, 4]), RangeError);
});

Deno.test("interrupt IN: one sample per period, sequence numbers roll over at 256", async () => {
  const { dev, clock } = await configured({ rate: 10 });
  for (let i = 0; i < 258; i++) {
    clock.t = (i + 1) * 100;
    const r = bytes(await interruptIn(dev));
    assertEquals(r, [1, i & 0xff, 0xc0, 0x0a, 0, 0, 0, 0]);
  }
  assertEquals(dev.sequence, 2);
});

Deno.test("interrupt IN: overdue samples are sent together, at most 3, the latest ones", async () => {
  const values = [10, 11, 12, 13, 14, 15, 16];
  const times: number[] = [];
  const source = sequenceSource(values);
  const { dev, clock } = await configured({
    rate: 10,
    source: {
      read: (t) => {
        times.push(t);
        return source.read(t);
      },
      close: () => Promise.resolve(),
    },
  }, 1000);
  clock.t = 1250; // samples at 1100 and 1200
  assertEquals(bytes(await interruptIn(dev)), [2, 0, 0x00, 0x05, 0x80, 0x05, 0, 0]);
  clock.t = 1799; // 1300..1700: 5 due, the latest 3 are sent
  assertEquals(bytes(await interruptIn(dev)), [3, 1, 0x00, 0x06, 0x80, 0x06, 0x00, 0x07]);
  assertEquals(times, [1100, 1200, 1500, 1600, 1700]);
});

Deno.test("interrupt IN: pending until a sample is due, never empty", async () => {
  const { dev, clock } = await configured({ rate: 10 });
  clock.t = 50;
  const p = interruptIn(dev);
  assertEquals(await settledWithin(p, 80), "pending");
  clock.t = 100;
  const r = await settledWithin(p, 500);
  assertEquals(r !== "pending" && bytes(r), [1, 0, 0xc0, 0x0a, 0, 0, 0, 0]);
});

Deno.test("interrupt IN: a pending transfer completes CANCELLED on abort, with no leak", async () => {
  const { dev } = await configured({ rate: 0.01 }); // next sample in 100 s
  const ac = new AbortController();
  let listeners = 0;
  const add = ac.signal.addEventListener.bind(ac.signal);
  const remove = ac.signal.removeEventListener.bind(ac.signal);
  ac.signal.addEventListener = ((...a: Parameters<typeof add>) => {
    listeners++;
    add(...a);
  }) as typeof add;
  ac.signal.removeEventListener = ((...a: Parameters<typeof remove>) => {
    listeners--;
    remove(...a);
  }) as typeof remove;
  const p = interruptIn(dev, ac.signal);
  assertEquals(await settledWithin(p, 30), "pending");
  assertEquals(listeners, 1);
  ac.abort();
  assertEquals((await p).status, "cancelled");
  assertEquals(listeners, 0);
  assertEquals((await interruptIn(dev, ac.signal)).status, "cancelled");
});

Deno.test("commands: stop (0x18) holds reports, start (0x12) resumes; all are recorded", async () => {
  const seen: number[][] = [];
  const { dev, clock } = await configured({ rate: 10, onCommand: (r) => seen.push([...r]) });
  assertEquals((await setReport(dev, [0x18])).status, "ok");
  assertEquals(dev.sampling, false);
  clock.t = 1000;
  const p = interruptIn(dev);
  assertEquals(await settledWithin(p, 50), "pending");
  assertEquals((await setReport(dev, [0x12, 0, 0, 0, 0, 0, 0, 0], 1)).status, "ok");
  assertEquals(dev.sampling, true);
  assertEquals(await settledWithin(p, 30), "pending"); // the first sample is a period later
  clock.t = 1100;
  const r = await settledWithin(p, 500);
  assertEquals(r !== "pending" && bytes(r), [1, 0, 0xc0, 0x0a, 0, 0, 0, 0]);
  assertEquals((await setReport(dev, [0x55, 1, 2], 3)).status, "ok");
  assertEquals(dev.commands.map((c) => c[0]), [0x18, 0x12, 0x55]);
  assertEquals(seen.map((c) => c[0]), [0x18, 0x12, 0x55]);
  const out = await control(dev, {
    bmRequestType: 0xa1,
    bRequest: 0x01,
    wValue: 0x0200,
    wIndex: 0,
    wLength: 8,
  });
  assertEquals(bytes(out), [0x55, 1, 2, 0, 0, 0, 0, 0]);
});

Deno.test("GET_REPORT(input) returns the last report sent; class requests need configuration", async () => {
  const dev0 = new GoTemp();
  const unconfigured = await control(dev0, {
    bmRequestType: 0xa1,
    bRequest: 0x01,
    wValue: 0x0100,
    wIndex: 0,
    wLength: 8,
  });
  assertEquals(unconfigured.status, "stall");
  const { dev, clock } = await configured({ source: sequenceSource([-5]) });
  const getInput = () =>
    control(dev, { bmRequestType: 0xa1, bRequest: 0x01, wValue: 0x0100, wIndex: 0, wLength: 8 });
  assertEquals(bytes(await getInput()), [0, 0, 0, 0, 0, 0, 0, 0]);
  clock.t = 100;
  await interruptIn(dev);
  assertEquals(bytes(await getInput()), [1, 0, 0x80, 0xfd, 0, 0, 0, 0]);
  assertEquals(dev.sequence, 1);
  await setConfiguration(dev, 1); // starts over at sequence 0
  assertEquals(dev.sequence, 0);
});

Deno.test("rate must be in (0, 1000]", () => {
  assertThrows(() => new GoTemp({ rate: 0 }), RangeError, "rate");
  assertThrows(() => new GoTemp({ rate: NaN }), RangeError, "rate");
  assertThrows(() => new GoTemp({ rate: 2000 }), RangeError, "rate");
  near(new GoTemp({ rate: 4 }).period, 250);
});
