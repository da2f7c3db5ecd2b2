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
