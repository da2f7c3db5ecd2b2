/**
 * `usbipgw install-service`: installs (or `--uninstall`s) the binary, its manual page, the
 * systemd units, the modules-load.d file for vhci-hcd, the polkit actions and a first
 * configuration; the work is in `../install_service.ts`.
 *
 * @module
 */

import { POLKIT_ACTIONS_FILE } from "../../polkit/actions.ts";
import {
  DEFAULT_UNIT_PATHS,
  MODULES_LOAD_FILE,
  SERVICE_SOCKET,
  SERVICE_UNIT,
  SOCKET_UNIT,
} from "../../systemd/units.ts";
import type { Command, CommandIo, ParsedFlags } from "../command.ts";
import { DEFAULT_PREFIX, installService, manPagePath, UNIT_DIR } from "../install_service.ts";
import { manPage } from "../man_page.ts";

/** `usbipgw install-service`, which installs the manual page of the table `commands` returns. */
export function installServiceCommand(commands: () => readonly Command[]): Command {
  return {
    name: "install-service",
    summary: "install (or --uninstall) the systemd service and socket units",
    usage: [
      "install-service [--socket] [--prefix DIR] [--root DIR] [--no-enable]",
      "install-service --uninstall [--prefix DIR] [--root DIR]",
    ],
    description:
      `Installs usbipgw as a systemd service: this binary as PREFIX/bin/usbipgw, its manual page
as ${manPagePath("PREFIX")}, ${SERVICE_UNIT} (and with --socket ${SOCKET_UNIT})
in ${UNIT_DIR}, ${MODULES_LOAD_FILE} (loads vhci-hcd at boot, for
attaching into this machine), the polkit actions as
${POLKIT_ACTIONS_FILE}, and ${DEFAULT_UNIT_PATHS.config}
when there is none yet. Then reloads systemd, loads vhci-hcd, and enables and starts the
service, or with --socket the socket unit, which starts the service at the first
connection on 127.0.0.1:3240 or ${SERVICE_SOCKET}.
Run it from the compiled binary (deno task compile); as root.`,
    flags: [
      { name: "socket", help: `install and enable ${SOCKET_UNIT} (socket activation)` },
      {
        name: "prefix",
        value: "DIR",
        help: `where the binary and the manual page go, DIR/bin/usbipgw and
${manPagePath("DIR")} (default ${DEFAULT_PREFIX})`,
        complete: "dir",
      },
      {
        name: "root",
        value: "DIR",
        help: "install into the file system image at DIR; systemctl only enables there",
        complete: "dir",
      },
      { name: "no-enable", help: "install the files without enabling or starting anything" },
      {
        name: "uninstall",
        help: `stop and disable the units, remove them, the binary, the manual page, the
modules-load.d file and the polkit actions; the configuration stays`,
      },
    ],
    async run(flags: ParsedFlags, io: CommandIo): Promise<number> {
      flags.noMorePositional();
      const prefix = flags.one("prefix");
      const root = flags.one("root");
      return await installService({
        socket: flags.has("socket"),
        noEnable: flags.has("no-enable"),
        uninstall: flags.has("uninstall"),
        ...(prefix !== undefined ? { prefix } : {}),
        ...(root !== undefined ? { root } : {}),
      }, {
        out: io.out,
        err: io.err,
        execPath: io.execPath,
        manPage: () => manPage(commands(), { version: io.version }),
      });
    },
  };
}
