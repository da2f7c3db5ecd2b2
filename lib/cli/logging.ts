/**
 * Where and how the gateway logs (LogTape, to stderr), in one of three formats:
 *
 * - `text`: LogTape's text lines with a timestamp, in colour on a terminal;
 * - `journal`: for systemd's journal, each line prefixed with its syslog priority `<N>`
 *   (sd-daemon(3): error 3, warning 4, info 6, debug 7; fatal 2) and no timestamp, since
 *   journald adds its own;
 * - `json`: JSON lines, one object per record with `time`, `level`, `category`, `message`
 *   and `properties`.
 *
 * `auto` picks `journal` when stderr is the journal stream systemd names in
 * `$JOURNAL_STREAM` (its `device:inode`), `text` otherwise.
 *
 * The program's last words (`stopped on SIGINT`, the error it exits with) go through
 * {@linkcode logFinal}, so that with `json` every line on stderr is JSON and with `journal`
 * every line has its priority.
 *
 * @module
 */

import {
  configureSync,
  getAnsiColorFormatter,
  getTextFormatter,
  type LogLevel,
  type LogRecord,
} from "../logtape.ts";

/** The values `--log-format` and the config's `[logging] format` accept. */
export const LOG_FORMATS = ["auto", "text", "journal", "json"] as const;

/** A requested log format; `auto` is resolved by {@linkcode resolveLogFormat}. */
export type LogFormatChoice = typeof LOG_FORMATS[number];

/** A concrete log format. */
export type LogFormat = Exclude<LogFormatChoice, "auto">;

/** Whether `text` is one of {@linkcode LOG_FORMATS}. */
export function isLogFormat(text: string): text is LogFormatChoice {
  return (LOG_FORMATS as readonly string[]).includes(text);
}

/** The syslog priority (sd-daemon(3) `SD_*`) of each level. */
export const JOURNAL_PRIORITY: Readonly<Record<LogLevel, number>> = Object.freeze({
  fatal: 2,
  error: 3,
  warning: 4,
  info: 6,
  debug: 7,
  trace: 7,
});

/** How a value in a message is shown: strings as they are, the rest through `Deno.inspect`. */
function renderValue(v: unknown): string {
  return typeof v === "string" ? v : Deno.inspect(v);
}

/** The message of `record` with its values filled in. */
export function renderMessage(record: LogRecord): string {
  return record.message.map((part, i) => i % 2 === 0 ? String(part) : renderValue(part)).join("");
}

/**
 * Formats a record for the journal: `<N>category: message`, every line of a multi-line
 * message with the prefix, so that journald files each at the right priority.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { journalFormatter } from "./logging.ts";
 * const record = {
 *   category: ["usbipgw", "server"], level: "warning" as const, message: ["Device ", "1-1", " is gone"],
 *   rawMessage: "Device {busid} is gone", timestamp: 0, properties: { busid: "1-1" },
 * };
 * assertEquals(journalFormatter(record), "<4>usbipgw.server: Device 1-1 is gone\n");
 * ```
 */
export function journalFormatter(record: LogRecord): string {
  const prefix = `<${JOURNAL_PRIORITY[record.level]}>${record.category.join(".")}: `;
  return renderMessage(record).split("\n").map((line) => `${prefix}${line}\n`).join("");
}

/** A JSON-safe copy of a property value: bigints as strings, errors as name and message. */
function jsonValue(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Error) return { name: value.name, message: value.message };
  if (value instanceof Uint8Array) return Array.from(value);
  return value;
}

/**
 * Formats a record as one JSON line: `time` (ISO 8601), `level`, `category` (dotted),
 * `message` (values filled in) and `properties`. A property that JSON cannot hold (a cycle,
 * say) is given as its `Deno.inspect` text.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { jsonFormatter } from "./logging.ts";
 * const record = {
 *   category: ["usbipgw", "cli"], level: "info" as const, message: ["Serving ", 2, " devices"],
 *   rawMessage: "Serving {count} devices", timestamp: 0, properties: { count: 2 },
 * };
 * assertEquals(
 *   JSON.parse(jsonFormatter(record)),
 *   {
 *     time: "1970-01-01T00:00:00.000Z", level: "info", category: "usbipgw.cli",
 *     message: "Serving 2 devices", properties: { count: 2 },
 *   },
 * );
 * ```
 */
export function jsonFormatter(record: LogRecord): string {
  const properties: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record.properties)) {
    try {
      JSON.stringify(value, jsonValue);
      properties[key] = value;
    } catch {
      properties[key] = Deno.inspect(value);
    }
  }
  return JSON.stringify({
    time: new Date(record.timestamp).toISOString(),
    level: record.level,
    category: record.category.join("."),
    message: renderMessage(record),
    properties,
  }, jsonValue) + "\n";
}

/** LogTape's text lines (timestamp, level, category, message); ANSI colours when `color`. */
export function textFormatter(color: boolean): (record: LogRecord) => string {
  return color ? getAnsiColorFormatter({ value: renderValue }) : getTextFormatter({
    value: renderValue,
  });
}

/** What {@linkcode resolveLogFormat} looks at, as `main.ts` finds it. */
export interface LogFacts {
  /** `$JOURNAL_STREAM`: `DEVICE:INODE` of the journal stream systemd connected. */
  journalStream?: string | undefined;
  /** Device and inode of this process's stderr, when known. */
  stderr?: { dev: number; ino: number } | undefined;
}

/**
 * The format `auto` means here: `journal` when stderr is the stream `$JOURNAL_STREAM` names
 * (a child whose stderr was redirected elsewhere inherits the variable, hence the check),
 * `text` otherwise.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { resolveLogFormat } from "./logging.ts";
 * const stderr = { dev: 8, ino: 1234 };
 * assertEquals(resolveLogFormat("auto", { journalStream: "8:1234", stderr }), "journal");
 * assertEquals(resolveLogFormat("auto", { journalStream: "8:999", stderr }), "text");
 * assertEquals(resolveLogFormat("json", { journalStream: "8:1234", stderr }), "json");
 * ```
 */
export function resolveLogFormat(choice: LogFormatChoice, facts: LogFacts): LogFormat {
  if (choice !== "auto") return choice;
  const m = /^(\d+):(\d+)$/.exec(facts.journalStream ?? "");
  if (m && facts.stderr && Number(m[1]) === facts.stderr.dev && Number(m[2]) === facts.stderr.ino) {
    return "journal";
  }
  return "text";
}

/** Device and inode of this process's stderr (through `/proc/self/fd/2`), when readable. */
export function stderrIdentity(): { dev: number; ino: number } | undefined {
  try {
    const info = Deno.statSync("/proc/self/fd/2");
    return info.ino === null ? undefined : { dev: info.dev, ino: info.ino };
  } catch {
    return undefined;
  }
}

/** Options of {@linkcode configureLogging}. */
export interface LoggingOptions {
  /** The lowest level logged for the `usbipgw` categories. */
  level: LogLevel;
  /** The format of each line. */
  format: LogFormat;
  /** Colours for `text` (a terminal that allows them). */
  color?: boolean;
  /** Where lines go; stderr by default. */
  write?: (text: string) => void;
}

const encoder = new TextEncoder();

function _writeStderr(text: string): void {
  const bytes = encoder.encode(text);
  let off = 0;
  while (off < bytes.length) off += Deno.stderr.writeSync(bytes.subarray(off));
}

/** The format and destination {@linkcode configureLogging} set last, for {@linkcode logFinal}. */
let _configured: {
  format: LogFormat;
  write: (text: string) => void;
  line: (r: LogRecord) => string;
} | undefined;

/**
 * Configures LogTape: the `usbipgw` categories at `level`, LogTape's own from warnings. The
 * sink writes each line synchronously, so nothing is left to flush when the program exits.
 */
export function configureLogging(options: LoggingOptions): void {
  const format = options.format === "journal"
    ? journalFormatter
    : options.format === "json"
    ? jsonFormatter
    : textFormatter(options.color ?? false);
  const write = options.write ?? _writeStderr;
  configureSync({
    reset: true,
    sinks: { stderr: (record: LogRecord) => write(format(record)) },
    loggers: [
      { category: ["usbipgw"], lowestLevel: options.level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
  _configured = { format: options.format, write, line: format };
}

/** Options of {@linkcode logFinal}. */
export interface FinalOptions {
  /** The record's level (default `info`; `error` for the error the program exits with). */
  level?: LogLevel;
  /** Properties of the record (json: `properties`), e.g. `{ signal: "SIGINT" }`. */
  properties?: Record<string, unknown>;
  /** Where the line goes when logging is not configured (default stderr). */
  write?: (text: string) => void;
}

/**
 * Writes one of the program's last messages (`stopped on SIGINT`, the error it exits with)
 * in the format {@linkcode configureLogging} set, whatever the level: a JSON line (category
 * `usbipgw.cli`) with `json`, `<N>usbipgw.cli: MESSAGE` with `journal`. With `text`, and
 * before logging is configured, it is the plain line `usbipgw: MESSAGE`, as a person at a
 * terminal expects it. The write is synchronous: the line is out when this returns.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { resetSync } from "@logtape/logtape";
 * import { configureLogging, logFinal } from "./logging.ts";
 * const lines: string[] = [];
 * configureLogging({ level: "warning", format: "json", write: (t) => lines.push(t) });
 * logFinal("stopped on SIGINT", { properties: { signal: "SIGINT" } });
 * resetSync();
 * const o = JSON.parse(lines[0]!);
 * assertEquals([o.level, o.category, o.message], ["info", "usbipgw.cli", "stopped on SIGINT"]);
 * ```
 */
export function logFinal(message: string, options: FinalOptions = {}): void {
  const c = _configured;
  if (c === undefined || c.format === "text") {
    (c?.write ?? options.write ?? _writeStderr)(`usbipgw: ${message}\n`);
    return;
  }
  c.write(c.line({
    category: ["usbipgw", "cli"],
    level: options.level ?? "info",
    message: [message],
    rawMessage: message,
    timestamp: Date.now(),
    properties: options.properties ?? {},
  }));
}
