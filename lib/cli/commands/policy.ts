/**
 * `usbipgw policy show` and `usbipgw policy check`: the effective rules, and the decision the
 * gateway would make for one peer and one device, with the rule behind it. Both take the
 * configuration exactly as `serve` would (`gatewayInput`, `validateConfig`); `check` describes
 * the device from its type and options and opens nothing.
 *
 * @module
 */

import { X509Certificate } from "node:crypto";
import { describeDevice } from "../../devices/registry.ts";
import type { PolicyDecision } from "../../policy/policy.ts";
import { describeRule, type Rule, RulePolicy } from "../../policy/rules.ts";
import { descriptorFacts } from "../../server/exported_device.ts";
import { BUSID_PATTERN } from "../../protocol/busid.ts";
import type { PeerInfo } from "../../transport/connection.ts";
import { parsePeerCertificate } from "../../transport/tls.ts";
import type { Command, CommandIo, ParsedFlags } from "../command.ts";
import { type DeviceConfig, type GatewayConfig, validateConfig } from "../config.ts";
import { ExitCode } from "../exit_codes.ts";
import { UsageError } from "../usage_error.ts";
import { CONFIG_FLAG, gatewayInput, RULE_FLAG } from "./serve.ts";

/** The built-in defaults, applied after the rules, in order. */
export const DEFAULT_RULES_TEXT = [
  "keyboards and mice (HID boot interfaces) reach TCP peers only through a rule that names them (busid, vid/pid, serial or class 3)",
  "the console user (a unix peer whose uid is seat0's ACTIVE_UID) is allowed",
  "root over a unix socket is allowed",
  "everyone else, and every TCP peer, is denied",
];

/** The text of `policy show`. */
export function formatRules(rules: readonly Rule[]): string {
  const lines = rules.length === 0
    ? ["(no rules)"]
    : rules.map((r, i) =>
      `${String(i + 1).padStart(3)}  ${describeRule(r)}${r.origin ? `    # ${r.origin}` : ""}`
    );
  return `Rules (first match wins):\n${lines.join("\n")}\nThen the defaults:\n${
    DEFAULT_RULES_TEXT.map((t) => `  -  ${t}`).join("\n")
  }\n`;
}

/** A peer as `--peer` names it; `console` is a unix peer that is the console user. */
export interface CheckedPeer {
  peer: PeerInfo;
  console: boolean;
}

/**
 * Parses `--peer`: `tcp:ADDRESS[:PORT]` (IPv6 in brackets), `unix:UID[:GID]`, `tls:CERTFILE`
 * (a TLS peer that shows that PEM certificate, as if it verified), or `console`.
 *
 * @example
 * ```ts
 * import { parsePeer } from "./policy.ts";
 * console.assert(parsePeer("tcp:[::1]:5000").peer.address === "[::1]:5000");
 * console.assert(parsePeer("unix:1000").peer.gid === 1000);
 * ```
 */
export function parsePeer(text: string): CheckedPeer {
  if (text === "console") {
    // A uid no real user has: it stands for whoever is at the console.
    return {
      peer: { transport: "unix", address: "(policy check)", uid: 4294967294, gid: 4294967294 },
      console: true,
    };
  }
  const tcp = /^tcp:(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(text);
  if (tcp) {
    return { peer: { transport: "tcp", address: `${tcp[1]}:${tcp[2] ?? "0"}` }, console: false };
  }
  const unix = /^unix:(\d+)(?::(\d+))?$/.exec(text);
  if (unix) {
    const uid = Number(unix[1]);
    return {
      peer: { transport: "unix", address: "(policy check)", uid, gid: Number(unix[2] ?? uid) },
      console: false,
    };
  }
  if (text.startsWith("tls:")) return { peer: tlsPeer(text.slice(4)), console: false };
  throw new UsageError(
    `Invalid --peer "${text}": expected tcp:ADDRESS[:PORT], unix:UID[:GID], tls:CERTFILE or console`,
  );
}

/** A TLS peer that showed the (first) certificate of the PEM file `file`. */
function tlsPeer(file: string): PeerInfo {
  let pem: string;
  try {
    pem = Deno.readTextFileSync(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable) throw e;
    throw new UsageError(
      `Invalid --peer tls:${file}: cannot read it (${e instanceof Error ? e.message : e})`,
    );
  }
  try {
    const der = new Uint8Array(new X509Certificate(pem).raw);
    return { transport: "tls", address: "(policy check)", certificate: parsePeerCertificate(der) };
  } catch (e) {
    throw new UsageError(
      `Invalid --peer tls:${file}: it holds no PEM certificate that can be read (${
        e instanceof Error ? e.message : e
      })`,
    );
  }
}

/** The decision for `peer` and `device` under `rules`, as the running gateway would make it. */
export async function decide(
  rules: readonly Rule[],
  checked: CheckedPeer,
  device: DeviceConfig,
  busid: string,
): Promise<PolicyDecision> {
  const description = await describeDevice(device.device);
  if (description === undefined) {
    throw new Error(
      `Cannot check ${busid} (${device.origin}): the host device is not plugged in, so its class and IDs are unknown`,
    );
  }
  const policy = new RulePolicy({
    rules: [...rules],
    consoleUid: () => checked.console ? checked.peer.uid : undefined,
  });
  return policy.decide(checked.peer, descriptorFacts(busid, description));
}

/** The device `--device` names: a bus id of the configuration, or the spec's own device. */
function target(config: GatewayConfig, text: string, isSpec: boolean): DeviceConfig {
  if (isSpec) return config.devices.at(-1)!;
  const device = config.devices.find((d) => d.busid === text);
  if (device !== undefined) return device;
  const known = config.devices.map((d) =>
    `${d.busid ?? "(host, when plugged in)"} ${d.device.name}`
  );
  throw new UsageError(
    `No device ${text} in the configuration; its devices: ${known.join(", ")}`,
  );
}

async function check(flags: ParsedFlags, io: CommandIo): Promise<number> {
  const peerText = flags.one("peer");
  const deviceText = flags.one("device");
  if (peerText === undefined || deviceText === undefined) {
    throw new UsageError(`"policy check" needs --peer and --device`);
  }
  const checked = parsePeer(peerText);
  // A bus id names a device the configuration (or the demo set) has; anything else is a device
  // spec, served as "serve --device SPEC" would serve it next to the configured devices.
  const isSpec = !BUSID_PATTERN.test(deviceText);
  const config = await validateConfig(
    await gatewayInput(flags, io, { devices: isSpec ? [deviceText] : [] }),
  );
  const device = target(config, deviceText, isSpec);
  const busid = device.busid ?? deviceText;
  const d = await decide(config.rules, checked, device, busid);
  const who = checked.console ? "the console user" : peerText;
  await io.out(`${d.effect}: ${who} and ${busid} (${device.device.name}): ${d.reason}\n`);
  return d.effect === "deny" ? ExitCode.ERROR : ExitCode.OK;
}

async function run(flags: ParsedFlags, io: CommandIo): Promise<number> {
  const [sub] = flags.positional;
  flags.noMorePositional(1);
  if (sub === "show") {
    const config = await validateConfig(await gatewayInput(flags, io));
    await io.out(formatRules(config.rules));
    return ExitCode.OK;
  }
  if (sub === "check") return await check(flags, io);
  throw new UsageError(`"policy" needs a subcommand: show or check`);
}

/** `usbipgw policy`. */
export const policyCommand: Command = {
  name: "policy",
  summary: "show the access rules, or check a decision",
  usage: [
    "policy show [--config FILE] [--rule RULE]... [--device SPEC]...",
    "policy check --peer PEER --device DEVICE [--config FILE] [--rule RULE]...",
  ],
  description:
    `"show" prints the effective rules, numbered, then the built-in defaults. "check" prints the
decision the gateway would make for one peer and one device, and the rule (or default)
behind it, from the same flags and configuration "serve" would get. It opens nothing: no
image, socket or back-end is created.`,
  subcommands: ["show", "check"],
  flags: [
    {
      name: "peer",
      value: "PEER",
      help: `check: tcp:ADDRESS[:PORT], unix:UID[:GID], console, or tls:CERTFILE (a
TLS peer showing that PEM certificate, as if it verified)`,
    },
    {
      name: "device",
      value: "DEVICE",
      repeat: true,
      help: `check: a bus id of the configured (or demo) devices, or a device spec
served as "serve --device" would; show: a device to serve, repeatable`,
    },
    CONFIG_FLAG,
    RULE_FLAG,
  ],
  epilogue: "Exit codes: 0 allow or read-only (and show), 1 deny, 2 usage.",
  run,
};
