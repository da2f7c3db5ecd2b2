/**
 * The usbipgw command line: `serve`, `list`, `host`, `policy`, `version`, `help`. The only module that reads
 * `Deno.args` and `Deno.env`, configures logging and exits.
 *
 * @module
 */

import { type Args, parseArgs } from "@std/cli/parse-args";
import { getLogger, type LogLevel } from "@logtape/logtape";
import denoJson from "./deno.json" with { type: "json" };
import { requestDeviceList, requestStatus } from "./lib/client/usbip_client.ts";
import { asServerStatus, formatStatus } from "./lib/cli/status.ts";
import { loadConfig, LOG_LEVELS, type ServeConfig } from "./lib/cli/config.ts";
import { type DeviceSpec, parseDeviceSpec } from "./lib/cli/device_spec.ts";
import { checkPolicy, formatRules } from "./lib/cli/policy_command.ts";
import { LIMIT_KEYS, type LimitKey, setLimit } from "./lib/cli/limits.ts";
import { parseRule, RuleError } from "./lib/policy/rules.ts";
import { DEVICE_TYPES, hostSelector } from "./lib/cli/device_types.ts";
import { listHostDevices, matchesHostDevice } from "./lib/devices/passthrough/host_devices.ts";
import {
  formatHostJson,
  formatHostTable,
  hostDeviceRow,
} from "./lib/devices/passthrough/host_table.ts";
import { formatDeviceJson, formatDeviceTable } from "./lib/cli/list.ts";
import { type Gateway, startGateway } from "./lib/cli/serve.ts";
import { UsageError } from "./lib/cli/usage_error.ts";
import {
  ATTACH_HELP,
  attachCommand,
  DETACH_HELP,
  detachCommand,
  PORT_HELP,
  portCommand,
} from "./lib/cli/attach_command.ts";
import {
  configureLogging,
  isLogFormat,
  LOG_FORMATS,
  resolveLogFormat,
  stderrIdentity,
} from "./lib/cli/logging.ts";
import { INSTALL_SERVICE_HELP, installServiceCommand } from "./lib/cli/install_service.ts";
import { adoptListeners, parseListenFds } from "./lib/systemd/socket_activation.ts";
import { ServiceNotifications } from "./lib/systemd/service.ts";
import { formatStatusLine, statusCounts } from "./lib/systemd/status.ts";
import { USBIP_PORT } from "./lib/protocol/constants.ts";
import { connectTcp, connectUnix, parseHostPort } from "./lib/transport/mod.ts";

const VERSION: string = denoJson.version;

const HELP: Record<string, string> = {
  main: `usbipgw ${VERSION}: a USB/IP gateway serving emulated and real USB devices

Usage: usbipgw COMMAND [OPTIONS]

Commands:
  serve     serve devices over TCP and unix sockets
  list      show the devices a USB/IP server exports
  host      show this host's USB devices, for host:... device specs
  policy    show the access rules, or check a decision
  status    show a running gateway's devices, sessions and counters
  config    check a configuration file without serving
  attach    attach a remote device to this machine (vhci_hcd); --persist re-attaches
  detach    detach a device from a vhci_hcd port
  port      show the devices attached through vhci_hcd
  install-service
            install (or --uninstall) the systemd service and socket units
  version   print the version
  help      show help for a command

Run "usbipgw help COMMAND" or "usbipgw COMMAND --help" for a command's options.
`,
  serve:
    `Usage: usbipgw serve [--tcp HOST:PORT]... [--unix PATH]... [--device SPEC]... [--config FILE]

Serves USB devices to USB/IP clients (Linux "usbip attach", usbip-win2).

Options:
  --tcp HOST:PORT    listen on TCP (IPv6 as [ADDR]:PORT); repeatable
  --unix PATH        listen on a unix socket; repeatable
  --unix-mode MODE   file mode of the unix sockets (octal, default 0600)
  --unix-owner USER  owner of the unix sockets (name or uid)
  --unix-group GROUP group of the unix sockets (name or gid)
  --device SPEC      a device to serve, TYPE[:key=value,...]; repeatable
  --config FILE      read listeners, devices and rules from a TOML file
  --rule RULE        an access rule, ACTION[:key=value,...]; repeatable, after the config's
  --seat-dir PATH    where logind publishes seat state (default /run/systemd/seats)
  --console-uid UID  the console user when logind is absent
  --max-connections N, --max-connections-per-peer N, --op-timeout-ms N,
  --max-pending-urbs N, --max-buffered BYTES, --max-transfer-length BYTES
                     limits (defaults 256, 32, 10000, 1024, 64MiB, 16MiB; or "unlimited");
                     exceeding one closes that connection alone
  --log-level LEVEL  trace, debug, info (default), warning, error or fatal
  --log-format FMT   auto (default: journal under systemd, else text), text, journal
                     (<N> syslog priority prefixes) or json (JSON lines)
  -h, --help         show this help

Without --device or a config file that names devices, serves the demo set: gadget-zero on 1-1
and keyboard on 1-2. Without --tcp, --unix or configured listeners, listens on
127.0.0.1:3240 and on $XDG_RUNTIME_DIR/usbipgw.sock (/run/usbipgw.sock as root). Listener
flags replace all default and configured listeners; --device flags add to configured devices.
Every device accepts busid=BUS-PORT; otherwise bus ids are assigned in order: 1-1, 1-2, ...

Device types:
${
      [...DEVICE_TYPES.values()].map((t) =>
        `  ${t.name.padEnd(12)} ${t.summary}\n${
          Object.entries(t.keys).map(([k, v]) => `    ${k.padEnd(10)} ${v}`).join("\n")
        }`
      ).join("\n")
    }

Examples:
  usbipgw serve --tcp 0.0.0.0:3240 --device gadget-zero:pattern=1 --rule allow:source=10.0.0.0/8
  usbipgw serve --device keyboard:busid=1-2,text=hello
  usbipgw serve --device host:busid=2-1 --device host:vid=46f4,pid=0001

A host device (type "host") is named by its host bus id (busid=2-1, as "usbipgw host" shows)
and then exported under that same bus id, as usbipd does, or by vid/pid[/serial] and then
exported under the bus id it has on the host; export_busid=BUS-PORT overrides. It is exported
while it is plugged in, and again under the same bus id after a re-plug; devices imported
through this machine's own vhci_hcd are never exported.

SIGHUP reloads --config (and the flags, which stay as given): added devices appear, removed
ones are detached and their sessions closed, changed rules apply to the next import, and
unchanged devices and their sessions are untouched. Listeners, limits and the seat settings
take effect at a restart. An invalid configuration is logged and the running one is kept.

Under systemd (Type=notify), it reports READY=1, a STATUS= line, RELOADING=1, STOPPING=1 and
WATCHDOG=1 pings to $NOTIFY_SOCKET; sockets passed by socket activation ($LISTEN_FDS) replace
the configured listeners. "usbipgw install-service" installs the units.
`,
  host: `Usage: usbipgw host [--json] [--config FILE] [--device SPEC]... [--sysfs PATH]

Lists the USB devices of this host from sysfs (not root hubs, not interfaces): bus id,
VID:PID, speed, class, drivers, whether the device is exported, and its strings. EXPORTED is
"usbip-host" when the kernel's usbip-host holds it, "usbfs" when a program (usbipgw while a
client has imported it) holds its interfaces, "configured" when a host device of --config or
--device names it.

Options:
  --json           print JSON instead of a table
  --config FILE    mark the devices this configuration exports
  --device SPEC    mark the devices this host:... spec names; repeatable
  --sysfs PATH     read this sysfs mount instead of /sys
  -h, --help       show this help
`,
  list: `Usage: usbipgw list (-r|--remote) HOST[:PORT] [--json]
       usbipgw list --unix PATH [--json]

Shows the devices a USB/IP server exports, like "usbip list -r".

Options:
  -r, --remote HOST[:PORT]  the server (port ${USBIP_PORT} by default)
  --unix PATH               the server's unix socket
  --json                    print JSON instead of a table
  -h, --help                show this help
`,
  policy: `Usage: usbipgw policy show [--config FILE] [--rule RULE]...
       usbipgw policy check --peer PEER --device DEVICE [--config FILE] [--rule RULE]...

"show" prints the effective rules, numbered, then the built-in defaults. "check" prints the
decision for one peer and one device and the rule (or default) behind it.

  --peer PEER      tcp:ADDRESS[:PORT], unix:UID[:GID], or console
  --device DEVICE  a bus id of the configured (or demo) devices, or a device spec
  --config FILE    the configuration whose rules and devices to use
  --rule RULE      an extra rule, ACTION[:key=value,...]; repeatable
  -h, --help       show this help
`,
  status: `Usage: usbipgw status [--unix PATH] [--json]

Asks a running gateway, over its unix socket, for its listeners, devices (and who holds
them), sessions (peer, device, URBs, bytes in and out, errors), peers and totals since start.
Root, the console user and the gateway's own user may read it.

Options:
  --unix PATH  the gateway's socket (default $XDG_RUNTIME_DIR/usbipgw.sock, or
               /run/usbipgw.sock as root)
  --json       print the status as JSON
  -h, --help   show this help
`,
  config: `Usage: usbipgw config check FILE

Reads FILE as "serve --config" would (listeners, devices, rules, limits, logging) and reports
the first error with its file, line and key (exit 1), or a summary (exit 0). Nothing is
opened or served.
`,
  attach: ATTACH_HELP,
  detach: DETACH_HELP,
  port: PORT_HELP,
  "install-service": INSTALL_SERVICE_HELP,
  version: `Usage: usbipgw version\n\nPrints the version.\n`,
  help: `Usage: usbipgw help [COMMAND]\n\nShows help for a command.\n`,
};

const encoder = new TextEncoder();

function checkUnknown(command: string, known: string[]): (arg: string) => boolean {
  return (arg: string) => {
    if (arg.startsWith("-")) {
      throw new UsageError(
        `Unknown option ${arg} for "${command}"; valid options: ${known.join(", ")}`,
      );
    }
    return true;
  };
}

function defaultUnixPath(): string | undefined {
  if (Deno.uid() === 0) return "/run/usbipgw.sock";
  const runtime = Deno.env.get("XDG_RUNTIME_DIR");
  return runtime ? `${runtime}/usbipgw.sock` : undefined;
}

function one(flag: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (Array.isArray(value)) throw new UsageError(`--${flag} may be given once`);
  if (typeof value !== "string" || value === "") throw new UsageError(`--${flag} needs a value`);
  return value;
}

function many(flag: string, value: unknown): string[] {
  const list = value === undefined ? [] : Array.isArray(value) ? value : [value];
  for (const v of list) {
    if (typeof v !== "string" || v === "") throw new UsageError(`--${flag} needs a value`);
  }
  return list as string[];
}

/** Parses `--rule ACTION[:key=value,...]`. */
function parseRuleFlag(text: string) {
  const spec: DeviceSpec = parseDeviceSpec(text);
  try {
    return parseRule({ action: spec.type, ...spec.options }, `--rule ${text}`);
  } catch (e) {
    if (e instanceof RuleError) throw new UsageError(`Invalid --rule ${text}: ${e.message}`);
    throw e;
  }
}

/**
 * The configuration from `--config`, then the `--device` and `--rule` flags; without any
 * device, the demo set (Gadget Zero on 1-1, a keyboard on 1-2) with a rule that lets loopback
 * TCP peers use it.
 */
async function loadInputs(a: Args): Promise<ServeConfig> {
  const configFile = one("config", a.config);
  const config: ServeConfig = configFile
    ? await loadConfig(configFile)
    : { tcp: [], unix: [], devices: [], rules: [], limits: { session: {} } };
  for (const [key, { flag }] of Object.entries(LIMIT_KEYS)) {
    const value = one(flag, a[flag]);
    if (value === undefined) continue;
    const problem = setLimit(config.limits, key as LimitKey, value);
    if (problem !== undefined) throw new UsageError(`Invalid --${flag} ${value}: ${problem}`);
  }
  config.devices.push(...many("device", a.device).map(parseDeviceSpec));
  config.rules.push(...many("rule", a.rule).map(parseRuleFlag));
  if (config.devices.length === 0) {
    config.devices = [
      parseDeviceSpec("gadget-zero:busid=1-1"),
      parseDeviceSpec("keyboard:busid=1-2"),
    ];
    config.rules.push(parseRule(
      { action: "allow", transport: "tcp", source: "127.0.0.0/8|::1", busid: "1-1|1-2" },
      "built-in rule of the demo set",
    ));
  }
  return config;
}

async function policy(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const a = parseArgs(rest, {
    string: ["config", "rule", "peer", "device"],
    boolean: ["help"],
    collect: ["rule"],
    alias: { h: "help" },
    unknown: checkUnknown("policy", ["--config", "--rule", "--peer", "--device", "--help"]),
  });
  if (a.help || sub === "--help" || sub === "-h") {
    await write(HELP.policy!);
    return 0;
  }
  if (a._.length > 0) throw new UsageError(`Unexpected argument "${a._[0]}" for "policy ${sub}"`);
  // Here --device names the device to check, not one more device to serve.
  const config = await loadInputs({ ...a, device: undefined });
  if (sub === "show") {
    await write(formatRules(config.rules));
    return 0;
  }
  if (sub === "check") {
    const peer = one("peer", a.peer);
    const device = one("device", a.device);
    if (peer === undefined || device === undefined) {
      throw new UsageError(`"policy check" needs --peer and --device`);
    }
    await write(await checkPolicy(config.rules, config.devices, peer, parseDeviceSpec(device)));
    return 0;
  }
  throw new UsageError(`"policy" needs a subcommand: show or check`);
}

/**
 * The configuration `serve` runs with: `--config` and the device and rule flags
 * ({@linkcode loadInputs}), then the seat and listener flags. Called again at SIGHUP.
 */
async function serveConfig(a: Args): Promise<ServeConfig> {
  const config = await loadInputs(a);
  const seatDir = one("seat-dir", a["seat-dir"]);
  if (seatDir !== undefined) config.seatDir = seatDir;
  const consoleUid = one("console-uid", a["console-uid"]);
  if (consoleUid !== undefined) {
    if (!/^\d+$/.test(consoleUid)) {
      throw new UsageError(`Invalid --console-uid ${consoleUid}: expected a number`);
    }
    config.consoleUid = Number(consoleUid);
  }
  const tcp = many("tcp", a.tcp);
  const unix = many("unix", a.unix);
  const modeText = one("unix-mode", a["unix-mode"]);
  if (modeText !== undefined && !/^0?[0-7]{3,4}$/.test(modeText)) {
    throw new UsageError(`Invalid --unix-mode ${modeText}: expected an octal mode such as 0660`);
  }
  const owner = one("unix-owner", a["unix-owner"]);
  const group = one("unix-group", a["unix-group"]);
  if (tcp.length > 0 || unix.length > 0) {
    config.tcp = tcp;
    config.unix = unix.map((path) => ({ path }));
  } else if (config.tcp.length === 0 && config.unix.length === 0) {
    config.tcp = [`127.0.0.1:${USBIP_PORT}`];
    const path = defaultUnixPath();
    if (path) {
      config.unix = [{ path }];
    } else {
      Deno.stderr.writeSync(encoder.encode(
        "usbipgw: no unix socket by default: XDG_RUNTIME_DIR is not set and this is not root (use --unix PATH)\n",
      ));
    }
  }
  for (const u of config.unix) {
    if (modeText !== undefined) u.mode = parseInt(modeText, 8);
    if (owner !== undefined) u.owner = owner;
    if (group !== undefined) u.group = group;
  }
  return config;
}

/** Reloads the configuration at SIGHUP; a bad one is logged and the running one kept. */
async function reloadGateway(gateway: Gateway, a: Args): Promise<void> {
  const log = getLogger(["usbipgw", "cli"]);
  log.info("SIGHUP: reloading the configuration");
  try {
    const s = await gateway.reload(await serveConfig(a));
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
      log.error("Reload: a device could not be served: {failed}", { failed: f });
    }
    if (s.needsRestart.length > 0) {
      log.warn("Reload: {settings} changed; they take effect at a restart", {
        settings: s.needsRestart.join(", "),
      });
    }
  } catch (e) {
    log.error("Reload failed, the running configuration stays: {error}", {
      error: e instanceof Error ? e.message : String(e),
    });
  }
}

async function serve(args: string[]): Promise<number> {
  const flags = [
    "--tcp",
    "--unix",
    "--unix-mode",
    "--unix-owner",
    "--unix-group",
    "--device",
    "--config",
    "--rule",
    "--seat-dir",
    "--console-uid",
    "--log-level",
    "--log-format",
    "--help",
    ...Object.values(LIMIT_KEYS).map((l) => `--${l.flag}`),
  ];
  const a = parseArgs(args, {
    string: [
      "tcp",
      "unix",
      "unix-mode",
      "unix-owner",
      "unix-group",
      "device",
      "config",
      "rule",
      "seat-dir",
      "console-uid",
      "log-level",
      "log-format",
      ...Object.values(LIMIT_KEYS).map((l) => l.flag),
    ],
    boolean: ["help"],
    collect: ["tcp", "unix", "device", "rule"],
    alias: { h: "help" },
    unknown: checkUnknown("serve", flags),
  });
  if (a.help) {
    await write(HELP.serve!);
    return 0;
  }
  if (a._.length > 0) throw new UsageError(`Unexpected argument "${a._[0]}" for "serve"`);
  const config = await serveConfig(a);
  const level = one("log-level", a["log-level"]) ?? config.logLevel ?? "info";
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new UsageError(`Invalid --log-level ${level}; valid levels: ${LOG_LEVELS.join(", ")}`);
  }
  const formatChoice = one("log-format", a["log-format"]) ?? config.logFormat ?? "auto";
  if (!isLogFormat(formatChoice)) {
    throw new UsageError(
      `Invalid --log-format ${formatChoice}; valid formats: ${LOG_FORMATS.join(", ")}`,
    );
  }
  configureLogging({
    level: level as LogLevel,
    format: resolveLogFormat(formatChoice, {
      journalStream: Deno.env.get("JOURNAL_STREAM"),
      stderr: stderrIdentity(),
    }),
    color: Deno.stderr.isTerminal() && Deno.env.get("NO_COLOR") === undefined,
  });
  // systemd socket activation: adopt the sockets, then unset LISTEN_* as sd_listen_fds(1) does.
  const inherited = parseListenFds({
    LISTEN_PID: Deno.env.get("LISTEN_PID"),
    LISTEN_FDS: Deno.env.get("LISTEN_FDS"),
    LISTEN_FDNAMES: Deno.env.get("LISTEN_FDNAMES"),
  }, Deno.pid);
  for (const name of ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]) Deno.env.delete(name);
  const gateway = await startGateway(config, { activated: await adoptListeners(inherited) });
  // Set once READY=1 is out; the SIGHUP handler may run before that.
  // deno-lint-ignore prefer-const
  let systemd: ServiceNotifications | undefined;
  const onHangup = async () => {
    await systemd?.reloading();
    await reloadGateway(gateway, a);
    await systemd?.ready();
  };
  Deno.addSignalListener("SIGHUP", onHangup);
  const stopped = Promise.withResolvers<string>();
  const signals = ["SIGINT", "SIGTERM"] as const;
  const handlers = signals.map((s) => [s, () => stopped.resolve(s)] as const);
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  // READY=1 only once the signals are handled: systemd may send SIGHUP or SIGTERM right after.
  systemd = await ServiceNotifications.start({
    notifySocket: Deno.env.get("NOTIFY_SOCKET"),
    watchdogUsec: Deno.env.get("WATCHDOG_USEC"),
    watchdogPid: Deno.env.get("WATCHDOG_PID"),
    pid: Deno.pid,
    status: () => formatStatusLine(statusCounts(gateway.server, gateway.listeners)),
  });
  const signal = await stopped.promise;
  for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
  Deno.removeSignalListener("SIGHUP", onHangup);
  await systemd?.stopping(signal);
  const timeout = setTimeout(() => Deno.exit(0), 5000);
  await gateway.close();
  clearTimeout(timeout);
  Deno.stderr.writeSync(encoder.encode(`usbipgw: stopped on ${signal}\n`));
  return 0;
}

async function list(args: string[]): Promise<number> {
  const a = parseArgs(args, {
    string: ["remote", "unix"],
    boolean: ["json", "help"],
    alias: { r: "remote", h: "help" },
    unknown: checkUnknown("list", ["-r", "--remote", "--unix", "--json", "--help"]),
  });
  if (a.help) {
    await write(HELP.list!);
    return 0;
  }
  const remote = one("remote", a.remote);
  const unix = one("unix", a.unix);
  if ((remote === undefined) === (unix === undefined)) {
    throw new UsageError(`"list" needs exactly one of -r HOST[:PORT] or --unix PATH`);
  }
  if (a._.length > 0) throw new UsageError(`Unexpected argument "${a._[0]}" for "list"`);
  let conn;
  let host: string;
  if (remote !== undefined) {
    const target = parseHostPort(remote, USBIP_PORT);
    host = remote;
    conn = await connectTcp(target.hostname, target.port);
  } else {
    host = unix!;
    conn = await connectUnix(unix!);
  }
  const devices = await requestDeviceList(conn);
  await write(a.json ? formatDeviceJson(devices) : formatDeviceTable(host, devices));
  return 0;
}

async function host(args: string[]): Promise<number> {
  const a = parseArgs(args, {
    string: ["config", "device", "sysfs"],
    boolean: ["json", "help"],
    collect: ["device"],
    alias: { h: "help" },
    unknown: checkUnknown("host", ["--json", "--config", "--device", "--sysfs", "--help"]),
  });
  if (a.help) {
    await write(HELP.host!);
    return 0;
  }
  if (a._.length > 0) throw new UsageError(`Unexpected argument "${a._[0]}" for "host"`);
  const configFile = one("config", a.config);
  const specs = [
    ...(configFile ? (await loadConfig(configFile)).devices : []),
    ...many("device", a.device).map(parseDeviceSpec),
  ].filter((s) => s.type === "host").map(hostSelector);
  const sysfsRoot = one("sysfs", a.sysfs);
  const devices = await listHostDevices(sysfsRoot !== undefined ? { sysfsRoot } : {});
  const rows = devices.map((d) => hostDeviceRow(d, specs.some((s) => matchesHostDevice(d, s))));
  await write(a.json ? formatHostJson(rows) : formatHostTable(rows));
  return 0;
}

async function status(args: string[]): Promise<number> {
  const a = parseArgs(args, {
    string: ["unix"],
    boolean: ["json", "help"],
    alias: { h: "help" },
    unknown: checkUnknown("status", ["--unix", "--json", "--help"]),
  });
  if (a.help) {
    await write(HELP.status!);
    return 0;
  }
  if (a._.length > 0) throw new UsageError(`Unexpected argument "${a._[0]}" for "status"`);
  const path = one("unix", a.unix) ?? defaultUnixPath();
  if (path === undefined) {
    throw new UsageError(`"status" needs --unix PATH: XDG_RUNTIME_DIR is not set`);
  }
  const conn = await connectUnix(path).catch((e) => {
    throw new Error(`Cannot reach a gateway at ${path}: ${(e as Error).message}`);
  });
  const report = asServerStatus(await requestStatus(conn));
  await write(a.json ? JSON.stringify(report, null, 2) + "\n" : formatStatus(report));
  return 0;
}

async function config(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h" || rest.includes("--help") || rest.includes("-h")) {
    await write(HELP.config!);
    return 0;
  }
  if (sub !== "check") throw new UsageError(`"config" needs a subcommand: check FILE`);
  if (rest.length !== 1) throw new UsageError(`"config check" needs exactly one FILE`);
  const file = rest[0]!;
  let loaded: ServeConfig;
  try {
    loaded = await loadConfig(file);
  } catch (e) {
    // An invalid file is the answer to the question, not a misuse of the command.
    Deno.stderr.writeSync(encoder.encode(`usbipgw: ${(e as Error).message}\n`));
    return 1;
  }
  const listeners = [...loaded.tcp, ...loaded.unix.map((u) => u.path)];
  await write(
    `${file}: valid: ${loaded.devices.length} device(s)${
      loaded.devices.length === 0 ? " (serve would use the demo set)" : ""
    }, ${loaded.rules.length} rule(s), listeners: ${
      listeners.length === 0 ? "the defaults" : listeners.join(", ")
    }\n`,
  );
  return 0;
}

async function write(text: string): Promise<void> {
  const bytes = encoder.encode(text);
  let off = 0;
  while (off < bytes.length) off += await Deno.stdout.write(bytes.subarray(off));
}

function writeErr(text: string): void {
  Deno.stderr.writeSync(encoder.encode(text));
}

/** Runs the CLI with `args`; returns the exit status. */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  try {
    switch (command) {
      case "serve":
        return await serve(rest);
      case "list":
        return await list(rest);
      case "host":
        return await host(rest);
      case "policy":
        return await policy(rest);
      case "status":
        return await status(rest);
      case "config":
        return await config(rest);
      case "attach":
        configureLogging({
          level: "info",
          format: resolveLogFormat("auto", {
            journalStream: Deno.env.get("JOURNAL_STREAM"),
            stderr: stderrIdentity(),
          }),
          color: Deno.stderr.isTerminal() && Deno.env.get("NO_COLOR") === undefined,
        });
        return await attachCommand(rest, { out: write, err: (t) => void writeErr(t) });
      case "detach":
        return await detachCommand(rest, { out: write, err: (t) => void writeErr(t) });
      case "port":
        return await portCommand(rest, { out: write, err: (t) => void writeErr(t) });
      case "install-service":
        return await installServiceCommand(rest, {
          out: write,
          err: (t) => void writeErr(t),
          execPath: Deno.execPath(),
        });
      case "version":
      case "--version":
        await write(`usbipgw ${VERSION} (deno ${Deno.version.deno})\n`);
        return 0;
      case "help":
      case "--help":
      case "-h":
      case undefined: {
        const topic = command === "help" ? rest[0] : undefined;
        if (topic !== undefined && !(topic in HELP)) {
          throw new UsageError(
            `Unknown command "${topic}"; commands: serve, list, host, policy, status, config, attach, detach, port, install-service, version, help`,
          );
        }
        await write(HELP[topic ?? "main"]!);
        return command === undefined ? 2 : 0;
      }
      default:
        throw new UsageError(
          `Unknown command "${command}"; commands: serve, list, host, policy, status, config, attach, detach, port, install-service, version, help`,
        );
    }
  } catch (e) {
    if (e instanceof UsageError) {
      Deno.stderr.writeSync(encoder.encode(`usbipgw: ${e.message}\n`));
      return 2;
    }
    Deno.stderr.writeSync(
      encoder.encode(`usbipgw: ${e instanceof Error ? e.message : String(e)}\n`),
    );
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
