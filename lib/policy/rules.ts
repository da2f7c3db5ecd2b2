/**
 * Access rules as data, first match wins, in the manner of spice-usbredir's filter rules: a
 * rule matches a peer (console user, uid, gid, transport, source prefix) and a device (bus id,
 * vendor/product, class, serial, origin) and allows, denies or grants read-only access.
 * "Denied by rule N" is told apart from "no rule matched", and built-in safe defaults apply:
 * TCP peers are denied unless a rule allows, the console user (and root) are allowed, and HID
 * keyboards and mice reach a TCP peer only through a rule that names them.
 * {@linkcode tcpReachability} tells whether any TCP peer at all can reach a device.
 *
 * @module
 */

import type { PeerInfo } from "../transport/connection.ts";
import {
  ALL_ADDRESSES,
  type Cidr,
  cidrContains,
  parseCidr,
  type Prefix,
  prefixesOverlap,
  subtractPrefix,
} from "./cidr.ts";
import type { DeviceFacts, Policy, PolicyDecision, PolicyEffect } from "./policy.ts";

/** What a rule requires of the peer; an absent field matches anything. */
export interface PeerMatch {
  /** The peer is (true) or is not (false) the console user. */
  console?: boolean;
  uid?: number[];
  gid?: number[];
  transport?: "unix" | "tcp";
  /** TCP source prefixes. */
  source?: Cidr[];
}

/** What a rule requires of the device; an absent field matches anything. */
export interface DeviceMatch {
  busid?: string[];
  vid?: number;
  pid?: number;
  /** Matches the device class or the class of any interface. */
  class?: number[];
  serial?: string;
  origin?: "emulated" | "passthrough";
}

/** One rule. */
export interface Rule {
  action: PolicyEffect;
  peer: PeerMatch;
  device: DeviceMatch;
  /** Where the rule was written, for messages (`gw.toml:12`, `--rule ...`). */
  origin?: string;
}

/** A rule field that cannot be accepted; `key` names it. */
export class RuleError extends Error {
  readonly key: string;
  /** Builds the error for `key`. */
  constructor(key: string, message: string) {
    super(message);
    this.name = "RuleError";
    this.key = key;
  }
}

/** The keys a rule accepts. */
export const RULE_KEYS = [
  "action",
  "console",
  "uid",
  "gid",
  "transport",
  "source",
  "busid",
  "vid",
  "pid",
  "class",
  "serial",
  "origin",
] as const;

const ACTIONS: readonly PolicyEffect[] = ["allow", "deny", "read-only"];

function list(value: unknown): unknown[] {
  if (Array.isArray(value)) return value;
  if (typeof value === "string" && value.includes("|")) return value.split("|");
  return [value];
}

function integer(key: string, v: unknown, hex: boolean, max: number): number {
  let n = NaN;
  if (typeof v === "number") n = v;
  else if (typeof v === "string" && hex && /^(0x)?[0-9a-fA-F]+$/.test(v)) {
    n = parseInt(v.replace(/^0x/, ""), 16);
  } else if (typeof v === "string" && /^\d+$/.test(v)) n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > max) {
    throw new RuleError(
      key,
      `${key} must be ${hex ? "a hex number such as 0525" : "a number"} up to ${max}`,
    );
  }
  return n;
}

/**
 * Builds a rule from loose fields, as TOML or the `--rule` flag give them (strings, numbers,
 * booleans, lists; `a|b` is a list in strings). Throws {@linkcode RuleError} naming the key.
 *
 * @example
 * ```ts
 * import { parseRule } from "./rules.ts";
 * const r = parseRule({ action: "allow", transport: "tcp", source: "10.0.0.0/8", vid: "0525" });
 * console.assert(r.device.vid === 0x0525 && r.peer.source?.length === 1);
 * ```
 */
export function parseRule(fields: Record<string, unknown>, origin?: string): Rule {
  for (const key of Object.keys(fields)) {
    if (!(RULE_KEYS as readonly string[]).includes(key)) {
      throw new RuleError(key, `unknown key "${key}"; valid keys: ${RULE_KEYS.join(", ")}`);
    }
  }
  const action = fields.action;
  if (typeof action !== "string" || !(ACTIONS as readonly string[]).includes(action)) {
    throw new RuleError("action", `action must be one of ${ACTIONS.join(", ")}`);
  }
  const peer: PeerMatch = {};
  const device: DeviceMatch = {};
  const f = fields;
  if (f.console !== undefined) {
    if (
      f.console !== true && f.console !== false && f.console !== "true" && f.console !== "false"
    ) {
      throw new RuleError("console", "console must be true or false");
    }
    peer.console = f.console === true || f.console === "true";
  }
  if (f.uid !== undefined) peer.uid = list(f.uid).map((v) => integer("uid", v, false, 0xffffffff));
  if (f.gid !== undefined) peer.gid = list(f.gid).map((v) => integer("gid", v, false, 0xffffffff));
  if (f.transport !== undefined) {
    if (f.transport !== "unix" && f.transport !== "tcp") {
      throw new RuleError("transport", "transport must be unix or tcp");
    }
    peer.transport = f.transport;
  }
  if (f.source !== undefined) {
    peer.source = list(f.source).map((v) => {
      try {
        return parseCidr(String(v));
      } catch (e) {
        throw new RuleError("source", (e as Error).message);
      }
    });
  }
  if (f.busid !== undefined) device.busid = list(f.busid).map((v) => String(v));
  if (f.vid !== undefined) device.vid = integer("vid", f.vid, true, 0xffff);
  if (f.pid !== undefined) device.pid = integer("pid", f.pid, true, 0xffff);
  if (f.class !== undefined) {
    device.class = list(f.class).map((v) => integer("class", v, true, 0xff));
  }
  if (f.serial !== undefined) device.serial = String(f.serial);
  if (f.origin !== undefined) {
    if (f.origin !== "emulated" && f.origin !== "passthrough") {
      throw new RuleError("origin", "origin must be emulated or passthrough");
    }
    device.origin = f.origin;
  }
  return {
    action: action as PolicyEffect,
    peer,
    device,
    ...(origin !== undefined ? { origin } : {}),
  };
}

/** A rule as one line of text: `allow transport=tcp source=10.0.0.0/8 busid=1-1`. */
export function describeRule(rule: Rule): string {
  const parts: string[] = [rule.action];
  const p = rule.peer;
  const d = rule.device;
  const hex4 = (n: number) => n.toString(16).padStart(4, "0");
  if (p.console !== undefined) parts.push(`console=${p.console}`);
  if (p.uid) parts.push(`uid=${p.uid.join("|")}`);
  if (p.gid) parts.push(`gid=${p.gid.join("|")}`);
  if (p.transport) parts.push(`transport=${p.transport}`);
  if (p.source) parts.push(`source=${p.source.map((c) => c.text).join("|")}`);
  if (d.busid) parts.push(`busid=${d.busid.join("|")}`);
  if (d.vid !== undefined) parts.push(`vid=${hex4(d.vid)}`);
  if (d.pid !== undefined) parts.push(`pid=${hex4(d.pid)}`);
  if (d.class) parts.push(`class=${d.class.map((c) => c.toString(16).padStart(2, "0")).join("|")}`);
  if (d.serial !== undefined) parts.push(`serial=${d.serial}`);
  if (d.origin) parts.push(`origin=${d.origin}`);
  return parts.join(" ");
}

/** The host part of a TCP peer address (`1.2.3.4:5` or `[::1]:5`). */
function hostOf(address: string): string {
  if (address.startsWith("[")) return address.slice(1, address.indexOf("]"));
  const i = address.lastIndexOf(":");
  return i < 0 ? address : address.slice(0, i);
}

/** Whether the device has a HID boot keyboard or boot mouse interface (HID 1.11 §4.2-4.3). */
export function isKeyboardOrMouse(device: DeviceFacts): boolean {
  return device.interfaces.some((i) =>
    i.bInterfaceClass === 3 && (i.bInterfaceProtocol === 1 || i.bInterfaceProtocol === 2)
  );
}

/** Whether a rule names the device itself rather than matching every device. */
function namesDevice(d: DeviceMatch): boolean {
  return d.busid !== undefined || d.vid !== undefined || d.serial !== undefined ||
    (d.class?.includes(3) ?? false);
}

/** Whether the device part of a rule matches the device. */
function deviceMatches(m: DeviceMatch, d: DeviceFacts): boolean {
  if (m.busid && !m.busid.includes(d.busid)) return false;
  if (m.vid !== undefined && m.vid !== d.idVendor) return false;
  if (m.pid !== undefined && m.pid !== d.idProduct) return false;
  if (
    m.class &&
    !m.class.some((c) => c === d.bDeviceClass || d.interfaces.some((i) => i.bInterfaceClass === c))
  ) {
    return false;
  }
  if (m.serial !== undefined && m.serial !== d.serial) return false;
  if (m.origin !== undefined && m.origin !== d.origin) return false;
  return true;
}

/** The reason a TCP peer is denied a keyboard or mouse when no rule decides. */
const HID_DEFAULT =
  "no rule matched: keyboards and mice reach TCP peers only through a rule that names them";
/** The reason a TCP peer is denied when no rule decides. */
const TCP_DEFAULT = "no rule matched: TCP peers are denied unless a rule allows";

/** Options of {@linkcode RulePolicy}. */
export interface RulePolicyOptions {
  rules: Rule[];
  /** The console user's uid right now, if any (from logind's seat state). */
  consoleUid?: () => number | undefined;
}

/**
 * The rule policy. Rules are tried in order; the first that matches decides. When none
 * matches: the console user and root (over a unix socket) are allowed, everyone else is denied.
 * A TCP peer is never the console user.
 *
 * @example TCP peers need a rule
 * ```ts
 * import { parseRule, RulePolicy } from "./rules.ts";
 * const policy = new RulePolicy({ rules: [parseRule({ action: "allow", source: "10.0.0.0/8", busid: "1-1" })] });
 * const gz = { busid: "1-1", idVendor: 0x0525, idProduct: 0xa4a0, bDeviceClass: 0xff,
 *   interfaces: [], origin: "emulated" as const };
 * console.assert(policy.decide({ transport: "tcp", address: "10.1.2.3:4000" }, gz).rule === 1);
 * console.assert(policy.decide({ transport: "tcp", address: "192.0.2.1:4000" }, gz).effect === "deny");
 * ```
 */
export class RulePolicy implements Policy {
  #rules: readonly Rule[];
  #consoleUid: () => number | undefined;

  /** Builds the policy from its rules. */
  constructor(options: RulePolicyOptions) {
    this.#rules = options.rules;
    this.#consoleUid = options.consoleUid ?? (() => undefined);
  }

  /** The rules in force, first match wins. */
  get rules(): readonly Rule[] {
    return this.#rules;
  }

  /**
   * Replaces the rules (a configuration reload). Decisions made before stand: sessions keep
   * what they imported; the new rules apply to the next list and import.
   */
  setRules(rules: readonly Rule[]): void {
    this.#rules = rules;
  }

  /** Whether `peer` is the console user: a unix peer whose uid is the active seat's. */
  isConsole(peer: PeerInfo): boolean {
    const uid = this.#consoleUid();
    return peer.transport === "unix" && peer.uid !== undefined && uid !== undefined &&
      peer.uid === uid;
  }

  #peerMatches(m: PeerMatch, peer: PeerInfo): boolean {
    if (m.console !== undefined && m.console !== this.isConsole(peer)) return false;
    if (m.transport !== undefined && m.transport !== peer.transport) return false;
    if (m.uid && (peer.uid === undefined || !m.uid.includes(peer.uid))) return false;
    if (m.gid && (peer.gid === undefined || !m.gid.includes(peer.gid))) return false;
    if (m.source) {
      if (peer.transport !== "tcp") return false;
      const host = hostOf(peer.address);
      if (!m.source.some((c) => cidrContains(c, host))) return false;
    }
    return true;
  }

  /** Decides what `peer` may do with `device`, naming the rule or the default that decided. */
  decide(peer: PeerInfo, device: DeviceFacts): PolicyDecision {
    const hid = peer.transport === "tcp" && isKeyboardOrMouse(device);
    for (const [i, rule] of this.rules.entries()) {
      if (!this.#peerMatches(rule.peer, peer) || !deviceMatches(rule.device, device)) {
        continue;
      }
      if (hid && rule.action !== "deny" && !namesDevice(rule.device)) continue;
      return { effect: rule.action, rule: i + 1, reason: `rule ${i + 1} (${describeRule(rule)})` };
    }
    if (hid) return { effect: "deny", reason: HID_DEFAULT };
    if (this.isConsole(peer)) {
      return { effect: "allow", reason: "no rule matched: the console user is allowed" };
    }
    if (peer.transport === "unix" && peer.uid === 0) {
      return { effect: "allow", reason: "no rule matched: root is allowed" };
    }
    if (peer.transport === "tcp") return { effect: "deny", reason: TCP_DEFAULT };
    return {
      effect: "deny",
      reason: "no rule matched: only the console user and root are allowed by default",
    };
  }
}

/** Whether some TCP peer can reach a device, and the rule or default that says so. */
export interface TcpReachability {
  /** True when at least one TCP peer may see and import the device (allow or read-only). */
  reachable: boolean;
  /**
   * The 1-based number of the rule that decides: the first that lets a TCP peer in, or the
   * deny that shuts out the last of them; absent when the defaults decide.
   */
  rule?: number;
  /** For logs: `rule 2 (...)`, `rules 1 and 3 deny every TCP peer` or a default's reason. */
  reason: string;
}

/**
 * The TCP source addresses a rule's peer part matches: none when it asks for the console
 * user, a uid or gid, or the unix transport (a TCP peer is never the console user and has no
 * uid or gid); its source prefixes if it lists some; else every address.
 */
function tcpSources(m: PeerMatch): readonly Prefix[] {
  if (m.console === true || m.uid || m.gid || m.transport === "unix") return [];
  return m.source ?? [ALL_ADDRESSES];
}

/**
 * Whether any TCP peer at all could see and import `device` under `rules` and the built-in
 * defaults of {@linkcode RulePolicy}, whoever the console user is. The rules are walked in
 * order, keeping the TCP source addresses no earlier rule has decided: a rule whose device part
 * matches and whose peer part matches some of those addresses makes the device reachable if
 * it allows or grants read-only access (for a keyboard or mouse, only if it names the device);
 * a deny takes its addresses away, and the device is unreachable once none is left. When the
 * walk ends undecided, the defaults deny every TCP peer. For a warning at start-up: a device no
 * TCP peer can reach is served to local users only.
 *
 * @example A deny for one network leaves the rest of the world
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseRule, tcpReachability } from "./rules.ts";
 * const gz = { busid: "1-1", idVendor: 0x0525, idProduct: 0xa4a0, bDeviceClass: 0xff,
 *   interfaces: [], origin: "emulated" as const };
 * const rules = [
 *   parseRule({ action: "deny", source: "10.0.0.0/8" }),
 *   parseRule({ action: "allow", transport: "tcp" }),
 * ];
 * assertEquals(tcpReachability(rules, gz), {
 *   reachable: true,
 *   rule: 2,
 *   reason: "rule 2 (allow transport=tcp)",
 * });
 * // Without rule 2 the defaults deny the TCP peers rule 1 left.
 * assertEquals(tcpReachability(rules.slice(0, 1), gz).reachable, false);
 * ```
 */
export function tcpReachability(rules: readonly Rule[], device: DeviceFacts): TcpReachability {
  const hid = isKeyboardOrMouse(device);
  /** The TCP source addresses no rule so far has decided. */
  let open: Prefix[] = [ALL_ADDRESSES];
  const denies: number[] = [];
  for (const [i, rule] of rules.entries()) {
    if (!deviceMatches(rule.device, device)) continue;
    const sources = tcpSources(rule.peer).filter((s) => open.some((o) => prefixesOverlap(o, s)));
    if (sources.length === 0) continue;
    if (rule.action === "deny") {
      for (const s of sources) open = subtractPrefix(open, s);
      denies.push(i + 1);
      if (open.length > 0) continue;
      const reason = denies.length === 1
        ? `rule ${i + 1} (${describeRule(rule)}) denies every TCP peer`
        : `rules ${denies.slice(0, -1).join(", ")} and ${i + 1} deny every TCP peer`;
      return { reachable: false, rule: i + 1, reason };
    }
    // As in RulePolicy.decide: for a TCP peer such a rule does not decide.
    if (hid && !namesDevice(rule.device)) continue;
    return { reachable: true, rule: i + 1, reason: `rule ${i + 1} (${describeRule(rule)})` };
  }
  if (denies.length === 0) return { reachable: false, reason: hid ? HID_DEFAULT : TCP_DEFAULT };
  const which = denies.length === 1
    ? `rule ${denies[0]} denies`
    : `rules ${denies.slice(0, -1).join(", ")} and ${denies.at(-1)} deny`;
  return {
    reachable: false,
    reason: `${which} some TCP peers, and ${hid ? HID_DEFAULT : TCP_DEFAULT}`,
  };
}
