/**
 * Access rules as data, first match wins, in the manner of spice-usbredir's filter rules: a
 * rule matches a peer (console user, uid, gid, transport, source prefix, and for TLS peers the
 * verified client certificate: subject CN and OU, subject alternative names, SHA-256
 * fingerprint, SHA-256 of the public key) and a device (bus id, vendor/product, class, serial,
 * origin) and allows, denies or grants read-only access. "Denied by rule N" is told apart from
 * "no rule matched", and built-in safe defaults apply: TCP and TLS peers are denied unless a
 * rule allows, the console user (and root) are allowed, and HID keyboards and mice reach a TCP
 * or TLS peer only through a rule that names them. {@linkcode tcpReachability} and
 * {@linkcode tlsReachability} tell whether any TCP or TLS peer at all can reach a device.
 *
 * @module
 */

import type { PeerCertificate, PeerInfo } from "../transport/connection.ts";
import {
  ALL_ADDRESSES,
  type Cidr,
  cidrContains,
  parseAddress,
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
  /** The peer's uid (SO_PEERCRED) is one of these; a peer without one (TCP, TLS) never matches. */
  uid?: number[];
  /** The peer's gid (SO_PEERCRED) is one of these; a peer without one (TCP, TLS) never matches. */
  gid?: number[];
  /** The connection came over this transport. */
  transport?: "unix" | "tcp" | "tls";
  /** TCP and TLS source prefixes. */
  source?: Cidr[];
  /** The certificate's subject CN is one of these (exact, case counts). */
  cn?: string[];
  /** One of the certificate's subject OUs is one of these (exact, case counts). */
  ou?: string[];
  /**
   * One of the certificate's subject alternative names is one of these, written as node:tls
   * gives them: `DNS:host` (any case), `URI:spiffe://...` (exact), `IP Address:10.0.0.1` (the
   * same address, in any notation).
   */
  san?: string[];
  /** The SHA-256 of the certificate (DER) is one of these: 64 lowercase hex digits each. */
  fingerprint?: string[];
  /** The SHA-256 of the certificate's public key (SPKI DER) is one of these: 64 lowercase hex. */
  pubkey?: string[];
}

/** The keys of {@linkcode PeerMatch} that only a TLS peer's certificate can satisfy. */
export const CERTIFICATE_KEYS = ["cn", "ou", "san", "fingerprint", "pubkey"] as const;

/** Whether a rule's peer part asks anything of a certificate (and so matches TLS peers only). */
export function hasCertificateKeys(m: PeerMatch): boolean {
  return CERTIFICATE_KEYS.some((k) => m[k] !== undefined);
}

/** What a rule requires of the device; an absent field matches anything. */
export interface DeviceMatch {
  /** The device's bus id is one of these. */
  busid?: string[];
  /** The device's `idVendor` is this. */
  vid?: number;
  /** The device's `idProduct` is this. */
  pid?: number;
  /** Matches the device class or the class of any interface. */
  class?: number[];
  /** The device's serial number string is exactly this. */
  serial?: string;
  /** The device is emulated by usbipgw, or a host device passed through. */
  origin?: "emulated" | "passthrough";
}

/** One rule. */
export interface Rule {
  /** The effect when the rule matches. */
  action: PolicyEffect;
  /** What the rule requires of the peer; all of it must match. */
  peer: PeerMatch;
  /** What the rule requires of the device; all of it must match. */
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
  ...CERTIFICATE_KEYS,
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

/** Strings of a certificate key: each a non-empty string. */
function texts(key: string, value: unknown): string[] {
  return list(value).map((v) => {
    if (typeof v !== "string" || v === "") {
      throw new RuleError(key, `${key} must be a non-empty string or a list of them`);
    }
    return v;
  });
}

/** Lowercase hex of bytes. */
function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * A SHA-256 hash as written in a rule: 64 hex digits, any case, optionally with colons between
 * the bytes (`openssl x509 -noout -fingerprint -sha256` prints `AB:CD:...`), or for `pubkey`
 * also curl's `sha256//BASE64` pin. Gives 64 lowercase hex digits.
 */
function sha256Hex(key: "fingerprint" | "pubkey", v: unknown): string {
  const text = typeof v === "string" ? v.trim() : "";
  if (key === "pubkey" && text.startsWith("sha256//")) {
    let bytes: Uint8Array | undefined;
    try {
      bytes = Uint8Array.from(atob(text.slice(8)), (c) => c.charCodeAt(0));
    } catch {
      // Not base64: reported below.
    }
    if (bytes?.length === 32) return hex(bytes);
    throw new RuleError(
      key,
      `pubkey "${text}" is not a SHA-256 pin: sha256// takes 32 bytes in base64`,
    );
  }
  const compact = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2})*$/.test(text) ? text.replaceAll(":", "") : text;
  if (/^[0-9a-fA-F]{64}$/.test(compact)) return compact.toLowerCase();
  const sha1 = /^[0-9a-fA-F]{40}$/.test(compact) ? " (this is 20 bytes: a SHA-1 hash?)" : "";
  const expected = "expected 64 hex digits, with or without colons between the bytes";
  throw new RuleError(key, `${key} "${String(v)}" is not a SHA-256 hash: ${expected}${sha1}`);
}

/** The types of subject alternative name a rule can name, as node:tls spells them. */
const SAN_FORM = /^(DNS|URI|IP Address|IP):(.*)$/is;

/**
 * A subject alternative name as written in a rule: `DNS:name`, `URI:uri`, `IP Address:addr`
 * (or openssl's `IP:addr`); the type in any case. Gives it with node's spelling of the type and
 * a DNS name in lowercase. A bare value is refused: the type is part of what a CA vouches for.
 */
function parseSan(v: unknown): string {
  if (typeof v !== "string") throw new RuleError("san", "san must be a string or a list of them");
  const m = SAN_FORM.exec(v.trim());
  if (!m) {
    const other = /^([A-Za-z][A-Za-z ]*):(?!\/\/)/.exec(v.trim());
    if (other && parseAddress(v.trim()) === undefined) {
      throw new RuleError(
        "san",
        `san "${v}": a rule cannot match ${other[1]} names, only DNS:, URI: and IP Address:`,
      );
    }
    const like = parseAddress(v.trim()) ? "IP Address" : v.includes("://") ? "URI" : "DNS";
    throw new RuleError(
      "san",
      `san "${v}" has no type: write it as node:tls gives it, e.g. ${like}:${v} (DNS:, URI: or IP Address:)`,
    );
  }
  const type = m[1]!.toUpperCase() === "DNS"
    ? "DNS"
    : m[1]!.toUpperCase() === "URI"
    ? "URI"
    : "IP Address";
  const value = m[2]!;
  if (value === "") throw new RuleError("san", `san "${v}" has an empty ${type} value`);
  if (type === "IP Address" && parseAddress(value) === undefined) {
    throw new RuleError("san", `san "${v}" is not an IP address`);
  }
  return `${type}:${type === "DNS" ? value.toLowerCase() : value}`;
}

/**
 * The form in which two subject alternative names are compared: DNS names in lowercase, URIs
 * exactly, IP addresses as their 16 bytes; `undefined` for a type no rule can name (`email:`,
 * `othername:`, ...) or an address that does not parse.
 */
function sanKey(text: string): string | undefined {
  const m = SAN_FORM.exec(text.trim());
  if (!m) return undefined;
  const type = m[1]!.toUpperCase();
  const value = m[2]!;
  if (type === "DNS") return `dns/${value.toLowerCase()}`;
  if (type === "URI") return `uri/${value}`;
  const bytes = parseAddress(value);
  return bytes === undefined ? undefined : `ip/${hex(bytes)}`;
}

/** A SHA-256 hash as a peer's certificate gives it, in the form rules hold it. */
function hashKey(text: string): string {
  return text.replaceAll(":", "").toLowerCase();
}

/**
 * Builds a rule from loose fields, as TOML or the `--rule` flag give them (strings, numbers,
 * booleans, lists; `a|b` is a list in strings). Throws {@linkcode RuleError} naming the key.
 * A rule with a certificate key (`cn`, `ou`, `san`, `fingerprint`, `pubkey`) matches TLS peers
 * only, so it cannot also ask for `transport=tcp` or `transport=unix`.
 *
 * @example
 * ```ts
 * import { parseRule } from "./rules.ts";
 * const r = parseRule({ action: "allow", transport: "tcp", source: "10.0.0.0/8", vid: "0525" });
 * console.assert(r.device.vid === 0x0525 && r.peer.source?.length === 1);
 * ```
 *
 * @example Certificate keys: fingerprints are kept as 64 lowercase hex digits
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseRule } from "./rules.ts";
 * const fp = "AB:".repeat(31) + "AB";
 * const r = parseRule({ action: "deny", fingerprint: fp, san: "dns:Laptop.Example" });
 * assertEquals(r.peer.fingerprint, ["ab".repeat(32)]);
 * assertEquals(r.peer.san, ["DNS:laptop.example"]);
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
    if (f.transport !== "unix" && f.transport !== "tcp" && f.transport !== "tls") {
      throw new RuleError("transport", "transport must be unix, tcp or tls");
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
  if (f.cn !== undefined) peer.cn = texts("cn", f.cn);
  if (f.ou !== undefined) peer.ou = texts("ou", f.ou);
  if (f.san !== undefined) peer.san = list(f.san).map(parseSan);
  if (f.fingerprint !== undefined) {
    peer.fingerprint = list(f.fingerprint).map((v) => sha256Hex("fingerprint", v));
  }
  if (f.pubkey !== undefined) peer.pubkey = list(f.pubkey).map((v) => sha256Hex("pubkey", v));
  if (hasCertificateKeys(peer) && peer.transport !== undefined && peer.transport !== "tls") {
    throw new RuleError(
      "transport",
      `transport=${peer.transport} never carries a certificate: a rule with ${
        CERTIFICATE_KEYS.filter((k) => peer[k] !== undefined).join(", ")
      } matches TLS peers only (write transport=tls or leave transport out)`,
    );
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

/**
 * A rule as one line of text: `allow transport=tcp source=10.0.0.0/8 busid=1-1`, or
 * `deny fingerprint=0a1b... cn=laptop`; list values are joined with `|`.
 */
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
  for (const key of CERTIFICATE_KEYS) {
    const values = p[key];
    if (values) parts.push(`${key}=${values.join("|")}`);
  }
  if (d.busid) parts.push(`busid=${d.busid.join("|")}`);
  if (d.vid !== undefined) parts.push(`vid=${hex4(d.vid)}`);
  if (d.pid !== undefined) parts.push(`pid=${hex4(d.pid)}`);
  if (d.class) parts.push(`class=${d.class.map((c) => c.toString(16).padStart(2, "0")).join("|")}`);
  if (d.serial !== undefined) parts.push(`serial=${d.serial}`);
  if (d.origin) parts.push(`origin=${d.origin}`);
  return parts.join(" ");
}

/** The host part of a TCP or TLS peer address (`1.2.3.4:5` or `[::1]:5`). */
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

/** Whether the certificate part of a rule matches a peer's verified certificate. */
function certificateMatches(m: PeerMatch, cert: PeerCertificate): boolean {
  if (m.cn && (cert.cn === undefined || !m.cn.includes(cert.cn))) return false;
  if (m.ou && !cert.ou.some((ou) => m.ou!.includes(ou))) return false;
  if (m.san) {
    const wanted = new Set(m.san.map(sanKey));
    if (!cert.sans.some((s) => wanted.has(sanKey(s) ?? "-"))) return false;
  }
  if (m.fingerprint && !m.fingerprint.includes(hashKey(cert.fingerprint))) return false;
  if (m.pubkey && !m.pubkey.includes(hashKey(cert.pubkey))) return false;
  return true;
}

/** The transports whose peers come over the network, known by address (and certificate). */
type RemoteTransport = "tcp" | "tls";

/** The reasons a remote peer is denied when no rule decides: any device, a keyboard or mouse. */
const DEFAULTS: Readonly<Record<RemoteTransport, { any: string; hid: string }>> = {
  tcp: {
    any: "no rule matched: TCP peers are denied unless a rule allows",
    hid: "no rule matched: keyboards and mice reach TCP peers only through a rule that names them",
  },
  tls: {
    any: "no rule matched: TLS peers are denied unless a rule allows",
    hid: "no rule matched: keyboards and mice reach TLS peers only through a rule that names them",
  },
};

/** The peer's transport if it is a remote one. */
function remote(peer: PeerInfo): RemoteTransport | undefined {
  return peer.transport === "tcp" || peer.transport === "tls" ? peer.transport : undefined;
}

/** Options of {@linkcode RulePolicy}. */
export interface RulePolicyOptions {
  /** The rules, tried in order; the first that matches decides. */
  rules: Rule[];
  /** The console user's uid right now, if any (from logind's seat state). */
  consoleUid?: () => number | undefined;
}

/**
 * The rule policy. Rules are tried in order; the first that matches decides. When none
 * matches: the console user and root (over a unix socket) are allowed, everyone else is denied.
 * A TCP or TLS peer is never the console user. A TLS peer's identity is the certificate the
 * handshake verified (`PeerInfo.certificate`); a rule with a certificate key matches nothing
 * else, so it never matches a TCP or unix peer.
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
 *
 * @example Revoking one certificate that a CA-wide rule would allow
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseRule, RulePolicy } from "./rules.ts";
 * const lost = "0f".repeat(32);
 * const policy = new RulePolicy({ rules: [
 *   parseRule({ action: "deny", fingerprint: lost }),
 *   parseRule({ action: "allow", ou: "lab" }),
 * ] });
 * const gz = { busid: "1-1", idVendor: 0x0525, idProduct: 0xa4a0, bDeviceClass: 0xff,
 *   interfaces: [], origin: "emulated" as const };
 * const peer = (fingerprint: string) => ({ transport: "tls" as const, address: "10.0.0.9:4000",
 *   certificate: { cn: "bench-3", ou: ["lab"], sans: [], fingerprint, pubkey: "11".repeat(32) } });
 * assertEquals(policy.decide(peer(lost), gz).rule, 1);
 * assertEquals(policy.decide(peer("1e".repeat(32)), gz).effect, "allow");
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
    if (hasCertificateKeys(m)) {
      // Only a certificate the TLS handshake verified is an identity.
      if (peer.transport !== "tls" || peer.certificate === undefined) return false;
      if (!certificateMatches(m, peer.certificate)) return false;
    }
    if (m.source) {
      if (remote(peer) === undefined) return false;
      const host = hostOf(peer.address);
      if (!m.source.some((c) => cidrContains(c, host))) return false;
    }
    return true;
  }

  /** Decides what `peer` may do with `device`, naming the rule or the default that decided. */
  decide(peer: PeerInfo, device: DeviceFacts): PolicyDecision {
    const net = remote(peer);
    const hid = net !== undefined && isKeyboardOrMouse(device);
    for (const [i, rule] of this.rules.entries()) {
      if (!this.#peerMatches(rule.peer, peer) || !deviceMatches(rule.device, device)) {
        continue;
      }
      if (hid && rule.action !== "deny" && !namesDevice(rule.device)) continue;
      return { effect: rule.action, rule: i + 1, reason: `rule ${i + 1} (${describeRule(rule)})` };
    }
    if (net !== undefined && hid) return { effect: "deny", reason: DEFAULTS[net].hid };
    if (this.isConsole(peer)) {
      return { effect: "allow", reason: "no rule matched: the console user is allowed" };
    }
    if (peer.transport === "unix" && peer.uid === 0) {
      return { effect: "allow", reason: "no rule matched: root is allowed" };
    }
    if (net !== undefined) return { effect: "deny", reason: DEFAULTS[net].any };
    return {
      effect: "deny",
      reason: "no rule matched: only the console user and root are allowed by default",
    };
  }
}

/** Whether some TCP or TLS peer can reach a device, and the rule or default that says so. */
export interface Reachability {
  /** True when at least one peer may see and import the device (allow or read-only). */
  reachable: boolean;
  /**
   * The 1-based number of the rule that decides: the first that lets a peer in, or the deny
   * that shuts out the last of them; absent when the defaults decide.
   */
  rule?: number;
  /** For logs: `rule 2 (...)`, `rules 1 and 3 deny every TCP peer` or a default's reason. */
  reason: string;
}

/** The answer of {@linkcode tcpReachability}. */
export type TcpReachability = Reachability;

/**
 * The source addresses a rule's peer part matches among the peers of `transport`: none when it
 * asks for the console user, a uid or gid (which no TCP or TLS peer has), another transport,
 * (for TCP) a certificate, or one of an empty list of certificate values; its source prefixes
 * if it lists some; else every address.
 */
function remoteSources(m: PeerMatch, transport: RemoteTransport): readonly Prefix[] {
  if (m.console === true || m.uid || m.gid) return [];
  if (m.transport !== undefined && m.transport !== transport) return [];
  if (transport !== "tls" && hasCertificateKeys(m)) return [];
  // An empty list of certificate values matches no certificate.
  if (CERTIFICATE_KEYS.some((k) => m[k]?.length === 0)) return [];
  return m.source ?? [ALL_ADDRESSES];
}

/** The addresses both lists of prefixes hold. */
function intersect(a: readonly Prefix[], b: readonly Prefix[]): Prefix[] {
  const out: Prefix[] = [];
  for (const x of a) {
    for (const y of b) if (prefixesOverlap(x, y)) out.push(x.bits >= y.bits ? x : y);
  }
  return out;
}

/** A deny that names a certificate, and the addresses it shuts out for those it matches. */
interface CertificateDeny {
  peer: PeerMatch;
  sources: readonly Prefix[];
}

/**
 * Certificates that stand for every certificate `allow` matches, as far as the `denies` can
 * tell certificates apart. For each key `allow` names: one of its values that no deny names,
 * which fails every deny on that key and so does at least as well as any other; failing that,
 * each of its values. A certificate with more OUs or SANs than one only matches more denies.
 * For each key `allow` leaves out: a value no rule names (no CN, no OU, no SAN, a hash of no
 * rule). If none of these gets past the denies, no certificate does.
 */
function* standIns(allow: PeerMatch, denies: readonly PeerMatch[]): Generator<PeerCertificate> {
  const pick = (
    values: readonly string[],
    named: (d: PeerMatch) => readonly string[] | undefined,
    key: (v: string) => string | undefined = (v) => v,
  ): string[] => {
    const seen = new Set(denies.flatMap((d) => (named(d) ?? []).map(key)));
    const alone = values.find((v) => !seen.has(key(v)));
    return alone === undefined ? [...values] : [alone];
  };
  const cns: (string | undefined)[] = allow.cn ? pick(allow.cn, (d) => d.cn) : [undefined];
  const ous = allow.ou ? pick(allow.ou, (d) => d.ou).map((v) => [v]) : [[]];
  const sans = allow.san ? pick(allow.san, (d) => d.san, sanKey).map((v) => [v]) : [[]];
  const fingerprints = allow.fingerprint ? pick(allow.fingerprint, (d) => d.fingerprint) : [""];
  const pubkeys = allow.pubkey ? pick(allow.pubkey, (d) => d.pubkey) : [""];
  for (const cn of cns) {
    for (const ou of ous) {
      for (const san of sans) {
        for (const fingerprint of fingerprints) {
          for (const pubkey of pubkeys) {
            yield { ...(cn !== undefined ? { cn } : {}), ou, sans: san, fingerprint, pubkey };
          }
        }
      }
    }
  }
}

/**
 * Whether some peer that `allow` matches at one of `addresses` gets past the certificate
 * denies before it.
 */
function getsPast(
  allow: PeerMatch,
  addresses: readonly Prefix[],
  denies: readonly CertificateDeny[],
): boolean {
  if (denies.length === 0) return true;
  for (const cert of standIns(allow, denies.map((d) => d.peer))) {
    let left: readonly Prefix[] = addresses;
    for (const d of denies) {
      if (!certificateMatches(d.peer, cert)) continue;
      for (const s of d.sources) left = subtractPrefix(left, s);
    }
    if (left.length > 0) return true;
  }
  return false;
}

/** The walk behind {@linkcode tcpReachability} and {@linkcode tlsReachability}. */
function reachability(
  rules: readonly Rule[],
  device: DeviceFacts,
  transport: RemoteTransport,
): Reachability {
  const hid = isKeyboardOrMouse(device);
  const peers = `${transport.toUpperCase()} peer`;
  const fallback = hid ? DEFAULTS[transport].hid : DEFAULTS[transport].any;
  /** The source addresses no deny blind to certificates has decided so far. */
  let open: Prefix[] = [ALL_ADDRESSES];
  /** The denies so far that name certificates: each leaves every other certificate in. */
  const certificateDenies: CertificateDeny[] = [];
  const denies: number[] = [];
  for (const [i, rule] of rules.entries()) {
    if (!deviceMatches(rule.device, device)) continue;
    const sources = intersect(open, remoteSources(rule.peer, transport));
    if (sources.length === 0) continue;
    if (rule.action === "deny") {
      denies.push(i + 1);
      if (hasCertificateKeys(rule.peer)) {
        certificateDenies.push({ peer: rule.peer, sources });
        continue;
      }
      for (const s of sources) open = subtractPrefix(open, s);
      if (open.length > 0) continue;
      const reason = denies.length === 1
        ? `rule ${i + 1} (${describeRule(rule)}) denies every ${peers}`
        : `rules ${denies.slice(0, -1).join(", ")} and ${i + 1} deny every ${peers}`;
      return { reachable: false, rule: i + 1, reason };
    }
    // As in RulePolicy.decide: for a TCP or TLS peer such a rule does not decide.
    if (hid && !namesDevice(rule.device)) continue;
    if (!getsPast(rule.peer, sources, certificateDenies)) continue;
    return { reachable: true, rule: i + 1, reason: `rule ${i + 1} (${describeRule(rule)})` };
  }
  if (denies.length === 0) return { reachable: false, reason: fallback };
  const which = denies.length === 1
    ? `rule ${denies[0]} denies`
    : `rules ${denies.slice(0, -1).join(", ")} and ${denies.at(-1)} deny`;
  return { reachable: false, reason: `${which} some ${peers}s, and ${fallback}` };
}

/**
 * Whether any TCP peer at all could see and import `device` under `rules` and the built-in
 * defaults of {@linkcode RulePolicy}, whoever the console user is. The rules are walked in
 * order, keeping the TCP source addresses no earlier rule has decided: a rule whose device part
 * matches and whose peer part matches some of those addresses makes the device reachable if
 * it allows or grants read-only access (for a keyboard or mouse, only if it names the device);
 * a deny takes its addresses away, and the device is unreachable once none is left. When the
 * walk ends undecided, the defaults deny every TCP peer. A rule with a certificate key never
 * matches a TCP peer. For a warning at start-up: a device no TCP peer can reach is served to
 * local users only.
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
export function tcpReachability(rules: readonly Rule[], device: DeviceFacts): Reachability {
  return reachability(rules, device, "tcp");
}

/**
 * Whether any TLS peer at all could see and import `device` under `rules` and the built-in
 * defaults of {@linkcode RulePolicy}, with whatever certificate the configured CA issues. As
 * {@linkcode tcpReachability}, over source addresses and certificates: a deny without
 * certificate keys takes its addresses away; a deny with them takes away only the certificates
 * it names, so it never shuts out every TLS peer, but an allow whose every certificate an
 * earlier deny names (`deny cn=a`, then `allow cn=a`) lets nobody in. The keys of a certificate
 * are taken as independent: the rules cannot know that a pinned fingerprint is a certificate
 * with a CN some deny names. For a warning at start-up, when the gateway listens for TLS.
 *
 * @example A revoked certificate, and the one rule that allowed only it
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { parseRule, tlsReachability } from "./rules.ts";
 * const gz = { busid: "1-1", idVendor: 0x0525, idProduct: 0xa4a0, bDeviceClass: 0xff,
 *   interfaces: [], origin: "emulated" as const };
 * const fp = "0f".repeat(32);
 * const rules = [
 *   parseRule({ action: "deny", fingerprint: fp }),
 *   parseRule({ action: "allow", fingerprint: fp }),
 *   parseRule({ action: "allow", cn: "bench-3" }),
 * ];
 * assertEquals(tlsReachability(rules.slice(0, 2), gz).reachable, false);
 * assertEquals(tlsReachability(rules, gz).rule, 3);
 * ```
 */
export function tlsReachability(rules: readonly Rule[], device: DeviceFacts): Reachability {
  return reachability(rules, device, "tls");
}
