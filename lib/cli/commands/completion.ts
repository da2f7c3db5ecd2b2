/**
 * `usbipgw completion bash|zsh|fish`: prints a completion script made from the command table
 * (`../completion.ts`), so it completes exactly what this usbipgw accepts.
 *
 * @module
 */

import type { Command, CommandIo, ParsedFlags } from "../command.ts";
import { COMPLETION_SHELLS, completionScript, isCompletionShell } from "../completion.ts";
import { ExitCode } from "../exit_codes.ts";
import { UsageError } from "../usage_error.ts";

/**
 * The `usbipgw completion SHELL` command, over the table `commands` returns (the table holds
 * this command too).
 *
 * @example The command completes its own shells
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { completionCommand } from "./completion.ts";
 * import { COMPLETION_SHELLS } from "../completion.ts";
 * const command = completionCommand(() => []);
 * assertEquals(command.subcommands, COMPLETION_SHELLS);
 * ```
 */
export function completionCommand(commands: () => readonly Command[]): Command {
  return {
    name: "completion",
    summary: `print a shell completion script (${COMPLETION_SHELLS.join(", ")})`,
    usage: [`completion ${COMPLETION_SHELLS.join("|")}`],
    description: `Prints a script that completes usbipgw's commands, subcommands, options and option
values in the shell SHELL. It is made from the same command table as the help, so it
completes exactly what this usbipgw accepts.`,
    subcommands: COMPLETION_SHELLS,
    flags: [],
    epilogue: `To load it:
  bash  source <(usbipgw completion bash)   in ~/.bashrc, or save it as
        ~/.local/share/bash-completion/completions/usbipgw
  zsh   usbipgw completion zsh > "\${fpath[1]}/_usbipgw"   then start a new shell
  fish  usbipgw completion fish > ~/.config/fish/completions/usbipgw.fish`,
    async run(flags: ParsedFlags, io: CommandIo): Promise<number> {
      flags.noMorePositional(1);
      const shell = flags.positional[0];
      if (!isCompletionShell(shell)) {
        throw new UsageError(
          `"completion" needs a shell: ${COMPLETION_SHELLS.join(", ")}${
            shell === undefined ? "" : ` (not "${shell}")`
          }`,
        );
      }
      await io.out(completionScript(shell, commands()));
      return ExitCode.OK;
    },
  };
}
