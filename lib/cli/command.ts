/**
 * What a command of the usbipgw command line is: its name, one-line summary, usage lines,
 * description, flags and run function. `main.ts` keeps the table of commands; the help, the
 * usage lines, the "unknown command" message, the shell completions and the man page are all
 * made from it (`help.ts`), so they cannot drift apart. Flags are parsed here, once, from the
 * same declarations.
 *
 * @module
 */

import { parseArgs } from "@std/cli/parse-args";
import { UsageError } from "./usage_error.ts";

/** What a flag's value is, for completion: a file, a folder, or one of a few words. */
export type FlagCompletion = "file" | "dir" | readonly string[];

/** One flag of a command. */
export interface Flag {
  /** The long name without dashes: `tcp`. */
  readonly name: string;
  /** A one-letter alias without the dash: `r`. */
  readonly short?: string;
  /** The value's placeholder (`HOST:PORT`); a flag without one is a switch. */
  readonly value?: string;
  /** Whether the flag may be given more than once. */
  readonly repeat?: boolean;
  /** What it does; the first line goes into the help table, the rest follows indented. */
  readonly help: string;
  /** What to complete the value with. */
  readonly complete?: FlagCompletion;
}

/** Output and facts of the running program, given by `main.ts`. */
export interface CommandIo {
  /** Writes to stdout. */
  out(text: string): Promise<void>;
  /** Writes to stderr. */
  err(text: string): void;
  /** An environment variable. */
  env(name: string): string | undefined;
  /** `Deno.execPath()`: the compiled usbipgw binary, or `deno` under `deno run`. */
  readonly execPath: string;
  /** The version of usbipgw. */
  readonly version: string;
}

/** A command's flags as given on the command line. */
export class ParsedFlags {
  readonly #values: Record<string, unknown>;
  readonly #command: string;
  /** The arguments that are not flags, in order. */
  readonly positional: readonly string[];

  /** Wraps the result of parsing `command`'s arguments. */
  constructor(command: string, values: Record<string, unknown>, positional: string[]) {
    this.#command = command;
    this.#values = values;
    this.positional = positional;
  }

  /** The value of a flag given at most once; `undefined` when absent. */
  one(name: string): string | undefined {
    let value = this.#values[name];
    if (Array.isArray(value)) {
      // A repeatable flag that this command or subcommand takes once.
      if (value.length > 1) throw new UsageError(`--${name} may be given once`);
      value = value[0];
    }
    if (value === undefined) return undefined;
    if (typeof value !== "string" || value === "") {
      throw new UsageError(`--${name} needs a value`);
    }
    return value;
  }

  /** Every value of a repeatable flag, in order. */
  many(name: string): string[] {
    const value = this.#values[name];
    const list = value === undefined ? [] : Array.isArray(value) ? value : [value];
    for (const v of list) {
      if (typeof v !== "string" || v === "") throw new UsageError(`--${name} needs a value`);
    }
    return list as string[];
  }

  /** Whether a switch was given. */
  has(name: string): boolean {
    return this.#values[name] === true;
  }

  /** Throws a usage error when more than `max` positional arguments were given. */
  noMorePositional(max = 0): void {
    if (this.positional.length > max) {
      throw new UsageError(
        `Unexpected argument "${this.positional[max]}" for "${this.#command}"`,
      );
    }
  }
}

/** A command of the table. */
export interface Command {
  readonly name: string;
  /** Other names that run it (`list -l` is `host`: no; `--version` is `version`). */
  readonly aliases?: readonly string[];
  /** One line for the command list. */
  readonly summary: string;
  /** Usage lines without the leading `usbipgw `: `serve [--tcp HOST:PORT]...`. */
  readonly usage: readonly string[];
  /** Paragraphs shown after the usage lines. */
  readonly description: string;
  /** Words that may follow the command name (`policy show|check`), for completion. */
  readonly subcommands?: readonly string[];
  readonly flags: readonly Flag[];
  /** Text after the options: examples, exit codes. */
  readonly epilogue?: string;
  /** Runs the command; returns the exit status. */
  run(flags: ParsedFlags, io: CommandIo): Promise<number>;
}

/** The `--help` flag every command has. */
export const HELP_FLAG: Flag = { name: "help", short: "h", help: "show this help" };

/** Every flag of `command`, `--help` last. */
export function flagsOf(command: Command): Flag[] {
  return [...command.flags, HELP_FLAG];
}

/** How a flag is written in help: `-r, --remote HOST[:PORT]`. */
export function flagSynopsis(flag: Flag): string {
  const long = `--${flag.name}${flag.value ? ` ${flag.value}` : ""}`;
  return flag.short ? `-${flag.short}, ${long}` : long;
}

/**
 * Parses `args` by `command`'s flags. Unknown options are usage errors that list the valid
 * ones; a value-taking flag is never read as a switch or the other way round.
 */
export function parseFlags(command: Command, args: readonly string[]): ParsedFlags {
  const flags = flagsOf(command);
  const valid = flags.map((f) => (f.short ? `-${f.short}, --${f.name}` : `--${f.name}`));
  const parsed = parseArgs([...args], {
    string: flags.filter((f) => f.value !== undefined).map((f) => f.name),
    boolean: flags.filter((f) => f.value === undefined).map((f) => f.name),
    collect: flags.filter((f) => f.repeat).map((f) => f.name),
    alias: Object.fromEntries(flags.filter((f) => f.short).map((f) => [f.short!, f.name])),
    unknown: (arg: string) => {
      if (arg.startsWith("-") && arg !== "-") {
        throw new UsageError(
          `Unknown option ${arg.split("=")[0]} for "${command.name}"; valid options: ${
            valid.join(", ")
          }`,
        );
      }
      return true;
    },
  });
  return new ParsedFlags(command.name, parsed, parsed._.map(String));
}
