/**
 * `usbipgw help [COMMAND]`: the command list, or one command's help, from the command table.
 *
 * @module
 */

import type { Command, CommandIo, ParsedFlags } from "../command.ts";
import { ExitCode } from "../exit_codes.ts";
import { commandHelp, findCommand, mainHelp, unknownCommand } from "../help.ts";
import { manPage } from "../man_page.ts";

/** `usbipgw help`, over the table `commands` returns (the table holds this command too). */
export function helpCommand(commands: () => readonly Command[]): Command {
  return {
    name: "help",
    aliases: ["--help", "-h"],
    summary: "show help for a command",
    usage: ["help [COMMAND]", "help --man"],
    description: "Shows the list of commands, or the help of one command, or the manual page.",
    get subcommands() {
      return commands().map((c) => c.name);
    },
    flags: [{
      name: "man",
      help: "print the manual page of every command (roff): usbipgw help --man | man -l -",
    }],
    async run(flags: ParsedFlags, io: CommandIo): Promise<number> {
      if (flags.has("man")) {
        flags.noMorePositional();
        await io.out(manPage(commands(), { version: io.version }));
        return ExitCode.OK;
      }
      flags.noMorePositional(1);
      const topic = flags.positional[0];
      if (topic === undefined) {
        await io.out(mainHelp(commands(), io.version));
        return ExitCode.OK;
      }
      const command = findCommand(commands(), topic);
      if (command === undefined) throw unknownCommand(commands(), topic);
      await io.out(commandHelp(command));
      return ExitCode.OK;
    },
  };
}
