/**
 * Help made from the command table: the command list, each command's help (usage, description,
 * options, epilogue), and the "unknown command" message. Nothing here is written by hand per
 * command, so help, usage and errors say the same thing.
 *
 * @module
 */

import { type Command, flagsOf, flagSynopsis } from "./command.ts";
import { UsageError } from "./usage_error.ts";

/** The command `name` runs (its name or an alias), if any. */
export function findCommand(commands: readonly Command[], name: string): Command | undefined {
  return commands.find((c) => c.name === name || (c.aliases ?? []).includes(name));
}

/** The usage error for a command that is not in the table. */
export function unknownCommand(commands: readonly Command[], name: string): UsageError {
  return new UsageError(
    `Unknown command "${name}"; commands: ${commands.map((c) => c.name).join(", ")}`,
  );
}

/** `usbipgw help`: the version line, the usage line and one line per command. */
export function mainHelp(commands: readonly Command[], version: string): string {
  const width = Math.max(...commands.map((c) => c.name.length)) + 2;
  const lines = commands.map((c) => `  ${c.name.padEnd(width)}${c.summary}`);
  return `usbipgw ${version}: a USB/IP gateway serving emulated and real USB devices

Usage: usbipgw COMMAND [OPTIONS]

Commands:
${lines.join("\n")}

Run "usbipgw help COMMAND" or "usbipgw COMMAND --help" for a command's options.
`;
}

/** The usage lines of a command: `Usage: usbipgw ...`, then aligned continuation lines. */
export function usageLines(command: Command): string {
  return command.usage.map((u, i) => `${i === 0 ? "Usage: " : "       "}usbipgw ${u}`).join(
    "\n",
  );
}

/** The options table of a command: synopsis, then help, continuation lines indented. */
export function optionsTable(command: Command): string {
  const flags = flagsOf(command);
  const synopses = flags.map(flagSynopsis);
  const width = Math.min(Math.max(...synopses.map((s) => s.length)) + 2, 28);
  return flags.map((f, i) => {
    const synopsis = synopses[i]!;
    const [first, ...rest] = f.help.split("\n");
    const head = synopsis.length + 2 > width
      ? `  ${synopsis}\n  ${" ".repeat(width)}${first}`
      : `  ${synopsis.padEnd(width)}${first}`;
    return [head, ...rest.map((r) => `  ${" ".repeat(width)}${r}`)].join("\n");
  }).join("\n");
}

/** The help of one command. */
export function commandHelp(command: Command): string {
  const parts = [usageLines(command), command.description.trimEnd()];
  parts.push(`Options:\n${optionsTable(command)}`);
  if (command.epilogue) parts.push(command.epilogue.trimEnd());
  return parts.filter((p) => p !== "").join("\n\n") + "\n";
}
