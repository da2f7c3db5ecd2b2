// Tests of the rule policy: first match wins, defaults, the keyboard safe default.
import { assertEquals, assertThrows } from "@std/assert";
import type { DeviceFacts, PeerInfo } from "../../mod.ts";
import {
  describeRule,
  parseRule,
  RuleError,
  RulePolicy,
  tcpReachability,
} from "../../lib/policy/rules.ts";

const GZ: DeviceFacts = {
  busid: "1-1",
  idVendor: 0x0525,
  idProduct: 0xa4a0,
  bDeviceClass: 0xff,
  interfaces: [{ bInterfaceClass: 0xff, bInterfaceSubClass: 0, bInterfaceProtocol: 0 }],
  serial: "0123",
  origin: "emulated",
};
const KEYBOARD: DeviceFacts = {
  busid: "1-2",
  idVendor: 0x1209,
  idProduct: 0x0001,
  bDeviceClass: 0,
  interfaces: [{ bInterfaceClass: 3, bInterfaceSubClass: 1, bInterfaceProtocol: 1 }],
  origin: "emulated",
};
const DISK: DeviceFacts = {
  ...GZ,
  busid: "2-1",
  bDeviceClass: 0,
  interfaces: [{ bInterfaceClass: 8, bInterfaceSubClass: 6, bInterfaceProtocol: 0x50 }],
  origin: "passthrough",
};

const tcp = (address: string): PeerInfo => ({ transport: "tcp", address });
const unix = (uid: number, gid = uid): PeerInfo => ({
  transport: "unix",
  address: "/run/usbipgw.sock",
  uid,
  gid,
  pid: 42,
});

Deno.test("with no rules: TCP peers and other users are denied, the console user and root allowed", () => {
  const policy = new RulePolicy({ rules: [], consoleUid: () => 1000 });
  assertEquals(policy.decide(tcp("127.0.0.1:5000"), GZ), {
    effect: "deny",
    reason: "no rule matched: TCP peers are denied unless a rule allows",
  });
  assertEquals(policy.decide(unix(1000), GZ).effect, "allow");
  assertEquals(policy.decide(unix(0), GZ).reason, "no rule matched: root is allowed");
  assertEquals(policy.decide(unix(1001), GZ), {
    effect: "deny",
    reason: "no rule matched: only the console user and root are allowed by default",
  });
});

Deno.test("the first matching rule decides and is named; a later rule does not override it", () => {
  const policy = new RulePolicy({
    rules: [
      parseRule({ action: "deny", transport: "tcp", busid: "1-1" }),
      parseRule({ action: "allow", transport: "tcp" }),
      parseRule({ action: "read-only", class: 8 }),
    ],
  });
  assertEquals(policy.decide(tcp("10.0.0.1:1"), GZ), {
    effect: "deny",
    rule: 1,
    reason: "rule 1 (deny transport=tcp busid=1-1)",
  });
  assertEquals(policy.decide(tcp("10.0.0.1:1"), DISK).rule, 2);
  assertEquals(policy.decide(unix(1001), DISK), {
    effect: "read-only",
    rule: 3,
    reason: "rule 3 (read-only class=08)",
  });
});

Deno.test("peers match on console user, uid, gid, transport and source prefix", () => {
  const console = new RulePolicy({
    rules: [parseRule({ action: "deny", console: true, class: "ff" })],
    consoleUid: () => 1000,
  });
  assertEquals(console.decide(unix(1000), GZ).rule, 1);
  assertEquals(
    console.decide(unix(1000), DISK).reason,
    "no rule matched: the console user is allowed",
  );
  const byId = new RulePolicy({
    rules: [
      parseRule({ action: "allow", uid: [1001, 1002] }),
      parseRule({ action: "allow", gid: 100 }),
    ],
  });
  assertEquals(byId.decide(unix(1002), GZ).rule, 1);
  assertEquals(byId.decide(unix(1500, 100), GZ).rule, 2);
  assertEquals(byId.decide(tcp("10.0.0.1:1"), GZ).effect, "deny", "TCP peers have no uid");
  const bySource = new RulePolicy({
    rules: [parseRule({ action: "allow", source: "192.168.0.0/16|::1" })],
  });
  assertEquals(bySource.decide(tcp("192.168.4.4:9"), GZ).rule, 1);
  assertEquals(bySource.decide(tcp("[::1]:9"), GZ).rule, 1);
  assertEquals(bySource.decide(tcp("192.169.0.1:9"), GZ).effect, "deny");
  assertEquals(
    bySource.decide(unix(1001), GZ).effect,
    "deny",
    "a source prefix never matches a unix peer",
  );
});

Deno.test("a TCP peer is never the console user", () => {
  const policy = new RulePolicy({
    rules: [parseRule({ action: "allow", console: true })],
    consoleUid: () => 0,
  });
  assertEquals(policy.isConsole(tcp("127.0.0.1:1")), false);
  assertEquals(policy.decide(tcp("127.0.0.1:1"), GZ).effect, "deny");
});

Deno.test("devices match on busid, vendor/product, interface class, serial and origin", () => {
  const rule = (fields: Record<string, unknown>) =>
    new RulePolicy({ rules: [parseRule({ action: "allow", ...fields })] });
  const peer = tcp("10.0.0.1:1");
  assertEquals(rule({ busid: "1-1|2-1" }).decide(peer, DISK).rule, 1);
  assertEquals(rule({ vid: "0525", pid: "a4a0" }).decide(peer, GZ).rule, 1);
  assertEquals(rule({ vid: "0525", pid: "a4a1" }).decide(peer, GZ).effect, "deny");
  assertEquals(rule({ class: 8 }).decide(peer, DISK).rule, 1, "an interface class matches");
  assertEquals(rule({ class: "ff" }).decide(peer, GZ).rule, 1, "the device class matches");
  assertEquals(rule({ serial: "0123" }).decide(peer, GZ).rule, 1);
  assertEquals(rule({ serial: "0124" }).decide(peer, GZ).effect, "deny");
  assertEquals(rule({ origin: "passthrough" }).decide(peer, DISK).rule, 1);
  assertEquals(rule({ origin: "passthrough" }).decide(peer, GZ).effect, "deny");
});

Deno.test("keyboards reach a TCP peer only through a rule that names them", () => {
  const everything = new RulePolicy({ rules: [parseRule({ action: "allow", transport: "tcp" })] });
  assertEquals(everything.decide(tcp("10.0.0.1:1"), GZ).effect, "allow");
  assertEquals(everything.decide(tcp("10.0.0.1:1"), KEYBOARD), {
    effect: "deny",
    reason:
      "no rule matched: keyboards and mice reach TCP peers only through a rule that names them",
  });
  for (const naming of [{ busid: "1-2" }, { vid: "1209", pid: "0001" }, { class: 3 }]) {
    const named = new RulePolicy({
      rules: [parseRule({ action: "allow", transport: "tcp", ...naming })],
    });
    assertEquals(named.decide(tcp("10.0.0.1:1"), KEYBOARD).rule, 1, JSON.stringify(naming));
  }
  assertEquals(
    new RulePolicy({ rules: [] }).decide(unix(0), KEYBOARD).effect,
    "allow",
    "local root still may",
  );
});

Deno.test("parseRule() names the key at fault", () => {
  const key = (fields: Record<string, unknown>) =>
    assertThrows(() => parseRule(fields), RuleError).key;
  assertEquals(key({ action: "permit" }), "action");
  assertEquals(key({ action: "allow", colour: 1 }), "colour");
  assertEquals(key({ action: "allow", source: "10.0.0.0/40" }), "source");
  assertEquals(key({ action: "allow", vid: "xyz" }), "vid");
  assertEquals(key({ action: "allow", transport: "udp" }), "transport");
  assertEquals(key({ action: "allow", uid: -1 }), "uid");
  assertEquals(key({ action: "allow", console: "maybe" }), "console");
  assertEquals(key({ action: "allow", origin: "virtual" }), "origin");
});

Deno.test("describeRule() prints a rule the way it can be written", () => {
  const rule = parseRule({
    action: "read-only",
    transport: "tcp",
    source: ["10.0.0.0/8"],
    vid: 0x525,
    pid: 0xa4a0,
    class: [8, 3],
  });
  assertEquals(
    describeRule(rule),
    "read-only transport=tcp source=10.0.0.0/8 vid=0525 pid=a4a0 class=08|03",
  );
});

Deno.test("tcpReachability() tells whether any TCP peer at all can reach a device", () => {
  // [rules, device, reachable, deciding rule]
  const cases: [Record<string, unknown>[], DeviceFacts, boolean, number | undefined][] = [
    // The defaults deny every TCP peer.
    [[], GZ, false, undefined],
    // A rule whose peer part matches some TCP peer lets them in.
    [[{ action: "allow", transport: "tcp" }], GZ, true, 1],
    [[{ action: "allow" }], GZ, true, 1],
    [[{ action: "allow", console: false }], GZ, true, 1],
    [[{ action: "read-only", source: "10.0.0.0/8" }], GZ, true, 1],
    // ... and one that can match no TCP peer does not.
    [[{ action: "allow", console: true }], GZ, false, undefined],
    [[{ action: "allow", uid: 1000 }], GZ, false, undefined],
    [[{ action: "allow", gid: 100 }], GZ, false, undefined],
    [[{ action: "allow", transport: "unix" }], GZ, false, undefined],
    [[{ action: "allow", source: [] }], GZ, false, undefined],
    // Only rules whose device part matches count.
    [[{ action: "allow", transport: "tcp", class: 8 }], GZ, false, undefined],
    [[{ action: "allow", transport: "tcp", class: 8 }], DISK, true, 1],
    [[{ action: "deny", busid: "1-2" }, { action: "allow", transport: "tcp" }], GZ, true, 2],
    // A deny for every TCP peer ends the walk.
    [[{ action: "deny", transport: "tcp" }, { action: "allow" }], GZ, false, 1],
    [[{ action: "deny" }, { action: "allow", transport: "tcp" }], GZ, false, 1],
    [[{ action: "deny", source: "0.0.0.0/0|::/0" }, { action: "allow" }], GZ, false, 1],
    [
      [{ action: "deny", source: "0.0.0.0/0" }, { action: "deny", source: "::/0" }, {
        action: "allow",
      }],
      GZ,
      false,
      2,
    ],
    [
      [{ action: "deny", source: "::/1" }, { action: "deny", source: "8000::/1" }, {
        action: "allow",
      }],
      GZ,
      false,
      2,
    ],
    // A deny for some sources does not.
    [
      [{ action: "deny", source: "10.0.0.0/8" }, { action: "allow", transport: "tcp" }],
      GZ,
      true,
      2,
    ],
    [[{ action: "deny", source: "0.0.0.0/0" }, { action: "allow" }], GZ, true, 2],
    // ... but an allow entirely inside what was denied lets nobody in.
    [
      [{ action: "deny", source: "10.0.0.0/8" }, { action: "allow", source: "10.1.0.0/16" }],
      GZ,
      false,
      undefined,
    ],
    [
      [{ action: "deny", source: "::ffff:0:0/96" }, { action: "allow", source: "10.0.0.0/8" }],
      GZ,
      false,
      undefined,
    ],
    [
      [{ action: "deny", source: "::ffff:0:0/96" }, { action: "allow", source: "2001:db8::/32" }],
      GZ,
      true,
      2,
    ],
    // Denies that can match no TCP peer are passed over.
    [[{ action: "deny", uid: 1000 }, { action: "allow", transport: "tcp" }], GZ, true, 2],
    [[{ action: "deny", console: true }, { action: "allow", transport: "tcp" }], GZ, true, 2],
    [[{ action: "deny", transport: "unix" }, { action: "allow", transport: "tcp" }], GZ, true, 2],
    // Keyboards and mice: only a rule that names them lets a TCP peer in; a deny still decides.
    [[{ action: "allow", transport: "tcp" }], KEYBOARD, false, undefined],
    [[{ action: "allow", transport: "tcp", class: 3 }], KEYBOARD, true, 1],
    [[{ action: "allow", transport: "tcp" }, { action: "allow", vid: "1209" }], KEYBOARD, true, 2],
    [[{ action: "deny", busid: "1-2" }, { action: "allow", busid: "1-2" }], KEYBOARD, false, 1],
  ];
  // Peers to cross-check against RulePolicy.decide: a device some TCP peer can reach is
  // reached by one of these in every case above, and one that none can is reached by none.
  const samples = ["10.1.2.3:1", "192.0.2.1:1", "[2001:db8::1]:1", "[::1]:1"].map(tcp);
  for (const [fields, device, reachable, rule] of cases) {
    const rules = fields.map((f) => parseRule(f));
    const label = `${rules.map(describeRule).join(", ") || "no rules"} / ${device.busid}`;
    const r = tcpReachability(rules, device);
    assertEquals([r.reachable, r.rule], [reachable, rule], label);
    const policy = new RulePolicy({ rules, consoleUid: () => 1000 });
    assertEquals(
      samples.some((peer) => policy.decide(peer, device).effect !== "deny"),
      reachable,
      `RulePolicy disagrees: ${label}`,
    );
  }
});

Deno.test("tcpReachability() names the rules or the default behind its answer", () => {
  const rules = (...fields: Record<string, unknown>[]) => fields.map((f) => parseRule(f));
  assertEquals(tcpReachability(rules({ action: "read-only", source: "10.0.0.0/8" }), GZ), {
    reachable: true,
    rule: 1,
    reason: "rule 1 (read-only source=10.0.0.0/8)",
  });
  assertEquals(tcpReachability([], GZ), {
    reachable: false,
    reason: "no rule matched: TCP peers are denied unless a rule allows",
  });
  assertEquals(tcpReachability(rules({ action: "allow", transport: "tcp" }), KEYBOARD), {
    reachable: false,
    reason:
      "no rule matched: keyboards and mice reach TCP peers only through a rule that names them",
  });
  assertEquals(tcpReachability(rules({ action: "deny", transport: "tcp" }), GZ), {
    reachable: false,
    rule: 1,
    reason: "rule 1 (deny transport=tcp) denies every TCP peer",
  });
  assertEquals(
    tcpReachability(
      rules(
        { action: "deny", source: "0.0.0.0/0" },
        { action: "deny", source: "fc00::/7" },
        { action: "deny", source: "::/0" },
      ),
      GZ,
    ),
    { reachable: false, rule: 3, reason: "rules 1, 2 and 3 deny every TCP peer" },
  );
  assertEquals(tcpReachability(rules({ action: "deny", source: "10.0.0.0/8" }), GZ), {
    reachable: false,
    reason:
      "rule 1 denies some TCP peers, and no rule matched: TCP peers are denied unless a rule allows",
  });
});
