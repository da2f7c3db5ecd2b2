/**
 * The device types the CLI and the configuration file can create, with the keys each one
 * accepts. Every type also accepts `busid`: the bus id to export under, except for `host`,
 * where it selects the host device (`host:busid=2-1`), which is then exported under that same
 * bus id as usbipd does (`export_busid` overrides). Unknown types, keys and values are usage
 * errors that list what is valid.
 *
 * @module
 */

import type { UsbDevice } from "../devices/usb_device.ts";
import { GadgetZero } from "../devices/gadget_zero.ts";
import { HidKeyboard } from "../devices/keyboard.ts";
import { openTextSocket } from "../backends/text_socket.ts";
import { UsbfsDevice } from "../devices/passthrough/usbfs_device.ts";
import {
  describeSelector,
  findHostDevice,
  type HostDeviceOptions,
  type HostDeviceSelector,
} from "../devices/passthrough/host_devices.ts";
import type { DeviceSpec } from "./device_spec.ts";
import {
  type BackendSpec,
  type CharBackend,
  openCharBackend,
  parseBackendSpec,
} from "../backends/char_backend.ts";
import { CdcAcm } from "../devices/cdc_acm.ts";
import { FtdiSerial } from "../devices/ftdi.ts";
import { GoTemp } from "../devices/gotemp.ts";
import {
  openTemperatureSource,
  parseTemperatureSource,
  type TemperatureSourceSpec,
} from "../backends/temperature_source.ts";
import { HidMouse, pointerCommandConsumer } from "../devices/mouse.ts";
import { HidTablet } from "../devices/tablet.ts";
import { DiskImage, parseSize } from "../devices/storage/image.ts";
import { checkMassStorageOptions, MassStorage } from "../devices/storage/storage.ts";
import { MAX_LUNS } from "../devices/storage/bot.ts";
import { UsageError } from "./usage_error.ts";

/** A created device and what must be closed with it. */
export interface CreatedDevice {
  device: UsbDevice;
  /** "passthrough" for a real host device; emulated when absent. */
  origin?: "passthrough";
  /** The bus id to export under when the spec's `busid` does not say it (host devices). */
  busid?: string;
  /** Releases back-ends the device uses (sockets, files). */
  close?(): Promise<void>;
}

/** A device type the CLI knows. */
export interface DeviceType {
  readonly name: string;
  readonly summary: string;
  /** Accepted keys (besides `busid`) and what each means. */
  readonly keys: Readonly<Record<string, string>>;
  /** Keys that may be given alone, without `=value` (`ro`). */
  readonly flags?: readonly string[];
  create(spec: DeviceSpec): Promise<CreatedDevice>;
}

function choice<T extends string>(
  spec: DeviceSpec,
  key: string,
  values: readonly T[],
  fallback: T,
): T {
  const v = spec.options[key];
  if (v === undefined) return fallback;
  if (!(values as readonly string[]).includes(v)) {
    throw new UsageError(
      `Invalid ${key}="${v}" for ${spec.type} in ${spec.origin}: expected ${values.join(" or ")}`,
    );
  }
  return v as T;
}

const BUSID = /^\d+-\d+(\.\d+)*$/;
const ID16 = /^(0x)?[0-9a-fA-F]{1,4}$/;

/**
 * The host device a `host` spec names: `busid=2-1` (the host's bus id), or `vid=46f4,pid=0001`
 * with an optional `serial`. Throws {@linkcode UsageError} for a spec that names none or
 * both, or a malformed value.
 *
 * @example
 * ```ts
 * import { hostSelector } from "./device_types.ts";
 * import { parseDeviceSpec } from "./device_spec.ts";
 * const s = hostSelector(parseDeviceSpec("host:vid=46f4,pid=0001"));
 * console.assert("idVendor" in s && s.idVendor === 0x46f4 && s.idProduct === 1);
 * ```
 */
export function hostSelector(spec: DeviceSpec): HostDeviceSelector {
  const { busid, vid, pid, serial, export_busid: exportBusid } = spec.options;
  const invalid = (why: string) => new UsageError(`Invalid host device in ${spec.origin}: ${why}`);
  if (exportBusid !== undefined && !BUSID.test(exportBusid)) {
    throw invalid(`export_busid="${exportBusid}" is not a bus id such as 1-1`);
  }
  if (busid !== undefined) {
    if (vid !== undefined || pid !== undefined || serial !== undefined) {
      throw invalid("give either busid or vid and pid (with serial), not both");
    }
    if (!BUSID.test(busid)) throw invalid(`busid="${busid}" is not a bus id such as 2-1 or 1-1.4`);
    return { busid };
  }
  if (vid === undefined || pid === undefined) {
    throw invalid("name the device with busid=BUS-PORT, or with vid=VVVV,pid=PPPP");
  }
  for (const [key, v] of [["vid", vid], ["pid", pid]] as const) {
    if (!ID16.test(v)) throw invalid(`${key}="${v}" is not a 16-bit hex number such as 46f4`);
  }
  if (serial === "") throw invalid("serial is empty");
  return {
    idVendor: parseInt(vid, 16),
    idProduct: parseInt(pid, 16),
    ...(serial !== undefined ? { serial } : {}),
  };
}

/**
 * Opens the host device a `host` spec names. A device that is not plugged in is an `Error`
 * (not a usage error) that names the spec. `options` points at another sysfs (tests).
 */
export async function createHostDevice(
  spec: DeviceSpec,
  options: HostDeviceOptions = {},
): Promise<CreatedDevice> {
  const selector = hostSelector(spec);
  const host = await findHostDevice(selector, options);
  if (host === undefined) {
    throw new Error(
      `No host USB device matches ${spec.origin} (${
        describeSelector(selector)
      }); "usbipgw host" lists them`,
    );
  }
  let device: UsbfsDevice;
  try {
    device = await UsbfsDevice.fromHost(host);
  } catch (e) {
    throw new Error(
      `Cannot open ${host.devnode} for ${spec.origin}: ${e instanceof Error ? e.message : e}`,
      { cause: e },
    );
  }
  return {
    device,
    origin: "passthrough",
    busid: spec.options.export_busid ?? host.busid,
    close: () => device.close(),
  };
}

const BACKEND_FORMS =
  "stdio, tcp:HOST:PORT, tcp-connect:HOST:PORT, unix:PATH, pty, file:PATH or loopback";

/** Checks the required `backend` key of a serial device without opening anything. */
function backendOption(spec: DeviceSpec): BackendSpec {
  const text = spec.options.backend;
  if (text === undefined) {
    throw new UsageError(
      `Missing backend=... for ${spec.type} in ${spec.origin}: expected ${BACKEND_FORMS}`,
    );
  }
  try {
    return parseBackendSpec(text);
  } catch (e) {
    throw new UsageError(
      `Invalid backend for ${spec.type} in ${spec.origin}: ${(e as Error).message}`,
    );
  }
}

/** A 16-bit USB ID given in hex (`0x1209` or `1209`); `undefined` when absent. */
function usbId(spec: DeviceSpec, key: string): number | undefined {
  const v = spec.options[key];
  if (v === undefined) return undefined;
  if (!/^(0x)?[0-9a-f]{1,4}$/i.test(v)) {
    throw new UsageError(
      `Invalid ${key}="${v}" for ${spec.type} in ${spec.origin}: expected a hex number 0..ffff`,
    );
  }
  return parseInt(v.replace(/^0x/i, ""), 16);
}

/** A yes/no key: alone or empty, `1`/`true`/`yes`, or `0`/`false`/`no`; `fallback` if absent. */
function yesNo(spec: DeviceSpec, key: string, fallback: boolean): boolean {
  const v = spec.options[key];
  if (v === undefined) return fallback;
  const t = v.trim().toLowerCase();
  if (t === "" || t === "1" || t === "true" || t === "yes") return true;
  if (t === "0" || t === "false" || t === "no") return false;
  throw new UsageError(
    `Invalid ${key}="${v}" for ${spec.type} in ${spec.origin}: expected ${key} alone, ${key}=1 or ${key}=0`,
  );
}

/**
 * Opens the images of a `storage` spec (`image=a.img;b.img` gives one LUN per image; the
 * other keys apply to each) and builds the thumb drive. Malformed keys are usage errors; an
 * image that cannot be opened (missing without `size`, locked by another device or process,
 * of another size than `size`) is an `Error` naming the image.
 */
export async function createStorageDevice(spec: DeviceSpec): Promise<CreatedDevice> {
  const invalid = (why: string) =>
    new UsageError(`Invalid storage device in ${spec.origin}: ${why}`);
  const paths = (spec.options.image ?? "").split(";").map((p) => p.trim());
  if (paths.some((p) => p === "")) {
    throw invalid("image=PATH is required (image=a.img;b.img serves one LUN per image)");
  }
  if (paths.length > MAX_LUNS) throw invalid(`${paths.length} images; a drive has at most 16 LUNs`);
  const readOnly = yesNo(spec, "ro", false);
  const removable = yesNo(spec, "removable", true);
  const blockSize = choice(spec, "block", ["512", "4096"], "512") === "4096" ? 4096 : 512;
  const speed = choice(spec, "speed", ["high", "super", "full"], "high");
  let size: number | undefined;
  if (spec.options.size !== undefined) {
    try {
      size = parseSize(spec.options.size);
    } catch (e) {
      throw invalid((e as Error).message);
    }
    if (size % blockSize !== 0) {
      throw invalid(`size=${spec.options.size} is not a whole number of ${blockSize}-byte blocks`);
    }
  }
  const { vendor, product, revision, serial } = spec.options;
  const options = {
    blockSize,
    removable,
    speed,
    ...(vendor !== undefined ? { vendor } : {}),
    ...(product !== undefined ? { product } : {}),
    ...(revision !== undefined ? { revision } : {}),
    ...(serial !== undefined ? { serial } : {}),
  } as const;
  try {
    // Every value is checked before an image is opened, let alone created.
    checkMassStorageOptions(options);
  } catch (e) {
    throw e instanceof RangeError ? invalid(e.message) : e;
  }
  const images: DiskImage[] = [];
  try {
    for (const path of paths) {
      images.push(
        await DiskImage.open({ path, readOnly, ...(size !== undefined ? { size } : {}) }),
      );
    }
    const device = new MassStorage({ ...options, units: images });
    return { device, close: () => device.close() };
  } catch (e) {
    await Promise.allSettled(images.map((i) => i.close()));
    throw e;
  }
}

/** Every device type, by name. */
export const DEVICE_TYPES: ReadonlyMap<string, DeviceType> = new Map<string, DeviceType>([
  ["gadget-zero", {
    name: "gadget-zero",
    summary: "Linux Gadget Zero (0525:a4a0), the usbtest conformance device",
    keys: {
      pattern: "IN data and OUT check: 0 zeros (default), 1 (i % maxpacket) % 63",
      speed: "high (default) or full",
    },
    create(spec) {
      const pattern = choice(spec, "pattern", ["0", "1"], "0") === "1" ? 1 : 0;
      const speed = choice(spec, "speed", ["high", "full"], "high");
      return Promise.resolve({ device: new GadgetZero({ pattern, speed }) });
    },
  }],
  ["keyboard", {
    name: "keyboard",
    summary: "HID boot keyboard that types text",
    keys: {
      text: "text typed once the host starts polling the keyboard",
      socket: "unix socket path: text written to it is typed",
      serial: "serial number string",
    },
    async create(spec) {
      const { text, socket, serial } = spec.options;
      let keyboard: HidKeyboard;
      try {
        keyboard = new HidKeyboard({
          ...(text !== undefined ? { text } : {}),
          ...(serial !== undefined ? { serial } : {}),
        });
      } catch (e) {
        throw new UsageError(`Invalid keyboard in ${spec.origin}: ${(e as Error).message}`);
      }
      if (socket === undefined) return { device: keyboard };
      const input = await openTextSocket({ path: socket, mode: 0o600 }, (t) => keyboard.type(t));
      return { device: keyboard, close: () => input.close() };
    },
  }],
  ["host", {
    name: "host",
    summary: "a real USB device of this host, through usbfs (root or access to its node)",
    keys: {
      vid: "vendor id in hex; with pid, names the device instead of busid",
      pid: "product id in hex",
      serial: "with vid and pid: only the device with this serial number",
      export_busid: "bus id to export under; default the host bus id, as usbipd does",
    },
    create: (spec) => createHostDevice(spec),
  }],
  ["cdc-acm", {
    name: "cdc-acm",
    summary: "CDC-ACM serial port (Linux: /dev/ttyACM*) over a character back-end",
    keys: {
      backend: `where the serial data goes (required): ${BACKEND_FORMS}`,
      vid: "vendor ID in hex (default 0x1209, pid.codes)",
      pid: "product ID in hex (default 0x0006, a pid.codes test PID)",
      serial: "serial number string",
      speed: "high (default) or full",
    },
    async create(spec) {
      const backendSpec = backendOption(spec);
      const vendorId = usbId(spec, "vid");
      const productId = usbId(spec, "pid");
      const speed = choice(spec, "speed", ["high", "full"], "high");
      const { serial } = spec.options;
      const backend: CharBackend = await openCharBackend(backendSpec);
      const device = new CdcAcm({
        backend,
        speed,
        ...(vendorId !== undefined ? { vendorId } : {}),
        ...(productId !== undefined ? { productId } : {}),
        ...(serial !== undefined ? { serial } : {}),
      });
      return { device, close: () => backend.close() };
    },
  }],
  ["ftdi", {
    name: "ftdi",
    summary: "FTDI FT232R USB serial converter (0403:6001; Linux: /dev/ttyUSB*)",
    keys: {
      backend: `where the serial data goes (required): ${BACKEND_FORMS}`,
      serial: "serial number string (default USBIPGW1)",
    },
    async create(spec) {
      const backendSpec = backendOption(spec);
      const { serial } = spec.options;
      const backend = await openCharBackend(backendSpec);
      const device = new FtdiSerial({ backend, ...(serial !== undefined ? { serial } : {}) });
      return { device, close: () => backend.close() };
    },
  }],
  ["gotemp", {
    name: "gotemp",
    summary: "Vernier Go!Temp USB thermometer (08f7:0002, HID; Linux: ldusb)",
    keys: {
      source:
        "temperature source: constant:C (default constant:21.5), sine:MIN:MAX:PERIOD_S, file:PATH or unix:PATH",
      rate: "samples per second, > 0 and <= 1000 (default 10)",
      serial: "serial number string",
    },
    async create(spec) {
      const { serial } = spec.options;
      let sourceSpec: TemperatureSourceSpec;
      try {
        sourceSpec = parseTemperatureSource(spec.options.source ?? "constant:21.5");
      } catch (e) {
        throw new UsageError(
          `Invalid source for gotemp in ${spec.origin}: ${(e as Error).message}`,
        );
      }
      const rateText = spec.options.rate;
      const rate = rateText === undefined ? undefined : Number(rateText);
      if (rate !== undefined && !(rate > 0 && rate <= 1000)) {
        throw new UsageError(
          `Invalid rate="${rateText}" for gotemp in ${spec.origin}: expected samples per second in (0, 1000]`,
        );
      }
      let source;
      try {
        source = await openTemperatureSource(sourceSpec);
      } catch (e) {
        if (e instanceof TypeError) {
          throw new UsageError(`Invalid source for gotemp in ${spec.origin}: ${e.message}`);
        }
        throw e;
      }
      const device = new GoTemp({
        source,
        ...(rate !== undefined ? { rate } : {}),
        ...(serial !== undefined ? { serial } : {}),
      });
      return { device, close: () => source.close() };
    },
  }],
  ["mouse", {
    name: "mouse",
    summary: "HID boot mouse with 3 buttons and a wheel, moved by text commands",
    keys: {
      socket:
        "unix socket path: lines such as 'move 10 -5', 'scroll -1', 'click left', 'press right', 'release'",
      serial: "serial number string",
    },
    async create(spec) {
      const { socket, serial } = spec.options;
      const mouse = new HidMouse(serial !== undefined ? { serial } : {});
      if (socket === undefined) return { device: mouse };
      const input = await openTextSocket(
        { path: socket, mode: 0o600 },
        pointerCommandConsumer(mouse),
      );
      return { device: mouse, close: () => input.close() };
    },
  }],
  ["tablet", {
    name: "tablet",
    summary: "HID absolute pointer (like QEMU's usb-tablet), positioned by text commands",
    keys: {
      socket:
        "unix socket path: lines such as 'abs 0.5 0.25' (0..1 from top-left), 'click left', 'press right', 'release'",
      serial: "serial number string",
    },
    async create(spec) {
      const { socket, serial } = spec.options;
      const tablet = new HidTablet(serial !== undefined ? { serial } : {});
      if (socket === undefined) return { device: tablet };
      const input = await openTextSocket(
        { path: socket, mode: 0o600 },
        pointerCommandConsumer(tablet),
      );
      return { device: tablet, close: () => input.close() };
    },
  }],
  ["storage", {
    name: "storage",
    summary: "USB thumb drive (mass storage, SCSI over bulk-only transport) backed by image files",
    keys: {
      image: "image file (required); a;b serves one LUN per file, with the other keys for each",
      ro: "read-only: the image is opened O_RDONLY and writes fail (ro, ro=1 or ro=0)",
      size:
        "create a missing (or empty) image sparse with this size: bytes or K/M/G/T (powers of 1024), whole blocks; an existing image of another size is refused, never resized",
      removable: "1 (default: a thumb drive that can be ejected) or 0 (a fixed disk)",
      vendor: "SCSI vendor and USB manufacturer, up to 8 ASCII characters (default usbipgw)",
      product: "SCSI product and USB product, up to 16 ASCII characters (default Thumb Drive)",
      revision: "SCSI revision, up to 4 characters (default 1.00)",
      serial: "USB and SCSI serial number (default: 24 hex digits derived from the image path)",
      block: "logical block size: 512 (default) or 4096",
      speed: "high (default, 512-byte bulk packets), super (SuperSpeed, 1024) or full (64)",
    },
    flags: ["ro", "removable"],
    create: (spec) => createStorageDevice(spec),
  }],
]);

/** Checks a spec's type and keys; returns its type. */
export function checkDeviceSpec(spec: DeviceSpec): DeviceType {
  const type = DEVICE_TYPES.get(spec.type);
  if (type === undefined) {
    throw new UsageError(
      `Unknown device type "${spec.type}" in ${spec.origin}; valid types: ${
        [...DEVICE_TYPES.keys()].join(", ")
      }`,
    );
  }
  for (const key of Object.keys(spec.options)) {
    if (key !== "busid" && !(key in type.keys)) {
      throw new UsageError(
        `Unknown key "${key}" for ${spec.type} in ${spec.origin}; valid keys: ${
          ["busid", ...Object.keys(type.keys)].join(", ")
        }`,
      );
    }
  }
  for (const key of spec.flags ?? []) {
    if (!(type.flags ?? []).includes(key)) {
      throw new UsageError(
        `Invalid device spec in ${spec.origin}: "${key}" is not key=value${
          type.flags ? `; only ${type.flags.join(", ")} may be given alone` : ""
        }`,
      );
    }
  }
  return type;
}
