// Tests of the TOML configuration: what it yields and errors that name file, line and key.
import { assertEquals, assertRejects } from "@std/assert";
import { checkConfigText, formatAddress } from "../../lib/cli/config.ts";
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

Deno.test("checkConfigText() reads listeners, devices and the log level", async () => {
  const c = await checkConfigText(GOOD, "gw.toml");
  assertEquals(c.logLevel, "debug");
  assertEquals(c.tcp.map(formatAddress), ["127.0.0.1:3240", "[::1]:3240"]);
  // The group is looked up by name, as the socket is created with the group's id.
  const plugdev = (await Deno.readTextFile("/etc/group")).split("\n")
    .map((l) => l.split(":")).find((f) => f[0] === "plugdev")?.[2];
  assertEquals(c.unix, [{
    path: "/run/usbipgw.sock",
    mode: 0o660,
    ...(plugdev !== undefined ? { gid: Number(plugdev) } : {}),
  }]);
  assertEquals(c.devices.map((d) => [d.device.name, d.key, d.busid]), [
    ["gadget-zero", "gadget-zero:busid=1-1,pattern=1", "1-1"],
    ["keyboard", "keyboard:text=hello", "1-2"],
  ]);
  assertEquals(c.devices[1]?.origin, "gw.toml:15");
});

async function error(text: string): Promise<string> {
  return (await assertRejects(() => checkConfigText(text, "gw.toml"), UsageError)).message;
}

Deno.test("checkConfigText() names the file, line and key of an unknown device key", async () => {
  const text = GOOD.replace("pattern = 1", "patern = 1");
  assertEquals(
    await error(text),
    'gw.toml:13: device[1].patern: Unknown key "patern" for gadget-zero; valid keys: busid, pattern, speed, maxburst, mult, iso',
  );
});

Deno.test("checkConfigText() names the line of an unknown device type", async () => {
  const msg = await error(GOOD.replace('type = "keyboard"', 'type = "floppy"'));
  assertEquals(
    msg.startsWith('gw.toml:16: device[2].type: Unknown device type "floppy"'),
    true,
    msg,
  );
});

Deno.test("checkConfigText() names the line of an unknown top-level key and of a bad unix mode", async () => {
  assertEquals(
    await error("listen = 1\n"),
    "gw.toml:1: listen: unknown key; valid keys: log_level, tcp, unix, device, rule, seat_dir, console_uid, metrics, limits, logging, attach, tls, capture, capture_snaplen, capture_max_size",
  );
  assertEquals(
    await error(GOOD.replace('mode = "0660"', 'mode = "rw"')),
    'gw.toml:7: unix[1].mode: expected an octal mode such as "0660"',
  );
  assertEquals(
    await error(GOOD.replace('group = "plugdev"', "grp = 1")),
    "gw.toml:8: unix[1].grp: unknown key; valid keys: path, mode, owner, group",
  );
  assertEquals(
    await error('log_level = "loud"\n'),
    "gw.toml:1: log_level: expected one of trace, debug, info, warning, error, fatal",
  );
});

Deno.test("checkConfigText() reports TOML syntax errors with their line", async () => {
  const msg = await error('tcp = ["127.0.0.1:3240"]\n[[device]]\ntype = \n');
  assertEquals(
    msg.startsWith("gw.toml:4: invalid TOML:") || msg.startsWith("gw.toml:3: invalid TOML:"),
    true,
    msg,
  );
});

Deno.test("checkConfigText() reads rules in order and names the line and field of a bad one", async () => {
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
  const c = await checkConfigText(text, "gw.toml");
  assertEquals(c.seatDir, "/tmp/seats");
  assertEquals(c.consoleUid, 1000);
  assertEquals(c.rules.map((r) => r.action), ["allow", "read-only"]);
  assertEquals(c.rules[0]?.peer.source?.map((s) => s.text), ["10.0.0.0/8", "::1"]);
  assertEquals(c.rules[1]?.origin, "gw.toml:11");
  assertEquals(
    await error(text.replace('source = ["10.0.0.0/8", "::1"]', 'source = "10.0.0.0/99"')),
    'gw.toml:8: rule[1].source: Invalid address prefix "10.0.0.0/99": expected e.g. 192.168.1.0/24 or fd00::/8',
  );
  assertEquals(
    await error(text.replace('action = "read-only"', 'action = "maybe"')),
    "gw.toml:12: rule[2].action: action must be one of allow, deny, read-only",
  );
  assertEquals(
    (await error(text.replace("class = 8", "klass = 8"))).startsWith(
      "gw.toml:13: rule[2].klass: unknown key",
    ),
    true,
  );
});

Deno.test("checkConfigText() reads [limits] with sizes and unlimited, and names a bad limit's line", async () => {
  const text = `[limits]
max_connections = 64
max_connections_per_peer = "unlimited"
max_buffered_bytes = "8MiB"
max_transfer_length = "1MiB"
`;
  const c = await checkConfigText(text, "gw.toml");
  assertEquals(c.limits.session, {
    maxConnections: 64,
    maxConnectionsPerPeer: Infinity,
    maxBufferedBytes: 8 * 1024 * 1024,
  });
  assertEquals(c.limits.maxTransferBufferLength, 1024 * 1024);
  assertEquals(
    await error(text.replace("max_connections = 64", "max_connections = -3")),
    'gw.toml:2: limits.max_connections: expected a positive whole number or "unlimited"',
  );
  assertEquals(
    (await error(text.replace("max_connections = 64", "max_sessions = 3"))).startsWith(
      "gw.toml:2: limits.max_sessions: unknown key",
    ),
    true,
  );
});
