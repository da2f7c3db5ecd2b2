// Tests of the CLI contract through the real process: help, version, exit codes, messages.
import { assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import denoJson from "../../deno.json" with { type: "json" };
import { runMain, tempDir } from "../e2e/_gateway.ts";

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
    [["bogus"], 'Unknown command "bogus"; commands: serve, list, policy, version, help'],
    [["serve", "--device", "floppy"], "valid types: gadget-zero, keyboard"],
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
  } finally {
    blocker.close();
  }
});
