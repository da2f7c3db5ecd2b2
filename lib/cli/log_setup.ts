/**
 * Logging as a command sets it up: the level and format chosen, `auto` resolved against the
 * environment `main.ts` passes in.
 *
 * @module
 */

import type { LogLevel } from "../logtape.ts";
import type { CommandIo } from "./command.ts";
import {
  configureLogging,
  type LogFormatChoice,
  resolveLogFormat,
  stderrIdentity,
} from "./logging.ts";

/** Sends the `usbipgw` log categories to stderr at `level`, in the format `choice` means here. */
export function setUpLogging(io: CommandIo, level: LogLevel, choice: LogFormatChoice): void {
  configureLogging({
    level,
    format: resolveLogFormat(choice, {
      journalStream: io.env("JOURNAL_STREAM"),
      stderr: stderrIdentity(),
    }),
    color: Deno.stderr.isTerminal() && io.env("NO_COLOR") === undefined,
  });
}
