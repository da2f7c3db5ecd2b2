/**
 * `usbipgw policy show` and `usbipgw policy check`: the effective rules, and the decision for
 * one peer and one device with the rule behind it.
 *
 * @module
 */

import type { PeerInfo } from "../transport/connection.ts";
import { describeRule, type Rule, RulePolicy } from "../policy/rules.ts";
import { UsbipServer } from "../server/server.ts";
import { deviceFacts } from "../server/exported_device.ts";
import type { DeviceSpec } from "./device_spec.ts";
import { checkDeviceSpec } from "./device_types.ts";
import { UsageError } from "./usage_error.ts";

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

/**
 * Parses `--peer`: `tcp:ADDRESS[:PORT]` (IPv6 in brackets), `unix:UID[:GID]`, or `console`
 * (a unix peer that is the console user).
 */
export function parsePeer(text: string): { peer: PeerInfo; console: boolean } {
  if (text === "console") {
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
  throw new UsageError(
    `Invalid --peer "${text}": expected tcp:ADDRESS[:PORT], unix:UID[:GID] or console`,
  );
}

/** The bus id each spec gets, assigned as the server does: explicit ones, then 1-1, 1-2, ... */
function assignBusids(devices: DeviceSpec[]): Map<string, DeviceSpec> {
  const taken = new Set<string>();
  const out = new Map<string, DeviceSpec>();
  for (const d of devices) {
    let busid = d.options.busid;
    for (let port = 1; busid === undefined; port++) {
      if (!taken.has(`1-${port}`)) busid = `1-${port}`;
    }
    taken.add(busid);
    out.set(busid, { ...d, options: { ...d.options, busid } });
  }
  return out;
}

/**
 * The decision for `peer` and the device `device` names: a bus id among `devices`, or a device
 * spec (`keyboard`, `gadget-zero:busid=3-1`).
 */
export async function checkPolicy(
  rules: Rule[],
  devices: DeviceSpec[],
  peerText: string,
  device: DeviceSpec,
): Promise<string> {
  const { peer, console } = parsePeer(peerText);
  const assigned = Object.keys(device.options).length === 0
    ? assignBusids(devices).get(device.type)
    : undefined;
  const spec = assigned ?? device;
  const type = checkDeviceSpec(spec);
  const { options: { socket: _socket, ...options } } = spec;
  const made = await type.create({ ...spec, options });
  try {
    const server = new UsbipServer();
    const busid = spec.options.busid;
    const exported = server.addDevice(made.device, {
      name: spec.type,
      ...(busid !== undefined ? { busid } : {}),
    });
    const policy = new RulePolicy({ rules, consoleUid: () => console ? peer.uid : undefined });
    const d = policy.decide(peer, deviceFacts(exported));
    await server.close();
    const who = console ? "the console user" : peerText;
    return `${d.effect}: ${who} and ${exported.busid} (${spec.type}): ${d.reason}\n`;
  } finally {
    await made.close?.();
  }
}
