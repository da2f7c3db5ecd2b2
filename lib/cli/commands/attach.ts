/**
 * `usbipgw attach`: imports a device from a USB/IP server and attaches it to this machine's
 * vhci_hcd, like `usbip attach`; `--persist` re-attaches after a hang-up.
 *
 * @module
 */

import { errorMessage } from "../../util/error_message.ts";
import { getLogger } from "../../logtape.ts";
import { OpStatus, USBIP_PORT } from "../../protocol/constants.ts";
import { ImportRefusedError } from "../../client/usbip_client.ts";
import {
  attachDevice,
  type AttachOptions,
  type AttachResult,
  type AttachTls,
  ClientError,
  detachPort,
} from "../../client/attach.ts";
import {
  DEFAULT_DEAD_PEER_TIMEOUT_S,
  formatRemote,
  keepaliveFor,
  type RemoteAddress,
} from "../../client/fd_socket.ts";
import { type AttachedPortId, runPersistent } from "../../client/persist.ts";
import { GatewayRefusal, requestAttach, requestDetach } from "../../client/gateway_requests.ts";
import type { AttachRequest } from "../../protocol/op_messages.ts";
import { connectUnix } from "../../transport/mod.ts";
import {
  readVhciPorts,
  removePortRecord,
  speedName,
  VdevStatus,
  VHCI_STATE_DIR,
  VhciMissingError,
} from "../../client/vhci.ts";
import { parseHostPort } from "../../transport/tcp.ts";
import type { Command, CommandIo, ParsedFlags } from "../command.ts";
import { ExitCode } from "../exit_codes.ts";
import { setUpLogging } from "../log_setup.ts";
import { UsageError } from "../usage_error.ts";
import { onStopSignals } from "../stop_signals.ts";
import { VHCI_FLAGS, vhciOptions } from "./_vhci_flags.ts";
import { noTlsClientFlags, TLS_CLIENT_FLAGS, tlsClientFiles } from "./_tls_client_flags.ts";
import { gatewaySocket } from "./status.ts";

const log = getLogger(["usbipgw", "client"]);
const KEEPALIVE_EXAMPLE = keepaliveFor(DEFAULT_DEAD_PEER_TIMEOUT_S);

/** Errors `--persist` does not retry: they will not go away by waiting. */
function fatalForPersist(e: unknown): boolean {
  if (e instanceof VhciMissingError) return true;
  if (e instanceof ImportRefusedError) return e.status === OpStatus.ST_NA;
  if (e instanceof ClientError) return e.reason === "attach_failed";
  return !(e instanceof Error) || e instanceof TypeError || e instanceof RangeError;
}

function describeAttach(r: AttachResult): Record<string, unknown> {
  const hex = (n: number) => n.toString(16).padStart(4, "0");
  return {
    busid: r.device.busid,
    remote: formatRemote(r.remote),
    port: r.port,
    hub: r.hub,
    speed: speedName(r.speed),
    id: `${hex(r.device.idVendor)}:${hex(r.device.idProduct)}`,
  };
}

function parseRemote(remote: string | undefined, unix: string | undefined): RemoteAddress {
  if ((remote === undefined) === (unix === undefined)) {
    throw new UsageError(`"attach" needs exactly one of -r HOST[:PORT] or --unix PATH`);
  }
  if (unix !== undefined) return { transport: "unix", path: unix };
  try {
    const { hostname, port } = parseHostPort(remote!, USBIP_PORT, { role: "connect" });
    return { transport: "tcp", host: hostname, port };
  } catch (e) {
    if (e instanceof TypeError || e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
}

/** Runs `attach` (one attach, or `--persist`) until a signal stops it; returns the exit code. */
async function persist<R extends AttachedPortId>(
  what: string,
  attach: (signal: AbortSignal) => Promise<R>,
  vhci: { sysfsRoot: string; stateDir: string },
  detach: (port: number) => Promise<void>,
  describe: (r: R) => Record<string, unknown>,
  io: CommandIo,
): Promise<number> {
  const controller = new AbortController();
  const unlisten = onStopSignals((signal) => {
    log.info("Stopping on {signal}", { signal });
    controller.abort();
  });
  log.info("Keeping {where} attached until SIGINT or SIGTERM", { where: what });
  try {
    const outcome = await runPersistent<R>({
      signal: controller.signal,
      attach,
      readPorts: () => readVhciPorts(vhci.sysfsRoot),
      detach,
      removeRecord: (port) => removePortRecord(vhci.stateDir, port),
      isFatal: fatalForPersist,
      describe: () => what,
      onAttached: async (r) => {
        log.info("Attached {what} on vhci port {port}", { what, port: r.port, ...describe(r) });
        await io.out(`${r.port}\n`);
      },
    });
    log.info("Stopped after {attaches} attach(es) and {drops} drop(s)", { ...outcome });
    return ExitCode.OK;
  } finally {
    unlisten();
  }
}

/**
 * Attaches through the local gateway, which writes vhci's files as root for a user who is not:
 * a device of its own, or one of a server its configuration lists. Returns what vhci shows.
 */
async function attachThroughGateway(
  socketPath: string,
  request: AttachRequest,
  sysfsRoot: string,
): Promise<AttachedPortId & { message: string }> {
  const conn = await connectUnix(socketPath);
  const reply = await requestAttach(conn, request);
  if (reply.status !== OpStatus.ST_OK) {
    throw new GatewayRefusal(reply.status, `Cannot attach ${request.busid}: ${reply.message}`);
  }
  // What vhci shows for the port, for --persist to tell it from a port given to someone else:
  // devid appears once the hub has reset the port (VDEV_ST_USED, vhci_sysfs.c).
  const deadline = performance.now() + 5000;
  let port = (await readVhciPorts(sysfsRoot)).find((p) => p.port === reply.vhciPort);
  while (port?.status === VdevStatus.VDEV_ST_NOTASSIGNED && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    port = (await readVhciPorts(sysfsRoot)).find((p) => p.port === reply.vhciPort);
  }
  return {
    port: reply.vhciPort,
    devid: port?.devid ?? 0,
    sockfd: port?.sockfd ?? 0,
    message: reply.message,
  };
}

/** Detaches a port through the local gateway (it detaches only the caller's own ports). */
export async function detachThroughGateway(socketPath: string, port: number): Promise<string> {
  const reply = await requestDetach(await connectUnix(socketPath), port);
  if (reply.status !== OpStatus.ST_OK) {
    throw new GatewayRefusal(reply.status, `Cannot detach port ${port}: ${reply.message}`);
  }
  return reply.message;
}

/** The bus id of `-b`, checked. */
function busidFlag(flags: ParsedFlags): string {
  const busid = flags.one("busid");
  if (busid === undefined) throw new UsageError(`"attach" needs -b BUSID`);
  if (new TextEncoder().encode(busid).length > 31 || /\s/.test(busid)) {
    throw new UsageError(`Invalid bus id "${busid}": at most 31 bytes, no spaces`);
  }
  return busid;
}

async function run(flags: ParsedFlags, io: CommandIo): Promise<number> {
  flags.noMorePositional();
  setUpLogging(io, "info", "auto");
  const busid = busidFlag(flags);
  const remoteText = flags.one("remote");
  const unix = flags.one("unix");
  const vhci = vhciOptions(flags);
  // Root attaches by itself, as "usbip attach" does; anyone else asks the local gateway.
  if (Deno.uid() !== 0) {
    if (flags.has("tls")) {
      throw new UsageError(
        `"attach --tls" needs root (vhci_hcd's attach file is root's); the local gateway attaches remote servers over TCP only`,
      );
    }
    if (remoteText !== undefined && unix !== undefined) {
      throw new UsageError(`"attach" takes -r HOST[:PORT] or --unix PATH (the gateway), not both`);
    }
    const socketPath = gatewaySocket(flags, io);
    let request: AttachRequest = { kind: "local", busid };
    let what = `${busid} of the gateway at ${socketPath}`;
    if (remoteText !== undefined) {
      const remote = parseRemote(remoteText, undefined);
      if (remote.transport !== "tcp") throw new UsageError(`Invalid -r ${remoteText}`);
      request = { kind: "remote", busid, host: remote.host, port: remote.port };
      what = `${busid} of ${remoteText}, through the gateway at ${socketPath}`;
    }
    const once = () => attachThroughGateway(socketPath, request, vhci.sysfsRoot);
    if (flags.has("persist")) {
      return await persist(
        what,
        once,
        vhci,
        async (port) => void await detachThroughGateway(socketPath, port),
        () => ({}),
        io,
      );
    }
    const r = await once();
    await io.out(`${r.port}\n`);
    return ExitCode.OK;
  }
  const remote = parseRemote(remoteText, unix);
  const tls = tlsFlags(flags, remote);
  const keepaliveText = flags.one("keepalive");
  let deadPeerTimeoutS = DEFAULT_DEAD_PEER_TIMEOUT_S;
  if (keepaliveText !== undefined) {
    if (!/^\d+$/.test(keepaliveText) || Number(keepaliveText) > 86400) {
      throw new UsageError(
        `Invalid --keepalive ${keepaliveText}: expected whole seconds, 0 (kernel defaults) to 86400`,
      );
    }
    deadPeerTimeoutS = Number(keepaliveText);
  }
  const options: AttachOptions = {
    remote,
    busid,
    ...vhci,
    deadPeerTimeoutS,
    ...(tls ? { tls } : {}),
  };
  if (flags.has("persist")) {
    return await persist(
      `${formatRemote(remote)}/${busid}`,
      (signal) => attachDevice({ ...options, signal }),
      vhci,
      async (port) => void await detachPort(port, vhci),
      (r) => {
        if (r.recordError) log.warn("{error}", { error: r.recordError });
        r.relay?.ended.then((end) => logRelayEnd(r, end));
        return describeAttach(r);
      },
      io,
    );
  }
  const r = await attachDevice(options);
  if (r.recordError) io.err(`usbipgw: warning: ${r.recordError}\n`);
  await io.out(`${r.port}\n`);
  return r.relay ? await relayUntilEnd(r, r.relay, vhci) : ExitCode.OK;
}

/** The TLS settings of `--tls` and its flags, or undefined without `--tls`. */
function tlsFlags(flags: ParsedFlags, remote: RemoteAddress): AttachTls | undefined {
  if (!flags.has("tls")) {
    noTlsClientFlags(flags, `TLS settings; give --tls too`);
    for (const f of ["require-ktls", "relay"]) {
      if (flags.has(f)) throw new UsageError(`--${f} is about TLS; give --tls too`);
    }
    return undefined;
  }
  if (remote.transport !== "tcp") throw new UsageError(`--tls needs -r HOST[:PORT], not --unix`);
  if (flags.has("require-ktls") && flags.has("relay")) {
    throw new UsageError(`--require-ktls and --relay exclude each other`);
  }
  const mode = flags.has("require-ktls") ? "ktls" : flags.has("relay") ? "relay" : "auto";
  return { ...tlsClientFiles(flags, `"attach --tls"`), mode };
}

/** Logs how a relay ended. */
function logRelayEnd(r: AttachResult, end: { by: "server" | "kernel"; error?: string }): void {
  const where = formatRemote(r.remote);
  if (end.by === "kernel") {
    log.info("vhci port {port} was freed: the relay to {where} ended", { port: r.port, where });
  } else if (end.error) {
    log.error("The TLS connection to {where} failed ({error}): vhci port {port} is freed", {
      where,
      error: end.error,
      port: r.port,
    });
  } else {
    log.info("{where} closed the TLS connection: vhci port {port} is freed", {
      where,
      port: r.port,
    });
  }
}

/**
 * Runs the relay of a device attached over TLS until either side ends it; SIGINT or SIGTERM
 * detaches the device first. Exits 0, or 1 when the TLS connection failed.
 */
async function relayUntilEnd(
  r: AttachResult,
  relay: NonNullable<AttachResult["relay"]>,
  vhci: { sysfsRoot: string; stateDir: string },
): Promise<number> {
  const unlisten = onStopSignals((signal) => {
    log.info("Detaching vhci port {port} on {signal}", { port: r.port, signal });
    detachPort(r.port, vhci).catch((e) => {
      log.warn("{error}", { error: errorMessage(e) });
      relay.stop();
    });
  });
  log.info("Relaying vhci port {port} to {where} over TLS until either side ends", {
    port: r.port,
    where: formatRemote(r.remote),
  });
  try {
    const end = await relay.ended;
    logRelayEnd(r, end);
    return end.by === "server" && end.error ? ExitCode.ERROR : ExitCode.OK;
  } finally {
    unlisten();
  }
}

/** `usbipgw attach`. */
export const attachCommand: Command = {
  name: "attach",
  summary: "attach a remote device to this machine (vhci_hcd); --persist re-attaches",
  usage: [
    "attach -b BUSID [--unix GATEWAY] [--persist]",
    "attach (-r|--remote) HOST[:PORT] -b BUSID [--persist] [OPTIONS]",
    "attach --unix PATH -b BUSID [--persist] [OPTIONS]",
    "attach --tls -r HOST[:PORT] -b BUSID --cert FILE --key FILE --ca FILE [--persist] [OPTIONS]",
  ],
  description:
    `Imports a device from a USB/IP server (OP_REQ_IMPORT) and attaches it to this machine's
vhci_hcd, like "usbip attach": the connected socket (TCP or unix) is handed to
/sys/devices/platform/vhci_hcd.0/attach on a free port of the high-speed or SuperSpeed hub.
Prints the vhci port number. Needs the vhci-hcd module ("modprobe vhci-hcd"). The port is
recorded in ${VHCI_STATE_DIR}/port<N> as the usbip tool does, so that "usbip port" and
"usbipgw port" show where it came from.

Without root, the local gateway does it (over its unix socket, --unix
GATEWAY, by default the one "status" uses): it attaches one of its own devices (-b alone),
or a device of a server its configuration lets users reach (-r), if this user may: root, the
console user for the gateway's own devices, or whom polkit authorizes; then the gateway's
access rules apply as for any import. "usbipgw detach" then detaches only this user's ports.`,
  flags: [
    {
      name: "remote",
      short: "r",
      value: "HOST[:PORT]",
      help: `the server (port ${USBIP_PORT} by default; IPv6 as [ADDR]:PORT)`,
    },
    {
      name: "unix",
      value: "PATH",
      help: `the server's unix socket (@NAME: an abstract socket); without root, the
local gateway's socket`,
      complete: "file",
    },
    {
      name: "busid",
      short: "b",
      value: "BUSID",
      help: `the device's bus id on the server ("usbipgw list" shows them)`,
    },
    {
      name: "persist",
      help: `stay in the foreground: when the connection drops (vhci frees
the port), log it and attach again once the server is back,
retrying after 1, 2, 4, ... seconds (at most 10); SIGINT or
SIGTERM detaches the device and exits 0 (a "usbipgw
detach" of its port counts as a drop: stop it instead)`,
    },
    {
      name: "keepalive",
      value: "SECONDS",
      help: `TCP: declare a silent server dead after about SECONDS
(default ${DEFAULT_DEAD_PEER_TIMEOUT_S}); 0 keeps the kernel's defaults (2 hours)`,
    },
    {
      name: "tls",
      help: `speak USB/IP over TLS to a usbipgw TLS listener (-r): show the
client certificate --cert (key --key), verify the server's
against --ca; vhci then reads the socket with the kernel doing
TLS (kTLS: TLS 1.2, ChaCha20-Poly1305; no process stays), or,
where the kernel or libssl cannot, through a relay: "attach"
stays in the foreground and pumps between vhci and TLS until
either side ends (SIGINT or SIGTERM detaches)`,
    },
    ...TLS_CLIENT_FLAGS,
    { name: "require-ktls", help: "TLS: fail rather than fall back to the relay" },
    { name: "relay", help: "TLS: use the relay even where kernel TLS works" },
    ...VHCI_FLAGS,
  ],
  epilogue: `A server that vanishes without closing the connection (power loss, a cable pulled, a
network gone) would leave the device attached and hung. So the TCP socket gets
SO_KEEPALIVE with TCP_KEEPIDLE ${KEEPALIVE_EXAMPLE.idleSeconds} s, TCP_KEEPINTVL ${KEEPALIVE_EXAMPLE.intervalSeconds} s, TCP_KEEPCNT ${KEEPALIVE_EXAMPLE.count} and
TCP_USER_TIMEOUT ${
    KEEPALIVE_EXAMPLE.userTimeoutMs / 1000
  } s (for --keepalive ${DEFAULT_DEAD_PEER_TIMEOUT_S}) before vhci takes it: the kernel then drops the
connection, vhci frees the port, and --persist attaches again when the server is back.

Exit codes: 0 attached (or --persist stopped by a signal), 1 other error (protocol, the
kernel refused, no permission), 2 usage, 3 cannot connect, 4 device busy, 5 no such
device, 6 refused by the server (its policy) or another error status, 7 vhci-hcd not
loaded, 8 no free vhci port. With --tls, 3 also means the TLS handshake failed (the
server's certificate does not verify, or the server refused ours), and a relay that
ends because the TLS connection failed exits 1.

Examples:
  usbipgw attach -r 192.168.1.7 -b 1-1
  usbipgw attach --unix /run/usbipgw.sock -b 1-2
  usbipgw attach -r gw.example:3240 -b 1-1 --persist
  usbipgw attach --tls -r gw.example:3241 -b 1-1 --cert me.pem --key me.key --ca gw-ca.pem`,
  run,
};
