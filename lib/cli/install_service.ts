/**
 * `usbipgw install-service`: installs the compiled binary, its manual page, the systemd units
 * of `lib/systemd/units.ts`, the modules-load.d(5) file that loads vhci-hcd at boot, the
 * polkit actions of `lib/polkit/actions.ts` and a first configuration, then enables the
 * service (or, with `--socket`, its socket unit) through systemctl(1); `--uninstall` undoes
 * it and keeps the configuration. `--root DIR` installs into an image instead (like
 * `systemctl --root`).
 *
 * @module
 */

import { errorMessage } from "../util/error_message.ts";
import { POLKIT_ACTIONS_FILE, polkitPolicyFile } from "../polkit/actions.ts";
import {
  DEFAULT_UNIT_PATHS,
  defaultConfig,
  MODULES_LOAD_FILE,
  modulesLoadConf,
  SERVICE_UNIT,
  serviceUnit,
  SOCKET_LINK,
  SOCKET_UNIT,
  socketUnit,
} from "../systemd/units.ts";
import { UsageError } from "./usage_error.ts";

/** Where unit files go. */
export const UNIT_DIR = "/etc/systemd/system";

/** Where the binary and the manual page go without `--prefix`. */
export const DEFAULT_PREFIX = "/usr/local";

/**
 * Where the manual page goes under `prefix` (man-db finds `/usr/local/share/man`).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { manPagePath } from "./install_service.ts";
 * assertEquals(manPagePath("/opt/gw"), "/opt/gw/share/man/man1/usbipgw.1");
 * ```
 */
export function manPagePath(prefix: string): string {
  return `${prefix}/share/man/man1/usbipgw.1`;
}

/** What to install or uninstall, as the `install-service` flags say. */
export interface InstallOptions {
  /** Install and enable the socket unit (socket activation). */
  socket?: boolean;
  /** Install the files without enabling or starting anything. */
  noEnable?: boolean;
  /** Stop, disable and remove instead; the configuration stays. */
  uninstall?: boolean;
  /** Where the binary and the manual page go (default {@linkcode DEFAULT_PREFIX}). */
  prefix?: string;
  /** A file system image to install into instead of `/`. */
  root?: string;
}

/** The kernel module that attaching for users needs ({@linkcode MODULES_LOAD_FILE}). */
const VHCI_MODULE = "vhci-hcd";

/** Output channels and facts of the running program. */
export interface InstallIo {
  out(text: string): Promise<void> | void;
  err(text: string): void;
  /** `Deno.execPath()`: the compiled usbipgw binary, or `deno` under `deno run`. */
  execPath: string;
  /**
   * The manual page to install (roff), made from the command table: `manPage(COMMANDS, ...)`
   * of `man_page.ts`. A function, so that the table is read when the page is installed.
   */
  manPage(): string;
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

/** Loads `module` with modprobe(8); the reason when that fails. */
async function modprobe(module: string): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("modprobe", { args: [module], stdin: "null" }).output();
    if (out.success) return undefined;
    return new TextDecoder().decode(out.stderr).trim() || `modprobe exited with ${out.code}`;
  } catch (e) {
    return errorMessage(e);
  }
}

/** Runs systemctl; throws with its message when it fails. */
async function systemctl(args: string[]): Promise<string> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("systemctl", { args, stdin: "null" }).output();
  } catch (e) {
    throw new Error(
      `Cannot run systemctl ${args.join(" ")}: ${errorMessage(e)}`,
    );
  }
  const text = new TextDecoder().decode(out.stderr).trim();
  if (!out.success) throw new Error(`Cannot run systemctl ${args.join(" ")}: ${text}`);
  return text;
}

/**
 * Installs (or with `uninstall` removes) the binary, the manual page and the units; returns the
 * exit status. Throws {@linkcode UsageError} for options that do not go together.
 */
export async function installService(o: InstallOptions, io: InstallIo): Promise<number> {
  const absolute = (flag: "prefix" | "root"): string | undefined => {
    const v = o[flag];
    if (v === undefined) return undefined;
    if (!v.startsWith("/")) throw new UsageError(`--${flag} needs an absolute path`);
    return v.replace(/\/+$/, "");
  };
  const prefix = absolute("prefix") ?? DEFAULT_PREFIX;
  const root = absolute("root") ?? "";
  const at = (path: string) => `${root}${path}`;
  const paths = {
    binary: `${prefix}/bin/usbipgw`,
    manPage: manPagePath(prefix),
    config: DEFAULT_UNIT_PATHS.config,
  };
  const units = [SOCKET_UNIT, SERVICE_UNIT];
  const say = (text: string) => io.out(`${text}\n`);
  const systemctlRoot = root === "" ? [] : [`--root=${root}`];

  if (o.uninstall) {
    if (o.socket || o.noEnable) {
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
    const files = [
      at(paths.binary),
      at(paths.manPage),
      at(MODULES_LOAD_FILE),
      at(POLKIT_ACTIONS_FILE),
      at(SOCKET_LINK),
    ];
    for (const path of files) {
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

  await writeFileAtomic(at(paths.manPage), io.manPage(), 0o644);
  await say(`wrote ${at(paths.manPage)}`);

  // vhci-hcd at boot, and the polkit actions the gateway asks about (polkitd notices the
  // new file by itself).
  await writeFileAtomic(at(MODULES_LOAD_FILE), modulesLoadConf(), 0o644);
  await say(`wrote ${at(MODULES_LOAD_FILE)}`);
  await writeFileAtomic(at(POLKIT_ACTIONS_FILE), polkitPolicyFile(), 0o644);
  await say(`wrote ${at(POLKIT_ACTIONS_FILE)}`);

  await writeFileAtomic(at(`${UNIT_DIR}/${SERVICE_UNIT}`), serviceUnit(paths), 0o644);
  await say(`wrote ${at(`${UNIT_DIR}/${SERVICE_UNIT}`)}`);
  const socketPath = at(`${UNIT_DIR}/${SOCKET_UNIT}`);
  if (o.socket) {
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

  const unit = o.socket ? SOCKET_UNIT : SERVICE_UNIT;
  if (root === "") await systemctl(["daemon-reload"]);
  if (!o.noEnable) {
    if (root === "") {
      // The sandbox forbids modprobe, and the module must be there when the service starts.
      const failed = await modprobe(VHCI_MODULE);
      if (failed === undefined) {
        await say(`modprobe ${VHCI_MODULE}`);
      } else {
        io.err(
          `usbipgw: warning: Cannot load ${VHCI_MODULE} now (${failed}); attaching for users needs it, and ${MODULES_LOAD_FILE} loads it at the next boot\n`,
        );
      }
    }
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
