// `config check FILE` and `serve --config FILE` agree: on a table of good and bad files, check
// accepts exactly what serve starts with, and both name the same file:line: key for a bad one.
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { runMain, spawnMain, tempDir } from "../e2e/_gateway.ts";

/** A configuration file and, for a bad one, the `line: key` its error names. */
interface Case {
  name: string;
  text: (dir: string) => string;
  error?: string;
}

const listeners = (dir: string) => `tcp = ["127.0.0.1:0"]\n[[unix]]\npath = "${dir}/gw.sock"\n`;

const CASES: Case[] = [
  {
    name: "a port out of range",
    text: () => `tcp = ["127.0.0.1:99999"]\n[[device]]\ntype = "gadget-zero"\n`,
    error: "1: tcp",
  },
  {
    name: "a pattern that is not 0 or 1",
    text: (d) => `${listeners(d)}\n[[device]]\ntype = "gadget-zero"\npattern = "one"\n`,
    error: "7: device[1].pattern",
  },
  {
    name: "two devices on one bus id",
    text: (d) =>
      `${
        listeners(d)
      }[[device]]\ntype = "gadget-zero"\nbusid = "1-1"\n[[device]]\ntype = "keyboard"\nbusid = "1-1"\n`,
    error: "9: device[2].busid",
  },
  { name: "an unknown top-level key", text: () => `listen = 1\n`, error: "1: listen" },
  {
    name: "a unix mode that is not octal",
    text: (d) => `[[unix]]\npath = "${d}/gw.sock"\nmode = "rw"\n`,
    error: "3: unix[1].mode",
  },
  { name: "an unknown log level", text: () => `log_level = "loud"\n`, error: "1: log_level" },
  {
    name: "an unknown log format",
    text: () => `[logging]\nformat = "xml"\n`,
    error: "2: logging.format",
  },
  {
    name: "a rule with an unknown action",
    text: (d) => `${listeners(d)}[[rule]]\naction = "maybe"\n`,
    error: "5: rule[1].action",
  },
  {
    name: "a rule with a bad source",
    text: (d) => `${listeners(d)}[[rule]]\naction = "allow"\nsource = "10.0.0.0/99"\n`,
    error: "6: rule[1].source",
  },
  {
    name: "a limit that is not a number",
    text: () => `[limits]\nmax_connections = -3\n`,
    error: "2: limits.max_connections",
  },
  {
    name: "an unknown device type",
    text: (d) => `${listeners(d)}[[device]]\ntype = "floppy"\n`,
    error: "5: device[1].type",
  },
  {
    name: "an unknown device key",
    text: (d) => `${listeners(d)}[[device]]\ntype = "keyboard"\ncolour = "red"\n`,
    error: "6: device[1].colour",
  },
  {
    name: "a storage device without an image",
    text: (d) => `${listeners(d)}[[device]]\ntype = "storage"\nsize = "1M"\n`,
    error: "4: device[1].image",
  },
  {
    name: "a serial device with an unknown back-end",
    text: (d) => `${listeners(d)}[[device]]\ntype = "cdc-acm"\nbackend = "bogus:1"\n`,
    error: "6: device[1].backend",
  },
  {
    name: "a key given twice",
    text: () => `tcp = ["127.0.0.1:0"]\ntcp = ["127.0.0.1:1"]\n`,
    error: "2: tcp",
  },
  {
    name: "a console uid that is not a number",
    text: () => `console_uid = "x"\n`,
    error: "1: console_uid",
  },
  {
    name: "a TOML syntax error",
    text: () => `tcp = ["127.0.0.1:0"]\n[[device]]\ntype = \n`,
    error: "3: invalid TOML",
  },
  { name: "good: one device", text: (d) => `${listeners(d)}[[device]]\ntype = "gadget-zero"\n` },
  {
    name: "good: two devices, a rule, limits and logging",
    text: (d) =>
      `${listeners(d)}[[device]]\ntype = "gadget-zero"\npattern = 1\n[[device]]\ntype = "mouse"\n` +
      `[[rule]]\naction = "allow"\ntransport = "tcp"\nsource = "127.0.0.0/8"\n` +
      `[limits]\nmax_connections = 8\n[logging]\nlevel = "debug"\n`,
  },
  {
    name: "good: a storage image relative to the file's folder",
    text: (d) => `${listeners(d)}[[device]]\ntype = "storage"\nimage = "stick.img"\nsize = "1M"\n`,
  },
];

Deno.test("config check and serve --config agree on good and bad files", async () => {
  const dir = await tempDir();
  try {
    for (const [i, c] of CASES.entries()) {
      const file = `${dir.path}/case${i}.toml`;
      await Deno.writeTextFile(file, c.text(dir.path));
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

Deno.test("an error in a flag names the flag, and never a file", async () => {
  const dir = await tempDir();
  try {
    const file = `${dir.path}/gw.toml`;
    await Deno.writeTextFile(file, listeners(dir.path));
    const r = await runMain(["serve", "--config", file, "--device", "gadget-zero:pattern=one"]);
    assertEquals(r.code, 2);
    assertStringIncludes(r.stderr, "Invalid --device gadget-zero:pattern=one: ");
    assert(!r.stderr.includes(file), r.stderr);
    const rule = await runMain(["serve", "--config", file, "--rule", "allow:colour=red"]);
    assertEquals(rule.code, 2);
    assertStringIncludes(rule.stderr, "Invalid --rule allow:colour=red: ");
    assert(!rule.stderr.includes("device spec"), rule.stderr);
  } finally {
    await dir.remove();
  }
});

Deno.test("config check lists every wrong value of a file, in line order", async () => {
  const dir = await tempDir();
  try {
    const file = `${dir.path}/gw.toml`;
    await Deno.writeTextFile(
      file,
      `log_level = "loud"\n[[device]]\ntype = "gadget-zero"\nspeed = "warp"\n[[device]]\ntype = "keyboard"\ncolour = 1\n`,
    );
    const r = await runMain(["config", "check", file]);
    assertEquals(r.code, 1);
    const lines = r.stderr.trim().split("\n");
    assertEquals(lines.map((l) => l.split(": ")[1]), [`${file}:1`, `${file}:4`, `${file}:7`]);
  } finally {
    await dir.remove();
  }
});
