/**
 * `usbipgw status`: the running gateway's devices, sessions, peers and counters, read over its
 * unix socket (OP_REQ_STATUS, usbipgw's own extension of the op phase), as a table or JSON.
 *
 * @module
 */

import type { ServerStatus } from "../server/server.ts";

function hex4(n: number): string {
  return n.toString(16).padStart(4, "0");
}

/** Bytes in the largest unit that keeps the number at or above 1 (binary prefixes). */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n");
}

/** Checks that `value` has the shape of a {@linkcode ServerStatus}; throws `TypeError` if not. */
export function asServerStatus(value: unknown): ServerStatus {
  const v = value as Partial<ServerStatus> | null;
  if (
    typeof v !== "object" || v === null || !Array.isArray(v.devices) ||
    !Array.isArray(v.sessions) || !Array.isArray(v.listeners) || typeof v.totals !== "object"
  ) {
    throw new TypeError("Cannot read the status: the gateway's answer is not a usbipgw status");
  }
  return v as ServerStatus;
}

/** The status as JSON; VID and PID as four hex digits, as USB tools write them. */
export function statusJson(s: ServerStatus): string {
  const devices = s.devices.map((d) => ({
    ...d,
    idVendor: hex4(d.idVendor),
    idProduct: hex4(d.idProduct),
  }));
  return JSON.stringify({ ...s, devices }, null, 2) + "\n";
}

/**
 * The status as text: listeners, devices with their holders, sessions with their counters,
 * and the totals since start.
 *
 * @example
 * ```ts
 * import { formatStatus } from "./status.ts";
 * const text = formatStatus({
 *   started: "2026-11-21T10:00:00.000Z", listeners: ["tcp 127.0.0.1:3240"],
 *   devices: [{ busid: "1-1", name: "gadget-zero", origin: "emulated", idVendor: 0x0525,
 *     idProduct: 0xa4a0, session: null }],
 *   sessions: [], peers: {},
 *   totals: { sessions: 0, urbs: 0, bytesIn: 0, bytesOut: 0, errors: 0, refusedConnections: 0 },
 * });
 * console.assert(text.includes("1-1") && text.includes("0525:a4a0") && text.includes("free"));
 * ```
 */
export function formatStatus(s: ServerStatus): string {
  const out: string[] = [];
  out.push(`usbipgw since ${s.started}, listening on ${s.listeners.join(", ") || "nothing"}`);
  out.push("");
  if (s.devices.length === 0) {
    out.push("Devices: none");
  } else {
    out.push("Devices:");
    out.push(table([
      ["  BUSID", "ID", "TYPE", "ORIGIN", "STATE"],
      ...s.devices.map((d) => [
        `  ${d.busid}`,
        `${hex4(d.idVendor)}:${hex4(d.idProduct)}`,
        d.name,
        d.origin,
        d.session === null ? "free" : `imported (session ${d.session})`,
      ]),
    ]));
  }
  out.push("");
  const imported = s.sessions.filter((x) => x.busid !== null);
  const waiting = s.sessions.length - imported.length;
  if (imported.length === 0) {
    out.push("Sessions: none");
  } else {
    out.push("Sessions:");
    out.push(table([
      ["  ID", "PEER", "DEVICE", "SINCE", "URBS", "IN", "OUT", "ERRORS", "PENDING"],
      ...imported.map((x) => [
        `  ${x.id}`,
        x.peer,
        x.busid!,
        x.since,
        String(x.completed),
        formatBytes(x.bytesIn),
        formatBytes(x.bytesOut),
        String(x.errors),
        String(x.pendingUrbs),
      ]),
    ]));
  }
  if (waiting > 0) {
    out.push(`  and ${waiting} connection(s) in the op phase (listing or importing)`);
  }
  out.push("");
  const peers = Object.entries(s.peers);
  out.push(
    `Peers: ${
      peers.length === 0 ? "none" : peers.map(([p, n]) => `${p} (${n} connection(s))`).join(", ")
    }`,
  );
  const t = s.totals;
  out.push(
    `Totals: ${t.sessions} session(s), ${t.urbs} URBs, ${formatBytes(t.bytesIn)} in, ${
      formatBytes(t.bytesOut)
    } out, ${t.errors} URB error(s), ${t.refusedConnections} connection(s) refused`,
  );
  return out.join("\n") + "\n";
}
