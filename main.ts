/**
 * The usbipgw command line: the table of commands, dispatch, and the mapping of errors to
 * exit codes. The only module that reads `Deno.args` and `Deno.env` and exits; each command
 * lives in `lib/cli/commands/` with its help and flags.
 *
 * @module
 */

import denoJson from "./deno.json" with { type: "json" };
import { type Command, type CommandIo, parseFlags } from "./lib/cli/command.ts";
import { commandHelp, findCommand, mainHelp, unknownCommand } from "./lib/cli/help.ts";
import { ExitCode, exitCodeFor, failureMessage } from "./lib/cli/exit_codes.ts";
import { logFinal } from "./lib/cli/logging.ts";
import { serveCommand } from "./lib/cli/commands/serve.ts";
import { listCommand } from "./lib/cli/commands/list.ts";
import { hostCommand } from "./lib/cli/commands/host.ts";
import { policyCommand } from "./lib/cli/commands/policy.ts";
import { statusCommand } from "./lib/cli/commands/status.ts";
import { captureCommand } from "./lib/cli/commands/capture.ts";
import { configCommand } from "./lib/cli/commands/config.ts";
import { attachCommand } from "./lib/cli/commands/attach.ts";
import { detachCommand } from "./lib/cli/commands/detach.ts";
import { portCommand } from "./lib/cli/commands/port.ts";
import { tunnelCommand } from "./lib/cli/commands/tunnel.ts";
import { bindCommand } from "./lib/cli/commands/bind.ts";
import { unbindCommand } from "./lib/cli/commands/unbind.ts";
import { installServiceCommand } from "./lib/cli/commands/install_service.ts";
import { versionCommand } from "./lib/cli/commands/version.ts";
import { completionCommand } from "./lib/cli/commands/completion.ts";
import { helpCommand } from "./lib/cli/commands/help.ts";

/** Every command, in the order `help` lists them. */
export const COMMANDS: readonly Command[] = [
  serveCommand,
  listCommand,
  hostCommand,
  policyCommand,
  statusCommand,
  configCommand,
  attachCommand,
  detachCommand,
  portCommand,
  tunnelCommand,
  bindCommand,
  unbindCommand,
  captureCommand,
  installServiceCommand(() => COMMANDS),
  completionCommand(() => COMMANDS),
  versionCommand,
  helpCommand(() => COMMANDS),
];

const encoder = new TextEncoder();

/** Output and environment of this process. */
const processIo: CommandIo = {
  async out(text: string): Promise<void> {
    const bytes = encoder.encode(text);
    let off = 0;
    while (off < bytes.length) off += await Deno.stdout.write(bytes.subarray(off));
  },
  err(text: string): void {
    const bytes = encoder.encode(text);
    let off = 0;
    while (off < bytes.length) off += Deno.stderr.writeSync(bytes.subarray(off));
  },
  env: (name: string) => Deno.env.get(name),
  execPath: Deno.execPath(),
  version: denoJson.version,
};

/** Runs the command line `args`; returns the exit status. */
export async function main(args: readonly string[], io: CommandIo = processIo): Promise<number> {
  const [name, ...rest] = args;
  try {
    if (name === undefined) {
      await io.out(mainHelp(COMMANDS, io.version));
      return ExitCode.USAGE;
    }
    const command = findCommand(COMMANDS, name);
    if (command === undefined) throw unknownCommand(COMMANDS, name);
    const flags = parseFlags(command, rest);
    if (flags.has("help")) {
      await io.out(commandHelp(command));
      return ExitCode.OK;
    }
    return await command.run(flags, io);
  } catch (e) {
    // As a log line in the format the command set (JSON stays JSON to the last line).
    for (const line of failureMessage(e).split("\n")) {
      logFinal(line, { level: "error", write: io.err });
    }
    return exitCodeFor(e);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
