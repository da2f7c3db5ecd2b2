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
import { defaultUnixPath, SYSTEM_SOCKET } from "./_defaults.ts";

/** The `--unix PATH` flag of the commands that talk to a running gateway. */
export const GATEWAY_SOCKET_FLAG = {
  name: "unix",
  value: "PATH",
  help: `the gateway's socket (default $XDG_RUNTIME_DIR/usbipgw.sock when it
exists, else /run/usbipgw.sock, the system gateway's)`,
  complete: "file",
} as const;

/**
 * The gateway socket `--unix` names; by default this user's own gateway's
 * ({@linkcode defaultUnixPath}) when that socket exists, else the system gateway's.
 */
export function gatewaySocket(flags: ParsedFlags, io: CommandIo): string {
  const given = flags.one("unix");
  if (given !== undefined) return given;
  const own = defaultUnixPath(io);
  try {
    if (own !== undefined && Deno.statSync(own).isSocket) return own;
  } catch {
    // No gateway of this user's: the system's.
  }
  return SYSTEM_SOCKET;
}

async function run(flags: ParsedFlags, io: CommandIo): Promise<number> {
  flags.noMorePositional();
  const path = gatewaySocket(flags, io);
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
