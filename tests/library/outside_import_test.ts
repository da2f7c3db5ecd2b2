// mod.ts and testing.ts imported the way another project imports them: by file URL, from a
// program in a temporary folder that has no deno.json and no import map of this repository.
// A small vendor device is imported in memory and answers a vendor request and a bulk IN.
import { assertEquals } from "@std/assert";

const mod = new URL("../../mod.ts", import.meta.url).href;
const testing = new URL("../../testing.ts", import.meta.url).href;

const PROGRAM = `
import { OK, STALL, UsbDevice, type ControlTransfer, type EndpointDescriptor,
  type TransferResult, type UsbTransfer, Request, RequestType, Speed, TransferType } from "${mod}";
import { importInMemory } from "${testing}";

class Answer extends UsbDevice {
  constructor() {
    super({
      device: { bcdUSB: 0x200, bDeviceClass: 0xff, bDeviceSubClass: 0, bDeviceProtocol: 0,
        bMaxPacketSize0: 64, idVendor: 0x1209, idProduct: 0x0001, bcdDevice: 0x100 },
      configurations: [{ bConfigurationValue: 1, bmAttributes: 0x80, bMaxPower: 50,
        interfaces: [{ bInterfaceNumber: 0, bAlternateSetting: 0, bInterfaceClass: 0xff,
          bInterfaceSubClass: 0, bInterfaceProtocol: 0, endpoints: [
            { bEndpointAddress: 0x81, bmAttributes: TransferType.BULK, wMaxPacketSize: 512,
              bInterval: 0 },
          ] }] }],
    }, Speed.HIGH);
  }
  protected override handleControl(c: ControlTransfer): TransferResult {
    const vendorIn = RequestType.DIR_IN | RequestType.TYPE_VENDOR;
    if (c.setup.bmRequestType !== vendorIn || c.setup.bRequest !== 0x42) return STALL;
    return { status: "ok", data: new Uint8Array([42]) };
  }
  protected override handleData(t: UsbTransfer, _ep: EndpointDescriptor): TransferResult {
    return t.dirIn ? { status: "ok", data: new Uint8Array(t.length).fill(7) } : OK;
  }
}

const { channel, close } = await importInMemory(new Answer());
const vendor = await channel.submit({ ep: 0, dirIn: true, length: 1, setup: {
  bmRequestType: RequestType.DIR_IN | RequestType.TYPE_VENDOR, bRequest: 0x42, wValue: 0,
  wIndex: 0, wLength: 1 } }).done;
const config = await channel.submit({ ep: 0, dirIn: false, setup: {
  bmRequestType: 0, bRequest: Request.SET_CONFIGURATION, wValue: 1, wIndex: 0, wLength: 0 } }).done;
const bulk = await channel.submit({ ep: 1, dirIn: true, length: 4 }).done;
await close();
console.log(JSON.stringify({ vendor: [...vendor.data], config: config.status, bulk: [...bulk.data] }));
`;

Deno.test("mod.ts and testing.ts load from a folder without this project's configuration", async () => {
  const dir = await Deno.makeTempDir({ prefix: "usbipgw-outside-" });
  try {
    await Deno.writeTextFile(`${dir}/device_test_program.ts`, PROGRAM);
    // The types check too, under Deno's default compiler options rather than this project's.
    const check = await new Deno.Command(Deno.execPath(), {
      args: ["check", "device_test_program.ts"],
      cwd: dir,
      stdin: "null",
      env: { NO_COLOR: "1" },
    }).output();
    assertEquals(check.code, 0, new TextDecoder().decode(check.stderr));
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--allow-env", "device_test_program.ts"],
      cwd: dir,
      stdin: "null",
      env: { NO_COLOR: "1" },
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, stderr);
    const result = JSON.parse(new TextDecoder().decode(out.stdout));
    assertEquals(result, { vendor: [42], config: 0, bulk: [7, 7, 7, 7] });
    // No import map reached the program: a bare specifier would have failed to resolve.
    assertEquals(stderr.includes("not a dependency"), false, stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
