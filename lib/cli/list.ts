/**
 * `usbipgw list`: a remote device list, like `usbip list -r`, as a table or as JSON.
 *
 * @module
 */

import type { UsbipExportedDevice } from "../protocol/op_messages.ts";

const SPEEDS = ["unknown", "low", "full", "high", "wireless", "super", "super+"];

const CLASSES: Record<number, string> = {
  0x00: "(per interface)",
  0x01: "Audio",
  0x02: "Communications",
  0x03: "HID",
  0x07: "Printer",
  0x08: "Mass Storage",
  0x09: "Hub",
  0x0a: "CDC Data",
  0x0b: "Smart Card",
  0x0e: "Video",
  0xe0: "Wireless",
  0xef: "Miscellaneous",
  0xfe: "Application Specific",
  0xff: "Vendor Specific",
};

const hex = (n: number, width: number) => n.toString(16).padStart(width, "0");
const triple = (c: number, s: number, p: number) => `${hex(c, 2)}/${hex(s, 2)}/${hex(p, 2)}`;

/** Formats a device list as a table with one line per device and per interface. */
export function formatDeviceTable(host: string, devices: UsbipExportedDevice[]): string {
  if (devices.length === 0) return `No exportable devices on ${host}\n`;
  const rows: string[][] = [["BUSID", "VID:PID", "SPEED", "CLASS", "INTERFACES"]];
  for (const d of devices) {
    const interfaces = d.interfaces.map((i, n) =>
      `${n}: ${triple(i.bInterfaceClass, i.bInterfaceSubClass, i.bInterfaceProtocol)} ${
        CLASSES[i.bInterfaceClass] ?? ""
      }`.trimEnd()
    );
    rows.push([
      d.busid,
      `${hex(d.idVendor, 4)}:${hex(d.idProduct, 4)}`,
      SPEEDS[d.speed] ?? String(d.speed),
      triple(d.bDeviceClass, d.bDeviceSubClass, d.bDeviceProtocol),
      interfaces.join(", "),
    ]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const lines = rows.map((r) =>
    r.map((cell, c) => c === r.length - 1 ? cell : cell.padEnd(widths[c]!)).join("  ")
  );
  return `Exportable devices on ${host}\n${lines.join("\n")}\n`;
}

/** The JSON form of a device list; VID and PID as four hex digits, as USB tools write them. */
export function formatDeviceJson(devices: UsbipExportedDevice[]): string {
  return JSON.stringify(
    devices.map((d) => ({ ...d, idVendor: hex(d.idVendor, 4), idProduct: hex(d.idProduct, 4) })),
    null,
    2,
  ) + "\n";
}
