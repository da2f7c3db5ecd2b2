/**
 * The flags `attach`, `detach` and `port` share: where sysfs is mounted and where vhci port
 * records go.
 *
 * @module
 */

import { VHCI_STATE_DIR } from "../../client/vhci.ts";
import type { Flag, ParsedFlags } from "../command.ts";

/** `--sysfs PATH` and `--state-dir PATH`. */
export const VHCI_FLAGS: readonly Flag[] = [
  { name: "sysfs", value: "PATH", help: "the sysfs mount (default /sys)", complete: "dir" },
  {
    name: "state-dir",
    value: "PATH",
    help: `where port records are (default ${VHCI_STATE_DIR})`,
    complete: "dir",
  },
];

/** The values of {@linkcode VHCI_FLAGS}, defaults filled in. */
export function vhciOptions(flags: ParsedFlags): { sysfsRoot: string; stateDir: string } {
  return {
    sysfsRoot: flags.one("sysfs") ?? "/sys",
    stateDir: flags.one("state-dir") ?? VHCI_STATE_DIR,
  };
}
