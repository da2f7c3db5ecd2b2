// Tests of the TOML configuration: what it yields and errors that name file, line and key.
import { assertEquals, assertThrows } from "@std/assert";
import { parseConfig } from "../../lib/cli/config.ts";
import { UsageError } from "../../lib/cli/usage_error.ts";

const GOOD = `# usbipgw configuration
log_level = "debug"
tcp = ["127.0.0.1:3240", "[::1]:3240"]

[[unix]]
path = "/run/usbipgw.sock"
mode = "0660"
group = "plugdev"

[[device]]
type = "gadget-zero"
busid = "1-1"
pattern = 1

[[device]]
type = "keyboard"
text = "hello"
`;

Deno.test("parseConfig() reads listeners, devices and the log level", () => {
  const c = parseConfig(GOOD, "gw.toml");
  assertEquals(c.logLevel, "debug");
  assertEquals(c.tcp, ["127.0.0.1:3240", "[::1]:3240"]);
  assertEquals(c.unix, [{ path: "/run/usbipgw.sock", mode: 0o660, group: "plugdev" }]);
  assertEquals(c.devices.map((d) => [d.type, d.options]), [
    ["gadget-zero", { busid: "1-1", pattern: "1" }],
    ["keyboard", { text: "hello" }],
  ]);
  assertEquals(c.devices[1]?.origin, "gw.toml:15");
});

function error(text: string): string {
  return assertThrows(() => parseConfig(text, "gw.toml"), UsageError).message;
}

Deno.test("parseConfig() names the file, line and key of an unknown device key", () => {
  const text = GOOD.replace("pattern = 1", "patern = 1");
  assertEquals(
    error(text),
    'gw.toml:13: device[1].patern: Unknown key "patern" for gadget-zero; valid keys: busid, pattern, speed',
  );
});

Deno.test("parseConfig() names the line of an unknown device type", () => {
  const msg = error(GOOD.replace('type = "keyboard"', 'type = "floppy"'));
  assertEquals(
    msg.startsWith('gw.toml:16: device[2].type: Unknown device type "floppy"'),
    true,
    msg,
  );
});

Deno.test("parseConfig() names the line of an unknown top-level key and of a bad unix mode", () => {
  assertEquals(
    error("listen = 1\n"),
    "gw.toml:1: listen: unknown key; valid keys: log_level, tcp, unix, device, rule, seat_dir, console_uid, limits, logging",
  );
  assertEquals(
    error(GOOD.replace('mode = "0660"', 'mode = "rw"')),
    'gw.toml:7: unix[1].mode: expected an octal mode such as "0660"',
  );
  assertEquals(
    error(GOOD.replace('group = "plugdev"', "grp = 1")),
    "gw.toml:8: unix[1].grp: unknown key; valid keys: path, mode, owner, group",
  );
  assertEquals(
    error('log_level = "loud"\n'),
    "gw.toml:1: log_level: expected one of trace, debug, info, warning, error, fatal",
  );
});

Deno.test("parseConfig() reports TOML syntax errors with their line", () => {
  const msg = error('tcp = ["127.0.0.1:3240"]\n[[device]]\ntype = \n');
  assertEquals(
    msg.startsWith("gw.toml:4: invalid TOML:") || msg.startsWith("gw.toml:3: invalid TOML:"),
    true,
    msg,
  );
});

Deno.test("parseConfig() reads rules in order and names the line and field of a bad one", () => {
  const text = `tcp = "127.0.0.1:3240"
seat_dir = "/tmp/seats"
console_uid = 1000

[[rule]]
action = "allow"
transport = "tcp"
source = ["10.0.0.0/8", "::1"]
busid = "1-1"

[[rule]]
action = "read-only"
class = 8
`;
  const c = parseConfig(text, "gw.toml");
  assertEquals(c.seatDir, "/tmp/seats");
  assertEquals(c.consoleUid, 1000);
  assertEquals(c.rules.map((r) => r.action), ["allow", "read-only"]);
  assertEquals(c.rules[0]?.peer.source?.map((s) => s.text), ["10.0.0.0/8", "::1"]);
  assertEquals(c.rules[1]?.origin, "gw.toml:11");
  assertEquals(
    error(text.replace('source = ["10.0.0.0/8", "::1"]', 'source = "10.0.0.0/99"')),
    'gw.toml:8: rule[1].source: Invalid address prefix "10.0.0.0/99": expected e.g. 192.168.1.0/24 or fd00::/8',
  );
  assertEquals(
    error(text.replace('action = "read-only"', 'action = "maybe"')),
    "gw.toml:12: rule[2].action: action must be one of allow, deny, read-only",
  );
  assertEquals(
    error(text.replace("class = 8", "klass = 8")).startsWith(
      "gw.toml:13: rule[2].klass: unknown key",
    ),
    true,
  );
});

Deno.test("parseConfig() reads [limits] with sizes and unlimited, and names a bad limit's line", () => {
  const text = `[limits]
max_connections = 64
max_connections_per_peer = "unlimited"
max_buffered_bytes = "8MiB"
max_transfer_length = "1MiB"
`;
  const c = parseConfig(text, "gw.toml");
  assertEquals(c.limits.session, {
    maxConnections: 64,
    maxConnectionsPerPeer: Infinity,
    maxBufferedBytes: 8 * 1024 * 1024,
  });
  assertEquals(c.limits.maxTransferBufferLength, 1024 * 1024);
  assertEquals(
    error(text.replace("max_connections = 64", "max_connections = -3")),
    'gw.toml:2: limits.max_connections: expected a positive whole number or "unlimited"',
  );
  assertEquals(
    error(text.replace("max_connections = 64", "max_sessions = 3")).startsWith(
      "gw.toml:2: limits.max_sessions: unknown key",
    ),
    true,
  );
});
