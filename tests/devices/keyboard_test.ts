/** Tests of the emulated HID boot keyboard, driven through submit() (HID 1.11 §7, App. B, E). */

import { assertEquals, assertRejects, assertThrows } from "@std/assert";
import { Speed } from "../../lib/protocol/constants.ts";
import { HidKeyboard, type KeyboardLeds } from "../../lib/devices/keyboard.ts";
import type { TransferResult } from "../../lib/devices/usb_device.ts";
import { DescriptorType, HidDescriptorType } from "../../mod.ts";
import {
  classIn,
  classOut,
  control,
  getDescriptor,
  interfaceDescriptor,
  interruptIn as interruptInOf,
  setConfiguration,
} from "./_transfers.ts";

const NEVER = new AbortController().signal;

/** HID 1.11 Appendix E.6, written out: the boot keyboard report descriptor. */
const SPEC_BOOT_KEYBOARD_REPORT_DESCRIPTOR = [
  ...[0x05, 0x01], // Usage Page (Generic Desktop)
  ...[0x09, 0x06], // Usage (Keyboard)
  ...[0xa1, 0x01], // Collection (Application)
  ...[0x05, 0x07], // Usage Page (Key Codes)
  ...[0x19, 0xe0], // Usage Minimum (224)
  ...[0x29, 0xe7], // Usage Maximum (231)
  ...[0x15, 0x00], // Logical Minimum (0)
  ...[0x25, 0x01], // Logical Maximum (1)
  ...[0x75, 0x01], // Report Size (1)
  ...[0x95, 0x08], // Report Count (8)
  ...[0x81, 0x02], // Input (Data, Variable, Absolute): modifier byte
  ...[0x95, 0x01], // Report Count (1)
  ...[0x75, 0x08], // Report Size (8)
  ...[0x81, 0x01], // Input (Constant): reserved byte
  ...[0x95, 0x05], // Report Count (5)
  ...[0x75, 0x01], // Report Size (1)
  ...[0x05, 0x08], // Usage Page (Page# for LEDs)
  ...[0x19, 0x01], // Usage Minimum (1)
  ...[0x29, 0x05], // Usage Maximum (5)
  ...[0x91, 0x02], // Output (Data, Variable, Absolute): LED report
  ...[0x95, 0x01], // Report Count (1)
  ...[0x75, 0x03], // Report Size (3)
  ...[0x91, 0x01], // Output (Constant): LED report padding
  ...[0x95, 0x06], // Report Count (6)
  ...[0x75, 0x08], // Report Size (8)
  ...[0x15, 0x00], // Logical Minimum (0)
  ...[0x25, 0x65], // Logical Maximum (101)
  ...[0x05, 0x07], // Usage Page (Key Codes)
  ...[0x19, 0x00], // Usage Minimum (0)
  ...[0x29, 0x65], // Usage Maximum (101)
  ...[0x81, 0x00], // Input (Data, Array): key array (6 bytes)
  0xc0, // End Collection
];

const GET_REPORT = 0x01;
const GET_IDLE = 0x02;
const GET_PROTOCOL = 0x03;
const SET_REPORT = 0x09;
const SET_IDLE = 0x0a;
const SET_PROTOCOL = 0x0b;

function setLeds(dev: HidKeyboard, leds: number) {
  return classOut(dev, SET_REPORT, 0x0200, new Uint8Array([leds]));
}

function interruptIn(dev: HidKeyboard, signal = NEVER): Promise<TransferResult> {
  return interruptInOf(dev, 8, signal);
}

/** A keyboard configured the way Linux's usbhid leaves it: configuration 1, idle rate 0. */
async function configured(options: ConstructorParameters<typeof HidKeyboard>[0] = {}) {
  const dev = new HidKeyboard(options);
  assertEquals((await setConfiguration(dev, 1)).status, "ok");
  assertEquals((await classOut(dev, SET_IDLE, 0)).status, "ok");
  return dev;
}

async function readReports(dev: HidKeyboard, n: number, signal = NEVER): Promise<number[][]> {
  const out: number[][] = [];
  for (let i = 0; i < n; i++) {
    const r = await interruptIn(dev, signal);
    assertEquals(r.status, "ok");
    out.push([...r.data!]);
  }
  return out;
}

/** Resolves with `p`'s value, or "pending" if it has not settled after `ms`. */
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

const press = (modifiers: number, usage: number) => [modifiers, 0, usage, 0, 0, 0, 0, 0];
const RELEASED = [0, 0, 0, 0, 0, 0, 0, 0];

Deno.test("HidKeyboard is a full-speed device with the pid.codes test IDs", async () => {
  const dev = new HidKeyboard();
  assertEquals(dev.speed, Speed.FULL);
  const r = await getDescriptor(dev, DescriptorType.DEVICE, 0, 18);
  assertEquals(
    r.data,
    new Uint8Array([
      ...[18, 1, 0x00, 0x02], // bLength, DEVICE, bcdUSB 2.00
      ...[0, 0, 0, 64], // class defined at the interface, ep0 64 bytes
      ...[0x09, 0x12, 0x01, 0x00, 0x00, 0x01], // 1209:0001, bcdDevice 1.00
      ...[1, 2, 0, 1], // manufacturer, product, no serial, one configuration
    ]),
  );
  const product = await getDescriptor(dev, DescriptorType.STRING, 2, 255);
  assertEquals(
    new TextDecoder("utf-16le").decode(product.data!.subarray(2)),
    "Keyboard",
  );
  const manufacturer = await getDescriptor(dev, DescriptorType.STRING, 1, 255);
  assertEquals(new TextDecoder("utf-16le").decode(manufacturer.data!.subarray(2)), "usbipgw");
});

Deno.test("HidKeyboard takes its vendor, product and serial from its options", async () => {
  const dev = new HidKeyboard({ vendorId: 0x1234, productId: 0xabcd, serial: "KB01" });
  const r = await getDescriptor(dev, DescriptorType.DEVICE, 0, 18);
  assertEquals([...r.data!.subarray(8, 12)], [0x34, 0x12, 0xcd, 0xab]);
  assertEquals(r.data![16], 3);
  const serial = await getDescriptor(dev, DescriptorType.STRING, 3, 255);
  assertEquals(new TextDecoder("utf-16le").decode(serial.data!.subarray(2)), "KB01");
  assertEquals(dev.summary().interfaces, [
    { bInterfaceClass: 3, bInterfaceSubClass: 1, bInterfaceProtocol: 1 },
  ]);
});

Deno.test("The configuration has a boot keyboard interface, its HID descriptor and ep 0x81", async () => {
  const dev = new HidKeyboard();
  const r = await getDescriptor(dev, DescriptorType.CONFIGURATION, 0, 255);
  assertEquals(
    r.data,
    new Uint8Array([
      ...[9, 2, 34, 0, 1, 1, 0, 0x80, 50], // 34 bytes, one interface, config 1, bus powered
      ...[9, 4, 0, 0, 1, 3, 1, 1, 0], // interface 0: one endpoint, HID, boot, keyboard
      ...[9, 0x21, 0x11, 0x01, 0, 1, 0x22, 63, 0], // HID 1.11, one report descriptor, 63 bytes
      ...[7, 5, 0x81, 3, 8, 0, 10], // interrupt IN 1, 8 bytes, every 10 ms
    ]),
  );
});

Deno.test("GET_DESCRIPTOR(REPORT) to the interface returns HID 1.11's boot keyboard descriptor", async () => {
  const dev = new HidKeyboard();
  const r = await interfaceDescriptor(dev, HidDescriptorType.REPORT, 0, 0x3f + 0x40);
  assertEquals(r.status, "ok");
  assertEquals(r.data, new Uint8Array(SPEC_BOOT_KEYBOARD_REPORT_DESCRIPTOR));
  assertEquals(r.data!.length, 63);
  const hid = await interfaceDescriptor(dev, HidDescriptorType.HID, 0);
  assertEquals(hid.data![7]! | (hid.data![8]! << 8), r.data!.length);
});

Deno.test("GET_DESCRIPTOR(HID) to the interface returns the 9-byte HID descriptor", async () => {
  const dev = new HidKeyboard();
  const r = await interfaceDescriptor(dev, HidDescriptorType.HID, 0);
  assertEquals(r.data, new Uint8Array([9, 0x21, 0x11, 0x01, 0, 1, 0x22, 63, 0]));
});

Deno.test("Interface GET_DESCRIPTOR stalls for other types, indices and interfaces", async () => {
  const dev = new HidKeyboard();
  assertEquals((await interfaceDescriptor(dev, HidDescriptorType.PHYSICAL, 0)).status, "stall");
  assertEquals((await interfaceDescriptor(dev, HidDescriptorType.REPORT, 1)).status, "stall");
  const other = await interfaceDescriptor(dev, HidDescriptorType.REPORT, 0, 63, 1);
  assertEquals(other.status, "stall");
  assertEquals((await getDescriptor(dev, HidDescriptorType.REPORT, 0, 255)).status, "stall");
});

Deno.test("A report descriptor read is cut to wLength", async () => {
  const dev = new HidKeyboard();
  const r = await interfaceDescriptor(dev, HidDescriptorType.REPORT, 0, 8);
  assertEquals(r.data, new Uint8Array(SPEC_BOOT_KEYBOARD_REPORT_DESCRIPTOR.slice(0, 8)));
});

Deno.test("Class requests stall while the keyboard is unconfigured", async () => {
  const dev = new HidKeyboard();
  assertEquals((await classIn(dev, GET_IDLE, 0, 1)).status, "stall");
  assertEquals((await classOut(dev, SET_PROTOCOL, 0)).status, "stall");
  assertEquals((await setLeds(dev, 1)).status, "stall");
  assertEquals(dev.leds.raw, 0);
});

Deno.test("Unknown class requests, vendor requests and wrong interfaces stall", async () => {
  const dev = await configured();
  assertEquals((await classIn(dev, 0x04, 0, 1)).status, "stall");
  const vendor = await control(dev, {
    bmRequestType: 0xc1,
    bRequest: GET_IDLE,
    wValue: 0,
    wIndex: 0,
    wLength: 1,
  });
  assertEquals(vendor.status, "stall");
  const otherInterface = await control(dev, {
    bmRequestType: 0xa1,
    bRequest: GET_IDLE,
    wValue: 0,
    wIndex: 1,
    wLength: 1,
  });
  assertEquals(otherInterface.status, "stall");
  assertEquals((await classOut(dev, GET_IDLE, 0)).status, "stall");
});

Deno.test("GET_IDLE starts at 500 ms and follows SET_IDLE", async () => {
  const dev = new HidKeyboard();
  await setConfiguration(dev, 1);
  assertEquals((await classIn(dev, GET_IDLE, 0, 1)).data, new Uint8Array([125]));
  assertEquals((await classOut(dev, SET_IDLE, 0x0000)).status, "ok");
  assertEquals((await classIn(dev, GET_IDLE, 0, 1)).data, new Uint8Array([0]));
  assertEquals((await classOut(dev, SET_IDLE, 0x2a00)).status, "ok");
  assertEquals((await classIn(dev, GET_IDLE, 0, 1)).data, new Uint8Array([0x2a]));
  assertEquals(dev.idleRate, 0x2a);
});

Deno.test("GET_IDLE and SET_IDLE stall for a report ID other than 0", async () => {
  const dev = await configured();
  assertEquals((await classOut(dev, SET_IDLE, 0x1001)).status, "stall");
  assertEquals((await classIn(dev, GET_IDLE, 0x0001, 1)).status, "stall");
  assertEquals(dev.idleRate, 0);
});

Deno.test("GET_PROTOCOL starts at report protocol and SET_PROTOCOL switches to boot", async () => {
  const dev = await configured();
  assertEquals((await classIn(dev, GET_PROTOCOL, 0, 1)).data, new Uint8Array([1]));
  assertEquals((await classOut(dev, SET_PROTOCOL, 0)).status, "ok");
  assertEquals((await classIn(dev, GET_PROTOCOL, 0, 1)).data, new Uint8Array([0]));
  assertEquals((await classOut(dev, SET_PROTOCOL, 2)).status, "stall");
  assertEquals(dev.protocol, 0);
});

Deno.test("The boot protocol gives the same 8-byte reports as the report protocol", async () => {
  const dev = await configured();
  await classOut(dev, SET_PROTOCOL, 0);
  const typed = dev.type("a");
  assertEquals(await readReports(dev, 2), [press(0, 0x04), RELEASED]);
  await typed;
});

Deno.test("GET_REPORT returns the input report the host last read and the LED byte", async () => {
  const dev = await configured();
  assertEquals((await classIn(dev, GET_REPORT, 0x0100, 8)).data, new Uint8Array(RELEASED));
  const held = dev.press([0x04, 0x05], 0x02);
  assertEquals((await classIn(dev, GET_REPORT, 0x0100, 8)).data, new Uint8Array(RELEASED));
  await interruptIn(dev);
  await held;
  assertEquals(
    (await classIn(dev, GET_REPORT, 0x0100, 8)).data,
    new Uint8Array([0x02, 0, 0x04, 0x05, 0, 0, 0, 0]),
  );
  await setLeds(dev, 0x05);
  assertEquals((await classIn(dev, GET_REPORT, 0x0200, 1)).data, new Uint8Array([0x05]));
  assertEquals((await classIn(dev, GET_REPORT, 0x0300, 8)).status, "stall");
  assertEquals((await classIn(dev, GET_REPORT, 0x0101, 8)).status, "stall");
});

Deno.test("SET_REPORT sets the LEDs and calls onLeds only when they change", async () => {
  const seen: KeyboardLeds[] = [];
  const dev = await configured({ onLeds: (l) => seen.push(l) });
  assertEquals((await setLeds(dev, 0x02)).status, "ok");
  assertEquals(dev.leds, {
    raw: 0x02,
    numLock: false,
    capsLock: true,
    scrollLock: false,
    compose: false,
    kana: false,
  });
  await setLeds(dev, 0x02);
  await setLeds(dev, 0xff);
  assertEquals(seen.map((l) => l.raw), [0x02, 0x1f]);
  assertEquals(seen[1], {
    raw: 0x1f,
    numLock: true,
    capsLock: true,
    scrollLock: true,
    compose: true,
    kana: true,
  });
});

Deno.test("SET_REPORT stalls for input and feature reports, report IDs and no data", async () => {
  const dev = await configured();
  const one = new Uint8Array([1]);
  assertEquals((await classOut(dev, SET_REPORT, 0x0100, one)).status, "stall");
  assertEquals((await classOut(dev, SET_REPORT, 0x0300, one)).status, "stall");
  assertEquals((await classOut(dev, SET_REPORT, 0x0201, one)).status, "stall");
  assertEquals((await classOut(dev, SET_REPORT, 0x0200)).status, "stall");
  assertEquals(dev.leds.raw, 0);
});

Deno.test("A bus reset clears the LEDs and restores the idle rate and report protocol", async () => {
  const seen: number[] = [];
  const dev = await configured({ onLeds: (l) => seen.push(l.raw) });
  await setLeds(dev, 0x03);
  await classOut(dev, SET_PROTOCOL, 0);
  dev.reset();
  assertEquals(dev.leds.raw, 0);
  assertEquals(seen, [0x03, 0]);
  assertEquals(dev.idleRate, 125);
  assertEquals(dev.protocol, 1);
  assertEquals(dev.configurationValue, 0);
});

Deno.test('type("Hello, World!\\n") sends a press and a release report per character', async () => {
  const dev = await configured();
  const typed = dev.type("Hello, World!\n");
  const reports = await readReports(dev, 28);
  const presses = [
    press(2, 0x0b), // H
    press(0, 0x08), // e
    press(0, 0x0f), // l
    press(0, 0x0f), // l
    press(0, 0x12), // o
    press(0, 0x36), // ,
    press(0, 0x2c), // space
    press(2, 0x1a), // W
    press(0, 0x12), // o
    press(0, 0x15), // r
    press(0, 0x0f), // l
    press(0, 0x07), // d
    press(2, 0x1e), // !
    press(0, 0x28), // Enter
  ];
  assertEquals(reports, presses.flatMap((p) => [p, RELEASED]));
  assertEquals(reports[0], [0x02, 0, 0x0b, 0, 0, 0, 0, 0]);
  assertEquals(reports[5], [0, 0, 0, 0, 0, 0, 0, 0]);
  assertEquals(reports[10], [0x00, 0, 0x36, 0, 0, 0, 0, 0]);
  assertEquals(reports[26], [0x00, 0, 0x28, 0, 0, 0, 0, 0]);
  assertEquals(await typed, { typed: 14, unmapped: [] });
});

Deno.test("type() resolves only after the host has read every report", async () => {
  const dev = await configured();
  let done = false;
  const typed = dev.type("ab").then((r) => {
    done = true;
    return r;
  });
  await readReports(dev, 3);
  assertEquals(await settledWithin(typed, 20), "pending");
  assertEquals(done, false);
  await readReports(dev, 1);
  assertEquals(await settledWithin(typed, 1000), { typed: 2, unmapped: [] });
});

Deno.test("type() skips characters with no key and resolves with them", async () => {
  const dev = await configured();
  const typed = dev.type("a€b\r");
  assertEquals(await readReports(dev, 4), [
    press(0, 0x04),
    RELEASED,
    press(0, 0x05),
    RELEASED,
  ]);
  assertEquals(await typed, { typed: 2, unmapped: ["€", "\r"] });
  assertEquals(await dev.type("😀"), { typed: 0, unmapped: ["😀"] });
});

Deno.test("type() follows the host's Caps Lock so the text comes out as written", async () => {
  const dev = await configured();
  await setLeds(dev, 0x02);
  const typed = dev.type("aB");
  assertEquals(await readReports(dev, 4), [
    press(0x02, 0x04),
    RELEASED,
    press(0, 0x05),
    RELEASED,
  ]);
  await typed;
});

Deno.test("type() releases held keys before typing", async () => {
  const dev = await configured();
  void dev.press([0x04]);
  const typed = dev.type("a");
  assertEquals(await readReports(dev, 4), [press(0, 0x04), RELEASED, press(0, 0x04), RELEASED]);
  await typed;
});

Deno.test("type() rejects when the device is disconnected before the host reads", async () => {
  const dev = await configured();
  const typed = dev.type("abc");
  await readReports(dev, 1);
  dev.disconnect();
  await assertRejects(() => typed, Deno.errors.NotConnected);
  await assertRejects(() => dev.type("x"), Deno.errors.NotConnected);
  assertEquals((await interruptIn(dev)).status, "nodev");
});

Deno.test("press() and release() queue reports; more than six keys roll over", async () => {
  const dev = await configured();
  const held = dev.press([0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a], 0x11);
  const released = dev.release();
  assertEquals(await readReports(dev, 2), [[0x11, 0, 1, 1, 1, 1, 1, 1], RELEASED]);
  await held;
  await released;
  assertThrows(() => dev.press([0x100]), RangeError);
});

Deno.test("A report equal to the last one read is not sent again with idle rate 0", async () => {
  const dev = await configured();
  const first = dev.press([0x04]);
  await readReports(dev, 1);
  await first;
  const again = dev.press([0x04]);
  const pending = interruptIn(dev);
  assertEquals(await settledWithin(again, 1000), undefined);
  assertEquals(await settledWithin(pending, 20), "pending");
  void dev.release();
  assertEquals((await pending).data, new Uint8Array(RELEASED));
});

Deno.test("An interrupt IN transfer stays pending until text is typed", async () => {
  const dev = await configured();
  const pending = interruptIn(dev);
  assertEquals(await settledWithin(pending, 50), "pending");
  const typed = dev.type("q");
  const r = await settledWithin(pending, 1000);
  assertEquals(r, { status: "ok", data: new Uint8Array(press(0, 0x14)) });
  await readReports(dev, 1);
  await typed;
});

Deno.test("A pending interrupt IN transfer completes with CANCELLED when its signal aborts", async () => {
  const dev = await configured();
  const controller = new AbortController();
  let listeners = 0;
  const add = controller.signal.addEventListener.bind(controller.signal);
  const remove = controller.signal.removeEventListener.bind(controller.signal);
  controller.signal.addEventListener = (...args: Parameters<typeof add>) => {
    listeners++;
    add(...args);
  };
  controller.signal.removeEventListener = (...args: Parameters<typeof remove>) => {
    listeners--;
    remove(...args);
  };
  const pending = interruptIn(dev, controller.signal);
  assertEquals(await settledWithin(pending, 20), "pending");
  assertEquals(listeners, 1);
  controller.abort();
  assertEquals(await pending, { status: "cancelled" });
  assertEquals(listeners, 0);
  // The cancelled transfer took nothing: the next one gets the first report.
  const typed = dev.type("z");
  assertEquals(await readReports(dev, 2), [press(0, 0x1d), RELEASED]);
  await typed;
});

Deno.test("A transfer that gets a report leaves no abort listener behind", async () => {
  const dev = await configured();
  const controller = new AbortController();
  let listeners = 0;
  const add = controller.signal.addEventListener.bind(controller.signal);
  const remove = controller.signal.removeEventListener.bind(controller.signal);
  controller.signal.addEventListener = (...args: Parameters<typeof add>) => {
    listeners++;
    add(...args);
  };
  controller.signal.removeEventListener = (...args: Parameters<typeof remove>) => {
    listeners--;
    remove(...args);
  };
  const pending = interruptIn(dev, controller.signal);
  assertEquals(await settledWithin(pending, 20), "pending");
  const typed = dev.type("x");
  assertEquals((await pending).status, "ok");
  assertEquals(listeners, 0);
  await readReports(dev, 1);
  await typed;
});

Deno.test("An already aborted interrupt IN transfer is cancelled without taking a report", async () => {
  const dev = await configured();
  const typed = dev.type("m");
  assertEquals(await interruptIn(dev, AbortSignal.abort()), { status: "cancelled" });
  assertEquals(await readReports(dev, 2), [press(0, 0x10), RELEASED]);
  await typed;
});

Deno.test("With SET_IDLE above zero the current report repeats every idle period", async () => {
  const dev = await configured();
  await classOut(dev, SET_IDLE, 0x0500); // 5 x 4 ms = 20 ms
  const controller = new AbortController();
  try {
    const held = dev.press([0x04]);
    assertEquals(await readReports(dev, 1), [press(0, 0x04)]);
    await held;
    const start = performance.now();
    const repeats = await settledWithin(readReports(dev, 2, controller.signal), 1000);
    const elapsed = performance.now() - start;
    assertEquals(repeats, [press(0, 0x04), press(0, 0x04)]);
    assertEquals(elapsed >= 38, true, `two repeats took ${elapsed} ms, expected at least 40`);
    const released = dev.release();
    assertEquals(await readReports(dev, 1), [RELEASED]);
    await released;
  } finally {
    controller.abort();
  }
});

Deno.test("Lowering the idle rate wakes a waiting transfer with the new deadline", async () => {
  const dev = await configured();
  await classOut(dev, SET_IDLE, 0xff00); // about a second
  const controller = new AbortController();
  const pending = interruptIn(dev, controller.signal);
  assertEquals(await settledWithin(pending, 20), "pending");
  await classOut(dev, SET_IDLE, 0x0100); // 4 ms, already past
  const r = await settledWithin(pending, 500);
  controller.abort();
  assertEquals(r, { status: "ok", data: new Uint8Array(RELEASED) });
});

Deno.test("The text option is typed once, when the host first polls after configuration", async () => {
  const dev = new HidKeyboard({ text: "Ok" });
  const early = dev.submit({
    endpoint: 1,
    dirIn: true,
    type: "interrupt",
    length: 8,
    data: new Uint8Array(0),
    shortNotOk: false,
    zeroPacket: false,
    isoPackets: [],
    signal: NEVER,
  });
  assertEquals(early, { status: "stall" });
  await setConfiguration(dev, 1);
  await classOut(dev, SET_IDLE, 0);
  assertEquals(await readReports(dev, 4), [press(2, 0x12), RELEASED, press(0, 0x0e), RELEASED]);
  const controller = new AbortController();
  const after = interruptIn(dev, controller.signal);
  assertEquals(await settledWithin(after, 20), "pending");
  controller.abort();
  await after;
  dev.reset();
  await setConfiguration(dev, 1);
  await classOut(dev, SET_IDLE, 0);
  const again = new AbortController();
  const second = interruptIn(dev, again.signal);
  assertEquals(await settledWithin(second, 20), "pending");
  again.abort();
  assertEquals(await second, { status: "cancelled" });
});

Deno.test("The text option rejects characters with no key", () => {
  assertThrows(() => new HidKeyboard({ text: "naïve" }), TypeError, '"ï"');
});

Deno.test("Text typed before the host configures is delivered once it polls", async () => {
  const dev = new HidKeyboard();
  const typed = dev.type("1");
  await setConfiguration(dev, 1);
  await classOut(dev, SET_IDLE, 0);
  assertEquals(await readReports(dev, 2), [press(0, 0x1e), RELEASED]);
  assertEquals(await typed, { typed: 1, unmapped: [] });
});

Deno.test("SET_CONFIGURATION forgets the key state the host had", async () => {
  const dev = await configured();
  const held = dev.press([0x04]);
  await readReports(dev, 1);
  await held;
  await setConfiguration(dev, 1);
  await classOut(dev, SET_IDLE, 0);
  assertEquals((await classIn(dev, GET_REPORT, 0x0100, 8)).data, new Uint8Array(RELEASED));
  const again = dev.press([0x04]);
  assertEquals(await readReports(dev, 1), [press(0, 0x04)]);
  await again;
});
