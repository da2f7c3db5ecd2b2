/**
 * `usbipgw detach`: frees vhci_hcd ports, like `usbip detach`: one port (`-p`), the ports of
 * a remote bus id (`-b`, from the port records), or every port in use (`--all`).
 *
 * @module
 */

import { type AttachedPort, detachPort, listAttached } from "../../client/attach.ts";
import { recordUri } from "../../client/vhci.ts";
import type { Command, CommandIo, ParsedFlags } from "../command.ts";
import { ExitCode } from "../exit_codes.ts";
import { UsageError } from "../usage_error.ts";
import { VHCI_FLAGS, vhciOptions } from "./_vhci_flags.ts";
import { detachThroughGateway } from "./attach.ts";
import { GATEWAY_SOCKET_FLAG, gatewaySocket } from "./status.ts";

function parsePort(text: string): number {
  if (!/^\d{1,5}$/.test(text)) throw new UsageError(`Invalid port "${text}": expected a number`);
  return Number(text);
}

/** The ports `-b BUSID` names: those whose record says they came from that bus id. */
function portsOfBusid(ports: AttachedPort[], busid: string): number[] {
  const matching = ports.filter((p) => p.record?.busid === busid);
  if (matching.length === 0) {
    const known = ports.filter((p) => p.record).map((p) => `${p.port}: ${recordUri(p.record!)}`);
    throw new UsageError(
      `No vhci port holds a device with bus id ${busid}${
        known.length > 0 ? `; attached: ${known.join(", ")}` : ": no port has a record"
      }`,
    );
  }
  return matching.map((p) => p.port);
}

async function run(flags: ParsedFlags, io: CommandIo): Promise<number> {
  flags.noMorePositional();
  const portText = flags.one("port");
  const busid = flags.one("busid");
  const all = flags.has("all");
  if ([portText !== undefined, busid !== undefined, all].filter(Boolean).length !== 1) {
    throw new UsageError(`"detach" needs exactly one of -p PORT, -b BUSID or --all`);
  }
  const options = vhciOptions(flags);
  let ports: number[];
  if (portText !== undefined) {
    ports = [parsePort(portText)];
  } else {
    const attached = await listAttached(options);
    ports = all ? attached.map((p) => p.port) : portsOfBusid(attached, busid!);
  }
  if (Deno.uid() !== 0) {
    // vhci's detach file is root's: the gateway detaches, and only this user's own ports.
    const socketPath = gatewaySocket(flags, io);
    for (const port of ports) {
      await detachThroughGateway(socketPath, port);
      if (ports.length > 1 || portText === undefined) await io.out(`detached port ${port}\n`);
    }
    return ExitCode.OK;
  }
  for (const port of ports) {
    const { freed } = await detachPort(port, options);
    if (!freed) {
      io.err(`usbipgw: port ${port}: detach requested, the port is not free yet after 5 s\n`);
    } else if (ports.length > 1 || portText === undefined) {
      await io.out(`detached port ${port}\n`);
    }
  }
  return ExitCode.OK;
}

/** `usbipgw detach`. */
export const detachCommand: Command = {
  name: "detach",
  summary: "detach devices from vhci_hcd ports",
  usage: [
    "detach (-p|--port) PORT [--unix GATEWAY] [--sysfs PATH] [--state-dir PATH]",
    "detach (-b|--busid) BUSID | --all [--sysfs PATH] [--state-dir PATH]",
  ],
  description:
    `Detaches the device on vhci port PORT ("usbipgw port" lists them): the port number is
written to vhci_hcd's detach file, the kernel closes the connection and the server sees the
session end. Removes the port's record. -b detaches every port whose record says its device
has that bus id on its server; --all detaches every port in use. Without root, the local
gateway detaches, and only the ports it attached for this user ("usbipgw attach" without
root); --unix names its socket.`,
  flags: [
    { name: "port", short: "p", value: "PORT", help: "the vhci port" },
    { name: "busid", short: "b", value: "BUSID", help: "the device's bus id on its server" },
    { name: "all", help: "every port in use" },
    GATEWAY_SOCKET_FLAG,
    ...VHCI_FLAGS,
  ],
  epilogue: `Exit codes: 0 detached (--all: also when no port was in use), 1 error, 2 usage or no
such port (or no port of that bus id), 7 vhci-hcd not loaded, 9 the port is free already.`,
  run,
};
