/**
 * `usbipgw bind -b BUSID`: asks a running gateway, over its unix socket, to export a host
 * device at run time, as `usbip bind` and `usbipd bind` do (OP_REQ_BIND, usbipgw's own op).
 * `unbind.ts` is its pair.
 *
 * @module
 */

import { type BindAnswer, requestBind, requestUnbind } from "../../client/usbip_client.ts";
import { OpStatus } from "../../protocol/constants.ts";
import { connectUnix } from "../../transport/mod.ts";
import type { Command, CommandIo, ParsedFlags } from "../command.ts";
import { ExitCode } from "../exit_codes.ts";
import { UsageError } from "../usage_error.ts";
import { GATEWAY_SOCKET_FLAG, gatewaySocket } from "./status.ts";

/** `bind` or `unbind`: the same flags and exit codes, the other request. */
export function hostDeviceCommand(action: "bind" | "unbind"): Command {
  const request: (...a: Parameters<typeof requestBind>) => Promise<BindAnswer> = action === "bind"
    ? requestBind
    : requestUnbind;
  return {
    name: action,
    summary: action === "bind"
      ? "export a host device on a running gateway (like usbip bind)"
      : "withdraw a host device bound with bind (like usbip unbind)",
    usage: [`${action} -b BUSID [--unix PATH]`],
    description: action === "bind"
      ? `Asks the running gateway to export this host's USB device BUSID ("usbipgw host" lists
them) through usbfs, under the same bus id, as "usbip bind" does for usbipd. It stays
exported until "usbipgw unbind" or a restart of the gateway; a reload keeps it. Root, the
console user and the gateway's own user may ask, over the gateway's unix socket.`
      : `Asks the running gateway to withdraw the host device BUSID that "usbipgw bind" exported:
a client that holds it sees it unplugged. Devices of the configuration are withdrawn by
removing them there and reloading.`,
    flags: [
      { name: "busid", short: "b", value: "BUSID", help: "the device's bus id on this host" },
      GATEWAY_SOCKET_FLAG,
    ],
    epilogue:
      "Exit codes: 0 done, 1 the gateway could not (its message says why), 2 usage, 3 cannot\nconnect to the gateway, 6 not allowed for this user.",
    async run(flags: ParsedFlags, io: CommandIo): Promise<number> {
      flags.noMorePositional();
      const busid = flags.one("busid");
      if (busid === undefined) throw new UsageError(`"${action}" needs -b BUSID`);
      const conn = await connectUnix(gatewaySocket(flags, io));
      const answer = await request(conn, busid);
      if (answer.status === OpStatus.ST_OK) {
        await io.out(`${answer.message}\n`);
        return ExitCode.OK;
      }
      io.err(`usbipgw: ${action} ${busid}: ${answer.message}\n`);
      return answer.status === OpStatus.ST_NA ? ExitCode.REFUSED : ExitCode.ERROR;
    },
  };
}

/** `usbipgw bind`. */
export const bindCommand: Command = hostDeviceCommand("bind");
