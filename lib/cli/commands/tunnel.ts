/**
 * `usbipgw tunnel`: a loopback port for USB/IP clients without TLS (the `usbip` tool,
 * usbip-win2) in front of a usbipgw TLS listener (lib/client/tunnel.ts).
 *
 * @module
 */

import { getLogger } from "../../logtape.ts";
import { USBIP_PORT } from "../../protocol/constants.ts";
import { startTunnel } from "../../client/tunnel.ts";
import { parseHostPort } from "../../transport/tcp.ts";
import type { Command, CommandIo, ParsedFlags } from "../command.ts";
import { ExitCode } from "../exit_codes.ts";
import { setUpLogging } from "../log_setup.ts";
import { UsageError } from "../usage_error.ts";
import { onStopSignals } from "../stop_signals.ts";
import { TLS_CLIENT_FLAGS, tlsClientFiles } from "./_tls_client_flags.ts";

const log = getLogger(["usbipgw", "tunnel"]);

/** A HOST:PORT flag, as a usage error when it is not one. */
function address(text: string, role: "listen" | "connect") {
  try {
    return parseHostPort(text, USBIP_PORT, { role });
  } catch (e) {
    if (e instanceof TypeError || e instanceof RangeError) {
      throw new UsageError(`Invalid --${role} ${text}: ${e.message}`);
    }
    throw e;
  }
}

async function run(flags: ParsedFlags, io: CommandIo): Promise<number> {
  flags.noMorePositional();
  setUpLogging(io, "info", "auto");
  const connectText = flags.one("connect");
  if (connectText === undefined) throw new UsageError(`"tunnel" needs --connect HOST[:PORT]`);
  const connect = address(connectText, "connect");
  const listen = address(flags.one("listen") ?? `127.0.0.1:${USBIP_PORT}`, "listen");
  let tunnel;
  try {
    tunnel = await startTunnel({
      ...tlsClientFiles(flags, `"tunnel"`),
      listen: { hostname: listen.hostname, port: listen.port },
      connect: { host: connect.hostname, port: connect.port },
    });
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
  await io.out(`${tunnel.port}\n`);
  const stop = Promise.withResolvers<string>();
  const unlisten = onStopSignals((s) => stop.resolve(s));
  try {
    const signal = await stop.promise;
    log.info("Stopping on {signal}: ending {open} connection(s)", { signal, open: tunnel.open });
    await tunnel.close();
    return ExitCode.OK;
  } finally {
    unlisten();
  }
}

/** `usbipgw tunnel`. */
export const tunnelCommand: Command = {
  name: "tunnel",
  summary: "let USB/IP clients without TLS (usbip, usbip-win2) use a TLS gateway",
  usage: [
    "tunnel --connect HOST[:PORT] --cert FILE --key FILE --ca FILE [--listen HOST:PORT]",
  ],
  description:
    `Listens on a loopback address (default 127.0.0.1:${USBIP_PORT}) and gives every connection
accepted there its own TLS connection to a usbipgw TLS listener, with this client's
certificate, as stunnel's client mode does: "usbip --tcp-port PORT attach -r 127.0.0.1
-b BUSID" then uses the TLS gateway. Prints the port it listens on. Runs until SIGINT or
SIGTERM, which end every connection (vhci frees the ports of devices attached through it).
The plain side has no authentication: anyone who can connect to it acts with this
certificate, so it listens on loopback only.`,
  flags: [
    {
      name: "connect",
      value: "HOST[:PORT]",
      help: `the usbipgw TLS listener (port ${USBIP_PORT} by default)`,
    },
    {
      name: "listen",
      value: "HOST:PORT",
      help: `where plain clients connect (default 127.0.0.1:${USBIP_PORT}; loopback only;
port 0 picks a free one)`,
    },
    ...TLS_CLIENT_FLAGS,
  ],
  epilogue: `Exit codes: 0 stopped by a signal, 1 error (a PEM file, the address in use), 2 usage.

Examples:
  usbipgw tunnel --connect gw.example:3241 --cert me.pem --key me.key --ca gw-ca.pem
  usbip attach -r 127.0.0.1 -b 1-1`,
  run,
};
