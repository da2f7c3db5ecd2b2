// Tests of the host device type: the selector keys, the bus id it is exported under, describe
// from a fake sysfs tree, and the startup errors of creating it from its `--device` spec, all
// without USB hardware (a regular file stands in for the device node).
import { assert, assertEquals, assertRejects } from "@std/assert";
import { Speed } from "../../../lib/protocol/constants.ts";
import { readSpecFlag } from "../../../lib/cli/spec_flag.ts";
import { parseDescriptors } from "../../../lib/devices/passthrough/descriptor_parser.ts";
import type { HostDeviceOptions } from "../../../lib/devices/passthrough/host_devices.ts";
import { hostDeviceType } from "../../../lib/devices/types/host.ts";
import {
  createDevice,
  type ParsedDevice,
  parseDevice,
  PATHS_AS_GIVEN,
} from "../../../lib/devices/registry.ts";
import { fakeSysfs, KEYBOARD, STORAGE } from "../passthrough/_fake_sysfs.ts";
import { STORAGE_HS } from "../passthrough/_descriptors.ts";
import { parsed } from "./_describe.ts";

Deno.test("host parses a bus id or vid/pid/serial, and the bus id it is exported under", () => {
  const cases: [Record<string, string>, unknown, string | undefined][] = [
    [{ busid: "2-1" }, { selector: { busid: "2-1" } }, "2-1"],
    [{ busid: "1-1.4", export_busid: "3-2" }, {
      selector: { busid: "1-1.4" },
      exportBusid: "3-2",
    }, "3-2"],
    [{ vid: "0x46F4", pid: "1" }, { selector: { idVendor: 0x46f4, idProduct: 1 } }, undefined],
    [
      { vid: "0403", pid: "6001", serial: "A50285BI", export_busid: "1-5" },
      {
        selector: { idVendor: 0x0403, idProduct: 0x6001, serial: "A50285BI" },
        exportBusid: "1-5",
      },
      "1-5",
    ],
  ];
  for (const [options, expected, busid] of cases) {
    const p = parsed("host", options);
    assertEquals(p.options, expected);
    assertEquals(p.busid, busid);
  }
});

Deno.test("host describes a plugged-in device from sysfs alone, and nothing for an absent one", async () => {
  const fake = await fakeSysfs([STORAGE, KEYBOARD]);
  try {
    await Deno.writeFile(`${fake.root}/bus/usb/devices/1-1/descriptors`, STORAGE_HS);
    // The device nodes do not exist: describing opens none.
    const type = hostDeviceType({ sysfsRoot: fake.root, devRoot: `${fake.root}/nodev` });
    const parse = (options: Record<string, string>) => {
      const r = type.parse(options, PATHS_AS_GIVEN);
      if (!r.ok) throw new Error(r.message);
      return r.options;
    };
    for (const options of [{ busid: "1-1" }, { vid: "46f4", pid: "0001" }]) {
      assertEquals(await type.describe(parse(options)), {
        descriptors: parseDescriptors(STORAGE_HS),
        speed: Speed.HIGH,
        origin: "passthrough",
      });
    }
    assertEquals(await type.describe(parse({ busid: "3-1" })), undefined);
    assertEquals(await type.describe(parse({ vid: "46f4", pid: "1", serial: "other" })), undefined);
    // Listed, but without its descriptors file (unplugged while being read): not known yet.
    assertEquals(await type.describe(parse({ busid: "1-2.1" })), undefined);
    await assertRejects(
      () => type.create(parse({ vid: "dead", pid: "beef" }), { label: "host" }),
      Error,
      "No host USB device matches dead:beef",
    );
  } finally {
    await fake.remove();
  }
});

/**
 * Reads `text` as a `--device` flag, checks it through the registry, and gives the host
 * device it names over the sysfs and device nodes `where` points at.
 */
function hostSpec(text: string, where: HostDeviceOptions): ParsedDevice {
  const t = readSpecFlag("--device", text, "type");
  const { type, ...options } = t.fields as Record<string, string>;
  const r = parseDevice(type!, options, t.alone ?? [], PATHS_AS_GIVEN);
  assert(r.ok, r.ok ? "" : `${text}: ${r.key}: ${r.message}`);
  assert(r.name === "host", text);
  return { ...r, type: hostDeviceType(where) };
}

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

Deno.test("createDevice() of a host spec fails with a message naming the selector when no device matches", async () => {
  const fake = await fakeSysfs();
  try {
    const spec = hostSpec("host:vid=dead,pid=beef", { sysfsRoot: fake.root });
    const e = await createDevice(spec, { label: "host" }).catch((e) => e);
    assert(e instanceof Error);
    assertEquals(e.message, "No host USB device matches dead:beef");
  } finally {
    await fake.remove();
  }
});

Deno.test("createDevice() of a host spec refuses a node that is not usbfs and leaks no fd", async () => {
  const fake = await fakeSysfs([STORAGE]);
  const dev = `${fake.root}/dev`;
  await Deno.mkdir(`${dev}/bus/usb/001`, { recursive: true });
  await Deno.writeFile(`${dev}/bus/usb/001/002`, STORAGE_HS);
  try {
    const spec = hostSpec("host:busid=1-1", { sysfsRoot: fake.root, devRoot: dev });
    await assertRejects(
      () => createDevice(spec, { label: "host 1-1" }),
      Error,
      `Cannot open ${dev}/bus/usb/001/002: Cannot use ${dev}/bus/usb/001/002: it is not a usbfs device node: ENOTTY`,
    );
    assertEquals(fdsOpenOn(`${dev}/bus/usb/001/002`), 0);
  } finally {
    await fake.remove();
  }
});
