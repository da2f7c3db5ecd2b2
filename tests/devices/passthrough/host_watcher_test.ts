// Tests of the sysfs hot-plug watcher over a fake tree.
import { assertEquals } from "@std/assert";
import { HostDeviceWatcher } from "../../../lib/devices/passthrough/host_watcher.ts";
import { fakeSysfs, KEYBOARD, STORAGE } from "./_fake_sysfs.ts";

Deno.test("HostDeviceWatcher reports plug, unplug and a re-plug with a new devnum", async () => {
  const fake = await fakeSysfs([STORAGE, KEYBOARD]);
  const base = `${fake.root}/bus/usb/devices`;
  const log: string[] = [];
  const watcher = new HostDeviceWatcher({ idVendor: 0x46f4, idProduct: 1 }, {
    added: (d) => void log.push(`+${d.busid}/${d.devnum}`),
    removed: (d) => void log.push(`-${d.busid}/${d.devnum}`),
  }, { sysfsRoot: fake.root });
  try {
    await watcher.scan();
    await watcher.scan();
    assertEquals(log, ["+1-1/2"]);
    await Deno.rename(`${base}/1-1`, `${fake.root}/gone`);
    await watcher.scan();
    assertEquals(log, ["+1-1/2", "-1-1/2"]);
    await Deno.rename(`${fake.root}/gone`, `${base}/1-1`);
    await Deno.writeTextFile(`${base}/1-1/devnum`, "5\n");
    await watcher.scan();
    assertEquals(log, ["+1-1/2", "-1-1/2", "+1-1/5"]);
    // Changing the device number in place is an unplug and a plug.
    await Deno.writeTextFile(`${base}/1-1/devnum`, "6\n");
    await watcher.scan();
    assertEquals(log.slice(3), ["-1-1/5", "+1-1/6"]);
    assertEquals(watcher.present.map((d) => d.devnum), [6]);
  } finally {
    await fake.remove();
  }
});

Deno.test("HostDeviceWatcher.start() scans until stop()", async () => {
  const fake = await fakeSysfs([STORAGE]);
  const seen: string[] = [];
  const watcher = new HostDeviceWatcher({ busid: "1-1" }, {
    added: (d) => void seen.push(d.busid),
    removed: () => {},
  }, { sysfsRoot: fake.root, intervalMs: 5 });
  try {
    watcher.start();
    for (let i = 0; i < 100 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    assertEquals(seen, ["1-1"]);
  } finally {
    await watcher.stop();
    await fake.remove();
  }
});

Deno.test("HostDeviceWatcher.start() reads the devices only after the devices or their nodes changed", async () => {
  const fake = await fakeSysfs([STORAGE]);
  const base = `${fake.root}/bus/usb/devices`;
  const nodes = `${fake.root}/dev/bus/usb/001`;
  await Deno.mkdir(nodes, { recursive: true });
  await Deno.writeTextFile(`${nodes}/002`, "");
  const log: string[] = [];
  const watcher = new HostDeviceWatcher({ busid: "1-1" }, {
    added: (d) => void log.push(`+${d.busid}/${d.devnum}`),
    removed: (d) => void log.push(`-${d.busid}/${d.devnum}`),
  }, { sysfsRoot: fake.root, devRoot: `${fake.root}/dev`, intervalMs: 5 });
  const ticks = (n: number) => new Promise((r) => setTimeout(r, 5 * n));
  const until = async (n: number) => {
    for (let i = 0; i < 200 && log.length < n; i++) await ticks(1);
  };
  try {
    watcher.start();
    await until(1);
    assertEquals(log, ["+1-1/2"]);
    await ticks(10);
    // Were the attributes read again, a device without idVendor would be gone.
    const vendor = await Deno.readTextFile(`${base}/1-1/idVendor`);
    await Deno.remove(`${base}/1-1/idVendor`);
    await ticks(20);
    assertEquals(log, ["+1-1/2"], "the devices were read though nothing changed");
    await Deno.writeTextFile(`${base}/1-1/idVendor`, vendor);
    // A re-plug into the same port: the same sysfs name, a new device number and node.
    await Deno.writeTextFile(`${base}/1-1/devnum`, "3\n");
    await Deno.rename(`${nodes}/002`, `${nodes}/003`);
    await until(3);
    assertEquals(log, ["+1-1/2", "-1-1/2", "+1-1/3"]);
  } finally {
    await watcher.stop();
    await fake.remove();
  }
});

Deno.test("HostDeviceWatcher.start() reads a device caught in the middle of its enumeration once its node is made", async () => {
  const fake = await fakeSysfs([]);
  const base = `${fake.root}/bus/usb/devices`;
  const seen: string[] = [];
  const watcher = new HostDeviceWatcher({ busid: "1-1" }, {
    added: (d) => void seen.push(`${d.busid}/${d.devnum}`),
    removed: () => {},
  }, { sysfsRoot: fake.root, devRoot: `${fake.root}/dev`, intervalMs: 20 });
  try {
    watcher.start();
    await new Promise((r) => setTimeout(r, 50));
    // The device's folder is there, its attributes not yet (the kernel is still adding them):
    // scans in between find nothing to report.
    await Deno.mkdir(`${base}/1-1`);
    await new Promise((r) => setTimeout(r, 100));
    assertEquals(seen, []);
    // Then the attributes, and after them the node (device_add, drivers/base/core.c).
    for (const [k, v] of Object.entries(STORAGE.attrs)) {
      await Deno.writeTextFile(`${base}/1-1/${k}`, `${v}\n`);
    }
    await Deno.mkdir(`${fake.root}/dev/bus/usb/001`, { recursive: true });
    await Deno.writeTextFile(`${fake.root}/dev/bus/usb/001/002`, "");
    for (let i = 0; i < 100 && seen.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assertEquals(seen, ["1-1/2"]);
  } finally {
    await watcher.stop();
    await fake.remove();
  }
});

/** Points the device `busid` of a fake tree at another driver, as a bind or unbind does. */
async function rebind(root: string, busid: string, driver: string | undefined): Promise<void> {
  const link = `${root}/bus/usb/devices/${busid}/driver`;
  await Deno.remove(link).catch(() => {});
  if (driver !== undefined) await Deno.symlink(`../../../bus/usb/drivers/${driver}`, link);
}

Deno.test("HostDeviceWatcher reports a device whose driver changed as gone and back (usbip-host, deauthorized)", async () => {
  const fake = await fakeSysfs([STORAGE]);
  const log: string[] = [];
  const watcher = new HostDeviceWatcher({ busid: "1-1" }, {
    added: (d) => void log.push(`+${d.devnum} ${d.driver}`),
    removed: (d) => void log.push(`-${d.devnum} ${d.driver}`),
  }, { sysfsRoot: fake.root });
  try {
    await watcher.scan();
    assertEquals(log, ["+2 usb"]);
    // usbip bind: the usbfs handles of the generic driver are closed; the same device number.
    await rebind(fake.root, "1-1", "usbip-host");
    await watcher.scan();
    assertEquals(log.slice(1), ["-2 usb", "+2 usbip-host"]);
    await rebind(fake.root, "1-1", "usb");
    await watcher.scan();
    assertEquals(log.slice(3), ["-2 usbip-host", "+2 usb"]);
    // Deauthorized (no driver), then authorized again.
    await rebind(fake.root, "1-1", undefined);
    await watcher.scan();
    await rebind(fake.root, "1-1", "usb");
    await watcher.scan();
    assertEquals(log.slice(5), ["-2 usb", "+2 undefined", "-2 undefined", "+2 usb"]);
  } finally {
    await fake.remove();
  }
});

Deno.test("HostDeviceWatcher.start() notices a driver change, which makes no new folder or node", async () => {
  const fake = await fakeSysfs([STORAGE]);
  const nodes = `${fake.root}/dev/bus/usb/001`;
  await Deno.mkdir(nodes, { recursive: true });
  await Deno.writeTextFile(`${nodes}/002`, "");
  const log: string[] = [];
  const watcher = new HostDeviceWatcher({ busid: "1-1" }, {
    added: (d) => void log.push(`+${d.driver}`),
    removed: (d) => void log.push(`-${d.driver}`),
  }, { sysfsRoot: fake.root, devRoot: `${fake.root}/dev`, intervalMs: 5 });
  const until = async (n: number) => {
    for (let i = 0; i < 200 && log.length < n; i++) await new Promise((r) => setTimeout(r, 5));
  };
  try {
    watcher.start();
    await until(1);
    await new Promise((r) => setTimeout(r, 50));
    await rebind(fake.root, "1-1", "usbip-host");
    await until(3);
    assertEquals(log, ["+usb", "-usb", "+usbip-host"]);
  } finally {
    await watcher.stop();
    await fake.remove();
  }
});
