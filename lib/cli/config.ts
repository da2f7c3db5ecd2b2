/**
 * The `--config FILE` format: TOML (v1.0) with the same listeners and devices as the flags.
 *
 * ```toml
 * log_level = "info"
 * tcp = ["127.0.0.1:3240", "[::1]:3240"]
 *
 * [[unix]]
 * path = "/run/usbipgw.sock"
 * mode = "0660"
 * group = "plugdev"
 *
 * [[device]]
 * type = "gadget-zero"
 * busid = "1-1"
 * pattern = 1
 * ```
 *
 * Every error names the file, the line and the key.
 *
 * @module
 */

import { parse } from "@std/toml";
import { parseRule, type Rule, RuleError } from "../policy/rules.ts";
import { LIMIT_KEYS, type LimitKey, type LimitsConfig, setLimit } from "./limits.ts";
import type { DeviceSpec } from "./device_spec.ts";
import { checkDeviceSpec } from "./device_types.ts";
import { UsageError } from "./usage_error.ts";
import { isLogFormat, LOG_FORMATS, type LogFormatChoice } from "./logging.ts";

/** A unix listener as configured. */
export interface UnixListenerConfig {
  path: string;
  mode?: number;
  /** A user name or a numeric uid. */
  owner?: string;
  /** A group name or a numeric gid. */
  group?: string;
}

/** Listeners, devices, rules and logging as a config file (or the flags) give them. */
export interface ServeConfig {
  tcp: string[];
  unix: UnixListenerConfig[];
  devices: DeviceSpec[];
  /** Access rules, first match wins. */
  rules: Rule[];
  /** Where logind publishes seat state (default /run/systemd/seats). */
  seatDir?: string;
  /** The console user's uid when logind is absent. */
  consoleUid?: number;
  /** Limits on connections, sessions and frames. */
  limits: LimitsConfig;
  logLevel?: string;
  /** `[logging] format`: how log lines look (see `lib/cli/logging.ts`). */
  logFormat?: LogFormatChoice;
}

/** The log levels accepted by `log_level` and `--log-level`. */
export const LOG_LEVELS = ["trace", "debug", "info", "warning", "error", "fatal"] as const;

const TOP_KEYS = [
  "log_level",
  "tcp",
  "unix",
  "device",
  "rule",
  "seat_dir",
  "console_uid",
  "limits",
  "logging",
];
const LOGGING_KEYS = ["level", "format"];
const UNIX_KEYS = ["path", "mode", "owner", "group"];

/** Finds the line of `key` in the `index`-th `[[table]]` (or at top level), 1-based. */
function lineOf(lines: string[], table: string | undefined, index: number, key?: string): number {
  let seen = -1;
  let inTarget = table === undefined;
  let headerLine = 1;
  const keyPattern = key === undefined
    ? undefined
    : new RegExp(`^\\s*["']?${key.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}["']?\\s*=`);
  for (const [i, line] of lines.entries()) {
    const header = /^\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?/.exec(line);
    if (header) {
      if (inTarget && table !== undefined) break;
      inTarget = false;
      if (header[1] === table && ++seen === index) {
        inTarget = true;
        headerLine = i + 1;
        if (keyPattern === undefined) return headerLine;
      }
      if (table === undefined) break;
      continue;
    }
    if (inTarget && keyPattern?.test(line)) return i + 1;
  }
  return headerLine;
}

type Table = Record<string, unknown>;

/** Parses and checks a configuration; `file` is used in messages. */
export function parseConfig(text: string, file: string): ServeConfig {
  let doc: Table;
  try {
    doc = parse(text) as Table;
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const m = /line (\d+)/.exec(message);
    throw new UsageError(`${file}:${m ? m[1] : "?"}: invalid TOML: ${message}`);
  }
  const lines = text.split("\n");
  const fail = (
    table: string | undefined,
    index: number,
    key: string | undefined,
    message: string,
  ): never => {
    // index -1: a single [table] rather than the index-th [[table]].
    const where = table === undefined
      ? key
      : `${table}${index < 0 ? "" : `[${index + 1}]`}${key ? `.${key}` : ""}`;
    throw new UsageError(
      `${file}:${lineOf(lines, table, Math.max(index, 0), key)}: ${where}: ${message}`,
    );
  };
  for (const key of Object.keys(doc)) {
    if (!TOP_KEYS.includes(key)) {
      fail(undefined, 0, key, `unknown key; valid keys: ${TOP_KEYS.join(", ")}`);
    }
  }
  const config: ServeConfig = {
    tcp: [],
    unix: [],
    devices: [],
    rules: [],
    limits: { session: {} },
  };
  if (doc.limits !== undefined) {
    const t = doc.limits;
    if (typeof t !== "object" || t === null || Array.isArray(t)) {
      fail(undefined, 0, "limits", "expected a [limits] table");
    }
    for (const [key, value] of Object.entries(t as Table)) {
      if (!(key in LIMIT_KEYS)) {
        fail("limits", -1, key, `unknown key; valid keys: ${Object.keys(LIMIT_KEYS).join(", ")}`);
      }
      const problem = setLimit(config.limits, key as LimitKey, value);
      if (problem !== undefined) fail("limits", -1, key, problem);
    }
  }
  const logLevel = doc.log_level;
  if (logLevel !== undefined) {
    if (typeof logLevel !== "string" || !(LOG_LEVELS as readonly string[]).includes(logLevel)) {
      fail(undefined, 0, "log_level", `expected one of ${LOG_LEVELS.join(", ")}`);
    }
    config.logLevel = logLevel as string;
  }
  if (doc.logging !== undefined) {
    const t = doc.logging;
    if (typeof t !== "object" || t === null || Array.isArray(t)) {
      fail(undefined, 0, "logging", "expected a [logging] table");
    }
    for (const [key, value] of Object.entries(t as Table)) {
      if (!LOGGING_KEYS.includes(key)) {
        fail("logging", -1, key, `unknown key; valid keys: ${LOGGING_KEYS.join(", ")}`);
      }
      if (key === "level") {
        if (typeof value !== "string" || !(LOG_LEVELS as readonly string[]).includes(value)) {
          fail("logging", -1, key, `expected one of ${LOG_LEVELS.join(", ")}`);
        }
        if (logLevel !== undefined) {
          fail("logging", -1, key, "the level is already set by log_level; keep one of them");
        }
        config.logLevel = value as string;
      } else {
        if (typeof value !== "string" || !isLogFormat(value)) {
          fail("logging", -1, key, `expected one of ${LOG_FORMATS.join(", ")}`);
        }
        config.logFormat = value as LogFormatChoice;
      }
    }
  }
  if (doc.seat_dir !== undefined) {
    if (typeof doc.seat_dir !== "string" || doc.seat_dir === "") {
      fail(undefined, 0, "seat_dir", "expected a folder path");
    }
    config.seatDir = doc.seat_dir as string;
  }
  if (doc.console_uid !== undefined) {
    const uid = doc.console_uid;
    if (typeof uid !== "number" || !Number.isInteger(uid) || uid < 0) {
      fail(undefined, 0, "console_uid", "expected a numeric uid");
    }
    config.consoleUid = uid as number;
  }
  const tcp = doc.tcp;
  if (tcp !== undefined) {
    const list = typeof tcp === "string" ? [tcp] : tcp;
    if (!Array.isArray(list) || !list.every((x) => typeof x === "string")) {
      fail(undefined, 0, "tcp", `expected an address "HOST:PORT" or a list of them`);
    }
    config.tcp = list as string[];
  }
  const tables = (name: string): Table[] => {
    const v = doc[name];
    if (v === undefined) return [];
    if (
      !Array.isArray(v) || !v.every((x) => typeof x === "object" && x !== null && !Array.isArray(x))
    ) {
      return fail(undefined, 0, name, `expected [[${name}]] tables`);
    }
    return v as Table[];
  };
  tables("unix").forEach((t, i) => {
    for (const key of Object.keys(t)) {
      if (!UNIX_KEYS.includes(key)) {
        fail("unix", i, key, `unknown key; valid keys: ${UNIX_KEYS.join(", ")}`);
      }
    }
    if (typeof t.path !== "string" || t.path === "") {
      fail("unix", i, t.path === undefined ? undefined : "path", "path must be a non-empty string");
    }
    const u: UnixListenerConfig = { path: t.path as string };
    if (t.mode !== undefined) {
      const mode = typeof t.mode === "number"
        ? t.mode
        : typeof t.mode === "string" && /^0?[0-7]{3,4}$/.test(t.mode)
        ? parseInt(t.mode, 8)
        : NaN;
      if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
        fail("unix", i, "mode", `expected an octal mode such as "0660"`);
      }
      u.mode = mode;
    }
    for (const key of ["owner", "group"] as const) {
      const v = t[key];
      if (v === undefined) continue;
      if (typeof v !== "string" && !(typeof v === "number" && Number.isInteger(v) && v >= 0)) {
        fail("unix", i, key, "expected a name or a numeric id");
      }
      u[key] = String(v);
    }
    config.unix.push(u);
  });
  tables("device").forEach((t, i) => {
    if (typeof t.type !== "string") {
      fail(
        "device",
        i,
        t.type === undefined ? undefined : "type",
        "type must be a string naming the device type",
      );
    }
    const options: Record<string, string> = {};
    for (const [key, v] of Object.entries(t)) {
      if (key === "type") continue;
      if (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean") {
        fail("device", i, key, "expected a string, a number or a boolean");
      }
      options[key] = String(v);
    }
    const spec: DeviceSpec = {
      type: t.type as string,
      options,
      origin: `${file}:${lineOf(lines, "device", i)}`,
    };
    try {
      checkDeviceSpec(spec);
    } catch (e) {
      if (!(e instanceof UsageError)) throw e;
      const bad = /Unknown key "([^"]+)"/.exec(e.message)?.[1] ?? "type";
      fail("device", i, bad, e.message.replace(/ in \S+:\d+/, ""));
    }
    config.devices.push(spec);
  });
  tables("rule").forEach((t, i) => {
    try {
      config.rules.push(parseRule(t, `${file}:${lineOf(lines, "rule", i)}`));
    } catch (e) {
      if (!(e instanceof RuleError)) throw e;
      fail("rule", i, e.key in t ? e.key : undefined, e.message);
    }
  });
  return config;
}

/** Reads and parses a configuration file. */
export async function loadConfig(file: string): Promise<ServeConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new UsageError(
      `Cannot read the configuration file ${file}: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  return parseConfig(text, file);
}
