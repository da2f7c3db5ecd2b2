/**
 * `usbipgw install-service`: installs the compiled binary, the systemd units of
 * `lib/systemd/units.ts` and a first configuration, then enables the service (or, with
 * `--socket`, its socket unit) through systemctl(1); `--uninstall` undoes it and keeps the
 * configuration. `--root DIR` installs into an image instead (like `systemctl --root`).
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse-args";
import {
  DEFAULT_UNIT_PATHS,
  defaultConfig,
  SERVICE_SOCKET,
  SERVICE_UNIT,
  serviceUnit,
  SOCKET_LINK,
  SOCKET_UNIT,
  socketUnit,
} from "../systemd/units.ts";
import { UsageError } from "./usage_error.ts";

/** Where unit files go. */
export const UNIT_DIR = "/etc/systemd/system";

/** The help of `usbipgw install-service`. */
export const INSTALL_SERVICE_HELP =
  `Usage: usbipgw install-service [--socket] [--prefix DIR] [--root DIR] [--no-enable]
       usbipgw install-service --uninstall [--prefix DIR] [--root DIR]

Installs usbipgw as a systemd service: this binary as PREFIX/bin/usbipgw, ${SERVICE_UNIT}
(and with --socket ${SOCKET_UNIT}) in ${UNIT_DIR}, and ${DEFAULT_UNIT_PATHS.config}
when there is none yet. Then reloads systemd and enables and starts the service, or with
--socket the socket unit, which starts the service at the first connection on
127.0.0.1:3240 or ${SERVICE_SOCKET} (also reached as ${SOCKET_LINK}).
Run it from the compiled binary (deno task compile); as root.

Options:
  --socket      install and enable ${SOCKET_UNIT} (socket activation)
  --prefix DIR  where the binary goes, DIR/bin/usbipgw (default /usr/local)
  --root DIR    install into the file system image at DIR; systemctl only enables there
  --no-enable   install the files without enabling or starting anything
  --uninstall   stop and disable the units, remove them and the binary; the configuration
                stays
  -h, --help    show this help
`;

/** Output channels and facts of the running program. */
export interface InstallIo {
  out(text: string): Promise<void> | void;
  err(text: string): void;
  /** `Deno.execPath()`: the compiled usbipgw binary, or `deno` under `deno run`. */
  execPath: string;
}

function parentOf(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Writes `text` to `path` (mode `mode`) through a temporary file and a rename. */
async function writeFileAtomic(path: string, data: string | Uint8Array, mode: number) {
  await Deno.mkdir(parentOf(path), { recursive: true });
  const temp = `${path}.usbipgw-new`;
  if (typeof data === "string") await Deno.writeTextFile(temp, data, { mode });
  else await Deno.writeFile(temp, data, { mode });
  await Deno.chmod(temp, mode);
  await Deno.rename(temp, path);
}

/** Runs systemctl; throws with its message when it fails. */
async function systemctl(args: string[]): Promise<string> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("systemctl", { args, stdin: "null" }).output();
  } catch (e) {
    throw new Error(
      `Cannot run systemctl ${args.join(" ")}: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  const text = new TextDecoder().decode(out.stderr).trim();
  if (!out.success) throw new Error(`Cannot run systemctl ${args.join(" ")}: ${text}`);
  return text;
}

/** Runs `usbipgw install-service ARGS`; returns the exit status. */
export async function installServiceCommand(args: string[], io: InstallIo): Promise<number> {
  const a = parseArgs(args, {
    string: ["prefix", "root"],
    boolean: ["socket", "no-enable", "uninstall", "help"],
    alias: { h: "help" },
    unknown: (arg: string) => {
      if (arg.startsWith("-")) {
        throw new UsageError(
          `Unknown option ${arg} for "install-service"; valid options: --socket, --prefix, --root, --no-enable, --uninstall, --help`,
        );
      }
      return true;
    },
  });
  if (a.help) {
    await io.out(INSTALL_SERVICE_HELP);
    return 0;
  }
  if (a._.length > 0) throw new UsageError(`Unexpected argument "${a._[0]}" for "install-service"`);
  const absolute = (flag: "prefix" | "root"): string | undefined => {
    const v: unknown = a[flag];
    if (v === undefined) return undefined;
    if (typeof v !== "string" || !v.startsWith("/")) {
      throw new UsageError(`--${flag} needs an absolute path, given once`);
    }
    return v.replace(/\/+$/, "");
  };
  const prefix = absolute("prefix") ?? "/usr/local";
  const root = absolute("root") ?? "";
  const at = (path: string) => `${root}${path}`;
  const paths = { binary: `${prefix}/bin/usbipgw`, config: DEFAULT_UNIT_PATHS.config };
  const units = [SOCKET_UNIT, SERVICE_UNIT];
  const say = (text: string) => io.out(`${text}\n`);
  const systemctlRoot = root === "" ? [] : [`--root=${root}`];

  if (a.uninstall) {
    if (a.socket || a["no-enable"]) {
      throw new UsageError(`--uninstall takes only --prefix and --root`);
    }
    const present: string[] = [];
    for (const u of units) if (await exists(at(`${UNIT_DIR}/${u}`))) present.push(u);
    if (present.length > 0) {
      const action = root === "" ? ["disable", "--now"] : ["disable"];
      await systemctl([...systemctlRoot, ...action, ...present]);
      await say(`systemctl ${[...systemctlRoot, ...action, ...present].join(" ")}`);
    }
    for (const u of present) {
      await Deno.remove(at(`${UNIT_DIR}/${u}`));
      await say(`removed ${at(`${UNIT_DIR}/${u}`)}`);
    }
    if (root === "" && present.length > 0) await systemctl(["daemon-reload"]);
    for (const path of [at(paths.binary), at(SOCKET_LINK)]) {
      const info = await Deno.lstat(path).catch(() => undefined);
      if (info === undefined) continue;
      if (path === at(SOCKET_LINK) && !info.isSymlink) continue;
      await Deno.remove(path);
      await say(`removed ${path}`);
    }
    await say(
      `kept ${at(parentOf(paths.config))}: remove it when its configuration is no longer needed`,
    );
    return 0;
  }

  // The binary: this one when it is the compiled usbipgw, else one already in place.
  const self = io.execPath;
  const compiled = !/(^|\/)deno(\.exe)?$/.test(self);
  const target = at(paths.binary);
  if (compiled) {
    const same = await Deno.realPath(target).then(
      (p) => p === Deno.realPathSync(self),
      () => false,
    );
    if (same) {
      await say(`kept ${target} (this program)`);
    } else {
      await writeFileAtomic(target, await Deno.readFile(self), 0o755);
      await say(`installed ${target}`);
    }
  } else if (await exists(target)) {
    await say(`kept ${target}`);
  } else {
    throw new Error(
      `Cannot install the service: there is no ${target}, and this program is not the compiled usbipgw but ${self}; build it with "deno task compile", then run "dist/usbipgw install-service"`,
    );
  }

  await writeFileAtomic(at(`${UNIT_DIR}/${SERVICE_UNIT}`), serviceUnit(paths), 0o644);
  await say(`wrote ${at(`${UNIT_DIR}/${SERVICE_UNIT}`)}`);
  const socketPath = at(`${UNIT_DIR}/${SOCKET_UNIT}`);
  if (a.socket) {
    await writeFileAtomic(socketPath, socketUnit(), 0o644);
    await say(`wrote ${socketPath}`);
  } else if (await exists(socketPath)) {
    // A reinstall without --socket: the service alone, as asked.
    await systemctl([...systemctlRoot, "disable", ...(root === "" ? ["--now"] : []), SOCKET_UNIT]);
    await Deno.remove(socketPath);
    await say(`removed ${socketPath} (no --socket)`);
  }
  if (await exists(at(paths.config))) {
    await say(`kept ${at(paths.config)}`);
  } else {
    await writeFileAtomic(at(paths.config), defaultConfig(), 0o644);
    await say(`wrote ${at(paths.config)}`);
  }

  const unit = a.socket ? SOCKET_UNIT : SERVICE_UNIT;
  if (root === "") await systemctl(["daemon-reload"]);
  if (!a["no-enable"]) {
    const command = [...systemctlRoot, "enable", ...(root === "" ? ["--now"] : []), unit];
    await systemctl(command);
    await say(`systemctl ${command.join(" ")}`);
  }
  if (root === "") {
    await say(
      `Next: edit ${paths.config} (devices, rules), then "systemctl reload usbipgw"; logs: "journalctl -u usbipgw"`,
    );
  }
  return 0;
}
