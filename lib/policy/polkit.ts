/**
 * Asking polkit (polkit(8)) whether a local process may do one of usbipgw's actions, through
 * pkcheck(1): `pkcheck --action-id ACTION --process PID,START,UID [--detail KEY VALUE]...`.
 * START is the process's start time, field 22 of `/proc/PID/stat` (proc(5)), with which
 * polkitd notices a pid that now names another process. pkcheck's exit status is the answer:
 * 0 authorized, 1 not authorized, 2 authentication needed, 3 dismissed, 126 no system bus,
 * 127 polkit unavailable (no polkitd, an unknown action, a replaced process).
 *
 * A service cannot prompt for a password, so pkcheck runs without `--allow-user-interaction`
 * and "authentication needed" is a no. Every failure to get an answer is a no as well, with
 * a reason for the audit line; the check never throws.
 *
 * @module
 */

import { errorMessage } from "../util/error_message.ts";
import { getLogger } from "../logtape.ts";
import { PolkitAction, type PolkitActionId } from "../polkit/actions.ts";

const log = getLogger(["usbipgw", "policy"]);

/** Where pkcheck is on Debian, Fedora and Arch (Debian package: polkitd). */
export const PKCHECK = "/usr/bin/pkcheck";

/** How long pkcheck may take before the check gives up (it usually takes about 15 ms). */
export const DEFAULT_PKCHECK_TIMEOUT_MS = 5000;

/** The largest valid uid: `(uid_t)-1` means "no user" to the kernel. */
const MAX_UID = 0xffff_fffe;

/** The largest pid Linux hands out (`PID_MAX_LIMIT` on 64-bit). */
const MAX_PID = 4_194_304;

/** The details the gateway passes to polkit, for rules to read with `action.lookup()`. */
export interface PolkitDetails {
  /** The device's bus id: on the gateway (attach-local) or on the server; `1-2.3`. */
  busid?: string;
  /** The device's vendor and product ids in hex: `0525:a4a0` (passed in lower case). */
  vid_pid?: string;
  /** The server of a remote attach: `HOST:PORT`, `[ADDRESS]:PORT` for IPv6. */
  remote?: string;
}

/** One of the keys of {@linkcode PolkitDetails}. */
export type PolkitDetailKey = keyof PolkitDetails;

/** What each detail may hold: short, printable, never an option. */
const DETAIL_PATTERNS: Readonly<Record<PolkitDetailKey, RegExp>> = Object.freeze({
  // A USB/IP bus id is at most 31 characters (SYSFS_BUS_ID_SIZE 32 with its NUL).
  busid: /^[A-Za-z0-9][A-Za-z0-9._:-]{0,30}$/,
  vid_pid: /^[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}$/,
  // A host name (at most 253), an IPv4 address or a bracketed IPv6 one with a zone, a port.
  remote: /^[A-Za-z0-9[][A-Za-z0-9._:%[\]-]{0,261}$/,
});

/** What each detail is, for reasons. */
const DETAIL_FORMS: Readonly<Record<PolkitDetailKey, string>> = Object.freeze({
  busid: "a bus id (up to 31 letters, digits and . _ : -)",
  vid_pid: 'a "vid:pid" pair of 4-digit hex numbers',
  remote: "a HOST:PORT",
});

/** Who asks for what. */
export interface AuthorizationRequest {
  /** The action, one of {@linkcode PolkitAction}'s ids. */
  action: PolkitActionId;
  /** The requesting process (a unix peer's SO_PEERCRED pid). */
  pid: number;
  /** The requesting user (the peer's SO_PEERCRED uid); polkit decides for this uid. */
  uid: number;
  /**
   * The process's start time, as {@linkcode readProcessStartTime} read it when the peer
   * connected; read at check time when absent. Taken early, it lets polkit tell the peer
   * from a later process that got its pid.
   */
  startTime?: number;
  /** Facts for polkit's rules; each is validated, and unknown keys are refused. */
  details?: PolkitDetails;
}

/** How polkit answered, or why there is no answer. */
export type AuthorizationResult =
  /** pkcheck 0: polkit says yes. */
  | "authorized"
  /** pkcheck 1: polkit says no. */
  | "not_authorized"
  /** pkcheck 2: polkit would say yes after a password, which a service cannot ask for: no. */
  | "needs_authentication"
  /** pkcheck 3: an authentication dialog was dismissed: no. */
  | "dismissed"
  /**
   * No answer: no system bus, no polkitd, an action polkitd does not know, a process that is
   * gone, replaced or running as another uid, no pkcheck, a timeout: no.
   */
  | "unavailable"
  /** Not asked: the request itself is malformed (an action, pid, uid or detail): no. */
  | "bad_request";

/** The answer of {@linkcode checkAuthorization}; only `"authorized"` is a yes. */
export type Authorization =
  | { result: "authorized"; authorized: true; reason: string }
  | { result: Exclude<AuthorizationResult, "authorized">; authorized: false; reason: string };

/** How to reach polkit; the defaults are the system's. */
export interface CheckAuthorizationOptions {
  /** The pkcheck program; {@linkcode PKCHECK} when absent. */
  pkcheck?: string;
  /** How long pkcheck may take; {@linkcode DEFAULT_PKCHECK_TIMEOUT_MS} when absent. */
  timeoutMs?: number;
  /**
   * The system bus's D-Bus address for pkcheck (`DBUS_SYSTEM_BUS_ADDRESS`); the standard
   * `/run/dbus/system_bus_socket` when absent. For tests with a private bus.
   */
  systemBusAddress?: string;
}

/**
 * Field 22 of a `/proc/PID/stat` text (proc(5)): the process's start time in clock ticks
 * after boot. The second field, the command name, is in parentheses and may itself hold
 * spaces and parentheses, so the fields are counted after its last `)`. `undefined` when
 * the text is not a stat line.
 *
 * @example A command name with spaces and parentheses
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseProcStartTime } from "./polkit.ts";
 * const stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 80 0 0 0 0 0 0 0 20 0 1 0 " +
 *   "987654 2301952 217 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
 * assertEquals(parseProcStartTime(stat), 987654);
 * assertEquals(parseProcStartTime("4242 (sleep"), undefined);
 * ```
 */
export function parseProcStartTime(stat: string): number | undefined {
  const close = stat.lastIndexOf(")");
  if (close < 0 || !/^\s*\d+ \(/.test(stat)) return undefined;
  // After the command name: field 3 (state) is the first, so field 22 is the 20th.
  const fields = stat.slice(close + 1).trim().split(/\s+/);
  const start = fields[22 - 3];
  if (start === undefined || !/^\d{1,15}$/.test(start)) return undefined;
  return Number(start);
}

/**
 * The start time of process `pid` (field 22 of `/proc/PID/stat`), or `undefined` when there
 * is no such process or its stat cannot be read. Read it when a peer connects and pass it
 * as {@linkcode AuthorizationRequest.startTime}.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { readProcessStartTime } from "./polkit.ts";
 * assert((await readProcessStartTime(Deno.pid))! > 0);
 * ```
 */
export async function readProcessStartTime(pid: number): Promise<number | undefined> {
  if (!_validPid(pid)) return undefined;
  try {
    return parseProcStartTime(await Deno.readTextFile(`/proc/${pid}/stat`));
  } catch {
    return undefined;
  }
}

/**
 * pkcheck's arguments for a request: `--action-id`, `--process PID,START,UID` and a
 * `--detail KEY VALUE` per detail, in {@linkcode PolkitDetails}' key order. Never
 * `--allow-user-interaction`: a service cannot prompt. Validates nothing; see
 * {@linkcode checkAuthorization}.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { pkcheckArgs } from "./polkit.ts";
 * assertEquals(
 *   pkcheckArgs("org.usbipgw.attach-local", 1234, 5678, 1000, { busid: "1-1" }),
 *   ["--action-id", "org.usbipgw.attach-local", "--process", "1234,5678,1000",
 *     "--detail", "busid", "1-1"],
 * );
 * ```
 */
export function pkcheckArgs(
  action: PolkitActionId,
  pid: number,
  startTime: number,
  uid: number,
  details: PolkitDetails = {},
): string[] {
  const args = ["--action-id", action, "--process", `${pid},${startTime},${uid}`];
  for (const key of Object.keys(DETAIL_PATTERNS) as PolkitDetailKey[]) {
    const value = details[key];
    if (value !== undefined) args.push("--detail", key, value);
  }
  return args;
}

/**
 * Asks polkit whether process `pid` of user `uid` may do `action`: runs pkcheck with the
 * process's start time and the details, and says why in `reason` (for the audit line).
 * Only `"authorized"` is a yes. Never throws: a malformed request is `"bad_request"` (not
 * sent to polkit), and no system bus, no polkitd, no pkcheck, a timeout, or a process that
 * is gone or now runs as another user are `"unavailable"`.
 *
 * @example Without polkit's daemon (here: a bus address where none listens) the answer is a no
 * ```ts
 * import { assertEquals, assertStringIncludes } from "@std/assert";
 * import { checkAuthorization } from "./polkit.ts";
 * import { PolkitAction } from "../polkit/actions.ts";
 *
 * const answer = await checkAuthorization(
 *   { action: PolkitAction.ATTACH_LOCAL, pid: Deno.pid, uid: Deno.uid()!, details: { busid: "1-1" } },
 *   { systemBusAddress: "unix:path=/nonexistent/system_bus_socket" },
 * );
 * assertEquals(answer.authorized, false);
 * assertEquals(answer.result, "unavailable");
 * ```
 */
export async function checkAuthorization(
  request: AuthorizationRequest,
  options: CheckAuthorizationOptions = {},
): Promise<Authorization> {
  const { action, pid, uid } = request;
  const answer = (result: Authorization["result"], reason: string): Authorization => {
    const a = result === "authorized"
      ? { result, authorized: true as const, reason }
      : { result, authorized: false as const, reason };
    log.debug("polkit {action} for uid {uid} (pid {pid}): {result}, {reason}", {
      action: String(action),
      uid,
      pid,
      result,
      reason,
    });
    return a;
  };

  const invalid = _validate(request);
  if (invalid !== undefined) return answer("bad_request", `not asked: ${invalid}`);
  const who = `uid ${uid} (pid ${pid})`;

  // The subject: its start time, and the check that the pid still runs as that user.
  const startTime = request.startTime ?? await readProcessStartTime(pid);
  if (startTime === undefined) {
    return answer("unavailable", `not asked: process ${pid} is gone`);
  }
  const euid = await _effectiveUid(pid);
  if (euid !== uid) {
    return answer(
      "unavailable",
      euid === undefined
        ? `not asked: process ${pid} is gone`
        : `not asked: process ${pid} runs as uid ${euid}, not uid ${uid} (replaced?)`,
    );
  }

  const pkcheck = options.pkcheck ?? PKCHECK;
  const timeoutMs = options.timeoutMs ?? DEFAULT_PKCHECK_TIMEOUT_MS;
  const env: Record<string, string> = { LC_ALL: "C" };
  if (options.systemBusAddress !== undefined) {
    env.DBUS_SYSTEM_BUS_ADDRESS = options.systemBusAddress;
  }
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(pkcheck, {
      args: pkcheckArgs(action, pid, startTime, uid, _normalized(request.details)),
      clearEnv: true,
      env,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    return answer(
      "unavailable",
      e instanceof Deno.errors.NotFound
        ? `polkit is unavailable: there is no ${pkcheck} (Debian package: polkitd)`
        : `polkit is unavailable: cannot run ${pkcheck}: ${_message(e)}`,
    );
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // It has just exited.
    }
  }, timeoutMs);
  let out: Deno.CommandOutput;
  try {
    out = await child.output();
  } finally {
    clearTimeout(timer);
  }
  if (timedOut) {
    return answer(
      "unavailable",
      `polkit is unavailable: pkcheck did not answer within ${timeoutMs} ms`,
    );
  }
  const said = _lastLine(new TextDecoder().decode(out.stderr));
  switch (out.signal === null ? out.code : -1) {
    case 0:
      return answer("authorized", `polkit authorizes ${who} for ${action}`);
    case 1:
      return answer("not_authorized", `polkit does not authorize ${who} for ${action}`);
    case 2:
      return answer(
        "needs_authentication",
        `polkit wants ${who} to authenticate for ${action}, which a service cannot ask: no`,
      );
    case 3:
      return answer("dismissed", `the authentication of ${who} for ${action} was dismissed`);
    case 126:
      return answer(
        "unavailable",
        `polkit is unavailable: no system bus${said ? `: ${said}` : ""}`,
      );
    case 127:
      return answer("unavailable", `polkit is unavailable${said ? `: ${said}` : ""}`);
    default:
      return answer(
        "unavailable",
        `polkit is unavailable: pkcheck ${
          out.signal === null ? `exited with ${out.code}` : `was killed by ${out.signal}`
        }${said ? `: ${said}` : ""}`,
      );
  }
}

const ACTION_IDS: ReadonlySet<string> = new Set(Object.values(PolkitAction));

function _validPid(pid: number): boolean {
  return Number.isInteger(pid) && pid > 0 && pid <= MAX_PID;
}

/** Why `request` cannot be sent to polkit, or `undefined` when it can. */
function _validate(request: AuthorizationRequest): string | undefined {
  const { action, pid, uid, startTime, details } = request;
  if (typeof action !== "string" || !ACTION_IDS.has(action)) {
    return `${_quote(action)} is not an action of usbipgw`;
  }
  if (!_validPid(pid)) return `${_quote(pid)} is not a pid`;
  if (!(Number.isInteger(uid) && uid >= 0 && uid <= MAX_UID)) return `${_quote(uid)} is not a uid`;
  if (startTime !== undefined && !(Number.isSafeInteger(startTime) && startTime >= 0)) {
    return `${_quote(startTime)} is not a start time`;
  }
  if (details === undefined) return undefined;
  if (typeof details !== "object" || details === null) return "the details are not an object";
  for (const [key, value] of Object.entries(details)) {
    if (!Object.hasOwn(DETAIL_PATTERNS, key)) {
      return `${_quote(key)} is not a detail usbipgw passes (busid, vid_pid, remote)`;
    }
    if (value === undefined) continue;
    if (typeof value !== "string" || !DETAIL_PATTERNS[key as PolkitDetailKey].test(value)) {
      return `detail ${key} ${_quote(value)} is not ${DETAIL_FORMS[key as PolkitDetailKey]}`;
    }
  }
  return undefined;
}

/** A value for a reason text: quoted, and cut to 40 characters. */
function _quote(value: unknown): string {
  const text = typeof value === "string" ? value : String(value);
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}...` : text);
}

/** The details as polkit gets them: `vid_pid` in lower case, as rules would compare it. */
function _normalized(details: PolkitDetails | undefined): PolkitDetails | undefined {
  if (details?.vid_pid === undefined) return details;
  return { ...details, vid_pid: details.vid_pid.toLowerCase() };
}

/** The effective uid of process `pid` (the second `Uid:` field of /proc/PID/status). */
async function _effectiveUid(pid: number): Promise<number | undefined> {
  let status: string;
  try {
    status = await Deno.readTextFile(`/proc/${pid}/status`);
  } catch {
    return undefined;
  }
  const line = status.split("\n").find((l) => l.startsWith("Uid:"));
  const euid = line?.slice(4).trim().split(/\s+/)[1];
  return euid !== undefined && /^\d+$/.test(euid) ? Number(euid) : undefined;
}

/** The last non-empty line of pkcheck's stderr, cut to 300 characters. */
function _lastLine(text: string): string {
  const line = text.split("\n").map((l) => l.trim()).filter((l) => l !== "").at(-1) ?? "";
  return line.length > 300 ? `${line.slice(0, 300)}...` : line;
}

function _message(e: unknown): string {
  return errorMessage(e);
}
