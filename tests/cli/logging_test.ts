// The log formats: text, journal (syslog priority prefixes) and JSON lines; how "auto" picks
// one; the [logging] table of the configuration; and the real gateway logging each way.
import { assert, assertEquals, assertMatch, assertRejects } from "@std/assert";
import { getLogger, type LogLevel, type LogRecord, resetSync } from "@logtape/logtape";
import {
  configureLogging,
  JOURNAL_PRIORITY,
  journalFormatter,
  jsonFormatter,
  logFinal,
  resolveLogFormat,
  textFormatter,
} from "../../lib/cli/logging.ts";
import { checkConfigText } from "../../lib/cli/config.ts";
import { UsageError } from "../../lib/cli/usage_error.ts";
import { MAIN, spawnService } from "../systemd/_service.ts";

function record(
  level: LogLevel,
  message: unknown[],
  properties: Record<string, unknown> = {},
): LogRecord {
  return {
    category: ["usbipgw", "server"],
    level,
    message,
    rawMessage: "",
    timestamp: Date.UTC(2026, 0, 2, 3, 4, 5, 6),
    properties,
  };
}

Deno.test("journalFormatter() prefixes every line with the level's syslog priority", () => {
  const expected: [LogLevel, number][] = [
    ["fatal", 2],
    ["error", 3],
    ["warning", 4],
    ["info", 6],
    ["debug", 7],
    ["trace", 7],
  ];
  for (const [level, priority] of expected) {
    assertEquals(JOURNAL_PRIORITY[level], priority);
    assertEquals(
      journalFormatter(record(level, ["hello"])),
      `<${priority}>usbipgw.server: hello\n`,
    );
  }
  assertEquals(
    journalFormatter(record("error", ["Cannot open ", { busid: "1-1" }, ":\nsecond line"])),
    '<3>usbipgw.server: Cannot open { busid: "1-1" }:\n<3>usbipgw.server: second line\n',
  );
  // No timestamp: journald adds its own.
  assert(!journalFormatter(record("info", ["x"])).includes("2026"));
});

Deno.test("jsonFormatter() writes one JSON object per line with time, level, category, message, properties", () => {
  const cyclic: Record<string, unknown> = { name: "loop" };
  cyclic.self = cyclic;
  const line = jsonFormatter(
    record("warning", ["Device ", "1-1", " failed:\n", new Error("stall")], {
      busid: "1-1",
      bytes: 12n,
      error: new Error("stall"),
      cyclic,
    }),
  );
  assert(line.endsWith("\n"));
  assertEquals(line.indexOf("\n"), line.length - 1, "one line");
  const o = JSON.parse(line);
  assertEquals(Object.keys(o), ["time", "level", "category", "message", "properties"]);
  assertEquals(o.time, "2026-01-02T03:04:05.006Z");
  assertEquals(o.level, "warning");
  assertEquals(o.category, "usbipgw.server");
  assertMatch(o.message, /^Device 1-1 failed:\nError: stall/);
  assertEquals(o.properties.busid, "1-1");
  assertEquals(o.properties.bytes, "12");
  assertEquals(o.properties.error, { name: "Error", message: "stall" });
  assertMatch(o.properties.cyclic, /name: "loop"/);
});

Deno.test("textFormatter() gives a timestamped line, coloured only when asked", () => {
  const plain = textFormatter(false)(record("info", ["Serving ", 2, " devices"]));
  assertMatch(
    plain,
    /^2026-01-02 03:04:05\.006 \+00:00 \[INF\] usbipgw·server: Serving 2 devices\n$/,
  );
  const colour = textFormatter(true)(record("info", ["Serving ", 2, " devices"]));
  assert(colour.includes("\x1b["), "ANSI colours");
  assert(colour.includes("Serving"));
});

Deno.test("resolveLogFormat() picks journal only when stderr is the journal stream", () => {
  const stderr = { dev: 64770, ino: 12345 };
  assertEquals(resolveLogFormat("auto", { journalStream: "64770:12345", stderr }), "journal");
  assertEquals(resolveLogFormat("auto", { journalStream: "64770:12346", stderr }), "text");
  assertEquals(resolveLogFormat("auto", { journalStream: "garbage", stderr }), "text");
  assertEquals(resolveLogFormat("auto", { journalStream: "64770:12345" }), "text");
  assertEquals(resolveLogFormat("auto", { stderr }), "text");
  assertEquals(resolveLogFormat("journal", {}), "journal");
  assertEquals(resolveLogFormat("text", { journalStream: "64770:12345", stderr }), "text");
  assertEquals(resolveLogFormat("json", {}), "json");
});

Deno.test("configureLogging() sends records at or above the level through the chosen format", () => {
  const lines: string[] = [];
  configureLogging({ level: "info", format: "journal", write: (t) => lines.push(t) });
  try {
    const log = getLogger(["usbipgw", "test"]);
    log.debug("hidden");
    log.info("Hello {who}", { who: "journal" });
    log.error("Broken");
    assertEquals(lines, ["<6>usbipgw.test: Hello journal\n", "<3>usbipgw.test: Broken\n"]);
  } finally {
    resetSync();
  }
});

Deno.test("with the json format every line written, the last ones included, is one JSON object", () => {
  const written: string[] = [];
  configureLogging({ level: "debug", format: "json", write: (t) => written.push(t) });
  try {
    const log = getLogger(["usbipgw", "server"]);
    log.info("Serving {count} devices", { count: 2 });
    log.warn("Device {busid} failed:\nline two {brace}", { busid: "1-1", brace: "{x}" });
    log.error("Broken: {error}", { error: new Error("multi\nline"), big: 12n });
    getLogger(["usbipgw", "backend"]).with({ label: "cdc-acm 1-3" }).debug('quoted "text"');
    logFinal("stopped on SIGINT", { properties: { signal: "SIGINT" } });
    logFinal("Cannot listen on 127.0.0.1:3240: the address is in use", { level: "error" });
  } finally {
    resetSync();
  }
  const lines = written.join("").split("\n");
  assertEquals(lines.pop(), "", "the text ends with a newline");
  assertEquals(lines.length, 6, "one line per record");
  const objects = lines.map((l) => JSON.parse(l));
  assertEquals(objects.at(-2).message, "stopped on SIGINT");
  assertEquals(objects.at(-2).properties, { signal: "SIGINT" });
  assertEquals([objects.at(-2).level, objects.at(-2).category], ["info", "usbipgw.cli"]);
  assertEquals(objects.at(-1).level, "error");
  assertEquals(objects[1].message, "Device 1-1 failed:\nline two {x}");
});

Deno.test("logFinal() writes through the configured format whatever the level", () => {
  const journal: string[] = [];
  configureLogging({ level: "error", format: "journal", write: (t) => journal.push(t) });
  try {
    logFinal("stopped on SIGTERM");
    logFinal("Cannot connect", { level: "error" });
  } finally {
    resetSync();
  }
  assertEquals(journal, [
    "<6>usbipgw.cli: stopped on SIGTERM\n",
    "<3>usbipgw.cli: Cannot connect\n",
  ]);
  // Text, as a person at a terminal reads it: the plain line the program always printed.
  const text: string[] = [];
  configureLogging({ level: "info", format: "text", write: (t) => text.push(t) });
  try {
    logFinal("stopped on SIGINT");
  } finally {
    resetSync();
  }
  assertEquals(text, ["usbipgw: stopped on SIGINT\n"]);
});

Deno.test("the [logging] table of a configuration sets the level and the format", async () => {
  const c = await checkConfigText('[logging]\nlevel = "debug"\nformat = "json"\n', "gw.toml");
  assertEquals([c.logLevel, c.logFormat], ["debug", "json"]);
  await assertRejects(
    () => checkConfigText('tcp = []\n[logging]\nformat = "xml"\n', "gw.toml"),
    UsageError,
    "gw.toml:3: logging.format: expected one of auto, text, journal, json",
  );
  await assertRejects(
    () => checkConfigText('[logging]\nlevel = "loud"\n', "gw.toml"),
    UsageError,
    "gw.toml:2: logging.level: expected one of trace",
  );
  await assertRejects(
    () => checkConfigText("[logging]\ncolour = true\n", "gw.toml"),
    UsageError,
    "gw.toml:2: logging.colour: unknown key; valid keys: level, format",
  );
  await assertRejects(
    () => checkConfigText('log_level = "info"\n[logging]\nlevel = "debug"\n', "gw.toml"),
    UsageError,
    "already set by log_level",
  );
});

Deno.test("the gateway logs JSON lines with --log-format json", async () => {
  const gw = spawnService([
    "serve",
    "--tcp",
    "127.0.0.1:0",
    "--device",
    "gadget-zero",
    "--log-format",
    "json",
  ]);
  try {
    const line = await gw.waitFor(/usbipgw serving/);
    const o = JSON.parse(line);
    assertEquals(o.level, "info");
    assertEquals(o.category, "usbipgw.cli");
    assertMatch(o.message, /^usbipgw serving 1 device\(s\) on tcp 127\.0\.0\.1:\d+$/);
    assertEquals(o.properties.count, 1);
    assertEquals((await gw.stop()).code, 0);
    // Every log line is JSON (the final "stopped" line is not a log record).
    for (const l of gw.lines.filter((l) => !l.startsWith("usbipgw: stopped"))) JSON.parse(l);
    // And so is that final line: a record, the last one.
    const records = gw.lines.map((l) => JSON.parse(l));
    assertEquals(records.at(-1).message, "stopped on SIGTERM");
  } finally {
    await gw.stop("SIGKILL");
  }
});

Deno.test("under systemd (JOURNAL_STREAM names stderr) the gateway logs with priority prefixes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "usbipgw-journal-" });
  try {
    for (const matching of [true, false]) {
      const file = `${dir}/stderr-${matching}`;
      await Deno.writeTextFile(file, "");
      const info = await Deno.stat(file);
      // journald's JOURNAL_STREAM is DEVICE:INODE of the stream it gave as stderr.
      const journal = `${info.dev}:${matching ? info.ino : info.ino! + 1}`;
      const child = new Deno.Command("sh", {
        args: [
          "-c",
          `exec "$0" run -A "$1" serve --tcp 127.0.0.1:0 --device gadget-zero 2>>"$2"`,
          Deno.execPath(),
          MAIN,
          file,
        ],
        env: { JOURNAL_STREAM: journal },
        stdin: "null",
        stdout: "null",
      }).spawn();
      try {
        let text = "";
        for (let i = 0; i < 200 && !text.includes("usbipgw serving"); i++) {
          await new Promise((r) => setTimeout(r, 50));
          text = await Deno.readTextFile(file);
        }
        const line = text.split("\n").find((l) => l.includes("usbipgw serving")) ?? text;
        if (matching) assertMatch(line, /^<6>usbipgw\.cli: usbipgw serving 1 device/);
        else assertMatch(line, /^\d{4}-\d\d-\d\d .*\[INF\] usbipgw·cli: usbipgw serving/);
      } finally {
        child.kill("SIGTERM");
        assertEquals((await child.status).code, 0);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
