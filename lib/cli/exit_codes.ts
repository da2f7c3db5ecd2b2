/**
 * The exit codes of usbipgw, and the one mapping from an error to its code and its message.
 * Every command throws; `main.ts` prints {@linkcode failureMessage} and exits with
 * {@linkcode exitCodeFor}.
 *
 * @module
 */

import { OpStatus } from "../protocol/constants.ts";
import { ImportRefusedError } from "../client/usbip_client.ts";
import { ClientError } from "../client/attach.ts";
import { VhciMissingError } from "../client/vhci.ts";
import { ConnectError } from "../transport/connect_error.ts";
import { GatewayRefusal } from "../client/gateway_requests.ts";
import { UsageError } from "./usage_error.ts";
import { errorMessage } from "../util/error_message.ts";

/** Exit codes (2 is a usage error, everywhere). */
export const ExitCode = {
  OK: 0,
  /** Anything else: a protocol error, the kernel refusing an attach, no permission; deny. */
  ERROR: 1,
  USAGE: 2,
  /** The server cannot be reached (refused, unreachable, timed out), or not over TLS. */
  CONNECT: 3,
  /** The server answered ST_DEV_BUSY: another client has the device. */
  BUSY: 4,
  /** The server answered ST_NODEV: no such bus id. */
  NODEV: 5,
  /** The server answered ST_NA (refused by its policy) or another error status. */
  REFUSED: 6,
  /** vhci_hcd is not loaded. */
  VHCI_MISSING: 7,
  /** No free vhci port of the hub the device needs. */
  NO_FREE_PORT: 8,
  /** detach: the port is free already. */
  PORT_FREE: 9,
} as const;

/** The exit code of an op status that is not ST_OK: busy, no such device, refused, error. */
function statusExitCode(status: number): number {
  if (status === OpStatus.ST_DEV_BUSY) return ExitCode.BUSY;
  if (status === OpStatus.ST_NODEV) return ExitCode.NODEV;
  if (status === OpStatus.ST_NA) return ExitCode.REFUSED;
  return ExitCode.ERROR;
}

/** The exit code for an error thrown by a command. */
export function exitCodeFor(e: unknown): number {
  if (e instanceof UsageError) return ExitCode.USAGE;
  if (e instanceof VhciMissingError) return ExitCode.VHCI_MISSING;
  if (e instanceof ConnectError) return ExitCode.CONNECT;
  if (e instanceof ImportRefusedError) {
    // Any other refusal of an import is the server's to explain: 6, as "usbip attach" fails.
    const code = statusExitCode(e.status);
    return code === ExitCode.ERROR ? ExitCode.REFUSED : code;
  }
  if (e instanceof GatewayRefusal) return statusExitCode(e.status);
  if (e instanceof ClientError) {
    switch (e.reason) {
      case "connect":
      case "tls":
        return ExitCode.CONNECT;
      case "no_free_port":
        return ExitCode.NO_FREE_PORT;
      case "port_free":
        return ExitCode.PORT_FREE;
      case "no_such_port":
        return ExitCode.USAGE;
      default:
        return ExitCode.ERROR;
    }
  }
  return ExitCode.ERROR;
}

function refusalHint(e: ImportRefusedError): string {
  if (e.status === OpStatus.ST_NA) {
    return " (the server's access policy refused this client, or the device is not exported to it)";
  }
  if (e.status === OpStatus.ST_DEV_BUSY) return " (another client has it attached)";
  if (e.status === OpStatus.ST_NODEV) return ` ("usbipgw list" shows the server's bus ids)`;
  return "";
}

/** The message printed for an error: what failed, and for a refused import why it may have. */
export function failureMessage(e: unknown): string {
  const text = errorMessage(e);
  return e instanceof ImportRefusedError ? `${text}${refusalHint(e)}` : text;
}
