/** Tests of the emulated HID boot mouse and the pointer command parser (HID 1.11 §7, App. B.2, E.10). */

import { assertEquals, assertRejects, assertThrows } from "@std/assert";
import { DescriptorType, HidDescriptorType } from "../../mod.ts";
import {
  HidMouse,
  parsePointerCommand,
  type PointerCommand,
  pointerCommandConsumer,
} from "../../lib/devices/mouse.ts";
import type { TransferResult } from "../../lib/devices/usb_device.ts";
import {
  classIn,
  classOut,
  getDescriptor,
  interfaceDescriptor,
  interruptIn,
  setConfiguration,
} from "./_transfers.ts";

/** HID 1.11 Appendix E.10 written out, with Wheel added to the X/Y item (count 3). */
const SPEC_MOUSE_REPORT_DESCRIPTOR = [
  ...[0x05, 0x01, 0x09, 0x02, 0xa1, 0x01], // Generic Desktop, Mouse, Collection (Application)
  ...[0x09, 0x01, 0xa1, 0x00], // Pointer, Collection (Physical)
  ...[0x05, 0x09, 0x19, 0x01, 0x29, 0x03], // Buttons 1..3
  ...[0x15, 0x00, 0x25, 0x01, 0x95, 0x03, 0x75, 0x01, 0x81, 0x02], // 3 bits, Data Var Abs
  ...[0x95, 0x01, 0x75, 0x05, 0x81, 0x01], // 5 bits constant
  ...[0x05, 0x01, 0x09, 0x30, 0x09, 0x31, 0x09, 0x38], // X, Y, Wheel
  ...[0x15, 0x81, 0x25, 0x7f, 0x75, 0x08, 0x95, 0x03, 0x81, 0x06], // -127..127, Data Var Rel
  0xc0,
  0xc0,
];

const read = (dev: HidMouse, signal?: AbortSignal): Promise<TransferResult> =>
  interruptIn(dev, 4, signal);

async function configured(): Promise<HidMouse> {
  const dev = new HidMouse();
  assertEquals((await setConfiguration(dev, 1)).status, "ok");
  return dev;
}

async function reads(dev: HidMouse, n: number): Promise<number[][]> {
  const out: number[][] = [];
  for (let i = 0; i < n; i++) out.push([...(await read(dev)).data ?? []]);
  return out;
}

Deno.test("the mouse is a full-speed boot mouse interface with a 4-byte interrupt IN endpoint", async () => {
  const dev = new HidMouse();
  const device = (await getDescriptor(dev, DescriptorType.DEVICE, 0, 18)).data!;
  assertEquals([...device.subarray(8, 12)], [0x09, 0x12, 0x02, 0x00]);
  const config = [...(await getDescriptor(dev, DescriptorType.CONFIGURATION, 0)).data!];
  assertEquals(config.slice(9, 18), [9, 4, 0, 0, 1, 3, 1, 2, 0]);
  assertEquals(config.slice(18, 27), [9, 0x21, 0x11, 0x01, 0, 1, 0x22, 52, 0]);
  assertEquals(config.slice(27, 34), [7, 5, 0x81, 3, 4, 0, 10]);
});

Deno.test("the mouse's HID and report descriptors are answered to interface requests", async () => {
  const dev = await configured();
  const hid = await interfaceDescriptor(dev, HidDescriptorType.HID, 0, 9);
  assertEquals([...hid.data!], [9, 0x21, 0x11, 0x01, 0, 1, 0x22, 52, 0]);
  const report = await interfaceDescriptor(dev, HidDescriptorType.REPORT, 0, 255);
  assertEquals([...report.data!], SPEC_MOUSE_REPORT_DESCRIPTOR);
  const physical = await interfaceDescriptor(dev, HidDescriptorType.PHYSICAL, 0, 255);
  assertEquals(physical.status, "stall");
});

Deno.test("the mouse answers GET/SET_IDLE, GET/SET_PROTOCOL and GET_REPORT and stalls SET_REPORT", async () => {
  const dev = await configured();
  assertEquals([...(await classIn(dev, 0x02, 0, 1)).data!], [0]);
  assertEquals((await classOut(dev, 0x0a, 0x7d00)).status, "ok");
  assertEquals([...(await classIn(dev, 0x02, 0, 1)).data!], [0x7d]);
  assertEquals([...(await classIn(dev, 0x03, 0, 1)).data!], [1]);
  assertEquals((await classOut(dev, 0x0b, 0)).status, "ok");
  assertEquals([...(await classIn(dev, 0x03, 0, 1)).data!], [0]);
  assertEquals((await classOut(dev, 0x0b, 2)).status, "stall");
  assertEquals([...(await classIn(dev, 0x01, 0x0100, 8)).data!], [0, 0, 0]);
  assertEquals((await classIn(dev, 0x01, 0x0300, 8)).status, "stall");
  assertEquals((await classOut(dev, 0x09, 0x0200, new Uint8Array([1]))).status, "stall");
});

Deno.test("the mouse stalls class requests while unconfigured", async () => {
  const dev = new HidMouse();
  assertEquals((await classIn(dev, 0x03, 0, 1)).status, "stall");
});

Deno.test("a move becomes one report of buttons, X, Y and wheel as signed bytes", async () => {
  const dev = await configured();
  const moved = dev.move(10, -5, -1);
  assertEquals(await reads(dev, 1), [[0, 10, 0xfb, 0xff]]);
  await moved;
});

Deno.test("a large move is split into steps of at most 127", async () => {
  const dev = await configured();
  const moved = dev.move(300, -130);
  assertEquals(await reads(dev, 3), [[0, 127, 0x81, 0], [0, 127, 0xfd, 0], [0, 46, 0, 0]]);
  await moved;
});

Deno.test("a click is a press report and a release report, and resolves after both are read", async () => {
  const dev = await configured();
  let done = false;
  const clicked = dev.click(2).then(() => done = true);
  assertEquals(await reads(dev, 1), [[2, 0, 0, 0]]);
  await Promise.resolve();
  assertEquals(done, false);
  assertEquals(await reads(dev, 1), [[0, 0, 0, 0]]);
  await clicked;
  assertEquals(done, true);
});

Deno.test("held buttons stay down through moves until released", async () => {
  const dev = await configured();
  const all = Promise.all([dev.press(1), dev.move(1, 2), dev.press(4), dev.release(1)]);
  assertEquals(await reads(dev, 4), [[1, 0, 0, 0], [1, 1, 2, 0], [5, 0, 0, 0], [4, 0, 0, 0]]);
  await all;
});

Deno.test("the boot protocol gives 3-byte reports without the wheel", async () => {
  const dev = await configured();
  assertEquals((await classOut(dev, 0x0b, 0)).status, "ok");
  const moved = dev.move(-3, 4, 7);
  assertEquals(await reads(dev, 1), [[0, 0xfd, 4]]);
  await moved;
});

Deno.test("SET_CONFIGURATION puts the protocol back to report", async () => {
  const dev = await configured();
  await classOut(dev, 0x0b, 0);
  await setConfiguration(dev, 1);
  assertEquals([...(await classIn(dev, 0x03, 0, 1)).data!], [1]);
});

Deno.test("an interrupt IN stays pending until the mouse moves", async () => {
  const dev = await configured();
  let settled = false;
  const pending = read(dev).then((r) => (settled = true, r));
  await new Promise((r) => setTimeout(r, 20));
  assertEquals(settled, false);
  const moved = dev.move(1, 1);
  assertEquals([...(await pending).data!], [0, 1, 1, 0]);
  await moved;
});

Deno.test("an aborted pending interrupt IN completes as cancelled and the next read still works", async () => {
  const dev = await configured();
  const ac = new AbortController();
  const pending = read(dev, ac.signal);
  ac.abort();
  assertEquals((await pending).status, "cancelled");
  const moved = dev.move(0, 1);
  assertEquals(await reads(dev, 1), [[0, 0, 1, 0]]);
  await moved;
});

Deno.test("the idle rate repeats the buttons with no motion", async () => {
  const dev = await configured();
  await classOut(dev, 0x0a, 0x0100); // 4 ms
  const moved = dev.press(1).then(() => dev.move(5, 0));
  assertEquals(await reads(dev, 2), [[1, 0, 0, 0], [1, 5, 0, 0]]);
  await moved;
  assertEquals(await reads(dev, 1), [[1, 0, 0, 0]]);
});

Deno.test("queued moves are rejected when the mouse is disconnected", async () => {
  const dev = await configured();
  const moved = dev.move(1, 1);
  dev.disconnect();
  await assertRejects(() => moved);
});

Deno.test("the mouse refuses non-integer moves and bad buttons", () => {
  const dev = new HidMouse();
  assertThrows(() => dev.move(0.5, 0), RangeError);
  assertThrows(() => dev.press(8), RangeError);
});

Deno.test("the mouse refuses abs commands with a TypeError", () => {
  assertThrows(() => new HidMouse().apply({ kind: "abs", x: 0, y: 0 }), TypeError, "tablet");
});

Deno.test("the parser reads moves, scrolls, button commands and abs positions", () => {
  const cases: [string, PointerCommand][] = [
    ["move 10 -5", { kind: "move", dx: 10, dy: -5, wheel: 0 }],
    ["  MOVE +1 2 -3 ", { kind: "move", dx: 1, dy: 2, wheel: -3 }],
    ["scroll 2", { kind: "move", dx: 0, dy: 0, wheel: 2 }],
    ["click left", { kind: "click", buttons: 1 }],
    ["click", { kind: "click", buttons: 1 }],
    ["press right middle", { kind: "press", buttons: 6 }],
    ["press 3", { kind: "press", buttons: 4 }],
    ["release", { kind: "release", buttons: 7 }],
    ["release right", { kind: "release", buttons: 2 }],
    ["abs 0.5 .25", { kind: "abs", x: 0.5, y: 0.25 }],
    ["abs 1 0", { kind: "abs", x: 1, y: 0 }],
  ];
  for (const [line, command] of cases) assertEquals(parsePointerCommand(line), command, line);
});

Deno.test("the parser throws a TypeError naming the bad word", () => {
  const cases: [string, string][] = [
    ["jump 1 2", '"jump"'],
    ["move 1 x", '"x"'],
    ["move 1.5 2", '"1.5"'],
    ["move 1", '"move"'],
    ["move 1 2 3 4", '"4"'],
    ["click thumb", '"thumb"'],
    ["press", '"press"'],
    ["abs 0.5 2", '"2"'],
    ["abs -0.1 0", '"-0.1"'],
    ["", "Empty"],
  ];
  for (const [line, word] of cases) {
    assertThrows(() => parsePointerCommand(line), TypeError, word);
  }
});

Deno.test("the line consumer applies whole lines across chunks and skips bad ones", async () => {
  const applied: PointerCommand[] = [];
  const consume = pointerCommandConsumer({
    apply: (c) => {
      if (c.kind === "abs") throw new TypeError("no abs");
      applied.push(c);
      return Promise.resolve();
    },
  });
  await consume("move 1 ");
  assertEquals(applied, []);
  await consume("2\r\nbogus\n# comment\n\nabs 0 0\nclick right\n");
  assertEquals(applied, [
    { kind: "move", dx: 1, dy: 2, wheel: 0 },
    { kind: "click", buttons: 2 },
  ]);
});
