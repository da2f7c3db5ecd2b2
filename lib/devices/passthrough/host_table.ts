/**
 * What `usbipgw host` prints: the host's USB devices (from sysfs, see host_devices.ts) as a
 * table or as JSON, with their drivers and whether they are exported. Pure formatting.
 *
 * @module
 */

import type { HostDevice } from "./host_devices.ts";

/** Whether and how a host device is exported. */
export type HostExportState =
  /** The kernel's usbip-host driver holds it (usbipd exports it). */
  | "usbip-host"
  /** A program holds its interfaces through usbfs (usbipgw while a client imports it). */
  | "usbfs"
  /** A `host` device in the given configuration names it. */
  | "configured"
  | "no";

/** One row of the listing. */
export interface HostDeviceRow {
  busid: string;
  vid: string;
  pid: string;
  speed: string;
  class: string;
  manufacturer?: string;
  product?: string;
  serial?: string;
  /** Distinct drivers of the interfaces, or the device's own when usbip-host holds it. */
  drivers: string[];
  exported: HostExportState;
  devnode: string;
}

const CLASS_NAMES: Record<number, string> = {
  0x01: "audio",
  0x02: "cdc",
  0x03: "hid",
  0x06: "image",
  0x07: "printer",
  0x08: "storage",
  0x09: "hub",
  0x0a: "cdc-data",
  0x0b: "smartcard",
  0x0e: "video",
  0xe0: "wireless",
  0xef: "misc",
  0xfe: "app",
  0xff: "vendor",
};

const SPEED_NAMES: Record<string, string> = {
  "1.5": "low",
  "12": "full",
  "480": "high",
  "5000": "super",
  "10000": "super+",
  "20000": "super+",
};

function hex(n: number, digits: number): string {
  return n.toString(16).padStart(digits, "0");
}

function className(c: number): string {
  return CLASS_NAMES[c] ?? hex(c, 2);
}

/**
 * The row for one device. `configured` says whether the configuration names it. A device's
 * class 0 means "per interface": the interfaces' classes are shown instead.
 */
export function hostDeviceRow(d: HostDevice, configured = false): HostDeviceRow {
  const interfaceClasses = [...new Set(d.interfaces.map((i) => className(i.bInterfaceClass)))];
  const drivers = d.driver === "usbip-host"
    ? ["usbip-host"]
    : [...new Set(d.interfaces.flatMap((i) => i.driver === undefined ? [] : [i.driver]))];
  const exported: HostExportState = d.driver === "usbip-host"
    ? "usbip-host"
    : d.interfaces.some((i) => i.driver === "usbfs")
    ? "usbfs"
    : configured
    ? "configured"
    : "no";
  const row: HostDeviceRow = {
    busid: d.busid,
    vid: hex(d.idVendor, 4),
    pid: hex(d.idProduct, 4),
    speed: SPEED_NAMES[d.speedText] ?? (d.speedText || "unknown"),
    class: d.bDeviceClass === 0 && interfaceClasses.length > 0
      ? interfaceClasses.join(",")
      : className(d.bDeviceClass),
    drivers,
    exported,
    devnode: d.devnode,
  };
  if (d.manufacturer !== undefined) row.manufacturer = d.manufacturer;
  if (d.product !== undefined) row.product = d.product;
  if (d.serial !== undefined) row.serial = d.serial;
  return row;
}

/**
 * The listing as a table, one device per line.
 *
 * @example
 * ```ts
 * import { formatHostTable } from "./host_table.ts";
 * console.assert(formatHostTable([]).startsWith("No USB devices"));
 * ```
 */
export function formatHostTable(rows: readonly HostDeviceRow[]): string {
  if (rows.length === 0) return "No USB devices on this host (root hubs are not listed).\n";
  const cells = rows.map((r) => [
    r.busid,
    `${r.vid}:${r.pid}`,
    r.speed,
    r.class,
    r.drivers.join(",") || "-",
    r.exported,
    [r.manufacturer, r.product].filter((x) => x !== undefined).join(" ") +
    (r.serial !== undefined ? ` (serial ${r.serial})` : ""),
  ]);
  const head = ["BUSID", "VID:PID", "SPEED", "CLASS", "DRIVER", "EXPORTED", "DEVICE"];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) =>
    c.map((x, i) => i === c.length - 1 ? x : x.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(head), ...cells.map(line)].join("\n") + "\n";
}

/** The listing as JSON (an array of {@linkcode HostDeviceRow}), with a final newline. */
export function formatHostJson(rows: readonly HostDeviceRow[]): string {
  return JSON.stringify(rows, null, 2) + "\n";
}
