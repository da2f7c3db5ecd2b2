// Tests of the standard-request handler (USB 2.0 §9.4) through a device built from data.
import { assertEquals } from "@std/assert";
import {
  DescriptorType,
  type EndpointDescriptor,
  superSpeedCapability,
  type TransferResult,
  usb2ExtensionCapability,
  type UsbDescriptors,
  UsbDevice,
  type UsbTransfer,
} from "../../mod.ts";
import { DescriptorSet } from "../../lib/devices/descriptors.ts";
import { control, data, getDescriptor, setConfiguration } from "./_transfers.ts";

const TREE: UsbDescriptors = {
  device: {
    bcdUSB: 0x0210,
    bDeviceClass: 0,
    bDeviceSubClass: 0,
    bDeviceProtocol: 0,
    bMaxPacketSize0: 64,
    idVendor: 0x1209,
    idProduct: 0x0007,
    bcdDevice: 0x0102,
    iManufacturer: "Maker",
    iProduct: "Thing",
  },
  configurations: [{
    bConfigurationValue: 1,
    bmAttributes: 0xc0,
    bMaxPower: 50,
    iConfiguration: "Only",
    interfaces: [
      {
        bInterfaceNumber: 0,
        bAlternateSetting: 0,
        bInterfaceClass: 0xff,
        bInterfaceSubClass: 1,
        bInterfaceProtocol: 2,
        iInterface: "Thing",
        endpoints: [{ bEndpointAddress: 0x81, bmAttributes: 2, wMaxPacketSize: 512, bInterval: 0 }],
      },
      {
        bInterfaceNumber: 0,
        bAlternateSetting: 1,
        bInterfaceClass: 0xff,
        bInterfaceSubClass: 1,
        bInterfaceProtocol: 2,
        endpoints: [
          { bEndpointAddress: 0x81, bmAttributes: 2, wMaxPacketSize: 512, bInterval: 0 },
          { bEndpointAddress: 0x02, bmAttributes: 1, wMaxPacketSize: 1024, bInterval: 1 },
        ],
      },
    ],
  }],
  otherSpeedConfigurations: [{
    bConfigurationValue: 1,
    bmAttributes: 0xc0,
    bMaxPower: 50,
    interfaces: [],
  }],
  capabilities: [usb2ExtensionCapability(2), superSpeedCapability()],
};

class Thing extends UsbDevice {
  events: string[] = [];
  constructor() {
    super(TREE, 3);
  }
  protected override handleData(t: UsbTransfer, _ep: EndpointDescriptor): TransferResult {
    return t.dirIn ? { status: "ok", data: new Uint8Array(t.length) } : { status: "ok" };
  }
  protected override onConfigurationChanged(v: number) {
    this.events.push(`config ${v}`);
  }
  protected override onInterfaceChanged(i: number, a: number) {
    this.events.push(`interface ${i} alt ${a}`);
  }
  protected override onHaltChanged(address: number, halted: boolean) {
    this.events.push(`halt ${address.toString(16)} ${halted}`);
  }
}

Deno.test("DescriptorSet encodes the device descriptor field by field (USB 2.0 table 9-8)", () => {
  const set = new DescriptorSet(TREE);
  assertEquals([...set.device], [
    18,
    1,
    0x10,
    0x02,
    0,
    0,
    0,
    64,
    0x09,
    0x12,
    0x07,
    0x00,
    0x02,
    0x01,
    1,
    2,
    0,
    1,
  ]);
});

Deno.test("DescriptorSet encodes a configuration with every alternate setting and endpoint", () => {
  const config = new DescriptorSet(TREE).configurations[0]!;
  const total = 9 + 9 + 7 + 9 + 7 + 7;
  assertEquals([...config.subarray(0, 9)], [9, 2, total, 0, 1, 1, 3, 0xc0, 50]);
  assertEquals([...config.subarray(9, 18)], [9, 4, 0, 0, 1, 0xff, 1, 2, 2]);
  assertEquals([...config.subarray(18, 25)], [7, 5, 0x81, 2, 0x00, 0x02, 0]);
  assertEquals([...config.subarray(25, 34)], [9, 4, 0, 1, 2, 0xff, 1, 2, 0]);
  assertEquals([...config.subarray(41, 48)], [7, 5, 0x02, 1, 0x00, 0x04, 1]);
  assertEquals(config.length, total);
});

Deno.test("DescriptorSet encodes strings as UTF-16LE and shares repeated text", () => {
  const set = new DescriptorSet(TREE);
  assertEquals([...set.string(0)!], [4, 3, 0x09, 0x04]);
  assertEquals([...set.string(2)!], [12, 3, 0x54, 0, 0x68, 0, 0x69, 0, 0x6e, 0, 0x67, 0]);
  assertEquals(set.string(4), undefined);
});

Deno.test("GET_DESCRIPTOR answers device, configuration, string, qualifier, other-speed and BOS", async () => {
  const dev = new Thing();
  assertEquals((await getDescriptor(dev, DescriptorType.DEVICE, 0, 18)).data?.length, 18);
  assertEquals(
    (await getDescriptor(dev, DescriptorType.DEVICE, 0, 8)).data?.length,
    8,
    "truncated to wLength",
  );
  assertEquals((await getDescriptor(dev, DescriptorType.CONFIGURATION, 0, 9)).data?.[2], 48);
  assertEquals((await getDescriptor(dev, DescriptorType.CONFIGURATION, 1)).status, "stall");
  assertEquals((await getDescriptor(dev, DescriptorType.STRING, 1)).data?.[0], 12);
  assertEquals((await getDescriptor(dev, DescriptorType.STRING, 9)).status, "stall");
  const qualifier = (await getDescriptor(dev, DescriptorType.DEVICE_QUALIFIER, 0)).data!;
  assertEquals([...qualifier], [10, 6, 0x10, 0x02, 0, 0, 0, 64, 1, 0]);
  assertEquals(
    (await getDescriptor(dev, DescriptorType.OTHER_SPEED_CONFIGURATION, 0)).data?.[1],
    7,
  );
  const bos = (await getDescriptor(dev, DescriptorType.BOS, 0)).data!;
  assertEquals([...bos.subarray(0, 5)], [5, 15, 22, 0, 2]);
  assertEquals([...bos.subarray(5, 12)], [7, 16, 2, 2, 0, 0, 0]);
  assertEquals(
    (await getDescriptor(dev, DescriptorType.INTERFACE, 0)).status,
    "stall",
    "interface descriptors are not fetched alone",
  );
});

Deno.test("SET/GET_CONFIGURATION and SET/GET_INTERFACE switch state and call the hooks", async () => {
  const dev = new Thing();
  const getConfig = () =>
    control(dev, { bmRequestType: 0x80, bRequest: 8, wValue: 0, wIndex: 0, wLength: 1 });
  const getInterface = () =>
    control(dev, { bmRequestType: 0x81, bRequest: 10, wValue: 0, wIndex: 0, wLength: 1 });
  assertEquals([...(await getConfig()).data!], [0]);
  assertEquals((await getInterface()).status, "stall", "no interface while unconfigured");
  assertEquals((await setConfiguration(dev, 2)).status, "stall");
  assertEquals((await setConfiguration(dev, 1)).status, "ok");
  assertEquals([...(await getConfig()).data!], [1]);
  assertEquals([...(await getInterface()).data!], [0]);
  assertEquals(dev.transferType(2, false), undefined, "the ISO endpoint is only in alt 1");
  const setAlt = (alt: number) =>
    control(dev, { bmRequestType: 0x01, bRequest: 11, wValue: alt, wIndex: 0, wLength: 0 });
  assertEquals((await setAlt(5)).status, "stall");
  assertEquals((await setAlt(1)).status, "ok");
  assertEquals([...(await getInterface()).data!], [1]);
  assertEquals(dev.transferType(2, false), "isochronous");
  assertEquals(dev.events, ["config 1", "interface 0 alt 1"]);
});

Deno.test("GET_STATUS reports self-powered, remote wakeup and endpoint halt", async () => {
  const dev = new Thing();
  await setConfiguration(dev, 1);
  const status = async (recipient: number, wIndex: number) =>
    (await control(dev, {
      bmRequestType: 0x80 | recipient,
      bRequest: 0,
      wValue: 0,
      wIndex,
      wLength: 2,
    })).data;
  assertEquals([...(await status(0, 0))!], [1, 0]);
  await control(dev, { bmRequestType: 0x00, bRequest: 3, wValue: 1, wIndex: 0, wLength: 0 });
  assertEquals([...(await status(0, 0))!], [3, 0]);
  assertEquals([...(await status(1, 0))!], [0, 0]);
  assertEquals(await status(1, 4), undefined, "no interface 4: stall");
  assertEquals([...(await status(2, 0x81))!], [0, 0]);
  assertEquals(await status(2, 0x85), undefined, "no endpoint 0x85: stall");
});

Deno.test("SET_FEATURE(ENDPOINT_HALT) stalls transfers until CLEAR_FEATURE", async () => {
  const dev = new Thing();
  await setConfiguration(dev, 1);
  const feature = (req: number) =>
    control(dev, { bmRequestType: 0x02, bRequest: req, wValue: 0, wIndex: 0x81, wLength: 0 });
  assertEquals((await data(dev, 1, true, { length: 4 })).status, "ok");
  assertEquals((await feature(3)).status, "ok");
  assertEquals(dev.isHalted(0x81), true);
  assertEquals((await data(dev, 1, true, { length: 4 })).status, "stall");
  assertEquals((await feature(1)).status, "ok");
  assertEquals((await data(dev, 1, true, { length: 4 })).status, "ok");
  assertEquals(dev.events.slice(1), ["halt 81 true", "halt 81 false"]);
});

Deno.test("transfers to endpoints outside the active setting stall, and unknown requests stall", async () => {
  const dev = new Thing();
  assertEquals((await data(dev, 1, true, { length: 4 })).status, "stall", "unconfigured");
  await setConfiguration(dev, 1);
  assertEquals((await data(dev, 3, false, { length: 4 })).status, "stall");
  assertEquals(
    (await control(dev, { bmRequestType: 0xc0, bRequest: 0x99, wValue: 0, wIndex: 0, wLength: 4 }))
      .status,
    "stall",
  );
  assertEquals(
    (await control(dev, { bmRequestType: 0x21, bRequest: 0x0a, wValue: 0, wIndex: 0, wLength: 0 }))
      .status,
    "stall",
  );
});

Deno.test("a Windows PORT_RESET request resets the device to unconfigured", async () => {
  const dev = new Thing();
  await setConfiguration(dev, 1);
  const r = await control(dev, {
    bmRequestType: 0x23,
    bRequest: 3,
    wValue: 4,
    wIndex: 1,
    wLength: 0,
  });
  assertEquals(r.status, "ok");
  assertEquals(dev.configurationValue, 0);
});

Deno.test("a disconnected device answers nodev", async () => {
  const dev = new Thing();
  dev.disconnect();
  assertEquals(dev.disconnected.aborted, true);
  assertEquals((await getDescriptor(dev, DescriptorType.DEVICE, 0, 18)).status, "nodev");
});

Deno.test("summary() lists the first configuration's interfaces while unconfigured", () => {
  const s = new Thing().summary();
  assertEquals(s.bConfigurationValue, 1);
  assertEquals(s.interfaces, [{
    bInterfaceClass: 0xff,
    bInterfaceSubClass: 1,
    bInterfaceProtocol: 2,
  }]);
  assertEquals(s.bNumConfigurations, 1);
});

Deno.test("a SuperSpeed device encodes endpoint companions and reports speed 5", async () => {
  class Fast extends UsbDevice {
    constructor() {
      super({
        device: { ...TREE.device, bcdUSB: 0x0320, bMaxPacketSize0: 9 },
        configurations: [{
          bConfigurationValue: 1,
          bmAttributes: 0x80,
          bMaxPower: 10,
          interfaces: [{
            bInterfaceNumber: 0,
            bAlternateSetting: 0,
            bInterfaceClass: 8,
            bInterfaceSubClass: 6,
            bInterfaceProtocol: 0x50,
            endpoints: [{
              bEndpointAddress: 0x81,
              bmAttributes: 2,
              wMaxPacketSize: 1024,
              bInterval: 0,
              superSpeedCompanion: { bMaxBurst: 15, bmAttributes: 0, wBytesPerInterval: 0 },
            }],
          }],
        }],
        capabilities: [usb2ExtensionCapability(2), superSpeedCapability()],
      }, 5);
    }
  }
  const dev = new Fast();
  const config = (await getDescriptor(dev, DescriptorType.CONFIGURATION, 0)).data!;
  assertEquals(config[2], 9 + 9 + 7 + 6);
  assertEquals([...config.subarray(25, 31)], [6, 0x30, 15, 0, 0, 0]);
  assertEquals(dev.summary().speed, 5);
  assertEquals((await getDescriptor(dev, DescriptorType.BOS, 0)).data?.[4], 2);
});
