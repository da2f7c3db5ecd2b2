// Tests of the raw descriptor parser with descriptors of real (QEMU-emulated) devices.
import { assertEquals, assertThrows } from "@std/assert";
import {
  parseConfiguration,
  parseDescriptors,
} from "../../../lib/devices/passthrough/descriptor_parser.ts";
import { DescriptorSet } from "../../../lib/devices/descriptors.ts";
import { UsbDevice } from "../../../lib/devices/usb_device.ts";
import { setConfiguration } from "../_transfers.ts";
import { KEYBOARD_FS, STORAGE_HS } from "./_descriptors.ts";

/** A SuperSpeed audio-like function: IAD, alternate settings, companions, class extras. */
const SUPERSPEED_AUDIO = new Uint8Array([
  // configuration 1 (the walk only; wTotalLength 9+8+9+5+9+9+7+6+4 = 66)
  0x09,
  0x02,
  0x42,
  0x00,
  0x02,
  0x01,
  0x00,
  0x80,
  0x32,
  // IAD: interfaces 0..1, audio
  0x08,
  0x0b,
  0x00,
  0x02,
  0x01,
  0x00,
  0x20,
  0x00,
  // interface 0 alt 0: audio control, then a class-specific header (5 bytes)
  0x09,
  0x04,
  0x00,
  0x00,
  0x00,
  0x01,
  0x01,
  0x20,
  0x00,
  0x05,
  0x24,
  0x01,
  0x00,
  0x02,
  // interface 1 alt 0: streaming, no endpoints
  0x09,
  0x04,
  0x01,
  0x00,
  0x00,
  0x01,
  0x02,
  0x20,
  0x00,
  // interface 1 alt 1: one isochronous IN endpoint
  0x09,
  0x04,
  0x01,
  0x01,
  0x01,
  0x01,
  0x02,
  0x20,
  0x00,
  0x07,
  0x05,
  0x81,
  0x05,
  0x00,
  0x04,
  0x01,
  // its SuperSpeed companion: burst 0, 1024 bytes per interval
  0x06,
  0x30,
  0x00,
  0x00,
  0x00,
  0x04,
  // a class-specific endpoint descriptor after the companion
  0x04,
  0x25,
  0x01,
  0x00,
]);

class Parsed extends UsbDevice {}

Deno.test("parseDescriptors() reads a high-speed mass-storage stick", () => {
  const tree = parseDescriptors(STORAGE_HS);
  assertEquals(tree.device, {
    bcdUSB: 0x0200,
    bDeviceClass: 0,
    bDeviceSubClass: 0,
    bDeviceProtocol: 0,
    bMaxPacketSize0: 64,
    idVendor: 0x46f4,
    idProduct: 0x0001,
    bcdDevice: 0,
  });
  assertEquals(tree.configurations, [{
    bConfigurationValue: 1,
    bmAttributes: 0xc0,
    bMaxPower: 0x32,
    interfaces: [{
      bInterfaceNumber: 0,
      bAlternateSetting: 0,
      bInterfaceClass: 8,
      bInterfaceSubClass: 6,
      bInterfaceProtocol: 0x50,
      endpoints: [
        { bEndpointAddress: 0x81, bmAttributes: 2, wMaxPacketSize: 512, bInterval: 0 },
        { bEndpointAddress: 0x02, bmAttributes: 2, wMaxPacketSize: 512, bInterval: 0 },
      ],
    }],
  }]);
});

Deno.test("parseDescriptors() keeps the HID descriptor of a full-speed keyboard as extra", () => {
  const tree = parseDescriptors(KEYBOARD_FS);
  const iface = tree.configurations[0]!.interfaces[0]!;
  assertEquals(iface.extra, [new Uint8Array([0x09, 0x21, 0x11, 0x01, 0x00, 0x01, 0x22, 0x3f, 0])]);
  assertEquals(iface.endpoints, [
    { bEndpointAddress: 0x81, bmAttributes: 3, wMaxPacketSize: 8, bInterval: 10 },
  ]);
  assertEquals(tree.device.bMaxPacketSize0, 8);
});

Deno.test("the parsed tree re-encodes to the same configuration bytes, strings aside", () => {
  for (const raw of [STORAGE_HS, KEYBOARD_FS]) {
    const set = new DescriptorSet(parseDescriptors(raw));
    const config = raw.slice(18);
    config[6] = 0; // iConfiguration
    assertEquals(set.configurations[0], config);
    // The string indices are dropped: the real device answers GET_DESCRIPTOR(STRING).
    assertEquals(set.device.subarray(0, 14), raw.subarray(0, 14));
  }
});

Deno.test("parseConfiguration() reads IADs, alternate settings, SS companions and extras", () => {
  const c = parseConfiguration(SUPERSPEED_AUDIO);
  assertEquals(c.associations, [{
    bFirstInterface: 0,
    bInterfaceCount: 2,
    bFunctionClass: 1,
    bFunctionSubClass: 0,
    bFunctionProtocol: 0x20,
  }]);
  assertEquals(
    c.interfaces.map((i) => [i.bInterfaceNumber, i.bAlternateSetting, i.endpoints.length]),
    [[0, 0, 0], [1, 0, 0], [1, 1, 1]],
  );
  assertEquals(c.interfaces[0]!.extra, [new Uint8Array([0x05, 0x24, 0x01, 0x00, 0x02])]);
  assertEquals(c.interfaces[2]!.endpoints[0], {
    bEndpointAddress: 0x81,
    bmAttributes: 5,
    wMaxPacketSize: 1024,
    bInterval: 1,
    superSpeedCompanion: { bMaxBurst: 0, bmAttributes: 0, wBytesPerInterval: 1024 },
    extra: [new Uint8Array([0x04, 0x25, 0x01, 0x00])],
  });
  // Re-encoding gives back the same bytes.
  const set = new DescriptorSet({
    device: parseDescriptors(STORAGE_HS).device,
    configurations: [c],
  });
  assertEquals(set.configurations[0], SUPERSPEED_AUDIO);
});

Deno.test("a device built from parsed descriptors knows its endpoint types", async () => {
  const storage = new Parsed(parseDescriptors(STORAGE_HS), 3);
  storage.reset();
  assertEquals(storage.transferType(1, true), undefined); // unconfigured
  const device = new Parsed(
    { ...parseDescriptors(STORAGE_HS), configurations: [parseConfiguration(SUPERSPEED_AUDIO)] },
    5,
  );
  const keyboard = new Parsed(parseDescriptors(KEYBOARD_FS), 2);
  // SET_CONFIGURATION through the standard handler, as a base-class device would answer it.
  for (const d of [device, keyboard]) await setConfiguration(d, 1);
  assertEquals(keyboard.transferType(1, true), "interrupt");
  assertEquals(device.transferType(1, true), undefined); // alt 0 has no endpoint
  assertEquals(keyboard.summary().interfaces, [
    { bInterfaceClass: 3, bInterfaceSubClass: 1, bInterfaceProtocol: 1 },
  ]);
});

Deno.test("parseDescriptors() rejects a short device descriptor and a truncated configuration", () => {
  assertThrows(
    () => parseDescriptors(STORAGE_HS.subarray(0, 10)),
    SyntaxError,
    "device descriptor",
  );
  assertThrows(
    () => parseDescriptors(STORAGE_HS.subarray(0, 40)),
    SyntaxError,
    "Cannot parse configuration 0: wTotalLength 32",
  );
  assertThrows(
    () => parseDescriptors(STORAGE_HS.subarray(0, 20)),
    SyntaxError,
    "the descriptors end at byte 20",
  );
});

Deno.test("parseConfiguration() stops at a descriptor with a bad length", () => {
  const bad = STORAGE_HS.slice(18);
  bad[18] = 0; // first endpoint's bLength
  const c = parseConfiguration(bad);
  assertEquals(c.interfaces[0]!.endpoints, []);
  assertThrows(() => parseConfiguration(new Uint8Array([9, 4, 0, 0, 0, 0, 0, 0, 0])), SyntaxError);
});
