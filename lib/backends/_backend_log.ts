/**
 * The logger of one back-end (category `usbipgw.backend`): given the device's label, every
 * line starts with `LABEL: ` and carries `label` as a property, so that the lines of two
 * serial devices, or of a keyboard's and a mouse's text sockets, are told apart.
 *
 * @module
 */

import { getLogger } from "../logtape.ts";

const log = getLogger(["usbipgw", "backend"]);

/** Logs a message template with its properties. */
export type LogFn = (template: string, properties?: Record<string, unknown>) => void;

/** A back-end's logger; see {@linkcode backendLogger}. */
export interface BackendLogger {
  /** The device's label, if any. */
  readonly label: string | undefined;
  /** Logs at debug level (e.g. a reconnect attempt after the first one failed). */
  debug: LogFn;
  /** Logs at info level (a peer connected or went away, new line settings). */
  info: LogFn;
  /** Logs at warning level (output dropped, a second client refused). */
  warn: LogFn;
  /** Logs at error level (a write failed, a state listener threw). */
  error: LogFn;
}

/** The logger for a back-end of the device `label` (none: plain lines). */
export function backendLogger(label: string | undefined): BackendLogger {
  const at = (level: "debug" | "info" | "warn" | "error"): LogFn =>
    label === undefined
      ? (template, properties = {}) => log[level](template, properties)
      : (template, properties = {}) => log[level](`{label}: ${template}`, { ...properties, label });
  return { label, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}
