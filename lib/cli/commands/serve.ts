/**
 * `usbipgw serve`: serves devices over TCP and unix sockets until SIGINT or SIGTERM; SIGHUP
 * reloads. Also the one place that merges the configuration file, the flags and the defaults
 * ({@linkcode gatewayInput}), which `config check` and `policy` use as well.
 *
 * @module
 */

import { errorMessage } from "../../util/error_message.ts";
import { getLogger } from "../../logtape.ts";
import { USBIP_PORT } from "../../protocol/constants.ts";
import { adoptListeners, parseListenFds } from "../../systemd/socket_activation.ts";
import { ServiceNotifications } from "../../systemd/service.ts";
import { formatStatusLine, statusCounts } from "../../systemd/status.ts";
import { deviceTypesHelp } from "../../devices/registry.ts";
import type { Command, CommandIo, Flag, ParsedFlags } from "../command.ts";
import {
  type ConfigInput,
  type GatewayConfig,
  type Origin,
  readConfigFile,
  validateConfig,
} from "../config.ts";
import { ExitCode } from "../exit_codes.ts";
import { onStopSignals } from "../stop_signals.ts";
import { type Gateway, startGateway } from "../gateway.ts";
import { LIMIT_KEYS, type LimitKey } from "../limits.ts";
import { setUpLogging } from "../log_setup.ts";
import { logFinal } from "../logging.ts";
import { readSpecFlag } from "../spec_flag.ts";
import { defaultUnixPath } from "./_defaults.ts";

/** `--config FILE`. */
export const CONFIG_FLAG: Flag = {
  name: "config",
  value: "FILE",
  help: "read listeners, devices and rules from a TOML file",
  complete: "file",
};

/** `--rule RULE`. */
export const RULE_FLAG: Flag = {
  name: "rule",
  value: "RULE",
  repeat: true,
  help: "an access rule, ACTION[:key=value,...]; repeatable, after the config's",
};

const SERVE_FLAGS: readonly Flag[] = [
  {
    name: "tcp",
    value: "HOST:PORT",
    repeat: true,
    help: "listen on TCP (IPv6 as [ADDR]:PORT); repeatable",
  },
  {
    name: "unix",
    value: "PATH",
    repeat: true,
    help: "listen on a unix socket; repeatable",
    complete: "file",
  },
  {
    name: "tls",
    value: "HOST:PORT",
    repeat: true,
    help: "listen for USB/IP over TLS; clients must show a certificate; repeatable",
  },
  {
    name: "tls-cert",
    value: "FILE",
    help: "the TLS listeners' certificate (PEM)",
    complete: "file",
  },
  { name: "tls-key", value: "FILE", help: "its private key (PEM)", complete: "file" },
  {
    name: "tls-ca",
    value: "FILE",
    help: "the CAs of the clients' certificates, or pinned self-signed ones (PEM)",
    complete: "file",
  },
  {
    name: "tls-min-version",
    value: "VERSION",
    help: "the lowest TLS version: 1.2 (default) or 1.3",
    complete: ["1.2", "1.3"],
  },
  { name: "unix-mode", value: "MODE", help: "file mode of the unix sockets (octal, default 0600)" },
  { name: "unix-owner", value: "USER", help: "owner of the unix sockets (name or uid)" },
  { name: "unix-group", value: "GROUP", help: "group of the unix sockets (name or gid)" },
  {
    name: "device",
    value: "SPEC",
    repeat: true,
    help: "a device to serve, TYPE[:key=value,...]; repeatable",
  },
  CONFIG_FLAG,
  RULE_FLAG,
  {
    name: "seat-dir",
    value: "PATH",
    help: "where logind publishes seat state (default /run/systemd/seats)",
    complete: "dir",
  },
  { name: "console-uid", value: "UID", help: "the console user when logind is absent" },
  {
    name: "metrics",
    value: "HOST:PORT",
    help: "serve Prometheus metrics over HTTP at /metrics (a port alone: 127.0.0.1)",
  },
  ...Object.values(LIMIT_KEYS).map((l): Flag => ({
    name: l.flag,
    value: l.unit === "bytes" ? "BYTES" : "N",
    help: l.help,
  })),
  {
    name: "capture",
    value: "FILE",
    help: `write every device's traffic to FILE as pcapng for Wireshark (mode 0600); a
device alone: its capture=FILE key`,
    complete: "file",
  },
  {
    name: "capture-snaplen",
    value: "BYTES",
    help: "keep at most BYTES of each transfer's data in capture files (default: all)",
  },
  {
    name: "capture-max-size",
    value: "BYTES",
    help: "rotate a capture file to FILE.1 at this size (default 1GiB; or unlimited)",
  },
  {
    name: "log-level",
    value: "LEVEL",
    help: "trace, debug, info (default), warning, error or fatal",
    complete: ["trace", "debug", "info", "warning", "error", "fatal"],
  },
  {
    name: "log-format",
    value: "FMT",
    help: `auto (default: journal under systemd, else text), text, journal
(<N> syslog priority prefixes) or json (JSON lines)`,
    complete: ["auto", "text", "journal", "json"],
  },
];

/** The `--tls-*` flags and the `[[tls]]` key each one sets. */
const TLS_FLAG_KEYS = [
  ["tls-cert", "cert"],
  ["tls-key", "key"],
  ["tls-ca", "ca"],
  ["tls-min-version", "min_version"],
] as const;

/** Options of {@linkcode gatewayInput}. */
export interface GatewayInputOptions {
  /** The `--device` specs; `policy check` gives its own. Default: the `--device` flags. */
  devices?: readonly string[];
  /** The configuration file; default: `--config`. */
  file?: string;
  /** Receives a note for the user (no default unix socket); `serve` prints it. */
  note?: (text: string) => void;
}

const flagOrigin = (flag: string, text: string): Origin => ({
  kind: "flag",
  flag: `--${flag}`,
  text,
});

/** The demo set: Gadget Zero on 1-1 and a keyboard on 1-2, with a rule for loopback TCP peers. */
function addDemoSet(input: ConfigInput): void {
  const origin: Origin = { kind: "builtin", what: "the demo set" };
  const table = (fields: Record<string, string>) => ({ fields, origin, keyOrigins: {} });
  input.devices = [
    table({ type: "gadget-zero", busid: "1-1" }),
    table({ type: "keyboard", busid: "1-2" }),
  ];
  input.rules.push({
    fields: { action: "allow", transport: "tcp", source: "127.0.0.0/8|::1", busid: "1-1|1-2" },
    origin: { kind: "builtin", what: "built-in rule of the demo set" },
    keyOrigins: {},
  });
  input.demo = true;
}

/**
 * The configuration as `serve` would run it, before it is checked: `--config FILE` (if the
 * command has that flag and it is given), then the flags, then the defaults: the demo set when
 * nothing names a device, and 127.0.0.1:3240 plus the default unix socket when nothing names a
 * listener. Listener flags replace the configured listeners; `--device` and `--rule` add.
 * Flags a command does not declare are simply absent.
 */
export async function gatewayInput(
  flags: ParsedFlags,
  io: CommandIo,
  options: GatewayInputOptions = {},
): Promise<ConfigInput> {
  const devices = options.devices ?? flags.many("device");
  const file = options.file ?? flags.one("config");
  const input: ConfigInput = file !== undefined
    ? await readConfigFile(file)
    : { tcp: [], unix: [], tls: [], devices: [], rules: [], limits: {}, attach: {} };
  for (const [key, { flag }] of Object.entries(LIMIT_KEYS)) {
    const value = flags.one(flag);
    if (value !== undefined) {
      input.limits[key as LimitKey] = { value, origin: flagOrigin(flag, value) };
    }
  }
  for (const text of devices) {
    input.devices.push(readSpecFlag("--device", text, "type"));
  }
  for (const text of flags.many("rule")) input.rules.push(readSpecFlag("--rule", text, "action"));
  if (input.devices.length === 0) addDemoSet(input);
  const settings = [
    ["log-level", "logLevel"],
    ["log-format", "logFormat"],
    ["seat-dir", "seatDir"],
    ["console-uid", "consoleUid"],
    ["metrics", "metrics"],
    ["capture", "capture"],
    ["capture-snaplen", "captureSnaplen"],
    ["capture-max-size", "captureMaxSize"],
  ] as const;
  for (const [flag, field] of settings) {
    const value = flags.one(flag);
    if (value !== undefined) input[field] = { value, origin: flagOrigin(flag, value) };
  }
  const tcp = flags.many("tcp");
  const unix = flags.many("unix");
  const tls = flags.many("tls");
  if (tcp.length > 0 || unix.length > 0 || tls.length > 0) {
    input.tcp = tcp.map((value) => ({ value, origin: flagOrigin("tcp", value) }));
    input.tls = tls.map((listen) => {
      // One table per address; the certificate flags apply to each, named as they were given.
      const fields: Record<string, string> = { listen };
      const keyOrigins: Record<string, Origin> = {};
      for (const [flag, key] of TLS_FLAG_KEYS) {
        const value = flags.one(flag);
        if (value === undefined) continue;
        fields[key] = value;
        keyOrigins[key] = flagOrigin(flag, value);
      }
      return { fields, origin: flagOrigin("tls", listen), keyOrigins };
    });
    input.unix = unix.map((path) => ({
      fields: { path },
      origin: flagOrigin("unix", path),
      keyOrigins: {},
    }));
  } else if (input.tcp.length === 0 && input.unix.length === 0 && input.tls.length === 0) {
    const origin: Origin = { kind: "builtin", what: "the default listeners" };
    input.tcp = [{ value: `127.0.0.1:${USBIP_PORT}`, origin }];
    const path = defaultUnixPath(io);
    if (path !== undefined) {
      input.unix = [{ fields: { path }, origin, keyOrigins: {} }];
    } else {
      options.note?.(
        "no unix socket by default: XDG_RUNTIME_DIR is not set and this is not root (use --unix PATH)",
      );
    }
  }
  for (
    const [flag, key] of [["unix-mode", "mode"], ["unix-owner", "owner"], [
      "unix-group",
      "group",
    ]] as const
  ) {
    const value = flags.one(flag);
    if (value === undefined) continue;
    input.unix = input.unix.map((u) => ({
      ...u,
      fields: { ...u.fields, [key]: value },
      keyOrigins: { ...u.keyOrigins, [key]: flagOrigin(flag, value) },
    }));
  }
  return input;
}

/** The checked configuration `serve` runs with; called again at SIGHUP. */
export async function gatewayConfig(flags: ParsedFlags, io: CommandIo): Promise<GatewayConfig> {
  return await validateConfig(
    await gatewayInput(flags, io, { note: (text) => io.err(`usbipgw: ${text}\n`) }),
  );
}

/** Reloads the configuration at SIGHUP; a bad one is logged and the running one kept. */
async function reloadGateway(gateway: Gateway, flags: ParsedFlags, io: CommandIo): Promise<void> {
  const log = getLogger(["usbipgw", "cli"]);
  log.info("SIGHUP: reloading the configuration");
  try {
    const s = await gateway.reload(await gatewayConfig(flags, io));
    log.info(
      "Reloaded: {added} added, {removed} removed, {unchanged} unchanged; rules {rules}",
      {
        added: s.added.length,
        removed: s.removed.length,
        unchanged: s.unchanged.length,
        rules: s.rulesChanged ? "replaced" : "unchanged",
        addedSpecs: s.added,
        removedSpecs: s.removed,
      },
    );
    for (const f of s.failed) {
      log.error("Reload: could not apply {failed}", { failed: f });
    }
    if (s.needsRestart.length > 0) {
      log.warn("Reload: {settings} changed; they take effect at a restart", {
        settings: s.needsRestart.join(", "),
      });
    }
  } catch (e) {
    log.error("Reload failed, the running configuration stays: {error}", {
      error: errorMessage(e),
    });
  }
}

async function run(flags: ParsedFlags, io: CommandIo): Promise<number> {
  flags.noMorePositional();
  const config = await gatewayConfig(flags, io);
  setUpLogging(io, config.logLevel, config.logFormat);
  // systemd socket activation: adopt the sockets, then unset LISTEN_* as sd_listen_fds(1) does.
  const inherited = parseListenFds({
    LISTEN_PID: io.env("LISTEN_PID"),
    LISTEN_FDS: io.env("LISTEN_FDS"),
    LISTEN_FDNAMES: io.env("LISTEN_FDNAMES"),
  }, Deno.pid);
  for (const name of ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]) Deno.env.delete(name);
  // SIGINT and SIGTERM are handled from here on: one that comes while the gateway starts (it
  // logs "serving" before this function resumes) stops it once it has started.
  const stopped = Promise.withResolvers<string>();
  const unlisten = onStopSignals((s) => stopped.resolve(s));
  let gateway: Gateway;
  try {
    gateway = await startGateway(config, { activated: await adoptListeners(inherited) });
  } catch (e) {
    unlisten();
    throw e;
  }
  // Set once READY=1 is out; the SIGHUP handler may run before that.
  // deno-lint-ignore prefer-const
  let systemd: ServiceNotifications | undefined;
  const onHangup = async () => {
    await systemd?.reloading();
    await reloadGateway(gateway, flags, io);
    await systemd?.ready();
  };
  Deno.addSignalListener("SIGHUP", onHangup);
  // READY=1 only once the signals are handled: systemd may send SIGHUP or SIGTERM right after.
  systemd = await ServiceNotifications.start({
    notifySocket: io.env("NOTIFY_SOCKET"),
    watchdogUsec: io.env("WATCHDOG_USEC"),
    watchdogPid: io.env("WATCHDOG_PID"),
    pid: Deno.pid,
    status: () => formatStatusLine(statusCounts(gateway.server, gateway.listeners)),
  });
  const signal = await stopped.promise;
  unlisten();
  Deno.removeSignalListener("SIGHUP", onHangup);
  await systemd?.stopping(signal);
  const timeout = setTimeout(() => Deno.exit(0), 5000);
  await gateway.close();
  clearTimeout(timeout);
  logFinal(`stopped on ${signal}`, { properties: { signal }, write: io.err });
  return ExitCode.OK;
}

/** `usbipgw serve`. */
export const serveCommand: Command = {
  name: "serve",
  summary: "serve devices over TCP and unix sockets",
  usage: ["serve [--tcp HOST:PORT]... [--unix PATH]... [--device SPEC]... [--config FILE]"],
  description: `Serves USB devices to USB/IP clients (Linux "usbip attach", usbip-win2).

Without --device or a config file that names devices, serves the demo set: gadget-zero on 1-1
and keyboard on 1-2. Without --tcp, --unix or configured listeners, listens on
127.0.0.1:3240 and on $XDG_RUNTIME_DIR/usbipgw.sock (/run/usbipgw.sock as root). Listener
flags replace all default and configured listeners; --device flags add to configured devices.
A bare port (--tcp 3240) listens on 127.0.0.1. Relative paths in a config file are relative
to the file's folder. Every device accepts busid=BUS-PORT; otherwise bus ids are assigned in
order: 1-1, 1-2, ...; a bus id once used is not given to another device until a restart.`,
  flags: SERVE_FLAGS,
  epilogue: `${deviceTypesHelp()}
Examples:
  usbipgw serve --tcp 0.0.0.0:3240 --device gadget-zero:pattern=1 --rule allow:source=10.0.0.0/8
  usbipgw serve --device keyboard:busid=1-2,text=hello
  usbipgw serve --device host:busid=2-1 --device host:vid=46f4,pid=0001

A host device (type "host") is named by its host bus id (busid=2-1, as "usbipgw host" shows)
and then exported under that same bus id, as usbipd does, or by vid/pid[/serial] and then
exported under the bus id it has on the host; export_busid=BUS-PORT overrides. It is exported
while it is plugged in, and again under the same bus id after a re-plug; devices imported
through this machine's own vhci_hcd are never exported.

--capture FILE writes every device's USB traffic to FILE as pcapng (Linux usbmon records,
link type 220: "tshark -r FILE" or Wireshark decode it, mass storage and HID included); a
device's own capture=FILE key (--device gadget-zero:capture=gz.pcapng, or capture in its
[[device]] table) captures that device alone. At --capture-max-size (default 1GiB) FILE is
moved to FILE.1 and a new FILE begins; a write error stops the capture, never the serving.
"usbipgw capture" streams the same live.

--metrics HOST:PORT (or metrics = "HOST:PORT" in the config file) serves the gateway's
counters in the Prometheus text format at http://HOST:PORT/metrics: connections, sessions,
imports and refusals, URBs, bytes and latency per device, policy decisions, attach requests
and the process. Off by default. It has no authentication: a port alone binds 127.0.0.1,
and any other address is logged as a warning.

SIGHUP reloads --config (and the flags, which stay as given): added devices appear, removed
ones are detached and their sessions closed, changed rules apply to the next import, and
unchanged devices and their sessions are untouched. Listeners, limits and the seat settings
take effect at a restart. An invalid configuration is logged and the running one is kept.

Under systemd (Type=notify), it reports READY=1, a STATUS= line, RELOADING=1, STOPPING=1 and
WATCHDOG=1 pings to $NOTIFY_SOCKET; sockets passed by socket activation ($LISTEN_FDS) replace
the configured listeners. "usbipgw install-service" installs the units.`,
  run,
};
