/**
 * `usbipgw port`: the devices attached through vhci_hcd, like `usbip port`, with where each
 * came from (the port records).
 *
 * @module
 */

import { type AttachedPort, listAttached } from "../../client/attach.ts";
import { recordUri, speedName, vdevStatusName, VHCI_STATE_DIR } from "../../client/vhci.ts";
import type { Command, CommandIo, ParsedFlags } from "../command.ts";
import { ExitCode } from "../exit_codes.ts";
import { VHCI_FLAGS, vhciOptions } from "./_vhci_flags.ts";

const hex4 = (n: number) => n.toString(16).padStart(4, "0");
const dec3 = (n: number) => String(n).padStart(3, "0");

/** The `port` table. */
export function formatPortTable(ports: AttachedPort[]): string {
  if (ports.length === 0) return "No devices attached through vhci_hcd\n";
  const rows: string[][] = [
    ["PORT", "HUB", "STATUS", "SPEED", "LOCAL", "VID:PID", "REMOTE", "BUS/DEV", "PRODUCT"],
  ];
  for (const p of ports) {
    rows.push([
      String(p.port),
      p.hub,
      vdevStatusName(p.status),
      p.speed === 0 ? "-" : speedName(p.speed),
      p.localBusid ?? "-",
      p.idVendor !== undefined ? `${hex4(p.idVendor)}:${hex4(p.idProduct!)}` : "-",
      p.record ? recordUri(p.record) : "-",
      p.devid === 0 ? "-" : `${dec3(p.busnum)}/${dec3(p.devnum)}`,
      p.product ?? "",
    ]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) =>
    r.map((cell, c) => c === r.length - 1 ? cell : cell.padEnd(widths[c]!)).join("  ").trimEnd()
  ).join("\n") + "\n";
}

/** The `port --json` form: one object per attached port. */
export function formatPortJson(ports: AttachedPort[]): string {
  return JSON.stringify(
    ports.map((p) => ({
      port: p.port,
      controller: p.controller,
      hub: p.hub,
      status: vdevStatusName(p.status),
      status_code: p.status,
      speed: speedName(p.speed),
      devid: p.devid,
      busnum: p.busnum,
      devnum: p.devnum,
      sockfd: p.sockfd,
      local_busid: p.localBusid,
      vid: p.idVendor !== undefined ? hex4(p.idVendor) : null,
      pid: p.idProduct !== undefined ? hex4(p.idProduct) : null,
      product: p.product ?? null,
      remote: p.record ? { ...p.record, uri: recordUri(p.record) } : null,
    })),
    null,
    2,
  ) + "\n";
}

async function run(flags: ParsedFlags, io: CommandIo): Promise<number> {
  flags.noMorePositional();
  const ports = await listAttached(vhciOptions(flags));
  await io.out(flags.has("json") ? formatPortJson(ports) : formatPortTable(ports));
  return ExitCode.OK;
}

/** `usbipgw port`. */
export const portCommand: Command = {
  name: "port",
  summary: "show the devices attached through vhci_hcd",
  usage: ["port [--json] [--sysfs PATH] [--state-dir PATH]"],
  description:
    `Shows the devices attached through vhci_hcd, from its status files: the port, its hub
(hs: high speed, ss: SuperSpeed), the state, the device's speed, its bus id here, VID:PID,
where it came from (from the port record that "usbipgw attach" and "usbip attach" write)
and the remote bus/device number. Records are read from ${VHCI_STATE_DIR} by default.`,
  flags: [{ name: "json", help: "print JSON instead of a table" }, ...VHCI_FLAGS],
  epilogue: "Exit codes: 0, 7 vhci-hcd not loaded.",
  run,
};
