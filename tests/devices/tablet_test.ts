/** Tests of the emulated HID absolute pointer (tablet), driven through submit() (HID 1.11 §7, §6.2.2). */

import { assertEquals, assertThrows } from "@std/assert";
import { DescriptorType, HidDescriptorType } from "../../mod.ts";
import { HidTablet } from "../../lib/devices/tablet.ts";
import { parsePointerCommand } from "../../lib/devices/mouse.ts";
import type { TransferResult } from "../../lib/devices/usb_device.ts";
import {
  classIn,
  classOut,
  getDescriptor,
  interfaceDescriptor,
  interruptIn,
  setConfiguration,
} from "./_transfers.ts";

/** The tablet report descriptor written out item by item (QEMU usb-tablet layout, no wheel). */
const TABLET_DESCRIPTOR = [
  ...[0x05, 0x01, 0x09, 0x02, 0xa1, 0x01], // Generic Desktop, Mouse, Collection (Application)
  ...[0x09, 0x01, 0xa1, 0x00], // Pointer, Collection (Physical)
  ...[0x05, 0x09, 0x19, 0x01, 0x29, 0x03], // Buttons 1..3
  ...[0x15, 0x00, 0x25, 0x01, 0x95, 0x03, 0x75, 0x01, 0x81, 0x02], // 3 bits, Data Var Abs
  ...[0x95, 0x01, 0x75, 0x05, 0x81, 0x01], // 5 bits constant
  ...[0x05, 0x01, 0x09, 0x30, 0x09, 0x31], // X, Y
  ...[0x15, 0x00, 0x26, 0xff, 0x7f, 0x75, 0x10, 0x95, 0x02, 0x81, 0x02], // 0..32767, 16 bits, Abs
  0xc0,
  0xc0,
];

const read = (dev: HidTablet, signal?: AbortSignal): Promise<TransferResult> =>
  interruptIn(dev, 8, signal);

async function configured(): Promise<HidTablet> {
  const dev = new HidTablet();
  assertEquals((await setConfiguration(dev, 1)).status, "ok");
  return dev;
}

async function reads(dev: HidTablet, n: number): Promise<number[][]> {
  const out: number[][] = [];
  for (let i = 0; i < n; i++) out.push([...(await read(dev)).data ?? []]);
  return out;
}

Deno.test("the tablet is a full-speed non-boot HID interface with an interrupt IN endpoint", async () => {
  const dev = new HidTablet();
  const device = (await getDescriptor(dev, DescriptorType.DEVICE, 0, 18)).data!;
  assertEquals([...device.subarray(8, 12)], [0x09, 0x12, 0x03, 0x00]);
  const config = [...(await getDescriptor(dev, DescriptorType.CONFIGURATION, 0)).data!];
  assertEquals(config.slice(9, 18), [9, 4, 0, 0, 1, 3, 0, 0, 0]);
  assertEquals(config.slice(18, 27), [9, 0x21, 0x11, 0x01, 0, 1, 0x22, 51, 0]);
  assertEquals(config.slice(27, 34), [7, 5, 0x81, 3, 8, 0, 10]);
});

Deno.test("the tablet's report descriptor has 3 buttons and 16-bit absolute X and Y", async () => {
  const dev = await configured();
  const r = await interfaceDescriptor(dev, HidDescriptorType.REPORT, 0, 255);
  assertEquals([...r.data!], TABLET_DESCRIPTOR);
  const hid = await interfaceDescriptor(dev, HidDescriptorType.HID, 0, 9);
  assertEquals([...hid.data!], [9, 0x21, 0x11, 0x01, 0, 1, 0x22, TABLET_DESCRIPTOR.length, 0]);
});

Deno.test("the tablet answers idle and GET_REPORT requests and stalls the boot protocol requests", async () => {
  const dev = await configured();
  assertEquals([...(await classIn(dev, 0x02, 0, 1)).data!], [0]);
  assertEquals((await classOut(dev, 0x0a, 0x0500)).status, "ok");
  assertEquals([...(await classIn(dev, 0x02, 0, 1)).data!], [5]);
  assertEquals((await classIn(dev, 0x03, 0, 1)).status, "stall");
  assertEquals((await classOut(dev, 0x0b, 0)).status, "stall");
  assertEquals([...(await classIn(dev, 0x01, 0x0100, 8)).data!], [0, 0, 0, 0, 0]);
});

Deno.test("moveTo maps 0..1 to 0..32767 little-endian", async () => {
  const dev = await configured();
  const moved = Promise.all([dev.moveTo(0.5, 0.25), dev.moveTo(1, 0), dev.moveToRaw(0x1234, 1)]);
  assertEquals(await reads(dev, 3), [
    [0, 0x00, 0x40, 0x00, 0x20],
    [0, 0xff, 0x7f, 0x00, 0x00],
    [0, 0x34, 0x12, 0x01, 0x00],
  ]);
  await moved;
  assertEquals([...(await classIn(dev, 0x01, 0x0100, 8)).data!], [0, 0x34, 0x12, 1, 0]);
});

Deno.test("a click on the tablet keeps the position and sends press then release", async () => {
  const dev = await configured();
  const done = Promise.all([dev.moveToRaw(100, 200), dev.click(4)]);
  assertEquals(await reads(dev, 3), [[0, 100, 0, 200, 0], [4, 100, 0, 200, 0], [
    0,
    100,
    0,
    200,
    0,
  ]]);
  await done;
});

Deno.test("a move to where the host already is sends nothing", async () => {
  const dev = await configured();
  const first = dev.moveToRaw(5, 5);
  assertEquals(await reads(dev, 1), [[0, 5, 0, 5, 0]]);
  await first;
  const same = dev.moveToRaw(5, 5);
  const ac = new AbortController();
  const pending = read(dev, ac.signal);
  await same; // the read dropped it as nothing new and kept waiting
  ac.abort();
  assertEquals((await pending).status, "cancelled");
});

Deno.test("an interrupt IN stays pending until the tablet moves, and is cancelled on abort", async () => {
  const dev = await configured();
  let settled = false;
  const pending = read(dev).then((r) => (settled = true, r));
  await new Promise((r) => setTimeout(r, 20));
  assertEquals(settled, false);
  const moved = dev.moveToRaw(1, 2);
  assertEquals([...(await pending).data!], [0, 1, 0, 2, 0]);
  await moved;
  const ac = new AbortController();
  const aborted = read(dev, ac.signal);
  ac.abort();
  assertEquals((await aborted).status, "cancelled");
});

Deno.test("the tablet applies abs and button commands and refuses relative moves", async () => {
  const dev = await configured();
  const done = Promise.all([
    dev.apply(parsePointerCommand("abs 0 1")),
    dev.apply(parsePointerCommand("press right")),
    dev.apply(parsePointerCommand("release")),
  ]);
  assertEquals(await reads(dev, 3), [[0, 0, 0, 0xff, 0x7f], [2, 0, 0, 0xff, 0x7f], [
    0,
    0,
    0,
    0xff,
    0x7f,
  ]]);
  await done;
  assertThrows(() => dev.apply(parsePointerCommand("move 1 1")), TypeError, "mouse");
});

Deno.test("the tablet refuses positions outside its range", () => {
  const dev = new HidTablet();
  assertThrows(() => dev.moveTo(1.5, 0), RangeError);
  assertThrows(() => dev.moveTo(Number.NaN, 0), RangeError);
  assertThrows(() => dev.moveToRaw(32768, 0), RangeError);
});
