// Tests of the host device list over a fake sysfs tree, and of its table and JSON forms.
import { assertEquals, assertStringIncludes } from "@std/assert";
import {
  describeSelector,
  findHostDevice,
  listHostDevices,
  matchesHostDevice,
  speedFromSysfs,
} from "../../../lib/devices/passthrough/host_devices.ts";
import {
  formatHostJson,
  formatHostTable,
  hostDeviceRow,
} from "../../../lib/devices/passthrough/host_table.ts";
import { fakeSysfs, STORAGE } from "./_fake_sysfs.ts";

Deno.test("listHostDevices() lists devices and hubs, not root hubs or interfaces", async () => {
  const fake = await fakeSysfs();
  try {
    const devices = await listHostDevices({ sysfsRoot: fake.root, devRoot: "/dev" });
    assertEquals(devices.map((d) => d.busid), ["1-1", "1-2", "1-2.1", "2-1"]);
    const storage = devices[0]!;
    assertEquals(storage, {
      busid: "1-1",
      busnum: 1,
      devnum: 2,
      idVendor: 0x46f4,
      idProduct: 0x0001,
      bcdDevice: 0,
      bDeviceClass: 0,
      bDeviceSubClass: 0,
      bDeviceProtocol: 0,
      speed: 3,
      speedText: "480",
      bConfigurationValue: 1,
      bNumConfigurations: 1,
      manufacturer: "QEMU",
      product: "QEMU USB HARDDRIVE",
      serial: "1-0000:00:04.0-1",
      driver: "usb",
      interfaces: [{
        bInterfaceNumber: 0,
        bAlternateSetting: 0,
        bInterfaceClass: 8,
        bInterfaceSubClass: 6,
        bInterfaceProtocol: 0x50,
        driver: "usb-storage",
      }],
      devnode: "/dev/bus/usb/001/002",
      sysfsPath: `${fake.root}/bus/usb/devices/1-1`,
    });
    const serial = devices[3]!;
    assertEquals([serial.devnode, serial.driver, serial.manufacturer], [
      "/dev/bus/usb/002/003",
      "usbip-host",
      undefined,
    ]);
    assertEquals(serial.interfaces[0]!.driver, undefined);
  } finally {
    await fake.remove();
  }
});

Deno.test("listHostDevices() gives an empty list when sysfs has no USB", async () => {
  const root = await Deno.makeTempDir();
  try {
    assertEquals(await listHostDevices({ sysfsRoot: root }), []);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("findHostDevice() finds by busid and by vid/pid with or without serial", async () => {
  const fake = await fakeSysfs();
  const options = { sysfsRoot: fake.root };
  try {
    assertEquals((await findHostDevice({ busid: "1-2.1" }, options))?.idVendor, 0x0627);
    assertEquals(
      (await findHostDevice({ idVendor: 0x46f4, idProduct: 1 }, options))?.busid,
      "1-1",
    );
    assertEquals(
      (await findHostDevice(
        { idVendor: 0x46f4, idProduct: 1, serial: STORAGE.attrs.serial! },
        options,
      ))
        ?.busid,
      "1-1",
    );
    assertEquals(
      await findHostDevice({ idVendor: 0x46f4, idProduct: 1, serial: "other" }, options),
      undefined,
    );
    assertEquals(await findHostDevice({ busid: "9-9" }, options), undefined);
  } finally {
    await fake.remove();
  }
});

Deno.test("matchesHostDevice() and describeSelector() read selectors", async () => {
  const fake = await fakeSysfs();
  try {
    const [storage] = await listHostDevices({ sysfsRoot: fake.root });
    assertEquals(matchesHostDevice(storage!, { busid: "1-1" }), true);
    assertEquals(matchesHostDevice(storage!, { idVendor: 0x46f4, idProduct: 2 }), false);
    assertEquals(describeSelector({ busid: "2-1" }), "busid 2-1");
    assertEquals(
      describeSelector({ idVendor: 0x403, idProduct: 0x6001, serial: "A" }),
      "0403:6001 serial A",
    );
  } finally {
    await fake.remove();
  }
});

Deno.test("speedFromSysfs() maps sysfs speeds to USB/IP speeds", () => {
  assertEquals(
    ["1.5", "12", "480", "5000", "10000", "20000", "?"].map(speedFromSysfs),
    [1, 2, 3, 5, 6, 6, 0],
  );
});

Deno.test("the host table shows drivers, class and the export state", async () => {
  const fake = await fakeSysfs();
  try {
    const devices = await listHostDevices({ sysfsRoot: fake.root });
    const rows = devices.map((d) => hostDeviceRow(d, d.busid === "1-2.1"));
    assertEquals(
      rows.map((r) => [r.busid, r.speed, r.class, r.drivers.join(","), r.exported]),
      [
        ["1-1", "high", "storage", "usb-storage", "no"],
        ["1-2", "full", "hub", "hub", "no"],
        ["1-2.1", "full", "hid", "usbhid", "configured"],
        ["2-1", "full", "vendor", "usbip-host", "usbip-host"],
      ],
    );
    const table = formatHostTable(rows);
    assertStringIncludes(
      table,
      "BUSID  VID:PID    SPEED  CLASS    DRIVER       EXPORTED    DEVICE\n",
    );
    assertStringIncludes(
      table,
      "1-1    46f4:0001  high   storage  usb-storage  no          QEMU QEMU USB HARDDRIVE (serial 1-0000:00:04.0-1)\n",
    );
    const json = JSON.parse(formatHostJson(rows));
    assertEquals(json[0].vid, "46f4");
    assertEquals(json[3].exported, "usbip-host");
  } finally {
    await fake.remove();
  }
});

Deno.test("an interface held through usbfs shows as exported by usbfs", () => {
  const row = hostDeviceRow({
    busid: "3-1",
    busnum: 3,
    devnum: 2,
    idVendor: 1,
    idProduct: 2,
    bcdDevice: 0,
    bDeviceClass: 0,
    bDeviceSubClass: 0,
    bDeviceProtocol: 0,
    speed: 3,
    speedText: "480",
    bConfigurationValue: 1,
    bNumConfigurations: 1,
    interfaces: [{
      bInterfaceNumber: 0,
      bAlternateSetting: 0,
      bInterfaceClass: 8,
      bInterfaceSubClass: 6,
      bInterfaceProtocol: 0x50,
      driver: "usbfs",
    }],
    devnode: "/dev/bus/usb/003/002",
    sysfsPath: "/sys/bus/usb/devices/3-1",
  });
  assertEquals(row.exported, "usbfs");
});
