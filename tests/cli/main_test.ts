// Tests of the CLI contract through the real process: help, version, exit codes, messages.
import { assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import denoJson from "../../deno.json" with { type: "json" };
import { runMain, tempDir } from "../e2e/_gateway.ts";
import { makeTestPki, opensslFingerprint, opensslProblem } from "../transport/_certs.ts";

Deno.test("usbipgw version prints the version and --help works everywhere", async () => {
  const v = await runMain(["version"]);
  assertEquals(v.code, 0);
  assertMatch(v.stdout, new RegExp(`^usbipgw ${denoJson.version.replaceAll(".", "\\.")} `));
  for (
    const args of [["--help"], ["help"], ["help", "serve"], ["serve", "--help"], ["list", "-h"], [
      "help",
      "list",
    ]]
  ) {
    const r = await runMain(args);
    assertEquals(r.code, 0, args.join(" "));
    assertStringIncludes(r.stdout, "Usage: usbipgw");
  }
  assertStringIncludes((await runMain(["serve", "--help"])).stdout, "gadget-zero");
});

Deno.test("usage errors exit with 2 and say what is valid", async () => {
  const cases: [string[], string][] = [
    [["bogus"], 'Unknown command "bogus"; commands: serve, list, host, policy, status, config,'],
    [
      ["serve", "--device", "floppy"],
      "valid types: gadget-zero, keyboard, host, cdc-acm, ftdi, gotemp, mouse, tablet",
    ],
    [["serve", "--device", "keyboard:colour=red"], "valid keys: busid, text, socket, serial"],
    [["serve", "--frobnicate"], "Unknown option --frobnicate"],
    [
      ["serve", "--tcp", "127.0.0.1:99999", "--device", "gadget-zero"],
      "Invalid --tcp 127.0.0.1:99999",
    ],
    [["serve", "--device", "gadget-zero:busid=x", "--tcp", "127.0.0.1:0"], 'Invalid busid "x"'],
    [["list"], "exactly one of -r HOST[:PORT] or --unix PATH"],
    [["help", "nothing"], 'Unknown command "nothing"'],
  ];
  for (const [args, message] of cases) {
    const r = await runMain(args);
    assertEquals(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assertStringIncludes(r.stderr, message);
  }
});

Deno.test("a bad config file exits with 2 and names the file, line and key", async () => {
  const dir = await tempDir();
  try {
    const file = `${dir.path}/gw.toml`;
    await Deno.writeTextFile(
      file,
      'tcp = "127.0.0.1:0"\n\n[[device]]\ntype = "gadget-zero"\nspeed = "warp"\nbusid = "1-1"\n[[device]]\ntype = "keyboard"\ncolour = 1\n',
    );
    const r = await runMain(["serve", "--config", file]);
    assertEquals(r.code, 2);
    assertStringIncludes(
      r.stderr,
      `${file}:9: device[2].colour: Unknown key "colour" for keyboard`,
    );
    const missing = await runMain(["serve", "--config", `${dir.path}/none.toml`]);
    assertEquals(missing.code, 2);
    assertStringIncludes(missing.stderr, "Cannot read the configuration file");
  } finally {
    await dir.remove();
  }
});

Deno.test("a port already in use is a runtime error with exit status 1", async () => {
  const blocker = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const r = await runMain([
      "serve",
      "--tcp",
      `127.0.0.1:${blocker.addr.port}`,
      "--device",
      "gadget-zero",
    ]);
    assertEquals(r.code, 1);
    assertMatch(r.stderr, /usbipgw: .*(in use|Address)/i);
    // It names the address, and what may hold it.
    assertStringIncludes(
      r.stderr,
      `Cannot listen on 127.0.0.1:${blocker.addr.port}: the address is in use`,
    );
    assertStringIncludes(r.stderr, "another usbipgw or usbipd");
    // With --log-format json the error is the last line, and a JSON record at level error.
    const json = await runMain([
      "serve",
      "--tcp",
      `127.0.0.1:${blocker.addr.port}`,
      "--device",
      "gadget-zero",
      "--log-format",
      "json",
    ]);
    assertEquals(json.code, 1);
    const last = JSON.parse(json.stderr.trim().split("\n").at(-1)!);
    assertEquals(last.level, "error");
    assertStringIncludes(last.message, "the address is in use");
    for (const line of json.stderr.trim().split("\n")) JSON.parse(line);
  } finally {
    blocker.close();
  }
});

Deno.test("usbipgw policy show lists the rules with their origin, then the defaults", async () => {
  const r = await runMain([
    "policy",
    "show",
    "--rule",
    "deny:busid=1-1",
    "--device",
    "gadget-zero",
  ]);
  assertEquals(r.code, 0, r.stderr);
  assertStringIncludes(r.stdout, "  1  deny busid=1-1    # --rule deny:busid=1-1");
  assertStringIncludes(r.stdout, "every TCP peer, is denied");
  const demo = await runMain(["policy", "show"]);
  assertStringIncludes(
    demo.stdout,
    "allow transport=tcp source=127.0.0.0/8|::1 busid=1-1|1-2    # built-in rule of the demo set",
  );
});

Deno.test("usbipgw policy check prints the decision and the rule or default behind it", async () => {
  const check = async (...args: string[]) =>
    (await runMain(["policy", "check", ...args])).stdout.trim();
  assertEquals(
    await check("--peer", "tcp:10.0.0.1", "--device", "1-1"),
    "deny: tcp:10.0.0.1 and 1-1 (gadget-zero): no rule matched: TCP peers are denied unless a rule allows",
  );
  assertEquals(
    await check("--peer", "tcp:127.0.0.1:5000", "--device", "1-2"),
    "allow: tcp:127.0.0.1:5000 and 1-2 (keyboard): rule 1 (allow transport=tcp source=127.0.0.0/8|::1 busid=1-1|1-2)",
  );
  assertEquals(
    await check("--peer", "console", "--device", "keyboard"),
    "allow: the console user and 1-1 (keyboard): no rule matched: the console user is allowed",
  );
  assertEquals(
    await check("--peer", "unix:1001", "--device", "gadget-zero", "--rule", "read-only:uid=1001"),
    "read-only: unix:1001 and 1-1 (gadget-zero): rule 1 (read-only uid=1001)",
  );
  const bad = await runMain(["policy", "check", "--peer", "udp:1.2.3.4", "--device", "1-1"]);
  assertEquals(bad.code, 2);
  assertStringIncludes(
    bad.stderr,
    "expected tcp:ADDRESS[:PORT], unix:UID[:GID], tls:CERTFILE or console",
  );
  const badRule = await runMain(["policy", "show", "--rule", "allow:source=nowhere"]);
  assertEquals(badRule.code, 2);
  assertStringIncludes(
    badRule.stderr,
    'Invalid --rule allow:source=nowhere: Invalid address prefix "nowhere"',
  );
});

Deno.test({
  name: "usbipgw policy check --peer tls:CERTFILE decides for the certificate's identity",
  ignore: opensslProblem !== undefined,
  async fn() {
    const pki = await makeTestPki();
    try {
      const fp = await opensslFingerprint(pki.dir, pki.tricky.cert);
      const rules = [
        "--rule",
        "allow:transport=tls,cn=alice,busid=1-1",
        "--rule",
        `deny:fingerprint=${fp}`,
        "--rule",
        "allow:transport=tls,ou=usb",
      ];
      const check = (cert: string, device: string) =>
        runMain(["policy", "check", "--peer", `tls:${cert}`, "--device", device, ...rules]);
      const alice = await check(pki.alice.cert, "1-1");
      assertEquals(alice.code, 0, alice.stderr);
      assertStringIncludes(alice.stdout, "allow: tls:");
      assertStringIncludes(alice.stdout, "rule 1 (allow transport=tls cn=alice busid=1-1)");
      // HID reaches a TLS peer only through a rule that names it.
      const keyboard = await check(pki.alice.cert, "1-2");
      assertEquals(keyboard.code, 1, keyboard.stdout);
      // A deny rule on a fingerprint: the way to revoke one certificate.
      const revoked = await check(pki.tricky.cert, "1-1");
      assertEquals(revoked.code, 1, revoked.stdout);
      assertStringIncludes(revoked.stdout, "rule 2 (deny fingerprint=");
      const none = await check(pki.stranger.cert, "1-1");
      assertEquals(none.code, 1, none.stdout);
      assertStringIncludes(none.stdout, "TLS peers are denied unless a rule allows");
      const missing = await check(`${pki.dir}/nothing.pem`, "1-1");
      assertEquals(missing.code, 2);
      assertStringIncludes(missing.stderr, "nothing.pem: cannot read it");
      const notPem = await check(pki.alice.key, "1-1");
      assertEquals(notPem.code, 2);
      assertStringIncludes(notPem.stderr, "holds no PEM certificate");
    } finally {
      await pki.remove();
    }
  },
});
