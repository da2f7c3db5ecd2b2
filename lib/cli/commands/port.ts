/**
 * `usbipgw port`: the devices attached through vhci_hcd, like `usbip port`, with where each
 * came from (the port records) and, for ports the local gateway attached for a user, who and
 * how (from the gateway's status, when this user may read it).
 *
 * @module
 */

import { type AttachedPort, listAttached } from "../../client/attach.ts";
import { recordUri, speedName, vdevStatusName, VHCI_STATE_DIR } from "../../client/vhci.ts";
import type { Command, CommandIo, ParsedFlags } from "../command.ts";
import { ExitCode } from "../exit_codes.ts";
import { VHCI_FLAGS, vhciOptions } from "./_vhci_flags.ts";
import { GATEWAY_SOCKET_FLAG, gatewaySocket } from "./status.ts";
import { requestStatus } from "../../client/usbip_client.ts";
import { connectUnix } from "../../transport/mod.ts";

const hex4 = (n: number) => n.toString(16).padStart(4, "0");
const dec3 = (n: number) => String(n).padStart(3, "0");

/** Who had the gateway attach a port, and how, as its status tells (`attachments`). */
export interface PortOwner {
  vhciPort: number;
  uid: number;
  /** `local`, `remote` or `stream`. */
  kind: string;
  /** `root`, `console` or `polkit`. */
  authority: string;
  since: string;
}

/** `uid 1000 (local, console)`, or `-` for a port the gateway did not attach for a user. */
function ownerText(owner: PortOwner | undefined): string {
  return owner === undefined ? "-" : `uid ${owner.uid} (${owner.kind}, ${owner.authority})`;
}

/** The `port` table; `owners` are the gateway's attachments, by vhci port. */
export function formatPortTable(
  ports: AttachedPort[],
  owners: ReadonlyMap<number, PortOwner> = new Map(),
): string {
  if (ports.length === 0) return "No devices attached through vhci_hcd\n";
  const rows: string[][] = [
    ["PORT", "HUB", "STATUS", "SPEED", "LOCAL", "VID:PID", "REMOTE", "BUS/DEV", "BY", "PRODUCT"],
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
      ownerText(owners.get(p.port)),
      p.product ?? "",
    ]);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) =>
    r.map((cell, c) => c === r.length - 1 ? cell : cell.padEnd(widths[c]!)).join("  ").trimEnd()
  ).join("\n") + "\n";
}

/** The `port --json` form: one object per attached port. */
export function formatPortJson(
  ports: AttachedPort[],
  owners: ReadonlyMap<number, PortOwner> = new Map(),
): string {
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
      attached_by: owners.get(p.port) ?? null,
    })),
    null,
    2,
  ) + "\n";
}

/**
 * The ports the local gateway attached for users, from its status; none when no gateway
 * answers or this user may not read its status.
 */
async function portOwners(socketPath: string): Promise<Map<number, PortOwner>> {
  try {
    const status = await requestStatus(await connectUnix(socketPath)) as {
      attachments?: PortOwner[];
    };
    return new Map((status.attachments ?? []).map((a) => [a.vhciPort, a]));
  } catch {
    return new Map();
  }
}

async function run(flags: ParsedFlags, io: CommandIo): Promise<number> {
  flags.noMorePositional();
  const ports = await listAttached(vhciOptions(flags));
  const owners = ports.length > 0 ? await portOwners(gatewaySocket(flags, io)) : new Map();
  await io.out(flags.has("json") ? formatPortJson(ports, owners) : formatPortTable(ports, owners));
  return ExitCode.OK;
}

/** `usbipgw port`. */
export const portCommand: Command = {
  name: "port",
  summary: "show the devices attached through vhci_hcd",
  usage: ["port [--json] [--unix GATEWAY] [--sysfs PATH] [--state-dir PATH]"],
  description:
    `Shows the devices attached through vhci_hcd, from its status files: the port, its hub
(hs: high speed, ss: SuperSpeed), the state, the device's speed, its bus id here, VID:PID,
where it came from (from the port record that "usbipgw attach" and "usbip attach" write),
the remote bus/device number, and BY: for a port the local gateway attached for a user who
is not root, that user and how ("usbipgw attach" without root), when this user may read the
gateway's status. Records are read from ${VHCI_STATE_DIR} by default.`,
  flags: [
    { name: "json", help: "print JSON instead of a table" },
    GATEWAY_SOCKET_FLAG,
    ...VHCI_FLAGS,
  ],
  epilogue: "Exit codes: 0, 7 vhci-hcd not loaded.",
  run,
};
