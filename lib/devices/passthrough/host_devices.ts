/**
 * The host's USB devices as Linux sysfs describes them (`/sys/bus/usb/devices`, see the kernel's
 * Documentation/ABI/stable/sysfs-bus-usb): devices only, not interfaces or root hubs, with
 * their usbfs device nodes (`/dev/bus/usb/BBB/DDD`), and selection by bus id or VID/PID/serial.
 *
 * @module
 */

import { Speed, type SpeedValue } from "../../protocol/constants.ts";

/** An interface of the active configuration of a host device. */
export interface HostInterface {
  /** sysfs `bInterfaceNumber`: the interface's number in the configuration. */
  bInterfaceNumber: number;
  /** sysfs `bAlternateSetting`: the alternate setting in use; 0 when unreadable. */
  bAlternateSetting: number;
  /** sysfs `bInterfaceClass`: the class code (USB 2.0 table 9-12); 0 when unreadable. */
  bInterfaceClass: number;
  /** sysfs `bInterfaceSubClass`: the subclass code; 0 when unreadable. */
  bInterfaceSubClass: number;
  /** sysfs `bInterfaceProtocol`: the protocol code; 0 when unreadable. */
  bInterfaceProtocol: number;
  /** The kernel driver bound to the interface (`usbfs` while a program claims it). */
  driver?: string;
}

/** A USB device of the host. */
export interface HostDevice {
  /** The kernel's name for the device, e.g. `2-1` or `1-1.4`. */
  busid: string;
  /** sysfs `busnum`: the host bus the device is on (the `BBB` of its device node). */
  busnum: number;
  /** sysfs `devnum`: the device's address on that bus (the `DDD` of its device node). */
  devnum: number;
  /** sysfs `idVendor`: the vendor ID of the device descriptor. */
  idVendor: number;
  /** sysfs `idProduct`: the product ID of the device descriptor. */
  idProduct: number;
  /** sysfs `bcdDevice`: the device release number in BCD; 0 when unreadable. */
  bcdDevice: number;
  /** sysfs `bDeviceClass`: the device class code (USB 2.0 table 9-8); 0 when unreadable. */
  bDeviceClass: number;
  /** sysfs `bDeviceSubClass`: the device subclass code; 0 when unreadable. */
  bDeviceSubClass: number;
  /** sysfs `bDeviceProtocol`: the device protocol code; 0 when unreadable. */
  bDeviceProtocol: number;
  /** The speed `speedText` names, `Speed.UNKNOWN` for one it does not. */
  speed: SpeedValue;
  /** sysfs `speed` as written there, in Mb/s: `1.5`, `12`, `480`, `5000`, ... */
  speedText: string;
  /** The active `bConfigurationValue`; 0 while unconfigured. */
  bConfigurationValue: number;
  /** sysfs `bNumConfigurations`: how many configurations the device has; 0 when unreadable. */
  bNumConfigurations: number;
  /** sysfs `manufacturer`: the manufacturer string, when the device has one. */
  manufacturer?: string;
  /** sysfs `product`: the product string, when the device has one. */
  product?: string;
  /** sysfs `serial`: the serial number string, when the device has one. */
  serial?: string;
  /** The driver bound to the device itself (`usb`, or `usbip-host` when the kernel exports it). */
  driver?: string;
  /** The interfaces of the active configuration, every alternate setting's current one. */
  interfaces: HostInterface[];
  /** The usbfs device node. */
  devnode: string;
  /** The device's sysfs directory. */
  sysfsPath: string;
}

/** Where to look; tests point these at a fake tree. */
export interface HostDeviceOptions {
  /** The sysfs mount point; default `/sys`. */
  sysfsRoot?: string;
  /** Where device nodes live; default `/dev`. */
  devRoot?: string;
}

/** How a device is chosen: by its host bus id, or by VID/PID and optionally serial number. */
export type HostDeviceSelector =
  | { busid: string }
  | { idVendor: number; idProduct: number; serial?: string };

const DEVICE_NAME = /^\d+-\d+(\.\d+)*$/;

/** The speed value for sysfs's `speed` text. */
export function speedFromSysfs(text: string): SpeedValue {
  switch (text.trim()) {
    case "1.5":
      return Speed.LOW;
    case "12":
      return Speed.FULL;
    case "480":
      return Speed.HIGH;
    case "53.3-480":
      return Speed.WIRELESS;
    case "5000":
      return Speed.SUPER;
    case "10000":
    case "20000":
      return Speed.SUPER_PLUS;
    default:
      return Speed.UNKNOWN;
  }
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return (await Deno.readTextFile(path)).trim();
  } catch {
    return undefined;
  }
}

async function readNumber(path: string, radix: 10 | 16): Promise<number | undefined> {
  const t = await readText(path);
  if (t === undefined || t === "") return undefined;
  const n = parseInt(t, radix);
  return Number.isNaN(n) ? undefined : n;
}

async function driverOf(dir: string): Promise<string | undefined> {
  try {
    const target = await Deno.readLink(`${dir}/driver`);
    return target.slice(target.lastIndexOf("/") + 1);
  } catch {
    return undefined;
  }
}

function pad3(n: number): string {
  return String(n).padStart(3, "0");
}

/** Reads one device directory; `undefined` when it is not a complete device entry. */
async function readDevice(
  base: string,
  busid: string,
  entries: string[],
  devRoot: string,
): Promise<HostDevice | undefined> {
  const dir = `${base}/${busid}`;
  const [busnum, devnum, idVendor, idProduct] = await Promise.all([
    readNumber(`${dir}/busnum`, 10),
    readNumber(`${dir}/devnum`, 10),
    readNumber(`${dir}/idVendor`, 16),
    readNumber(`${dir}/idProduct`, 16),
  ]);
  if (
    busnum === undefined || devnum === undefined || idVendor === undefined ||
    idProduct === undefined
  ) return undefined;
  const speedText = (await readText(`${dir}/speed`)) ?? "";
  const device: HostDevice = {
    busid,
    busnum,
    devnum,
    idVendor,
    idProduct,
    bcdDevice: (await readNumber(`${dir}/bcdDevice`, 16)) ?? 0,
    bDeviceClass: (await readNumber(`${dir}/bDeviceClass`, 16)) ?? 0,
    bDeviceSubClass: (await readNumber(`${dir}/bDeviceSubClass`, 16)) ?? 0,
    bDeviceProtocol: (await readNumber(`${dir}/bDeviceProtocol`, 16)) ?? 0,
    speed: speedFromSysfs(speedText),
    speedText,
    bConfigurationValue: (await readNumber(`${dir}/bConfigurationValue`, 10)) ?? 0,
    bNumConfigurations: (await readNumber(`${dir}/bNumConfigurations`, 10)) ?? 0,
    interfaces: [],
    devnode: `${devRoot}/bus/usb/${pad3(busnum)}/${pad3(devnum)}`,
    sysfsPath: dir,
  };
  for (const key of ["manufacturer", "product", "serial"] as const) {
    const v = await readText(`${dir}/${key}`);
    if (v !== undefined) device[key] = v;
  }
  const driver = await driverOf(dir);
  if (driver !== undefined) device.driver = driver;
  const prefix = `${busid}:${device.bConfigurationValue}.`;
  for (const name of entries.filter((e) => e.startsWith(prefix))) {
    const idir = `${base}/${name}`;
    const number = await readNumber(`${idir}/bInterfaceNumber`, 16);
    if (number === undefined) continue;
    const iface: HostInterface = {
      bInterfaceNumber: number,
      bAlternateSetting: (await readNumber(`${idir}/bAlternateSetting`, 10)) ?? 0,
      bInterfaceClass: (await readNumber(`${idir}/bInterfaceClass`, 16)) ?? 0,
      bInterfaceSubClass: (await readNumber(`${idir}/bInterfaceSubClass`, 16)) ?? 0,
      bInterfaceProtocol: (await readNumber(`${idir}/bInterfaceProtocol`, 16)) ?? 0,
    };
    const idriver = await driverOf(idir);
    if (idriver !== undefined) iface.driver = idriver;
    device.interfaces.push(iface);
  }
  device.interfaces.sort((a, b) => a.bInterfaceNumber - b.bInterfaceNumber);
  return device;
}

function compareBusids(a: string, b: string): number {
  const pa = a.split(/[-.]/).map(Number);
  const pb = b.split(/[-.]/).map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? -1) - (pb[i] ?? -1);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * Lists the host's USB devices (not root hubs, not interfaces), in bus id order. Reading the
 * real `/sys` needs `--allow-all` in Deno 2.9. A missing sysfs tree gives an empty list.
 *
 * @example Over an empty tree
 * ```ts
 * import { listHostDevices } from "./host_devices.ts";
 * const root = await Deno.makeTempDir();
 * console.assert((await listHostDevices({ sysfsRoot: root })).length === 0);
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function listHostDevices(options: HostDeviceOptions = {}): Promise<HostDevice[]> {
  const base = `${options.sysfsRoot ?? "/sys"}/bus/usb/devices`;
  const devRoot = options.devRoot ?? "/dev";
  const entries = (await entriesOf(base)).map((e) => e.name);
  const devices: HostDevice[] = [];
  for (const name of entries.filter((n) => DEVICE_NAME.test(n)).sort(compareBusids)) {
    const d = await readDevice(base, name, entries, devRoot);
    if (d !== undefined) devices.push(d);
  }
  return devices;
}

/**
 * What changes whenever a USB device comes or goes, read cheaply: the names in sysfs's device
 * list, the usbfs device nodes (a device re-plugged into the same port keeps its sysfs name
 * but gets a new node) and the driver of each device (which changes without either: usbip-host
 * bound or unbound, a device deauthorized and authorized again). A few directory reads and a
 * link per device, where {@linkcode listHostDevices} reads every attribute of every device.
 */
export async function hostDevicesSignature(options: HostDeviceOptions = {}): Promise<string> {
  const usbfs = `${options.devRoot ?? "/dev"}/bus/usb`;
  const names: string[] = [];
  const devices = `${options.sysfsRoot ?? "/sys"}/bus/usb/devices`;
  for (const e of await entriesOf(devices)) {
    names.push(`sysfs ${e.name}`);
    if (DEVICE_NAME.test(e.name)) {
      names.push(`driver ${e.name} ${await driverOf(`${devices}/${e.name}`)}`);
    }
  }
  for (const bus of await entriesOf(usbfs)) {
    if (!bus.isDirectory) continue;
    for (const node of await entriesOf(`${usbfs}/${bus.name}`)) {
      names.push(`node ${bus.name}/${node.name}`);
    }
  }
  return names.sort().join("\n");
}

/** The entries of `dir`; none when it does not exist. */
async function entriesOf(dir: string): Promise<Deno.DirEntry[]> {
  const entries: Deno.DirEntry[] = [];
  try {
    for await (const e of Deno.readDir(dir)) entries.push(e);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return entries;
}

/** Whether `device` is the one `selector` names. */
export function matchesHostDevice(device: HostDevice, selector: HostDeviceSelector): boolean {
  if ("busid" in selector) return device.busid === selector.busid;
  return device.idVendor === selector.idVendor && device.idProduct === selector.idProduct &&
    (selector.serial === undefined || device.serial === selector.serial);
}

/** Describes a selector for messages: `busid 2-1` or `46f4:0001 serial X`. */
export function describeSelector(selector: HostDeviceSelector): string {
  if ("busid" in selector) return `busid ${selector.busid}`;
  const id = `${hex4(selector.idVendor)}:${hex4(selector.idProduct)}`;
  return selector.serial === undefined ? id : `${id} serial ${selector.serial}`;
}

/** A 16-bit value as 4 lower-case hex digits. */
export function hex4(n: number): string {
  return n.toString(16).padStart(4, "0");
}

/**
 * The host device `selector` names, or `undefined`. When several match a VID/PID selector, the
 * first in bus id order is taken.
 */
export async function findHostDevice(
  selector: HostDeviceSelector,
  options: HostDeviceOptions = {},
): Promise<HostDevice | undefined> {
  return (await listHostDevices(options)).find((d) => matchesHostDevice(d, selector));
}
