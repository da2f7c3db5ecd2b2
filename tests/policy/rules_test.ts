// Tests of the rule policy: first match wins, defaults, the keyboard safe default.
import { assertEquals, assertThrows } from "@std/assert";
import type { DeviceFacts, PeerInfo } from "../../mod.ts";
import { describeRule, parseRule, RuleError, RulePolicy } from "../../lib/policy/rules.ts";

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
