// Tests of the `host` device type: spec validation, selection and startup errors, without USB
// hardware (a fake sysfs tree, and a regular file standing in for the device node).
import { assertEquals, assertRejects, assertThrows } from "@std/assert";
import { checkDeviceSpec, createHostDevice, hostSelector } from "../../../lib/cli/device_types.ts";
import { parseDeviceSpec } from "../../../lib/cli/device_spec.ts";
import { UsageError } from "../../../lib/cli/usage_error.ts";
import { fakeSysfs, STORAGE } from "./_fake_sysfs.ts";
import { STORAGE_HS } from "./_descriptors.ts";

const spec = (text: string) => parseDeviceSpec(text);

Deno.test("checkDeviceSpec() accepts the host keys and lists them for a wrong one", () => {
  assertEquals(checkDeviceSpec(spec("host:vid=46f4,pid=0001,serial=x")).name, "host");
  assertEquals(checkDeviceSpec(spec("host:busid=2-1,export_busid=1-5")).name, "host");
  assertThrows(
    () => checkDeviceSpec(spec("host:vendor=46f4")),
    UsageError,
    "valid keys: busid, vid, pid, serial, export_busid",
  );
});

Deno.test("hostSelector() reads busid or vid/pid/serial", () => {
  assertEquals(hostSelector(spec("host:busid=1-1.4")), { busid: "1-1.4" });
  assertEquals(hostSelector(spec("host:vid=0x46F4,pid=1")), { idVendor: 0x46f4, idProduct: 1 });
  assertEquals(hostSelector(spec("host:vid=0403,pid=6001,serial=A50285BI")), {
    idVendor: 0x0403,
    idProduct: 0x6001,
    serial: "A50285BI",
  });
});

Deno.test("hostSelector() rejects specs that name no device, two, or malformed values", () => {
  const cases: [string, string][] = [
    ["host", "name the device with busid=BUS-PORT, or with vid=VVVV,pid=PPPP"],
    ["host:vid=46f4", "name the device with busid"],
    ["host:busid=1-1,vid=46f4,pid=1", "either busid or vid and pid"],
    ["host:busid=usb1", 'busid="usb1" is not a bus id'],
    ["host:vid=12345,pid=1", 'vid="12345" is not a 16-bit hex number'],
    ["host:vid=1,pid=xyz", 'pid="xyz"'],
    ["host:busid=1-1,export_busid=a", 'export_busid="a"'],
    ["host:busid=1-1,serial=x", "not both"],
  ];
  for (const [text, message] of cases) {
    assertThrows(() => hostSelector(spec(text)), UsageError, message);
  }
});

function fdsOpenOn(path: string): number {
  // Only fds on this file: other test files run in this process at the same time.
  let n = 0;
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${entry.name}`) === path) n++;
    } catch {
      // Closed meanwhile.
    }
  }
  return n;
}

Deno.test("createHostDevice() fails with a message naming the spec when no device matches", async () => {
  const fake = await fakeSysfs();
  try {
    await assertRejects(
      () => createHostDevice(spec("host:vid=dead,pid=beef"), { sysfsRoot: fake.root }),
      Error,
      'No host USB device matches --device host:vid=dead,pid=beef (dead:beef); "usbipgw host" lists them',
    );
  } finally {
    await fake.remove();
  }
});

Deno.test("createHostDevice() refuses a node that is not usbfs and leaks no fd", async () => {
  const fake = await fakeSysfs([STORAGE]);
  const dev = `${fake.root}/dev`;
  await Deno.mkdir(`${dev}/bus/usb/001`, { recursive: true });
  await Deno.writeFile(`${dev}/bus/usb/001/002`, STORAGE_HS);
  try {
    await assertRejects(
      () => createHostDevice(spec("host:busid=1-1"), { sysfsRoot: fake.root, devRoot: dev }),
      Error,
      `Cannot open ${dev}/bus/usb/001/002 for --device host:busid=1-1: Cannot use ${dev}/bus/usb/001/002: it is not a usbfs device node: ENOTTY`,
    );
    assertEquals(fdsOpenOn(`${dev}/bus/usb/001/002`), 0);
  } finally {
    await fake.remove();
  }
});
