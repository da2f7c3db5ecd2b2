// Tests of creating a `host` device from its `--device` spec: the startup errors, without USB
// hardware (a fake sysfs tree, and a regular file standing in for the device node). The spec
// checks of the host keys are in tests/devices/registry_test.ts and tests/devices/types/.
import { assert, assertEquals, assertRejects } from "@std/assert";
import { readSpecFlag } from "../../../lib/cli/spec_flag.ts";
import type { HostDeviceOptions } from "../../../lib/devices/passthrough/host_devices.ts";
import {
  createDevice,
  type ParsedDevice,
  parseDevice,
  PATHS_AS_GIVEN,
} from "../../../lib/devices/registry.ts";
import { hostDeviceType } from "../../../lib/devices/types/host.ts";
import { fakeSysfs, STORAGE } from "./_fake_sysfs.ts";
import { STORAGE_HS } from "./_descriptors.ts";

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
