/**
 * The gateway's configuration: a TOML (v1.0) file and the `serve` flags, merged into one
 * {@linkcode ConfigInput} in which every value remembers where it was written, then checked by
 * one function, {@linkcode validateConfig}, before anything is opened. `serve`, its reload at
 * SIGHUP, `config check` and `policy check` all go through it, so they accept the same things.
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
 * An error in the file names `file:line: key` with the line of the key itself; an error in a
 * flag names the flag and its value.
 *
 * @module
 */

import { errorMessage } from "../util/error_message.ts";
import type { LogLevel } from "../logtape.ts";
import { parse } from "@std/toml";
import { parseRule, type Rule, RuleError } from "../policy/rules.ts";
import { type Cidr, parseAddress, parseCidr } from "../policy/cidr.ts";
import { USBIP_PORT } from "../protocol/constants.ts";
import { parseHostPort } from "../transport/tcp.ts";
import { type ParsedDevice, parseDevice, pathsRelativeTo } from "../devices/registry.ts";
import { groupId, userId } from "./accounts.ts";
import {
  LIMIT_KEYS,
  type LimitKey,
  type LimitsConfig,
  parseLimitValue,
  setLimit,
} from "./limits.ts";
import { DEFAULT_CAPTURE_MAX_BYTES } from "../capture/file_capture.ts";
import { isLogFormat, LOG_FORMATS, type LogFormatChoice } from "./logging.ts";
import { keyLines } from "./toml_lines.ts";
import { UsageError } from "./usage_error.ts";

/** Where a value was written. */
export type Origin =
  | { readonly kind: "file"; readonly file: string; readonly line: number; readonly path: string }
  | { readonly kind: "flag"; readonly flag: string; readonly text: string }
  | { readonly kind: "builtin"; readonly what: string };

/** Where `origin` is, for logs and rule origins: `gw.toml:12`, `--device keyboard`. */
export function describeOrigin(origin: Origin): string {
  switch (origin.kind) {
    case "file":
      return `${origin.file}:${origin.line}`;
    case "flag":
      return `${origin.flag} ${origin.text}`;
    case "builtin":
      return origin.what;
  }
}

/** A value of the configuration that is wrong, with where it was written. */
export class ConfigError extends UsageError {
  readonly origin: Origin;
  readonly problem: string;
  /** `gw.toml:12: device[2].pattern: PROBLEM` or `Invalid --device SPEC: PROBLEM`. */
  constructor(origin: Origin, problem: string) {
    super(
      origin.kind === "file"
        ? `${origin.file}:${origin.line}: ${origin.path}: ${problem}`
        : origin.kind === "flag"
        ? `Invalid ${origin.flag} ${origin.text}: ${problem}`
        : `${origin.what}: ${problem}`,
    );
    this.name = "ConfigError";
    this.origin = origin;
    this.problem = problem;
  }
}

/** Several wrong values, each with where it was written: one line each, file lines in order. */
export class ConfigErrors extends UsageError {
  readonly problems: readonly ConfigError[];
  /** Lists `problems`: those in files by line, then those in flags. */
  constructor(problems: readonly ConfigError[]) {
    const line = (e: ConfigError) => e.origin.kind === "file" ? e.origin.line : Infinity;
    const sorted = [...problems].sort((a, b) => line(a) - line(b));
    super(sorted.map((e) => e.message).join("\n"));
    this.name = "ConfigErrors";
    this.problems = sorted;
  }
}

/** A value as written, and where. */
export interface Given<T = unknown> {
  readonly value: T;
  readonly origin: Origin;
}

/** A table of key/value pairs as written: a `[[device]]`, a `[[rule]]`, a `--device SPEC`. */
export interface TableInput {
  readonly fields: Readonly<Record<string, unknown>>;
  /** Where the table (or flag) starts. */
  readonly origin: Origin;
  /** Where each key is written; keys not listed are at {@linkcode origin}. */
  readonly keyOrigins: Readonly<Record<string, Origin>>;
  /** Keys written alone, without `=value` (`storage:image=a.img,ro`). */
  readonly alone?: readonly string[];
  /** The folder relative paths resolve against (the config file's); the working folder if absent. */
  readonly baseDir?: string;
}

/** The configuration as written, before it is checked. */
export interface ConfigInput {
  /** The configuration file, if there is one. */
  file?: string;
  tcp: Given[];
  unix: TableInput[];
  /** `[[tls]]` tables, or the `--tls` flags (one table per address). */
  tls: TableInput[];
  devices: TableInput[];
  rules: TableInput[];
  limits: Partial<Record<LimitKey, Given>>;
  logLevel?: Given;
  logFormat?: Given;
  seatDir?: Given;
  consoleUid?: Given;
  /** `metrics` (or `--metrics`): the address of the metrics listener. */
  metrics?: Given;
  /** The `[attach]` table, key by key. */
  attach: Partial<Record<string, Given>>;
  /** `capture`, `capture_snaplen`, `capture_max_size` (or their flags). */
  capture?: Given;
  captureSnaplen?: Given;
  captureMaxSize?: Given;
  /** Whether the demo set was added because nothing named a device. */
  demo?: boolean;
}

/** A TCP listener. */
export interface TcpListenerConfig {
  readonly hostname: string;
  readonly port: number;
}

/** How a TCP listener's address is written: `127.0.0.1:3240`, `[::1]:3240`. */
export function formatAddress(t: TcpListenerConfig): string {
  return t.hostname.includes(":") ? `[${t.hostname}]:${t.port}` : `${t.hostname}:${t.port}`;
}

/**
 * What unprivileged users may put into this machine's kernel through the gateway
 * (`usbipgw attach` without root), beyond the gateway's own devices.
 */
export interface AttachConfig {
  /**
   * The USB/IP servers a remote attach may reach: address prefixes (a remote given as an IP
   * address must lie in one) and host names (a remote given by name must be one of them, as
   * written). Empty: no remote attach.
   */
  readonly remotes: readonly { readonly cidr?: Cidr; readonly host?: string }[];
  /**
   * Whether a user's own program may hand over a socket to attach: `false`; `true` (polkit
   * decides, `org.usbipgw.attach-stream`); or `"console"` (the console user may without
   * asking polkit, everyone else as with `true`).
   */
  readonly streams: boolean | "console";
  /** Ports one user may hold at once through the gateway. */
  readonly maxPerUser: number;
  /** Attach and detach requests one user may make per second. */
  readonly requestsPerSecond: number;
}

/** The defaults of {@linkcode AttachConfig}. */
export const DEFAULT_ATTACH: AttachConfig = Object.freeze({
  remotes: [],
  streams: false,
  maxPerUser: 4,
  requestsPerSecond: 10,
});

/**
 * A TLS listener: the server's certificate and key, and the CAs (or pinned self-signed
 * certificates) its clients' certificates must verify against; every client shows one.
 */
export interface TlsListenerConfig {
  readonly hostname: string;
  readonly port: number;
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
  readonly minVersion: typeof TLS_MIN_VERSIONS[number];
}

/** A unix listener. Without `uid` and `mode` the socket follows the console user. */
export interface UnixListenerConfig {
  readonly path: string;
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
}

/** A device to serve, checked. */
export interface DeviceConfig {
  /** The type and its typed options, as the registry parsed them. */
  readonly device: ParsedDevice;
  /**
   * The bus id: as given (`busid=`, a host device's), or assigned in order (1-1, 1-2, ...)
   * around the given ones; absent for a host device named by vid/pid until it is plugged in.
   */
  readonly busid?: string;
  /** Whether {@linkcode busid} was assigned rather than given. */
  readonly assigned: boolean;
  /** Its identity across reloads: the type and its options as written, sorted. */
  readonly key: string;
  /** Where it was written, for logs: `gw.toml:15`, `--device keyboard`. */
  readonly origin: string;
  /** The pcapng file of this device's traffic (its `capture` key), if any. */
  readonly capture?: string;
}

/** The traffic captures: the gateway's file, and how much every capture file keeps. */
export interface CaptureConfig {
  /** The pcapng file of every device's traffic (`capture`, `--capture`), if any. */
  readonly file?: string;
  /** The most data bytes kept per record; all when absent. */
  readonly snaplen?: number;
  /** The size at which a capture file is rotated to FILE.1 (Infinity: never). */
  readonly maxBytes: number;
}

/** The configuration `serve` runs with: every value checked and typed. */
export interface GatewayConfig {
  readonly tcp: readonly TcpListenerConfig[];
  readonly unix: readonly UnixListenerConfig[];
  readonly tls: readonly TlsListenerConfig[];
  readonly devices: readonly DeviceConfig[];
  /** Access rules, first match wins. */
  readonly rules: readonly Rule[];
  readonly limits: LimitsConfig;
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormatChoice;
  /** Where logind publishes seat state. */
  readonly seatDir?: string;
  /** The console user's uid when logind is absent. */
  readonly consoleUid?: number;
  /** Where to serve the Prometheus metrics over HTTP; off when absent. */
  readonly metrics?: TcpListenerConfig;
  /** What unprivileged users may attach into this kernel through the gateway. */
  readonly attach: AttachConfig;
  /** Capture files (devices name their own in {@linkcode DeviceConfig.capture}). */
  readonly capture: CaptureConfig;
  /** Whether these are the demo devices (nothing named a device). */
  readonly demo: boolean;
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
  "metrics",
  "limits",
  "logging",
  "attach",
  "tls",
  "capture",
  "capture_snaplen",
  "capture_max_size",
];
const LOGGING_KEYS = ["level", "format"];
const ATTACH_KEYS = ["remotes", "streams", "max_per_user", "requests_per_second"];
const UNIX_KEYS = ["path", "mode", "owner", "group"];
const TLS_KEYS = ["listen", "cert", "key", "ca", "min_version"];
/** The TLS versions a listener may take as its lowest (TLS 1.2 is needed by the kernel path). */
export const TLS_MIN_VERSIONS = ["1.2", "1.3"] as const;

type Table = Record<string, unknown>;

function isTable(v: unknown): v is Table {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** The folder of `path`; "" for a bare file name (the working folder). */
function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "" : i === 0 ? "/" : path.slice(0, i);
}

/**
 * The line of the TOML syntax error in `text`: the line after the longest prefix that still
 * parses (a value that spans lines fails only once it is cut off for good).
 */
function syntaxErrorLine(lines: string[]): number {
  let good = 0;
  for (let n = 1; n <= Math.min(lines.length, 2000); n++) {
    try {
      parse(lines.slice(0, n).join("\n"));
      good = n;
    } catch {
      // Not yet (or no longer) a document.
    }
  }
  return Math.min(good + 1, lines.length);
}

/**
 * Reads a configuration file's text into a {@linkcode ConfigInput}: TOML syntax, the known
 * tables and keys, and the shape of each value. The values themselves are checked by
 * {@linkcode validateConfig}.
 */
export function readConfigText(text: string, file: string): ConfigInput {
  const lines = text.split("\n");
  let doc: Table;
  try {
    doc = parse(text) as Table;
  } catch (e) {
    throw new UsageError(
      `${file}:${syntaxErrorLine(lines)}: invalid TOML: ${errorMessage(e)}`,
    );
  }
  const positions = keyLines(text);
  const at = (path: string, fallback?: string): Origin => ({
    kind: "file",
    file,
    line: positions.lines.get(path) ?? positions.lines.get(fallback ?? "") ?? 1,
    path,
  });
  const fail = (path: string, problem: string, fallback?: string): never => {
    throw new ConfigError(at(path, fallback), problem);
  };
  const duplicate = positions.duplicates[0];
  if (duplicate !== undefined) {
    throw new ConfigError(
      { kind: "file", file, line: duplicate.line, path: duplicate.path },
      `given twice (first on line ${positions.lines.get(duplicate.path)})`,
    );
  }
  for (const key of Object.keys(doc)) {
    if (!TOP_KEYS.includes(key)) fail(key, `unknown key; valid keys: ${TOP_KEYS.join(", ")}`);
  }
  const baseDir = parentOf(file);
  const input: ConfigInput = {
    file,
    tcp: [],
    unix: [],
    tls: [],
    devices: [],
    rules: [],
    limits: {},
    attach: {},
  };
  const given = (path: string, value: unknown): Given => ({ value, origin: at(path) });
  const table = (name: string): Table | undefined => {
    const t = doc[name];
    if (t === undefined) return undefined;
    if (!isTable(t)) fail(name, `expected a [${name}] table`);
    return t as Table;
  };
  const limits = table("limits");
  for (const [key, value] of Object.entries(limits ?? {})) {
    if (!(key in LIMIT_KEYS)) {
      fail(`limits.${key}`, `unknown key; valid keys: ${Object.keys(LIMIT_KEYS).join(", ")}`);
    }
    input.limits[key as LimitKey] = given(`limits.${key}`, value);
  }
  if (doc.log_level !== undefined) input.logLevel = given("log_level", doc.log_level);
  for (const [key, value] of Object.entries(table("attach") ?? {})) {
    if (!ATTACH_KEYS.includes(key)) {
      fail(`attach.${key}`, `unknown key; valid keys: ${ATTACH_KEYS.join(", ")}`);
    }
    input.attach[key] = given(`attach.${key}`, value);
  }
  for (const [key, value] of Object.entries(table("logging") ?? {})) {
    if (!LOGGING_KEYS.includes(key)) {
      fail(`logging.${key}`, `unknown key; valid keys: ${LOGGING_KEYS.join(", ")}`);
    }
    if (key === "level") {
      if (input.logLevel !== undefined) {
        fail("logging.level", "the level is already set by log_level; keep one of them");
      }
      input.logLevel = given("logging.level", value);
    } else {
      input.logFormat = given("logging.format", value);
    }
  }
  if (doc.seat_dir !== undefined) {
    const v = doc.seat_dir;
    input.seatDir = given(
      "seat_dir",
      typeof v === "string" && v !== "" ? pathsOf({ baseDir }).resolvePath(v) : v,
    );
  }
  if (doc.console_uid !== undefined) input.consoleUid = given("console_uid", doc.console_uid);
  if (doc.metrics !== undefined) input.metrics = given("metrics", doc.metrics);
  if (doc.capture !== undefined) {
    const v = doc.capture;
    input.capture = given(
      "capture",
      typeof v === "string" && v !== "" ? pathsOf({ baseDir }).resolvePath(v) : v,
    );
  }
  if (doc.capture_snaplen !== undefined) {
    input.captureSnaplen = given("capture_snaplen", doc.capture_snaplen);
  }
  if (doc.capture_max_size !== undefined) {
    input.captureMaxSize = given("capture_max_size", doc.capture_max_size);
  }
  if (doc.tcp !== undefined) {
    const list = Array.isArray(doc.tcp) ? doc.tcp : [doc.tcp];
    input.tcp = list.map((address) => given("tcp", address));
  }
  const tables = (name: string): Table[] => {
    const v = doc[name];
    if (v === undefined) return [];
    if (!Array.isArray(v) || !v.every(isTable)) fail(name, `expected [[${name}]] tables`);
    return v as Table[];
  };
  const tableInput = (name: string, t: Table, i: number): TableInput => {
    const path = `${name}[${i + 1}]`;
    return {
      fields: t,
      origin: at(path),
      keyOrigins: Object.fromEntries(Object.keys(t).map((k) => [k, at(`${path}.${k}`, path)])),
      baseDir,
    };
  };
  tables("unix").forEach((t, i) => {
    for (const key of Object.keys(t)) {
      if (!UNIX_KEYS.includes(key)) {
        fail(`unix[${i + 1}].${key}`, `unknown key; valid keys: ${UNIX_KEYS.join(", ")}`);
      }
    }
    input.unix.push(tableInput("unix", t, i));
  });
  tables("tls").forEach((t, i) => {
    for (const key of Object.keys(t)) {
      if (!TLS_KEYS.includes(key)) {
        fail(`tls[${i + 1}].${key}`, `unknown key; valid keys: ${TLS_KEYS.join(", ")}`);
      }
    }
    input.tls.push(tableInput("tls", t, i));
  });
  input.devices = tables("device").map((t, i) => tableInput("device", t, i));
  input.rules = tables("rule").map((t, i) => tableInput("rule", t, i));
  return input;
}

/** Reads a configuration file into a {@linkcode ConfigInput}. */
export async function readConfigFile(file: string): Promise<ConfigInput> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new UsageError(
      `Cannot read the configuration file ${file}: ${errorMessage(e)}`,
    );
  }
  return readConfigText(text, file);
}

/** How the paths of table `t` resolve: against its file's folder, or as given (flags). */
function pathsOf(t: { readonly baseDir?: string }) {
  return pathsRelativeTo(t.baseDir ?? "");
}

/**
 * The origin of `key` of a table: the key's own line; for a key that is missing, the table's
 * line with the key's path (`device[1].image`).
 */
function keyOrigin(t: TableInput, key: string): Origin {
  const own = t.keyOrigins[key];
  if (own !== undefined) return own;
  return t.origin.kind === "file" ? { ...t.origin, path: `${t.origin.path}.${key}` } : t.origin;
}

/** A device's identity across reloads: its type and its options as written, sorted. */
export function deviceKey(t: TableInput): string {
  const { type, ...options } = t.fields;
  const pairs = Object.keys(options).sort().map((k) => `${k}=${String(options[k])}`);
  return pairs.length === 0 ? String(type) : `${String(type)}:${pairs.join(",")}`;
}

function checkDevice(t: TableInput): DeviceConfig {
  // `capture` is the gateway's, not the device type's: every device takes it, as `busid`.
  const { type, capture, ...rest } = t.fields;
  if (capture !== undefined && (typeof capture !== "string" || capture === "")) {
    throw new ConfigError(keyOrigin(t, "capture"), "expected the path of a pcapng file");
  }
  if (typeof type !== "string" || type === "") {
    throw new ConfigError(
      keyOrigin(t, "type"),
      "type must be a string naming the device type",
    );
  }
  const options: Record<string, string> = {};
  for (const [key, v] of Object.entries(rest)) {
    if (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean") {
      throw new ConfigError(keyOrigin(t, key), "expected a string, a number or a boolean");
    }
    options[key] = String(v);
  }
  const parsed = parseDevice(type, options, t.alone ?? [], pathsOf(t));
  if (!parsed.ok) throw new ConfigError(keyOrigin(t, parsed.key), parsed.message);
  const { ok: _ok, ...device } = parsed;
  return {
    device,
    ...(parsed.busid !== undefined ? { busid: parsed.busid } : {}),
    assigned: false,
    key: deviceKey(t),
    origin: describeOrigin(t.origin),
    ...(capture !== undefined ? { capture: pathsOf(t).resolvePath(capture as string) } : {}),
  };
}

/** Checks the capture settings and the capture files of `devices`; problems go to `problems`. */
function checkCapture(
  input: ConfigInput,
  devices: readonly { config: DeviceConfig; table: TableInput }[],
  problems: ConfigError[],
): CaptureConfig {
  let file: string | undefined;
  const c = input.capture;
  if (c !== undefined) {
    if (typeof c.value === "string" && c.value !== "") file = c.value;
    else problems.push(new ConfigError(c.origin, "expected the path of a pcapng file"));
  }
  let snaplen: number | undefined;
  const s = input.captureSnaplen;
  if (s !== undefined) {
    const n = parseLimitValue(s.value, "bytes");
    if (n === undefined || (Number.isFinite(n) && n > 0xffffffff)) {
      problems.push(
        new ConfigError(
          s.origin,
          `expected a number of bytes (at least 1, KiB or MiB allowed) or "unlimited"`,
        ),
      );
    } else if (Number.isFinite(n)) snaplen = n;
  }
  let maxBytes = DEFAULT_CAPTURE_MAX_BYTES;
  const m = input.captureMaxSize;
  if (m !== undefined) {
    const n = parseLimitValue(m.value, "bytes");
    if (n === undefined) {
      problems.push(
        new ConfigError(
          m.origin,
          `expected a size in bytes (KiB, MiB or GiB allowed) or "unlimited"`,
        ),
      );
    } else maxBytes = n;
  }
  // Two captures into one file would interleave two pcapng streams.
  const files = new Map<string, Origin>();
  if (file !== undefined && c !== undefined) files.set(file, c.origin);
  for (const { config, table } of devices) {
    if (config.capture === undefined) continue;
    const origin = keyOrigin(table, "capture");
    const first = files.get(config.capture);
    if (first !== undefined) {
      problems.push(
        new ConfigError(
          origin,
          `${config.capture} is already a capture file (${describeOrigin(first)})`,
        ),
      );
    } else files.set(config.capture, origin);
  }
  return {
    ...(file !== undefined ? { file } : {}),
    ...(snaplen !== undefined ? { snaplen } : {}),
    maxBytes,
  };
}

function checkTls(t: TableInput): TlsListenerConfig {
  const { listen, cert, key, ca, min_version: minVersion } = t.fields;
  if (typeof listen !== "string") {
    throw new ConfigError(keyOrigin(t, "listen"), `expected an address "HOST:PORT"`);
  }
  let address: TcpListenerConfig;
  try {
    address = parseHostPort(listen, USBIP_PORT);
  } catch (e) {
    throw new ConfigError(keyOrigin(t, "listen"), (e as Error).message);
  }
  const file = (name: string, value: unknown, what: string): string => {
    if (typeof value !== "string" || value === "") {
      throw new ConfigError(keyOrigin(t, name), `expected the path of ${what} (PEM)`);
    }
    return pathsOf(t).resolvePath(value);
  };
  const version = minVersion ?? "1.2";
  if (!(TLS_MIN_VERSIONS as readonly unknown[]).includes(version)) {
    throw new ConfigError(
      keyOrigin(t, "min_version"),
      `expected ${TLS_MIN_VERSIONS.map((v) => `"${v}"`).join(" or ")}`,
    );
  }
  return {
    ...address,
    certFile: file("cert", cert, "the server's certificate"),
    keyFile: file("key", key, "the server's private key"),
    caFile: file("ca", ca, "the CAs (or pinned certificates) of the clients"),
    minVersion: version as TlsListenerConfig["minVersion"],
  };
}

function checkUnix(t: TableInput): Promise<UnixListenerConfig> {
  const { path, mode, owner, group } = t.fields;
  if (typeof path !== "string" || path === "") {
    throw new ConfigError(keyOrigin(t, "path"), "path must be a non-empty string");
  }
  let modeValue: number | undefined;
  if (mode !== undefined) {
    modeValue = typeof mode === "number"
      ? mode
      : typeof mode === "string" && /^0?[0-7]{3,4}$/.test(mode)
      ? parseInt(mode, 8)
      : NaN;
    if (!Number.isInteger(modeValue) || modeValue < 0 || modeValue > 0o7777) {
      throw new ConfigError(keyOrigin(t, "mode"), `expected an octal mode such as "0660"`);
    }
  }
  const id = async (key: "owner" | "group", v: unknown) => {
    if (v === undefined) return undefined;
    if (typeof v === "number" && Number.isInteger(v) && v >= 0) return v;
    if (typeof v !== "string" || v === "") {
      throw new ConfigError(keyOrigin(t, key), "expected a name or a numeric id");
    }
    try {
      return await (key === "owner" ? userId(v) : groupId(v));
    } catch (e) {
      throw new ConfigError(keyOrigin(t, key), (e as Error).message);
    }
  };
  return (async () => {
    const uid = await id("owner", owner);
    const gid = await id("group", group);
    return {
      path: pathsOf(t).resolvePath(path),
      ...(modeValue !== undefined ? { mode: modeValue } : {}),
      ...(uid !== undefined ? { uid } : {}),
      ...(gid !== undefined ? { gid } : {}),
    };
  })();
}

/**
 * Checks every value of `input` and returns the typed configuration, or throws
 * {@linkcode ConfigError} naming the wrong value and where it was written
 * ({@linkcode ConfigErrors} when there are several: every one is reported). Opens nothing;
 * it reads only the user and group databases (for unix socket owners).
 */
export async function validateConfig(input: ConfigInput): Promise<GatewayConfig> {
  const problems: ConfigError[] = [];
  /** Runs one check; a wrong value is noted and the next check goes on. */
  const check = async <T>(f: () => T | Promise<T>): Promise<T | undefined> => {
    try {
      return await f();
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      problems.push(e);
      return undefined;
    }
  };
  let logLevel: LogLevel = "info";
  const level = input.logLevel;
  if (level !== undefined) {
    await check(() => {
      const v = level.value;
      if (typeof v !== "string" || !(LOG_LEVELS as readonly string[]).includes(v)) {
        throw new ConfigError(level.origin, `expected one of ${LOG_LEVELS.join(", ")}`);
      }
      logLevel = v as LogLevel;
    });
  }
  let logFormat: LogFormatChoice = "auto";
  const format = input.logFormat;
  if (format !== undefined) {
    await check(() => {
      const v = format.value;
      if (typeof v !== "string" || !isLogFormat(v)) {
        throw new ConfigError(format.origin, `expected one of ${LOG_FORMATS.join(", ")}`);
      }
      logFormat = v;
    });
  }
  const limits: LimitsConfig = { session: {} };
  for (const [key, given] of Object.entries(input.limits)) {
    const problem = setLimit(limits, key as LimitKey, given.value);
    if (problem !== undefined) problems.push(new ConfigError(given.origin, problem));
  }
  let seatDir: string | undefined;
  const seat = input.seatDir;
  if (seat !== undefined) {
    if (typeof seat.value === "string" && seat.value !== "") seatDir = seat.value;
    else problems.push(new ConfigError(seat.origin, "expected a folder path"));
  }
  let consoleUid: number | undefined;
  if (input.consoleUid !== undefined) {
    const v = input.consoleUid.value;
    const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
    if (typeof n === "number" && Number.isInteger(n) && n >= 0 && n <= 0xfffffffe) {
      consoleUid = n;
    } else {
      problems.push(new ConfigError(input.consoleUid.origin, "expected a numeric uid"));
    }
  }
  const metrics = input.metrics === undefined ? undefined : checkMetrics(input.metrics, problems);
  const tcp: TcpListenerConfig[] = [];
  const addresses = new Map<string, Origin>();
  for (const { value, origin } of input.tcp) {
    await check(() => {
      if (typeof value !== "string") {
        throw new ConfigError(origin, `expected an address "HOST:PORT" or a list of them`);
      }
      let address: TcpListenerConfig;
      try {
        address = parseHostPort(value, USBIP_PORT);
      } catch (e) {
        throw new ConfigError(origin, (e as Error).message);
      }
      const text = `${address.hostname}:${address.port}`;
      const first = addresses.get(text);
      if (first !== undefined && address.port !== 0) {
        throw new ConfigError(origin, `${value} is already a listener (${describeOrigin(first)})`);
      }
      addresses.set(text, origin);
      tcp.push(address);
    });
  }
  const tls: TlsListenerConfig[] = [];
  for (const t of input.tls) {
    await check(() => {
      const listener = checkTls(t);
      const text = formatAddress(listener);
      const first = addresses.get(text);
      if (first !== undefined && listener.port !== 0) {
        throw new ConfigError(
          keyOrigin(t, "listen"),
          `${text} is already a listener (${describeOrigin(first)})`,
        );
      }
      addresses.set(text, keyOrigin(t, "listen"));
      tls.push(listener);
    });
  }
  const unix: UnixListenerConfig[] = [];
  for (const t of input.unix) {
    await check(async () => {
      const u = await checkUnix(t);
      if (unix.some((other) => other.path === u.path)) {
        throw new ConfigError(keyOrigin(t, "path"), `${u.path} is already a listener`);
      }
      unix.push(u);
    });
  }
  const devices: DeviceConfig[] = [];
  const busids = new Map<string, TableInput>();
  const tables = new Map<DeviceConfig, TableInput>();
  for (const t of input.devices) {
    await check(() => {
      const device = checkDevice(t);
      tables.set(device, t);
      if (device.busid !== undefined) {
        const first = busids.get(device.busid);
        if (first !== undefined) {
          const key = "busid" in t.fields
            ? "busid"
            : "export_busid" in t.fields
            ? "export_busid"
            : "type";
          throw new ConfigError(
            keyOrigin(t, key),
            `bus id ${device.busid} is already taken by the device of ${
              describeOrigin(first.origin)
            }`,
          );
        }
        busids.set(device.busid, t);
      }
      devices.push(device);
    });
  }
  const taken = new Set(busids.keys());
  let port = 1;
  const assigned = devices.map((d): DeviceConfig => {
    // A host device named by vid/pid is exported under its host bus id once plugged in.
    if (d.busid !== undefined || d.device.name === "host") return d;
    while (taken.has(`1-${port}`)) port++;
    taken.add(`1-${port}`);
    return { ...d, busid: `1-${port}`, assigned: true };
  });
  const attach = checkAttach(input.attach, problems);
  const capture = checkCapture(
    input,
    devices.map((config) => ({ config, table: tables.get(config)! })),
    problems,
  );
  const rules: Rule[] = [];
  for (const t of input.rules) {
    try {
      rules.push(parseRule(t.fields as Record<string, unknown>, describeOrigin(t.origin)));
    } catch (e) {
      if (!(e instanceof RuleError)) throw e;
      problems.push(new ConfigError(keyOrigin(t, e.key), e.message));
    }
  }
  if (problems.length === 1) throw problems[0]!;
  if (problems.length > 1) throw new ConfigErrors(problems);
  return {
    tcp,
    unix,
    tls,
    devices: assigned,
    rules,
    limits,
    logLevel,
    logFormat,
    ...(seatDir !== undefined ? { seatDir } : {}),
    ...(consoleUid !== undefined ? { consoleUid } : {}),
    ...(metrics !== undefined ? { metrics } : {}),
    attach,
    capture,
    demo: input.demo ?? false,
  };
}

/**
 * Checks the metrics address: `HOST:PORT`, or a port alone for 127.0.0.1. There is no default
 * port. A non-loopback host is accepted (the operator chose it; the gateway warns at start).
 */
function checkMetrics(given: Given, problems: ConfigError[]): TcpListenerConfig | undefined {
  const form = `expected "HOST:PORT" for the metrics listener, or a port alone for 127.0.0.1`;
  if (typeof given.value !== "string" && typeof given.value !== "number") {
    problems.push(new ConfigError(given.origin, form));
    return undefined;
  }
  try {
    const address = parseHostPort(String(given.value), -1);
    if (address.port >= 0) return address;
    problems.push(new ConfigError(given.origin, `the port is missing; ${form}`));
  } catch (e) {
    problems.push(new ConfigError(given.origin, (e as Error).message));
  }
  return undefined;
}

/** A host name as RFC 1123 allows it: labels of letters, digits and inner hyphens. */
const HOST_NAME =
  /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** Checks the `[attach]` table; wrong values go to `problems`. */
function checkAttach(given: ConfigInput["attach"], problems: ConfigError[]): AttachConfig {
  const remotes: { cidr?: Cidr; host?: string }[] = [];
  const r = given.remotes;
  if (r !== undefined) {
    const list = Array.isArray(r.value) ? r.value : [r.value];
    for (const entry of list) {
      if (typeof entry !== "string") {
        problems.push(new ConfigError(r.origin, "expected address prefixes or host names"));
        continue;
      }
      if (parseAddress(entry.split("/")[0]!) !== undefined) {
        try {
          remotes.push({ cidr: parseCidr(entry) });
        } catch (e) {
          problems.push(new ConfigError(r.origin, (e as Error).message));
        }
      } else if (HOST_NAME.test(entry)) {
        remotes.push({ host: entry.toLowerCase() });
      } else {
        problems.push(
          new ConfigError(r.origin, `"${entry}" is neither an address prefix nor a host name`),
        );
      }
    }
  }
  let streams = DEFAULT_ATTACH.streams;
  if (given.streams !== undefined) {
    const v = given.streams.value;
    if (typeof v === "boolean" || v === "console") streams = v;
    else problems.push(new ConfigError(given.streams.origin, `expected true, false or "console"`));
  }
  const count = (key: string, fallback: number): number => {
    const g = given[key];
    if (g === undefined) return fallback;
    if (typeof g.value === "number" && Number.isInteger(g.value) && g.value >= 1) return g.value;
    problems.push(new ConfigError(g.origin, "expected a positive whole number"));
    return fallback;
  };
  return {
    remotes,
    streams,
    maxPerUser: count("max_per_user", DEFAULT_ATTACH.maxPerUser),
    requestsPerSecond: count("requests_per_second", DEFAULT_ATTACH.requestsPerSecond),
  };
}

/** Reads and checks a configuration text: what `config check` does for a file alone. */
export async function checkConfigText(text: string, file: string): Promise<GatewayConfig> {
  return await validateConfig(readConfigText(text, file));
}
