/**
 * `usbipgw version` (also `-V` and `--version`): the version of usbipgw and of Deno.
 *
 * @module
 */

import type { Command, CommandIo, ParsedFlags } from "../command.ts";
import { ExitCode } from "../exit_codes.ts";

/** `usbipgw version`. */
export const versionCommand: Command = {
  name: "version",
  aliases: ["--version", "-V"],
  summary: "print the version",
  usage: ["version"],
  description: "Prints the version of usbipgw and of the Deno runtime it runs on.",
  flags: [],
  async run(flags: ParsedFlags, io: CommandIo): Promise<number> {
    flags.noMorePositional();
    await io.out(`usbipgw ${io.version} (deno ${Deno.version.deno})\n`);
    return ExitCode.OK;
  },
};
