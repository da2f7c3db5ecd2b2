/**
 * `usbipgw attach`, `detach` and `port`: the client side for this machine's kernel
 * (vhci_hcd), like `usbip attach/detach/port`, plus `attach --persist`, which re-attaches
 * after a hang-up. Exit codes are in {@linkcode AttachExit}.
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse-args";
import { getLogger } from "@logtape/logtape";
import { OpStatus, USBIP_PORT } from "../protocol/constants.ts";
import { ImportRefusedError } from "../client/usbip_client.ts";
import {
  attachDevice,
  type AttachedPort,
  type AttachOptions,
  type AttachResult,
  ClientError,
  detachPort,
  listAttached,
} from "../client/attach.ts";
import {
  DEFAULT_DEAD_PEER_TIMEOUT_S,
  formatRemote,
  keepaliveFor,
  type RemoteAddress,
} from "../client/fd_socket.ts";
import { runPersistent } from "../client/persist.ts";
import {
  readVhciPorts,
  recordUri,
  removePortRecord,
  speedName,
  vdevStatusName,
  VHCI_STATE_DIR,
  VhciMissingError,
} from "../client/vhci.ts";
import { parseHostPort } from "../transport/tcp.ts";
import { UsageError } from "./usage_error.ts";

/** Exit codes of `attach`, `detach` and `port` (2 is a usage error, as everywhere). */
export const AttachExit = {
  OK: 0,
  /** Anything else: a protocol error, the kernel refusing the attach, no permission. */
  ERROR: 1,
  USAGE: 2,
  /** The server cannot be reached (refused, unreachable, timed out). */
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

const KEEPALIVE_EXAMPLE = keepaliveFor(DEFAULT_DEAD_PEER_TIMEOUT_S);

/** Help of `usbipgw attach`. */
export const ATTACH_HELP =
  `Usage: usbipgw attach (-r|--remote) HOST[:PORT] -b BUSID [--persist] [OPTIONS]
       usbipgw attach --unix PATH -b BUSID [--persist] [OPTIONS]

Imports a device from a USB/IP server (OP_REQ_IMPORT) and attaches it to this machine's
vhci_hcd, like "usbip attach": the connected socket (TCP or unix) is handed to
/sys/devices/platform/vhci_hcd.0/attach on a free port of the high-speed or SuperSpeed hub.
Prints the vhci port number. Needs root and the vhci-hcd module ("modprobe vhci-hcd").
The port is recorded in /var/run/vhci_hcd/port<N> as the usbip tool does, so that
"usbip port" and "usbipgw port" show where it came from.

Options:
  -r, --remote HOST[:PORT]  the server (port ${USBIP_PORT} by default; IPv6 as [ADDR]:PORT)
  --unix PATH               the server's unix socket (@NAME: an abstract socket)
  -b, --busid BUSID         the device's bus id on the server ("usbipgw list" shows them)
  --persist                 stay in the foreground: when the connection drops (vhci frees
                            the port), log it and attach again once the server is back,
                            retrying after 1, 2, 4, ... seconds (at most 10); SIGINT or
                            SIGTERM detaches the device and exits 0 (a "usbipgw
                            detach" of its port counts as a drop: stop it instead)
  --keepalive SECONDS       TCP: declare a silent server dead after about SECONDS
                            (default ${DEFAULT_DEAD_PEER_TIMEOUT_S}); 0 keeps the kernel's defaults (2 hours)
  --sysfs PATH              the sysfs mount (default /sys)
  --state-dir PATH          where port records go (default ${VHCI_STATE_DIR})
  -h, --help                show this help

A server that vanishes without closing the connection (power loss, a cable pulled, a
network gone) would leave the device attached and hung. So the TCP socket gets
SO_KEEPALIVE with TCP_KEEPIDLE ${KEEPALIVE_EXAMPLE.idleSeconds} s, TCP_KEEPINTVL ${KEEPALIVE_EXAMPLE.intervalSeconds} s, TCP_KEEPCNT ${KEEPALIVE_EXAMPLE.count} and
TCP_USER_TIMEOUT ${
    KEEPALIVE_EXAMPLE.userTimeoutMs / 1000
  } s (for --keepalive ${DEFAULT_DEAD_PEER_TIMEOUT_S}) before vhci takes it: the kernel then drops the
connection, vhci frees the port, and --persist attaches again when the server is back.

Exit codes: 0 attached (or --persist stopped by a signal), 1 other error (protocol, the
kernel refused, no permission), 2 usage, 3 cannot connect, 4 device busy, 5 no such
device, 6 refused by the server (its policy) or another error status, 7 vhci-hcd not
loaded, 8 no free vhci port.

Examples:
  usbipgw attach -r 192.168.1.7 -b 1-1
  usbipgw attach --unix /run/usbipgw.sock -b 1-2
  usbipgw attach -r gw.example:3240 -b 1-1 --persist
`;

/** Help of `usbipgw detach`. */
export const DETACH_HELP = `Usage: usbipgw detach (-p|--port) PORT [--sysfs PATH] [--state-dir PATH]

Detaches the device on vhci port PORT ("usbipgw port" lists them): the port number is
written to vhci_hcd's detach file, the kernel closes the connection and the server sees the
session end. Removes the port's record. Needs root.

Exit codes: 0 detached, 1 error, 2 usage or no such port, 7 vhci-hcd not loaded,
9 the port is free already.
`;

/** Help of `usbipgw port`. */
export const PORT_HELP = `Usage: usbipgw port [--json] [--sysfs PATH] [--state-dir PATH]

Shows the devices attached through vhci_hcd, from its status files: the port, its hub
(hs: high speed, ss: SuperSpeed), the state, the device's speed, its bus id here, VID:PID,
where it came from (from the port record that "usbipgw attach" and "usbip attach" write)
and the remote bus/device number.

Options:
  --json            print JSON instead of a table
  --sysfs PATH      the sysfs mount (default /sys)
  --state-dir PATH  where port records are (default ${VHCI_STATE_DIR})
  -h, --help        show this help

Exit codes: 0, 7 vhci-hcd not loaded.
`;

/** Where a command writes. */
export interface CommandIo {
  /** Standard output. */
  out(text: string): Promise<void>;
  /** Standard error (messages; logs go through LogTape). */
  err(text: string): void;
}

const log = getLogger(["usbipgw", "client"]);

function unknownOption(command: string, known: string[]): (arg: string) => boolean {
  return (arg: string) => {
    if (arg.startsWith("-")) {
      throw new UsageError(
        `Unknown option ${arg} for "${command}"; valid options: ${known.join(", ")}`,
      );
    }
    return true;
  };
}

function single(flag: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (Array.isArray(value)) throw new UsageError(`--${flag} may be given once`);
  if (typeof value !== "string" || value === "") throw new UsageError(`--${flag} needs a value`);
  return value;
}

/** The exit code for an error of attach/detach/port. */
export function exitCodeFor(e: unknown): number {
  if (e instanceof UsageError) return AttachExit.USAGE;
  if (e instanceof VhciMissingError) return AttachExit.VHCI_MISSING;
  if (e instanceof ImportRefusedError) {
    if (e.status === OpStatus.ST_DEV_BUSY) return AttachExit.BUSY;
    if (e.status === OpStatus.ST_NODEV) return AttachExit.NODEV;
    return AttachExit.REFUSED;
  }
  if (e instanceof ClientError) {
    switch (e.reason) {
      case "connect":
        return AttachExit.CONNECT;
      case "no_free_port":
        return AttachExit.NO_FREE_PORT;
      case "port_free":
        return AttachExit.PORT_FREE;
      case "no_such_port":
        return AttachExit.USAGE;
      default:
        return AttachExit.ERROR;
    }
  }
  return AttachExit.ERROR;
}

function refusalHint(e: ImportRefusedError): string {
  if (e.status === OpStatus.ST_NA) {
    return " (the server's access policy refused this client, or the device is not exported to it)";
  }
  if (e.status === OpStatus.ST_DEV_BUSY) return " (another client has it attached)";
  if (e.status === OpStatus.ST_NODEV) return ` ("usbipgw list" shows the server's bus ids)`;
  return "";
}

/** Reports an error on stderr and returns its exit code. */
function fail(io: CommandIo, e: unknown): number {
  if (e instanceof UsageError) throw e;
  const text = e instanceof Error ? e.message : String(e);
  io.err(`usbipgw: ${text}${e instanceof ImportRefusedError ? refusalHint(e) : ""}\n`);
  return exitCodeFor(e);
}

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
    const { hostname, port } = parseHostPort(remote!, USBIP_PORT);
    if (port === 0) throw new TypeError(`Invalid address "${remote}": the port must be 1..65535`);
    return { transport: "tcp", host: hostname, port };
  } catch (e) {
    if (e instanceof TypeError) throw new UsageError(e.message);
    throw e;
  }
}

/** `usbipgw attach`: returns the exit code. */
export async function attachCommand(args: string[], io: CommandIo): Promise<number> {
  const a = parseArgs(args, {
    string: ["remote", "unix", "busid", "keepalive", "sysfs", "state-dir"],
    boolean: ["persist", "help"],
    alias: { r: "remote", b: "busid", h: "help" },
    unknown: unknownOption("attach", [
      "-r",
      "--remote",
      "--unix",
      "-b",
      "--busid",
      "--persist",
      "--keepalive",
      "--sysfs",
      "--state-dir",
      "--help",
    ]),
  });
  if (a.help) {
    await io.out(ATTACH_HELP);
    return 0;
  }
  if (a._.length > 0) throw new UsageError(`Unexpected argument "${a._[0]}" for "attach"`);
  const remote = parseRemote(single("remote", a.remote), single("unix", a.unix));
  const busid = single("busid", a.busid);
  if (busid === undefined) throw new UsageError(`"attach" needs -b BUSID`);
  if (new TextEncoder().encode(busid).length > 31 || /\s/.test(busid)) {
    throw new UsageError(`Invalid bus id "${busid}": at most 31 bytes, no spaces`);
  }
  const keepaliveText = single("keepalive", a.keepalive);
  let deadPeerTimeoutS = DEFAULT_DEAD_PEER_TIMEOUT_S;
  if (keepaliveText !== undefined) {
    if (!/^\d+$/.test(keepaliveText) || Number(keepaliveText) > 86400) {
      throw new UsageError(
        `Invalid --keepalive ${keepaliveText}: expected whole seconds, 0 (kernel defaults) to 86400`,
      );
    }
    deadPeerTimeoutS = Number(keepaliveText);
  }
  const sysfsRoot = single("sysfs", a.sysfs) ?? "/sys";
  const stateDir = single("state-dir", a["state-dir"]) ?? VHCI_STATE_DIR;
  const options: AttachOptions = { remote, busid, sysfsRoot, stateDir, deadPeerTimeoutS };

  if (!a.persist) {
    try {
      const r = await attachDevice(options);
      if (r.recordError) io.err(`usbipgw: warning: ${r.recordError}\n`);
      await io.out(`${r.port}\n`);
      return AttachExit.OK;
    } catch (e) {
      return fail(io, e);
    }
  }
  return await persist(options, io);
}

async function persist(options: AttachOptions, io: CommandIo): Promise<number> {
  const controller = new AbortController();
  const signals = ["SIGINT", "SIGTERM"] as const;
  const handlers = signals.map((s) =>
    [s, () => {
      log.info("Stopping on {signal}", { signal: s });
      controller.abort();
    }] as const
  );
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  const where = `${formatRemote(options.remote)}/${options.busid}`;
  log.info("Keeping {where} attached until SIGINT or SIGTERM", { where });
  try {
    const outcome = await runPersistent({
      signal: controller.signal,
      attach: (signal) => attachDevice({ ...options, signal }),
      readPorts: () => readVhciPorts(options.sysfsRoot),
      detach: async (port) => {
        await detachPort(port, {
          ...(options.sysfsRoot !== undefined ? { sysfsRoot: options.sysfsRoot } : {}),
          stateDir: options.stateDir ?? VHCI_STATE_DIR,
        });
      },
      removeRecord: (port) => removePortRecord(options.stateDir ?? VHCI_STATE_DIR, port),
      isFatal: fatalForPersist,
      onAttached: async (r) => {
        log.info("Attached {busid} from {remote} on vhci port {port} ({hub}, {speed}, {id})", {
          ...describeAttach(r),
        });
        if (r.recordError) log.warn("{error}", { error: r.recordError });
        await io.out(`${r.port}\n`);
      },
    });
    log.info("Stopped after {attaches} attach(es) and {drops} drop(s)", { ...outcome });
    return AttachExit.OK;
  } catch (e) {
    return fail(io, e);
  } finally {
    for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
  }
}

function parsePort(text: string | undefined): number {
  if (text === undefined) throw new UsageError(`"detach" needs -p PORT`);
  if (!/^\d{1,5}$/.test(text)) throw new UsageError(`Invalid port "${text}": expected a number`);
  return Number(text);
}

/** `usbipgw detach`: returns the exit code. */
export async function detachCommand(args: string[], io: CommandIo): Promise<number> {
  const a = parseArgs(args, {
    string: ["port", "sysfs", "state-dir"],
    boolean: ["help"],
    alias: { p: "port", h: "help" },
    unknown: unknownOption("detach", ["-p", "--port", "--sysfs", "--state-dir", "--help"]),
  });
  if (a.help) {
    await io.out(DETACH_HELP);
    return 0;
  }
  if (a._.length > 0) throw new UsageError(`Unexpected argument "${a._[0]}" for "detach"`);
  const port = parsePort(single("port", a.port));
  try {
    const { freed } = await detachPort(port, {
      sysfsRoot: single("sysfs", a.sysfs) ?? "/sys",
      stateDir: single("state-dir", a["state-dir"]) ?? VHCI_STATE_DIR,
    });
    if (!freed) {
      io.err(`usbipgw: port ${port}: detach requested, the port is not free yet after 5 s\n`);
    }
    return AttachExit.OK;
  } catch (e) {
    return fail(io, e);
  }
}

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

/** `usbipgw port`: returns the exit code. */
export async function portCommand(args: string[], io: CommandIo): Promise<number> {
  const a = parseArgs(args, {
    string: ["sysfs", "state-dir"],
    boolean: ["json", "help"],
    alias: { h: "help" },
    unknown: unknownOption("port", ["--json", "--sysfs", "--state-dir", "--help"]),
  });
  if (a.help) {
    await io.out(PORT_HELP);
    return 0;
  }
  if (a._.length > 0) throw new UsageError(`Unexpected argument "${a._[0]}" for "port"`);
  try {
    const ports = await listAttached({
      sysfsRoot: single("sysfs", a.sysfs) ?? "/sys",
      stateDir: single("state-dir", a["state-dir"]) ?? VHCI_STATE_DIR,
    });
    await io.out(a.json ? formatPortJson(ports) : formatPortTable(ports));
    return AttachExit.OK;
  } catch (e) {
    return fail(io, e);
  }
}
