/**
 * The one-line service status systemd shows (`systemctl status`, the `STATUS=` of
 * sd_notify(3)): what is served where, how much of it is in use.
 *
 * @module
 */

import type { UsbipServer } from "../server/server.ts";
import type { Listener } from "../transport/connection.ts";

/** The numbers behind a status line. */
export interface StatusCounts {
  /** Exported devices. */
  devices: number;
  /** Devices a client has imported. */
  imported: number;
  /** Open client connections (importing, or asking for the list). */
  connections: number;
  /** Listener descriptions, e.g. `tcp 127.0.0.1:3240`. */
  listeners: string[];
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

/**
 * Formats the status line.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { formatStatusLine } from "./status.ts";
 * assertEquals(
 *   formatStatusLine({ devices: 2, imported: 1, connections: 1, listeners: ["tcp 127.0.0.1:3240"] }),
 *   "Serving 2 devices on tcp 127.0.0.1:3240; 1 imported, 1 connection",
 * );
 * ```
 */
export function formatStatusLine(counts: StatusCounts): string {
  const where = counts.listeners.length > 0 ? counts.listeners.join(", ") : "no listener";
  return `Serving ${plural(counts.devices, "device")} on ${where}; ${counts.imported} imported, ${
    plural(counts.connections, "connection")
  }`;
}

/** The counts of a running server and its listeners. */
export function statusCounts(server: UsbipServer, listeners: readonly Listener[]): StatusCounts {
  const devices = server.devices;
  return {
    devices: devices.length,
    imported: devices.filter((d) => server.holderOf(d.busid) !== undefined).length,
    connections: server.sessions.length,
    listeners: listeners.map((l) => l.description),
  };
}
