// `config check FILE` and `serve --config FILE` agree: on the good and bad files of
// tests/testdata/config_check/, check accepts exactly what serve starts with, and both name
// the same file:line: key for a bad one.
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { runMain, spawnMain, tempDir } from "../e2e/_gateway.ts";

/** Listeners on a free TCP port and on a socket in `dir`. */
const listeners = (dir: string) => `tcp = ["127.0.0.1:0"]\n[[unix]]\npath = "${dir}/gw.sock"\n`;

/** The files of the table, in tests/testdata/config_check/. */
const FILES = new URL("../testdata/config_check/", import.meta.url);

/** The bad files and the `line: key` the error of each one names. */
const BAD: [file: string, error: string][] = [
  ["port_out_of_range.toml", "1: tcp"],
  ["pattern_not_0_or_1.toml", "7: device[1].pattern"],
  ["two_devices_one_busid.toml", "9: device[2].busid"],
  ["unknown_top_level_key.toml", "1: listen"],
  ["unix_mode_not_octal.toml", "3: unix[1].mode"],
  ["unknown_log_level.toml", "1: log_level"],
  ["unknown_log_format.toml", "2: logging.format"],
  ["rule_unknown_action.toml", "5: rule[1].action"],
  ["rule_bad_source.toml", "6: rule[1].source"],
  ["limit_not_a_number.toml", "2: limits.max_connections"],
  ["unknown_device_type.toml", "5: device[1].type"],
  ["unknown_device_key.toml", "6: device[1].colour"],
  ["storage_without_image.toml", "4: device[1].image"],
  ["serial_unknown_backend.toml", "6: device[1].backend"],
  ["key_given_twice.toml", "2: tcp"],
  ["console_uid_not_a_number.toml", "1: console_uid"],
  ["toml_syntax_error.toml", "3: invalid TOML"],
  ["tls_min_version_unknown.toml", "6: tls[1].min_version"],
  ["tls_without_ca.toml", "1: tls[1].ca"],
];

/** The good files: one device; devices, a rule, limits and logging; a relative image. */
const GOOD = [
  "good_one_device.toml",
  "good_devices_rule_limits_logging.toml",
  "good_storage_image_relative.toml",
];

/** Every file, the bad ones first (no error: a good one). */
const CASES: { name: string; error?: string }[] = [
  ...BAD.map(([name, error]) => ({ name, error })),
  ...GOOD.map((name) => ({ name })),
];

Deno.test("config check and serve --config agree on good and bad files", async () => {
  const dir = await tempDir();
  try {
    for (const c of CASES) {
      // In the temporary folder: the socket and the image a good file names go next to it.
      const file = `${dir.path}/${c.name}`;
      await Deno.copyFile(new URL(c.name, FILES), file);
      const check = await runMain(["config", "check", file]);
      if (c.error !== undefined) {
        assertEquals(check.code, 1, `${c.name}: config check: ${check.stderr}`);
        assertStringIncludes(check.stderr, `usbipgw: ${file}:${c.error}`, c.name);
        assertEquals(check.stdout, "", c.name);
        const serve = await runMain(["serve", "--config", file]);
        assertEquals(serve.code, 2, `${c.name}: serve: ${serve.stderr}`);
        assertEquals(serve.stderr, check.stderr, `${c.name}: the same message`);
        assert(!serve.stderr.includes("--tcp"), `${c.name}: names no flag: ${serve.stderr}`);
        continue;
      }
      assertEquals(check.code, 0, `${c.name}: config check: ${check.stderr}`);
      assertStringIncludes(check.stdout, `${file}: valid:`);
      const gw = spawnMain(["serve", "--config", file]);
      try {
        await gw.waitFor(/usbipgw serving/);
      } finally {
        assertEquals((await gw.stop("SIGTERM")).code, 0, `${c.name}: ${gw.lines.join("\n")}`);
      }
    }
    // The relative image was created next to the file, not in the working folder.
    assert((await Deno.stat(`${dir.path}/stick.img`)).isFile);
  } finally {
    await dir.remove();
  }
});

/** Runs `fn` with a file gw.toml in a temporary folder, holding `text` of that folder. */
async function withConfigFile(text: (dir: string) => string, fn: (file: string) => Promise<void>) {
  const dir = await tempDir();
  try {
    const file = `${dir.path}/gw.toml`;
    await Deno.writeTextFile(file, text(dir.path));
    await fn(file);
  } finally {
    await dir.remove();
  }
}

Deno.test("an error in a flag names the flag, and never a file", () =>
  withConfigFile(listeners, async (file) => {
    const r = await runMain(["serve", "--config", file, "--device", "gadget-zero:pattern=one"]);
    assertEquals(r.code, 2);
    assertStringIncludes(r.stderr, "Invalid --device gadget-zero:pattern=one: ");
    assert(!r.stderr.includes(file), r.stderr);
    const rule = await runMain(["serve", "--config", file, "--rule", "allow:colour=red"]);
    assertEquals(rule.code, 2);
    assertStringIncludes(rule.stderr, "Invalid --rule allow:colour=red: ");
    assert(!rule.stderr.includes("device spec"), rule.stderr);
  }));

Deno.test("config check lists every wrong value of a file, in line order", () =>
  withConfigFile(
    () =>
      `log_level = "loud"\n[[device]]\ntype = "gadget-zero"\nspeed = "warp"\n[[device]]\ntype = "keyboard"\ncolour = 1\n`,
    async (file) => {
      const r = await runMain(["config", "check", file]);
      assertEquals(r.code, 1);
      const lines = r.stderr.trim().split("\n");
      assertEquals(lines.map((l) => l.split(": ")[1]), [`${file}:1`, `${file}:4`, `${file}:7`]);
    },
  ));
