// Tests of the rule policy: first match wins, defaults, the keyboard and mouse safe default,
// and TLS peers known by their verified certificate.
import { assert, assertEquals, assertThrows } from "@std/assert";
import type { DeviceFacts, PeerCertificate, PeerInfo } from "../../mod.ts";
import { descriptorFacts } from "../../lib/server/exported_device.ts";
import { hidKeyboardDescriptors } from "../../lib/devices/keyboard.ts";
import { hidMouseDescriptors } from "../../lib/devices/mouse.ts";
import {
  CERTIFICATE_KEYS,
  describeRule,
  parseRule,
  type Reachability,
  type Rule,
  RuleError,
  RulePolicy,
  tcpReachability,
  tlsReachability,
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
/** A boot mouse: HID class 3, boot subclass 1, protocol 2 (HID 1.11 §4.2-4.3). */
const MOUSE: DeviceFacts = {
  busid: "1-3",
  idVendor: 0x1209,
  idProduct: 0x0002,
  bDeviceClass: 0,
  interfaces: [{ bInterfaceClass: 3, bInterfaceSubClass: 1, bInterfaceProtocol: 2 }],
  origin: "emulated",
};
/** The boot keyboard and the boot mouse, with their vid/pid as rule values. */
const HID = [
  { device: KEYBOARD, vid: "1209", pid: "0001" },
  { device: MOUSE, vid: "1209", pid: "0002" },
] as const;
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

/**
 * Checks each case's answer from `reach` (tcpReachability or tlsReachability), and that
 * RulePolicy agrees: some peer of `samples` gets the device exactly when it is reachable.
 */
function checkReachability(
  cases: [Record<string, unknown>[], DeviceFacts, boolean, number | undefined][],
  reach: (rules: readonly Rule[], device: DeviceFacts) => Reachability,
  samples: PeerInfo[],
): void {
  for (const [fields, device, reachable, rule] of cases) {
    const rules = fields.map((f) => parseRule(f));
    const label = `${rules.map(describeRule).join(", ") || "no rules"} / ${device.busid}`;
    const r = reach(rules, device);
    assertEquals([r.reachable, r.rule], [reachable, rule], label);
    const policy = new RulePolicy({ rules, consoleUid: () => 1000 });
    assertEquals(
      samples.some((peer) => policy.decide(peer, device).effect !== "deny"),
      reachable,
      `RulePolicy disagrees: ${label}`,
    );
  }
}

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

Deno.test("keyboards and mice reach a TCP peer only through a rule that names them", () => {
  const everything = new RulePolicy({ rules: [parseRule({ action: "allow", transport: "tcp" })] });
  assertEquals(everything.decide(tcp("10.0.0.1:1"), GZ).effect, "allow");
  for (const { device, vid, pid } of HID) {
    assertEquals(everything.decide(tcp("10.0.0.1:1"), device), {
      effect: "deny",
      reason:
        "no rule matched: keyboards and mice reach TCP peers only through a rule that names them",
    }, device.busid);
    for (const naming of [{ busid: device.busid }, { vid, pid }, { class: 3 }]) {
      const named = new RulePolicy({
        rules: [parseRule({ action: "allow", transport: "tcp", ...naming })],
      });
      assertEquals(named.decide(tcp("10.0.0.1:1"), device).rule, 1, JSON.stringify(naming));
    }
    assertEquals(
      new RulePolicy({ rules: [] }).decide(unix(0), device).effect,
      "allow",
      "local root still may",
    );
  }
});

Deno.test("the emulated keyboard and mouse are the boot devices the safe default keeps from TCP and TLS", () => {
  // What the policy sees of them at import, from the descriptors the device types serve.
  const policy = new RulePolicy({ rules: [parseRule({ action: "allow" })] });
  for (
    const [busid, descriptors] of [
      ["1-2", hidKeyboardDescriptors()],
      ["1-3", hidMouseDescriptors()],
    ] as const
  ) {
    const facts = descriptorFacts(busid, { descriptors, origin: "emulated" });
    for (const [peer, transport] of [[tcp("10.0.0.1:1"), "TCP"], [tls(), "TLS"]] as const) {
      assertEquals(
        policy.decide(peer, facts).reason,
        `no rule matched: keyboards and mice reach ${transport} peers only through a rule that names them`,
        busid,
      );
    }
  }
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
    [[{ action: "allow", transport: "tcp" }], MOUSE, false, undefined],
    [[{ action: "allow", transport: "tcp", class: 3 }], MOUSE, true, 1],
    [[{ action: "allow", transport: "tcp" }, { action: "allow", vid: "1209" }], MOUSE, true, 2],
    [[{ action: "allow", transport: "tcp" }, { action: "allow", busid: "1-3" }], MOUSE, true, 2],
    [[{ action: "deny", busid: "1-3" }, { action: "allow", busid: "1-3" }], MOUSE, false, 1],
  ];
  // Peers to cross-check against RulePolicy.decide: a device some TCP peer can reach is
  // reached by one of these in every case above, and one that none can is reached by none.
  const samples = ["10.1.2.3:1", "192.0.2.1:1", "[2001:db8::1]:1", "[::1]:1"].map(tcp);
  checkReachability(cases, tcpReachability, samples);
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

// TLS peers.

/** A SHA-256 hash made of one repeated byte, as 64 lowercase hex digits. */
const hash = (byte: string) => byte.repeat(32);
/** The same hash as `openssl x509 -noout -fingerprint -sha256` prints it. */
const opensslForm = (byte: string) => Array(32).fill(byte.toUpperCase()).join(":");

const ALICE: PeerCertificate = {
  cn: "alice",
  ou: ["lab", "ops"],
  sans: ["DNS:alice.example", "URI:spiffe://example.org/alice", "IP Address:10.0.0.7"],
  fingerprint: hash("a1"),
  pubkey: hash("a2"),
};
/** Alice's certificate reissued: same subject and names, new key. */
const ALICE_NEW: PeerCertificate = { ...ALICE, fingerprint: hash("a3"), pubkey: hash("a4") };
const BOB: PeerCertificate = {
  cn: "bob",
  ou: ["lab"],
  sans: ["DNS:bob.example", "IP Address:2001:DB8:0:0:0:0:0:1"],
  fingerprint: hash("b1"),
  pubkey: hash("b2"),
};
const CAROL: PeerCertificate = {
  cn: "carol",
  ou: ["ops"],
  sans: [],
  fingerprint: hash("c1"),
  pubkey: hash("c2"),
};
/** A workload certificate with no CN and a SPIFFE ID only. */
const SERVICE: PeerCertificate = {
  ou: [],
  sans: ["URI:spiffe://example.org/svc"],
  fingerprint: hash("d1"),
  pubkey: hash("d2"),
};

const tls = (certificate?: PeerCertificate, address = "10.0.0.1:4000"): PeerInfo => ({
  transport: "tls",
  address,
  ...(certificate ? { certificate } : {}),
});

Deno.test("parseRule() names the certificate key at fault", () => {
  // [fields, key, part of the message]
  const cases: [Record<string, unknown>, string, string][] = [
    [{ fingerprint: "abc" }, "fingerprint", "not a SHA-256 hash"],
    [{ fingerprint: "ab".repeat(20) }, "fingerprint", "SHA-1"],
    [{ fingerprint: "a" + ":ab".repeat(31) + "b" }, "fingerprint", "64 hex digits"],
    [{ fingerprint: "ab".repeat(32) + "00" }, "fingerprint", "64 hex digits"],
    [{ fingerprint: 12 }, "fingerprint", "SHA-256"],
    [{ pubkey: "zz".repeat(32) }, "pubkey", "not a SHA-256 hash"],
    [{ pubkey: "sha256//AAAA" }, "pubkey", "32 bytes in base64"],
    [{ pubkey: "sha256//not base64!" }, "pubkey", "32 bytes in base64"],
    [{ san: "alice.example" }, "san", "DNS:alice.example"],
    [{ san: "spiffe://example.org/a" }, "san", "URI:spiffe://example.org/a"],
    [{ san: "10.0.0.7" }, "san", "IP Address:10.0.0.7"],
    [{ san: "abcd::1" }, "san", "IP Address:abcd::1"],
    [{ san: "email:alice@example.org" }, "san", "cannot match email names"],
    [{ san: "IP Address:10.0.0.300" }, "san", "not an IP address"],
    [{ san: "DNS:" }, "san", "empty"],
    [{ san: ["DNS:a.example", 7] }, "san", "string"],
    [{ cn: "" }, "cn", "non-empty"],
    [{ cn: "alice|" }, "cn", "non-empty"],
    [{ ou: 3 }, "ou", "string"],
    [{ cn: "alice", transport: "tcp" }, "transport", "matches TLS peers only"],
    [{ fingerprint: hash("a1"), transport: "unix" }, "transport", "fingerprint"],
    [{ transport: "udp" }, "transport", "unix, tcp or tls"],
  ];
  for (const [fields, key, text] of cases) {
    const e = assertThrows(() => parseRule({ action: "allow", ...fields }), RuleError, text);
    assertEquals(e.key, key, JSON.stringify(fields));
    assert(e.message.startsWith(key), e.message);
  }
});

Deno.test("parseRule() keeps hashes as 64 lowercase hex digits and SANs in node's spelling", () => {
  // [fields, the peer part parsed]
  const cases: [Record<string, unknown>, Record<string, unknown>][] = [
    [{ fingerprint: opensslForm("a1") }, { fingerprint: [hash("a1")] }],
    [{ fingerprint: ` ${hash("A1").toUpperCase()} ` }, { fingerprint: [hash("a1")] }],
    [{ fingerprint: `${hash("a1")}|${hash("b1")}` }, { fingerprint: [hash("a1"), hash("b1")] }],
    [{ pubkey: opensslForm("a2") }, { pubkey: [hash("a2")] }],
    // curl's --pinnedpubkey form.
    [{ pubkey: `sha256//${btoa("\xa2".repeat(32))}` }, { pubkey: [hash("a2")] }],
    [{ san: "dns:Alice.Example" }, { san: ["DNS:alice.example"] }],
    [{ san: "uri:spiffe://Example.org/Alice" }, { san: ["URI:spiffe://Example.org/Alice"] }],
    [{ san: "IP:10.0.0.7|ip address:2001:db8::1" }, {
      san: ["IP Address:10.0.0.7", "IP Address:2001:db8::1"],
    }],
    [{ cn: ["alice", "a|b"] }, { cn: ["alice", "a|b"] }],
    [{ ou: "lab|ops" }, { ou: ["lab", "ops"] }],
    [{ transport: "tls", cn: "alice" }, { transport: "tls", cn: ["alice"] }],
    [{ fingerprint: [] }, { fingerprint: [] }],
  ];
  for (const [fields, peer] of cases) {
    assertEquals(parseRule({ action: "allow", ...fields }).peer, peer, JSON.stringify(fields));
  }
});

Deno.test("a TLS peer matches on each certificate key, on its source address and on transport=tls", () => {
  const inNet = (c: PeerCertificate) => tls(c, "10.1.2.3:4000");
  const outside = (c: PeerCertificate) => tls(c, "192.0.2.1:4000");
  // [fields of an allow rule, peer, whether the rule matches]
  const cases: [Record<string, unknown>, PeerInfo, boolean][] = [
    [{ cn: "alice" }, tls(ALICE), true],
    [{ cn: "alice" }, tls(BOB), false],
    [{ cn: "Alice" }, tls(ALICE), false], // case counts
    [{ cn: "alice" }, tls(SERVICE), false], // no CN at all
    [{ cn: "carol|bob" }, tls(BOB), true],
    [{ ou: "ops" }, tls(ALICE), true], // any of the certificate's OUs
    [{ ou: "ops" }, tls(BOB), false],
    [{ ou: ["dev", "lab"] }, tls(BOB), true],
    [{ ou: "lab" }, tls(SERVICE), false],
    [{ san: "DNS:ALICE.example" }, tls(ALICE), true], // DNS names in any case
    [{ san: "DNS:bob.example" }, tls(ALICE), false],
    [{ san: "URI:spiffe://example.org/alice" }, tls(ALICE), true],
    [{ san: "URI:spiffe://example.org/Alice" }, tls(ALICE), false], // URIs exactly
    [{ san: "URI:spiffe://example.org/svc" }, tls(SERVICE), true],
    [{ san: "IP Address:10.0.0.7" }, tls(ALICE), true],
    [{ san: "IP:::ffff:10.0.0.7" }, tls(ALICE), true], // the same address
    [{ san: "IP Address:2001:db8::1" }, tls(BOB), true], // node's long form
    [{ san: "IP Address:10.0.0.8" }, tls(ALICE), false],
    [{ san: "DNS:10.0.0.7" }, tls(ALICE), false], // the type counts
    [{ fingerprint: hash("a1") }, tls(ALICE), true],
    [{ fingerprint: opensslForm("a1") }, tls(ALICE), true],
    [{ fingerprint: hash("a1") }, tls(ALICE_NEW), false],
    [{ fingerprint: hash("a1") }, tls({ ...ALICE, fingerprint: opensslForm("a1") }), true],
    [{ fingerprint: [] }, tls(ALICE), false],
    [{ pubkey: hash("a2") }, tls(ALICE), true],
    [{ pubkey: hash("a2") }, tls({ ...ALICE_NEW, pubkey: hash("a2") }), true], // same key
    [{ pubkey: hash("a1") }, tls(ALICE), false], // the fingerprint is not the key
    // Every key a rule names must match.
    [{ cn: "alice", ou: "lab" }, tls(ALICE), true],
    [{ cn: "bob", ou: "ops" }, tls(BOB), false],
    [{ cn: "alice", fingerprint: hash("a1") }, tls(ALICE_NEW), false],
    // Source prefixes apply to TLS peers too.
    [{ source: "10.0.0.0/8" }, inNet(CAROL), true],
    [{ source: "10.0.0.0/8" }, outside(CAROL), false],
    [{ source: "10.0.0.0/8", cn: "alice" }, inNet(ALICE), true],
    [{ source: "10.0.0.0/8", cn: "alice" }, outside(ALICE), false],
    [{ source: "2001:db8::/32" }, tls(BOB, "[2001:db8::9]:1"), true],
    // The transport.
    [{ transport: "tls" }, tls(ALICE), true],
    [{ transport: "tls" }, tls(), true],
    [{ transport: "tcp" }, tls(ALICE), false],
    [{ transport: "tls" }, tcp("10.0.0.1:1"), false],
    [{ console: false }, tls(ALICE), true],
    // A TLS peer without a certificate matches no certificate key.
    [{ cn: "alice" }, tls(), false],
    [{ ou: [] as string[], transport: "tls" }, tls(), false],
  ];
  for (const [fields, peer, matches] of cases) {
    const policy = new RulePolicy({ rules: [parseRule({ action: "allow", ...fields })] });
    assertEquals(
      policy.decide(peer, GZ).rule,
      matches ? 1 : undefined,
      `${JSON.stringify(fields)} / ${JSON.stringify(peer)}`,
    );
  }
});

Deno.test("certificate keys never match a TCP or unix peer", () => {
  const keys: Record<string, unknown>[] = [
    { cn: "alice" },
    { ou: "lab" },
    { san: "IP Address:10.0.0.7" },
    { fingerprint: hash("a1") },
    { pubkey: hash("a2") },
  ];
  const peers: PeerInfo[] = [
    tcp("10.0.0.7:1"),
    unix(0),
    unix(1000),
    // Only a certificate the TLS handshake verified counts, whatever the transport claims.
    { transport: "tcp", address: "10.0.0.7:1", certificate: ALICE },
    { transport: "unix", address: "/run/usbipgw.sock", uid: 1000, certificate: ALICE },
    { transport: "memory", address: "test", certificate: ALICE },
  ];
  for (const fields of keys) {
    for (const action of ["allow", "deny"]) {
      const policy = new RulePolicy({
        rules: [parseRule({ action, ...fields })],
        consoleUid: () => 1000,
      });
      for (const peer of peers) {
        assertEquals(
          policy.decide(peer, GZ).rule,
          undefined,
          `${action} ${JSON.stringify(fields)} / ${JSON.stringify(peer)}`,
        );
      }
    }
  }
  // So a deny on a certificate leaves the TCP and unix peers to the rules after it.
  const policy = new RulePolicy({
    rules: [parseRule({ action: "deny", cn: "alice" }), parseRule({ action: "allow" })],
  });
  assertEquals(policy.decide(tcp("10.0.0.7:1"), GZ).rule, 2);
  assertEquals(policy.decide(unix(1001), GZ).rule, 2);
  assertEquals(policy.decide(tls(ALICE), GZ).rule, 1);
});

Deno.test("a deny on a fingerprint before an allow on a CN revokes that one certificate", () => {
  const policy = new RulePolicy({
    rules: [
      parseRule({ action: "deny", fingerprint: opensslForm("a1") }),
      parseRule({ action: "allow", cn: "alice|bob" }),
      parseRule({ action: "read-only", ou: "ops" }),
    ],
  });
  // [peer, effect, rule]
  const cases: [PeerInfo, string, number | undefined][] = [
    [tls(ALICE), "deny", 1], // revoked, though rule 2 would allow its CN
    [tls(ALICE, "[2001:db8::5]:1"), "deny", 1], // from any address
    [tls(ALICE_NEW), "allow", 2], // the reissued certificate
    [tls(BOB), "allow", 2],
    [tls(CAROL), "read-only", 3],
    [tls(SERVICE), "deny", undefined],
  ];
  for (const [peer, effect, rule] of cases) {
    const d = policy.decide(peer, GZ);
    assertEquals([d.effect, d.rule], [effect, rule], JSON.stringify(peer.certificate));
  }
  assertEquals(
    policy.decide(tls(ALICE), GZ).reason,
    `rule 1 (deny fingerprint=${hash("a1")})`,
  );
});

Deno.test("TLS peers are denied unless a rule allows, and are never the console user", () => {
  const reason = "no rule matched: TLS peers are denied unless a rule allows";
  // Rules that match no TLS peer.
  const rules: Record<string, unknown>[][] = [
    [],
    [{ action: "allow", transport: "tcp" }],
    [{ action: "allow", transport: "unix" }],
    [{ action: "allow", uid: 0 }],
    [{ action: "allow", gid: 0 }],
    [{ action: "allow", console: true }],
    [{ action: "allow", cn: "bob" }],
    [{ action: "allow", source: "192.168.0.0/16" }],
  ];
  for (const fields of rules) {
    const policy = new RulePolicy({ rules: fields.map((f) => parseRule(f)), consoleUid: () => 0 });
    for (const peer of [tls(ALICE), tls()]) {
      assertEquals(policy.decide(peer, GZ), { effect: "deny", reason }, JSON.stringify(fields));
    }
    assertEquals(policy.isConsole(tls(ALICE)), false);
  }
});

Deno.test("keyboards and mice reach a TLS peer only through a rule that names them", () => {
  const decide = (fields: Record<string, unknown>[], device: DeviceFacts) =>
    new RulePolicy({ rules: fields.map((f) => parseRule(f)) }).decide(tls(ALICE), device);
  assertEquals(decide([{ action: "allow", cn: "alice" }], GZ).effect, "allow");
  for (const { device, vid } of HID) {
    for (const broad of [{}, { cn: "alice" }, { transport: "tls" }, { fingerprint: hash("a1") }]) {
      assertEquals(decide([{ action: "allow", ...broad }], device), {
        effect: "deny",
        reason:
          "no rule matched: keyboards and mice reach TLS peers only through a rule that names them",
      }, `${device.busid} ${JSON.stringify(broad)}`);
    }
    for (const naming of [{ busid: device.busid }, { vid }, { class: 3 }]) {
      assertEquals(
        decide(
          [{ action: "allow", cn: "alice" }, { action: "allow", cn: "alice", ...naming }],
          device,
        )
          .rule,
        2,
        JSON.stringify(naming),
      );
    }
    // A deny decides without naming the device.
    assertEquals(
      decide([{ action: "deny", cn: "alice" }, { action: "allow", busid: device.busid }], device)
        .rule,
      1,
    );
  }
});

Deno.test("describeRule() shows the certificate keys", () => {
  const rule = parseRule({
    action: "deny",
    transport: "tls",
    source: "10.0.0.0/8",
    cn: ["alice", "bob"],
    ou: "lab",
    san: ["dns:A.example", "IP:10.0.0.7", "URI:spiffe://example.org/a"],
    fingerprint: opensslForm("a1"),
    pubkey: hash("A2"),
    busid: "1-1",
  });
  assertEquals(
    describeRule(rule),
    "deny transport=tls source=10.0.0.0/8 cn=alice|bob ou=lab " +
      "san=DNS:a.example|IP Address:10.0.0.7|URI:spiffe://example.org/a " +
      `fingerprint=${hash("a1")} pubkey=${hash("a2")} busid=1-1`,
  );
});

Deno.test("tcpReachability() passes over every rule with a certificate key", () => {
  const rules = (...fields: Record<string, unknown>[]) => fields.map((f) => parseRule(f));
  assertEquals(tcpReachability(rules({ action: "allow", cn: "alice" }), GZ).reachable, false);
  assertEquals(
    tcpReachability(rules({ action: "deny", fingerprint: hash("a1") }, { action: "allow" }), GZ)
      .rule,
    2,
  );
  assertEquals(tcpReachability(rules({ action: "allow", transport: "tls" }), GZ).reachable, false);
});

/** Sample TLS peers: every certificate above from inside and outside 10.0.0.0/8 and from IPv6. */
const TLS_SAMPLES = [ALICE, ALICE_NEW, BOB, CAROL, SERVICE].flatMap((c) =>
  ["10.1.2.3:1", "10.200.0.1:1", "192.0.2.1:1", "[2001:db8::1]:1"].map((a) => tls(c, a))
);

Deno.test("tlsReachability() tells whether any TLS peer at all can reach a device", () => {
  // [rules, device, reachable, deciding rule]
  const cases: [Record<string, unknown>[], DeviceFacts, boolean, number | undefined][] = [
    // The defaults deny every TLS peer.
    [[], GZ, false, undefined],
    // A rule whose peer part matches some TLS peer lets them in...
    [[{ action: "allow", transport: "tls" }], GZ, true, 1],
    [[{ action: "allow" }], GZ, true, 1],
    [[{ action: "read-only", source: "10.0.0.0/8" }], GZ, true, 1],
    [[{ action: "allow", cn: "alice" }], GZ, true, 1],
    [[{ action: "allow", san: "URI:spiffe://example.org/svc" }], GZ, true, 1],
    // ... and one that can match no TLS peer does not.
    [[{ action: "allow", transport: "tcp" }], GZ, false, undefined],
    [[{ action: "allow", uid: 1000 }], GZ, false, undefined],
    [[{ action: "allow", console: true }], GZ, false, undefined],
    [[{ action: "allow", cn: [] }], GZ, false, undefined], // an empty list matches nobody
    // A deny blind to certificates shuts out addresses, for every certificate.
    [[{ action: "deny", transport: "tls" }, { action: "allow" }], GZ, false, 1],
    [[{ action: "deny" }, { action: "allow", cn: "alice" }], GZ, false, 1],
    [[{ action: "deny", source: "10.0.0.0/8" }, { action: "allow", cn: "alice" }], GZ, true, 2],
    [
      [{ action: "deny", source: "10.0.0.0/8" }, {
        action: "allow",
        cn: "alice",
        source: "10.1.0.0/16",
      }],
      GZ,
      false,
      undefined,
    ],
    // A deny on a certificate shuts out only the certificates it names.
    [[{ action: "deny", cn: "alice" }, { action: "allow" }], GZ, true, 2],
    [[{ action: "deny", cn: "alice" }, { action: "allow", cn: "alice" }], GZ, false, undefined],
    [[{ action: "deny", cn: "alice" }, { action: "allow", cn: "alice|bob" }], GZ, true, 2],
    [
      [{ action: "deny", cn: "alice" }, { action: "deny", cn: "bob" }, {
        action: "allow",
        cn: "alice|bob",
      }],
      GZ,
      false,
      undefined,
    ],
    [[{ action: "deny", cn: "alice" }, { action: "allow", ou: "lab" }], GZ, true, 2],
    [
      [{ action: "deny", cn: "alice" }, { action: "deny", ou: "lab" }, {
        action: "allow",
        ou: "lab",
      }],
      GZ,
      false,
      undefined,
    ],
    [
      [{ action: "deny", cn: "alice" }, { action: "deny", cn: "bob", source: "10.0.0.0/8" }, {
        action: "allow",
        cn: "alice|bob",
      }],
      GZ,
      true,
      3,
    ],
    [
      [{ action: "deny", san: "IP Address:10.0.0.7" }, {
        action: "allow",
        san: "IP:::ffff:10.0.0.7|DNS:bob.example",
      }],
      GZ,
      true,
      2,
    ],
    [[{ action: "deny", ou: "lab" }, { action: "allow", ou: "lab" }], GZ, false, undefined],
    [[{ action: "deny", ou: "lab" }, { action: "allow", ou: "lab|ops" }], GZ, true, 2],
    [
      [{ action: "deny", fingerprint: hash("a1") }, { action: "allow", fingerprint: hash("a1") }],
      GZ,
      false,
      undefined,
    ],
    // A revoked certificate: others with its CN (the reissued one) still get in.
    [[{ action: "deny", fingerprint: hash("a1") }, { action: "allow", cn: "alice" }], GZ, true, 2],
    [
      [{ action: "deny", san: "DNS:alice.example" }, { action: "allow", san: "DNS:ALICE.example" }],
      GZ,
      false,
      undefined,
    ],
    [
      [{ action: "deny", san: "IP Address:10.0.0.7" }, {
        action: "allow",
        san: "IP:::ffff:10.0.0.7",
      }],
      GZ,
      false,
      undefined,
    ],
    // A deny on a certificate from some addresses leaves it the others.
    [
      [{ action: "deny", cn: "alice", source: "10.0.0.0/8" }, { action: "allow", cn: "alice" }],
      GZ,
      true,
      2,
    ],
    [
      [{ action: "deny", cn: "alice", source: "10.0.0.0/8" }, {
        action: "allow",
        cn: "alice",
        source: "10.1.0.0/16",
      }],
      GZ,
      false,
      undefined,
    ],
    // Denies that can match no TLS peer are passed over.
    [[{ action: "deny", transport: "tcp" }, { action: "allow" }], GZ, true, 2],
    [[{ action: "deny", uid: 0 }, { action: "allow", transport: "tls" }], GZ, true, 2],
    // Only rules whose device part matches count.
    [[{ action: "deny", cn: "alice", class: 8 }, { action: "allow", cn: "alice" }], GZ, true, 2],
    // Keyboards and mice: only a rule that names them lets a TLS peer in; a deny still decides.
    [[{ action: "allow", cn: "alice" }], KEYBOARD, false, undefined],
    [[{ action: "allow", cn: "alice", class: 3 }], KEYBOARD, true, 1],
    [[{ action: "deny", cn: "alice" }, { action: "allow", busid: "1-2" }], KEYBOARD, true, 2],
    [[{ action: "deny", busid: "1-2" }, { action: "allow", busid: "1-2" }], KEYBOARD, false, 1],
    [[{ action: "allow", cn: "alice" }], MOUSE, false, undefined],
    [[{ action: "allow", cn: "alice", class: 3 }], MOUSE, true, 1],
    [[{ action: "deny", cn: "alice" }, { action: "allow", busid: "1-3" }], MOUSE, true, 2],
    [[{ action: "deny", busid: "1-3" }, { action: "allow", busid: "1-3" }], MOUSE, false, 1],
  ];
  checkReachability(cases, tlsReachability, TLS_SAMPLES);
});

Deno.test("tlsReachability() names the rules or the default behind its answer", () => {
  const rules = (...fields: Record<string, unknown>[]) => fields.map((f) => parseRule(f));
  assertEquals(tlsReachability([], GZ), {
    reachable: false,
    reason: "no rule matched: TLS peers are denied unless a rule allows",
  });
  assertEquals(tlsReachability(rules({ action: "allow", ou: "lab" }), GZ), {
    reachable: true,
    rule: 1,
    reason: "rule 1 (allow ou=lab)",
  });
  assertEquals(tlsReachability(rules({ action: "allow", transport: "tls" }), KEYBOARD), {
    reachable: false,
    reason:
      "no rule matched: keyboards and mice reach TLS peers only through a rule that names them",
  });
  assertEquals(tlsReachability(rules({ action: "deny", transport: "tls" }), GZ), {
    reachable: false,
    rule: 1,
    reason: "rule 1 (deny transport=tls) denies every TLS peer",
  });
  assertEquals(
    tlsReachability(
      rules(
        { action: "deny", cn: "alice" },
        { action: "deny", source: "0.0.0.0/0" },
        { action: "deny", source: "::/0" },
      ),
      GZ,
    ),
    { reachable: false, rule: 3, reason: "rules 1, 2 and 3 deny every TLS peer" },
  );
  assertEquals(
    tlsReachability(rules({ action: "deny", cn: "alice" }, { action: "allow", cn: "alice" }), GZ),
    {
      reachable: false,
      reason:
        "rule 1 denies some TLS peers, and no rule matched: TLS peers are denied unless a rule allows",
    },
  );
});

Deno.test("tlsReachability() agrees with RulePolicy on random rule lists", () => {
  // Every value a rule below can name, plus one none names, on each key; and one address in
  // each region the prefixes below cut. By the argument of tlsReachability, a TLS peer gets
  // in for some rule list only if one of these does.
  const cns = ["alice", "bob", "zed", undefined];
  const ous = [[], ["lab"], ["ops"]];
  const sans = [[], ["DNS:a.example"], ["IP Address:10.0.0.7"]];
  const fingerprints = [hash("a1"), hash("b1"), hash("ee")];
  const pubkeys = [hash("c1"), hash("d1"), hash("ee")];
  const addresses = ["10.1.2.3:1", "10.2.0.1:1", "192.0.2.1:1"];
  const samples: PeerInfo[] = [];
  for (const cn of cns) {
    for (const ou of ous) {
      for (const san of sans) {
        for (const fingerprint of fingerprints) {
          for (const pubkey of pubkeys) {
            for (const address of addresses) {
              samples.push(
                tls({ ...(cn ? { cn } : {}), ou, sans: san, fingerprint, pubkey }, address),
              );
            }
          }
        }
      }
    }
  }
  const choices: Record<string, unknown[]> = {
    cn: ["alice", "bob", "alice|bob"],
    ou: ["lab", "ops", "lab|ops"],
    san: ["DNS:A.example", "IP:::ffff:10.0.0.7", "DNS:a.example|IP Address:10.0.0.7"],
    fingerprint: [hash("a1"), opensslForm("b1"), `${hash("a1")}|${hash("b1")}`],
    pubkey: [hash("c1"), `${hash("c1")}|${hash("d1")}`],
    source: ["10.0.0.0/8", "10.1.0.0/16"],
    transport: ["tls", "tcp"],
  };
  // A small seeded generator (mulberry32), so a failure can be replayed.
  let seed = 0x5eed;
  const random = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  let reached = 0;
  for (let n = 0; n < 400; n++) {
    const rules: Rule[] = [];
    const length = 1 + Math.floor(random() * 4);
    while (rules.length < length) {
      const fields: Record<string, unknown> = {
        action: pick(["allow", "deny", "deny", "read-only"]),
      };
      for (const [key, values] of Object.entries(choices)) {
        if (random() < 0.3) fields[key] = pick(values);
      }
      // transport=tcp with a certificate key is refused by parseRule.
      if (fields.transport === "tcp" && CERTIFICATE_KEYS.some((k) => k in fields)) {
        delete fields.transport;
      }
      rules.push(parseRule(fields));
    }
    const policy = new RulePolicy({ rules });
    const label = rules.map(describeRule).join(", ");
    const some = samples.some((peer) => policy.decide(peer, GZ).effect !== "deny");
    assertEquals(tlsReachability(rules, GZ).reachable, some, label);
    if (some) reached++;
  }
  // Both answers came up often enough to mean something.
  assert(reached > 40 && reached < 360, `${reached} of 400 reachable`);
});
