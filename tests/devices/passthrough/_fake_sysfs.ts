// Builds a fake /sys/bus/usb/devices tree in a temporary directory for host-device tests.

/** One fake device: its sysfs attributes and interfaces. */
export interface FakeDevice {
  busid: string;
  attrs: Record<string, string>;
  driver?: string;
  interfaces?: { name: string; attrs: Record<string, string>; driver?: string }[];
}

/** A QEMU usb-storage stick on 1-1, bound to usb-storage. */
export const STORAGE: FakeDevice = {
  busid: "1-1",
  attrs: {
    busnum: "1",
    devnum: "2",
    idVendor: "46f4",
    idProduct: "0001",
    bcdDevice: "0000",
    bDeviceClass: "00",
    bDeviceSubClass: "00",
    bDeviceProtocol: "00",
    speed: "480",
    bConfigurationValue: "1",
    bNumConfigurations: "1",
    manufacturer: "QEMU",
    product: "QEMU USB HARDDRIVE",
    serial: "1-0000:00:04.0-1",
  },
  driver: "usb",
  interfaces: [{
    name: "1-1:1.0",
    attrs: {
      bInterfaceNumber: "00",
      bAlternateSetting: " 0",
      bInterfaceClass: "08",
      bInterfaceSubClass: "06",
      bInterfaceProtocol: "50",
    },
    driver: "usb-storage",
  }],
};

/** A QEMU usb-kbd behind a hub port, 1-2.1, full speed, usbhid. */
export const KEYBOARD: FakeDevice = {
  busid: "1-2.1",
  attrs: {
    busnum: "1",
    devnum: "4",
    idVendor: "0627",
    idProduct: "0001",
    bcdDevice: "0000",
    bDeviceClass: "00",
    speed: "12",
    bConfigurationValue: "1",
    bNumConfigurations: "1",
    manufacturer: "QEMU",
    product: "QEMU USB Keyboard",
    serial: "68284-0000:00:04.0-2.1",
  },
  driver: "usb",
  interfaces: [{
    name: "1-2.1:1.0",
    attrs: {
      bInterfaceNumber: "00",
      bAlternateSetting: " 0",
      bInterfaceClass: "03",
      bInterfaceSubClass: "01",
      bInterfaceProtocol: "01",
    },
    driver: "usbhid",
  }],
};

/** An FTDI serial adapter on bus 2 held by the kernel's usbip-host. */
export const SERIAL: FakeDevice = {
  busid: "2-1",
  attrs: {
    busnum: "2",
    devnum: "3",
    idVendor: "0403",
    idProduct: "6001",
    bcdDevice: "0600",
    bDeviceClass: "00",
    speed: "12",
    bConfigurationValue: "1",
    bNumConfigurations: "1",
    product: "FT232R",
  },
  driver: "usbip-host",
  interfaces: [{
    name: "2-1:1.0",
    attrs: {
      bInterfaceNumber: "00",
      bAlternateSetting: " 0",
      bInterfaceClass: "ff",
      bInterfaceSubClass: "ff",
      bInterfaceProtocol: "ff",
    },
  }],
};

/** A hub on 1-2 (listed as a device) and the root hub usb1 (not listed). */
const HUB: FakeDevice = {
  busid: "1-2",
  attrs: {
    busnum: "1",
    devnum: "3",
    idVendor: "0409",
    idProduct: "55aa",
    bDeviceClass: "09",
    speed: "12",
    bConfigurationValue: "1",
  },
  driver: "usb",
  interfaces: [{
    name: "1-2:1.0",
    attrs: { bInterfaceNumber: "00", bInterfaceClass: "09" },
    driver: "hub",
  }],
};

async function writeAttrs(dir: string, attrs: Record<string, string>): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  for (const [k, v] of Object.entries(attrs)) await Deno.writeTextFile(`${dir}/${k}`, `${v}\n`);
}

/**
 * Writes a fake sysfs with `devices` plus a hub and a root hub; returns its root, to pass as
 * `sysfsRoot`, and a function that removes it.
 */
export async function fakeSysfs(
  devices: FakeDevice[] = [STORAGE, KEYBOARD, SERIAL],
): Promise<{ root: string; remove(): Promise<void> }> {
  const root = await Deno.makeTempDir({ prefix: "usbipgw-sysfs-" });
  const base = `${root}/bus/usb/devices`;
  await writeAttrs(`${base}/usb1`, { busnum: "1", devnum: "1", idVendor: "1d6b" });
  for (const d of [...devices, HUB]) {
    await writeAttrs(`${base}/${d.busid}`, d.attrs);
    if (d.driver) {
      await Deno.symlink(`../../../bus/usb/drivers/${d.driver}`, `${base}/${d.busid}/driver`);
    }
    for (const i of d.interfaces ?? []) {
      await writeAttrs(`${base}/${i.name}`, i.attrs);
      if (i.driver) {
        await Deno.symlink(`../../../bus/usb/drivers/${i.driver}`, `${base}/${i.name}/driver`);
      }
    }
  }
  return { root, remove: () => Deno.remove(root, { recursive: true }) };
}
