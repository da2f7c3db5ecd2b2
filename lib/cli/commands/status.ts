/**
 * `usbipgw status`: asks a running gateway over its unix socket for its listeners, devices,
 * sessions, peers and counters (OP_REQ_STATUS).
 *
 * @module
 */

import { requestStatus } from "../../client/usbip_client.ts";
import { connectUnix } from "../../transport/mod.ts";
import type { Command, CommandIo, ParsedFlags } from "../command.ts";
import { ExitCode } from "../exit_codes.ts";
import { asServerStatus, formatStatus, statusJson } from "../status.ts";
import { UsageError } from "../usage_error.ts";
import { defaultUnixPath } from "./_defaults.ts";

/** The `--unix PATH` flag of the commands that talk to a running gateway. */
export const GATEWAY_SOCKET_FLAG = {
  name: "unix",
  value: "PATH",
  help: `the gateway's socket (default $XDG_RUNTIME_DIR/usbipgw.sock, or
/run/usbipgw.sock as root)`,
  complete: "file",
} as const;

/** The gateway socket `--unix` names, or the default one. */
export function gatewaySocket(flags: ParsedFlags, io: CommandIo, command: string): string {
  const path = flags.one("unix") ?? defaultUnixPath(io);
  if (path === undefined) {
    throw new UsageError(`"${command}" needs --unix PATH: XDG_RUNTIME_DIR is not set`);
  }
  return path;
}

async function run(flags: ParsedFlags, io: CommandIo): Promise<number> {
  flags.noMorePositional();
  const path = gatewaySocket(flags, io, "status");
  const conn = await connectUnix(path).catch((e) => {
    throw new Error(`Cannot reach a gateway at ${path}: ${(e as Error).message}`, { cause: e });
  });
  const report = asServerStatus(await requestStatus(conn));
  await io.out(flags.has("json") ? statusJson(report) : formatStatus(report));
  return ExitCode.OK;
}

/** `usbipgw status`. */
export const statusCommand: Command = {
  name: "status",
  summary: "show a running gateway's devices, sessions and counters",
  usage: ["status [--unix PATH] [--json]"],
  description:
    `Asks a running gateway, over its unix socket, for its listeners, devices (and who holds
them), sessions (peer, device, URBs, bytes in and out, errors), peers and totals since start.
Root, the console user and the gateway's own user may read it.`,
  flags: [GATEWAY_SOCKET_FLAG, { name: "json", help: "print the status as JSON" }],
  run,
};
