// Tests of the `--device` flag text: how readSpecFlag() reads it, and how the registry and the
// configuration check then accept or refuse it, with messages that name the flag.
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import { ConfigError, type DeviceConfig, validateConfig } from "../../lib/cli/config.ts";
import { readSpecFlag } from "../../lib/cli/spec_flag.ts";
import { UsageError } from "../../lib/cli/usage_error.ts";
import { type DeviceParseResult, parseDevice, PATHS_AS_GIVEN } from "../../lib/devices/registry.ts";

/** Reads `text` as a `--device` flag. */
const read = (text: string) => readSpecFlag("--device", text, "type");

/** Reads `text` as a `--device` flag and checks it through the registry. */
function parseFlag(text: string): DeviceParseResult {
  const t = read(text);
  const { type, ...options } = t.fields as Record<string, string>;
  return parseDevice(type!, options, t.alone ?? [], PATHS_AS_GIVEN);
}

/** Checks `text` as `serve` checks a `--device` flag; a wrong value is a ConfigError. */
async function checkFlag(text: string): Promise<DeviceConfig> {
  const config = await validateConfig({
    tcp: [],
    unix: [],
    tls: [],
    devices: [read(text)],
    rules: [],
    limits: {},
    attach: {},
  });
  return config.devices[0]!;
}

Deno.test("readSpecFlag() reads TYPE alone and TYPE:key=value,...", () => {
  assertEquals(read("gadget-zero").fields, { type: "gadget-zero" });
  const spec = read("keyboard:busid=1-2,text=a=b\\,c");
  assertEquals(spec.fields, { type: "keyboard", busid: "1-2", text: "a=b,c" });
  assertEquals(spec.origin, {
    kind: "flag",
    flag: "--device",
    text: "keyboard:busid=1-2,text=a=b\\,c",
  });
  const parsed = parseFlag("keyboard:busid=1-2,text=a=b\\,c");
  assert(parsed.ok && parsed.name === "keyboard");
  assertEquals(parsed.busid, "1-2");
  assertEquals(parsed.options, { text: "a=b,c" });
});

Deno.test("readSpecFlag() rejects an empty type and a repeated key; a bare word must be a flag", () => {
  assertThrows(
    () => read(":busid=1-1"),
    ConfigError,
    "Invalid --device :busid=1-1: the type is empty",
  );
  assertEquals(read("keyboard:busid").alone, ["busid"]);
  assertEquals(parseFlag("keyboard:busid"), {
    ok: false,
    key: "busid",
    message: '"busid" is not key=value; no keyboard key may be given alone',
  });
  assertThrows(
    () => read("keyboard:text=a,text=b"),
    UsageError,
    "Invalid --device keyboard:text=a,text=b: text is given twice",
  );
});

Deno.test("readSpecFlag() reads a key alone as a flag with an empty value", () => {
  const spec = read("storage:image=a.img,ro,removable=0");
  assertEquals(spec.fields, { type: "storage", image: "a.img", ro: "", removable: "0" });
  assertEquals(spec.alone, ["ro"]);
  assertEquals(read("storage:image=a.img").alone, undefined);
  assertThrows(() => read("storage:ro,ro=1"), UsageError, "ro is given twice");
});

Deno.test("a --device flag may give alone only the flags its type lists", async () => {
  const ro = parseFlag("storage:image=a.img,ro");
  assert(ro.ok && ro.name === "storage" && ro.options.readOnly);
  assertEquals((await checkFlag("storage:image=a.img,ro")).device.name, "storage");
  await assertRejects(
    () => checkFlag("storage:image=a.img,busid"),
    ConfigError,
    'Invalid --device storage:image=a.img,busid: "busid" is not key=value; only ro, removable, uas may be given alone',
  );
  await assertRejects(
    () => checkFlag("gadget-zero:pattern"),
    ConfigError,
    'Invalid --device gadget-zero:pattern: "pattern" is not key=value; no gadget-zero key may be given alone',
  );
});

Deno.test("a --device flag with a wrong type or key lists the valid types and keys", async () => {
  const types = "gadget-zero, keyboard, host, cdc-acm, ftdi, gotemp, mouse, tablet, storage";
  await assertRejects(
    () => checkFlag("floppy"),
    ConfigError,
    `Invalid --device floppy: Unknown device type "floppy"; valid types: ${types}`,
  );
  await assertRejects(
    () => checkFlag("gadget-zero:patern=1"),
    ConfigError,
    'Invalid --device gadget-zero:patern=1: Unknown key "patern" for gadget-zero; valid keys: busid, pattern, speed, maxburst, mult',
  );
});

Deno.test("a --device flag with a bad value is refused with the accepted ones", async () => {
  const r = parseFlag("gadget-zero:pattern=2");
  assert(!r.ok);
  assertEquals(r.key, "pattern");
  const e = await checkFlag("gadget-zero:pattern=2").catch((e) => e);
  assert(e instanceof ConfigError && e instanceof UsageError);
  assertEquals(e.problem, 'Invalid pattern="2" for gadget-zero: expected 0 or 1');
  assertEquals(
    e.message,
    'Invalid --device gadget-zero:pattern=2: Invalid pattern="2" for gadget-zero: expected 0 or 1',
  );
});
