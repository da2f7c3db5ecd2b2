// Tests of the device type registry: type, key, flag and busid checks, the bad values of every
// type, describe opening nothing, and the help section.
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import {
  describeDevice,
  DEVICE_TYPE_NAMES,
  DEVICE_TYPES,
  deviceTypesHelp,
  parseDevice,
  PATHS_AS_GIVEN,
  pathsRelativeTo,
} from "../../lib/devices/registry.ts";
import { listFolder, parsed } from "./types/_describe.ts";

Deno.test("DEVICE_TYPES lists the types in the order of the help", () => {
  const names = [
    "gadget-zero",
    "keyboard",
    "host",
    "cdc-acm",
    "ftdi",
    "gotemp",
    "mouse",
    "tablet",
    "storage",
  ];
  assertEquals<readonly string[]>(DEVICE_TYPE_NAMES, names);
  assertEquals([...DEVICE_TYPES.values()].map((t) => t.name), names);
});

Deno.test("parseDevice() names an unknown type and lists the valid ones", () => {
  assertEquals(parseDevice("floppy", {}, [], PATHS_AS_GIVEN), {
    ok: false,
    key: "type",
    message: `Unknown device type "floppy"; valid types: ${DEVICE_TYPE_NAMES.join(", ")}`,
  });
});

Deno.test("parseDevice() names an unknown key and lists the valid ones, busid first", () => {
  assertEquals(parseDevice("keyboard", { busid: "1-2", colour: "red" }, [], PATHS_AS_GIVEN), {
    ok: false,
    key: "colour",
    message: 'Unknown key "colour" for keyboard; valid keys: busid, text, socket, serial',
  });
  const host = parseDevice("host", { vendor: "46f4" }, [], PATHS_AS_GIVEN);
  assert(!host.ok);
  assertEquals(
    host.message,
    'Unknown key "vendor" for host; valid keys: busid, vid, pid, serial, export_busid',
  );
});

Deno.test("parseDevice() accepts only flags given alone", () => {
  const ro = parseDevice("storage", { image: "/a.img", ro: "" }, ["ro"], PATHS_AS_GIVEN);
  assert(ro.ok && ro.name === "storage" && ro.options.readOnly);
  assertEquals(parseDevice("storage", { image: "/a.img", busid: "" }, ["busid"], PATHS_AS_GIVEN), {
    ok: false,
    key: "busid",
    message: '"busid" is not key=value; only ro, removable, uas may be given alone',
  });
  assertEquals(parseDevice("gadget-zero", { pattern: "" }, ["pattern"], PATHS_AS_GIVEN), {
    ok: false,
    key: "pattern",
    message: '"pattern" is not key=value; no gadget-zero key may be given alone',
  });
});

Deno.test("parseDevice() checks the busid form and carries the bus id the device is exported under", () => {
  assertEquals(parseDevice("gadget-zero", { busid: "x" }, [], PATHS_AS_GIVEN), {
    ok: false,
    key: "busid",
    message:
      'Invalid busid "x": expected BUS-PORT[.PORT...] with numbers 1..255, e.g. 1-1 or 2-1.3',
  });
  assertEquals(parsed("gadget-zero", { busid: "2-1.3" }).busid, "2-1.3");
  assertEquals(parsed("storage", { image: "/a.img", busid: "1-4" }).busid, "1-4");
  assertEquals(parsed("keyboard", {}).busid, undefined);
  assertEquals(parsed("host", { busid: "2-1" }).busid, "2-1");
  assertEquals(parsed("host", { busid: "2-1", export_busid: "1-9" }).busid, "1-9");
  assertEquals(parsed("host", { vid: "1", pid: "2" }).busid, undefined);
});

const LONG = "x".repeat(127);
const SEVENTEEN = Array.from({ length: 17 }, (_, i) => `/i${i}.img`).join(";");

/** [type, options, keys given alone, the key named, a part of the message]. */
const BAD: [string, Record<string, string>, string[], string, string][] = [
  ["floppy", {}, [], "type", "valid types: gadget-zero, keyboard"],
  ["keyboard", { colour: "red" }, [], "colour", "valid keys: busid, text, socket, serial"],
  ["gadget-zero", { busid: "x" }, [], "busid", "expected BUS-PORT"],
  ["gadget-zero", { busid: "1-1", pattern: "" }, ["pattern"], "pattern", "is not key=value"],
  [
    "gadget-zero",
    { pattern: "one" },
    [],
    "pattern",
    'Invalid pattern="one" for gadget-zero: expected 0 or 1',
  ],
  ["gadget-zero", { pattern: "2" }, [], "pattern", "expected 0 or 1"],
  [
    "gadget-zero",
    { speed: "warp" },
    [],
    "speed",
    'Invalid speed="warp" for gadget-zero: expected high or full',
  ],
  ["keyboard", { text: "héllo ✓" }, [], "text", 'no key on the US layout for "é", "✓"'],
  ["keyboard", { socket: "" }, [], "socket", "expected a path"],
  ["keyboard", { serial: LONG }, [], "serial", "at most 126"],
  ["host", {}, [], "busid", "name the device with busid=BUS-PORT, or with vid=VVVV,pid=PPPP"],
  ["host", { busid: "1-1", vid: "46f4", pid: "1" }, [], "vid", "either busid or vid and pid"],
  ["host", { busid: "1-1", serial: "x" }, [], "serial", "not both"],
  ["host", { busid: "usb1" }, [], "busid", 'Invalid busid "usb1"'],
  ["host", { vid: "46f4" }, [], "pid", "Missing pid"],
  ["host", { pid: "1" }, [], "vid", "Missing vid"],
  ["host", { vid: "12345", pid: "1" }, [], "vid", "expected a hex number 0..ffff"],
  ["host", { vid: "1", pid: "xyz" }, [], "pid", 'Invalid pid="xyz"'],
  ["host", { vid: "1", pid: "2", serial: "" }, [], "serial", "empty"],
  ["host", { busid: "1-1", export_busid: "a" }, [], "export_busid", 'Invalid export_busid "a"'],
  ["cdc-acm", {}, [], "backend", "Missing backend=... for cdc-acm: expected stdio, tcp:HOST:PORT"],
  ["cdc-acm", { backend: "bogus:1" }, [], "backend", 'Invalid back-end "bogus:1": expected one of'],
  ["cdc-acm", { backend: "tcp:localhost" }, [], "backend", "expected tcp:HOST:PORT"],
  ["cdc-acm", { backend: "loopback", vid: "xyz" }, [], "vid", 'Invalid vid="xyz" for cdc-acm'],
  ["cdc-acm", { backend: "loopback", pid: "10000" }, [], "pid", "expected a hex number 0..ffff"],
  ["cdc-acm", { backend: "loopback", speed: "super" }, [], "speed", "expected high or full"],
  ["ftdi", {}, [], "backend", "Missing backend"],
  ["ftdi", { backend: "unix:" }, [], "backend", "expected unix:PATH"],
  ["ftdi", { backend: "loopback", serial: LONG }, [], "serial", "at most 126"],
  ["gotemp", { source: "nonsense" }, [], "source", "constant:C, sine:MIN:MAX:PERIOD_S"],
  ["gotemp", { source: "sine:30:20:10" }, [], "source", "MIN 30 > MAX 20"],
  ["gotemp", { source: "file:" }, [], "source", "Missing PATH"],
  [
    "gotemp",
    { rate: "0" },
    [],
    "rate",
    'Invalid rate="0" for gotemp: expected samples per second in (0, 1000]',
  ],
  ["gotemp", { rate: "1001" }, [], "rate", "(0, 1000]"],
  ["gotemp", { rate: "fast" }, [], "rate", "(0, 1000]"],
  ["mouse", { socket: "" }, [], "socket", "expected a path"],
  ["tablet", { serial: LONG }, [], "serial", "at most 126"],
  ["storage", {}, [], "image", "image=PATH is required"],
  ["storage", { image: "/a.img;", size: "1M" }, [], "image", "an empty path"],
  ["storage", { image: SEVENTEEN }, [], "image", "17 images; a drive has at most 16 LUNs"],
  ["storage", { image: "/a.img", size: "3" }, [], "size", "not a whole number of 512-byte blocks"],
  ["storage", { image: "/a.img", size: "6K", block: "4096" }, [], "size", "4096-byte blocks"],
  ["storage", { image: "/a.img", size: "lots" }, [], "size", 'Cannot parse size "lots"'],
  ["storage", { image: "/a.img", size: "0" }, [], "size", "it is zero"],
  ["storage", { image: "/a.img", block: "1000" }, [], "block", "expected 512 or 4096"],
  ["storage", { image: "/a.img", ro: "maybe" }, [], "ro", "expected ro alone, ro=1 or ro=0"],
  ["storage", { image: "/a.img", removable: "2" }, [], "removable", "removable=1 or removable=0"],
  [
    "storage",
    { image: "/a.img", speed: "ludicrous" },
    [],
    "speed",
    "expected high or super or full",
  ],
  [
    "storage",
    { image: "/a.img", vendor: "TOOLONGVENDOR" },
    [],
    "vendor",
    "must be 1..8 printable ASCII",
  ],
  ["storage", { image: "/a.img", product: "" }, [], "product", "must be 1..16"],
  ["storage", { image: "/a.img", revision: "12345" }, [], "revision", "must be 0..4"],
  ["storage", { image: "/a.img", serial: "é" }, [], "serial", "printable ASCII"],
  [
    "storage",
    { image: "/a.img", busid: "" },
    ["busid"],
    "busid",
    "only ro, removable, uas may be given alone",
  ],
];

Deno.test("parseDevice() answers every bad value with the key and what is accepted", () => {
  assert(BAD.length >= 25);
  for (const [type, options, alone, key, message] of BAD) {
    const r = parseDevice(type, options, alone, PATHS_AS_GIVEN);
    const what = `${type} ${JSON.stringify(options)}`;
    assert(!r.ok, `${what} was accepted`);
    assertEquals(r.key, key, what);
    assertStringIncludes(r.message, message, what);
  }
});

Deno.test("parseDevice() resolves every path key against a configuration file's folder", () => {
  const ctx = pathsRelativeTo("/etc/usbipgw");
  const specs: [string, Record<string, string>, string][] = [
    ["keyboard", { socket: "k.sock" }, "/etc/usbipgw/k.sock"],
    ["mouse", { socket: "m.sock" }, "/etc/usbipgw/m.sock"],
    ["tablet", { socket: "t.sock" }, "/etc/usbipgw/t.sock"],
    ["storage", { image: "a.img;../b.img" }, "/etc/usbipgw/a.img;/etc/usbipgw/../b.img"],
    ["gotemp", { source: "file:temps" }, "/etc/usbipgw/temps"],
    ["gotemp", { source: "unix:g.sock" }, "/etc/usbipgw/g.sock"],
    ["cdc-acm", { backend: "unix:acm.sock" }, "/etc/usbipgw/acm.sock"],
    ["ftdi", { backend: "file:ftdi.log" }, "/etc/usbipgw/ftdi.log"],
  ];
  for (const [type, options, path] of specs) {
    const r = parseDevice(type, options, [], ctx);
    assert(r.ok, type);
    const o = r.options as Record<string, unknown>;
    const got = "socket" in o
      ? o.socket
      : "images" in o
      ? (o.images as string[]).join(";")
      : ((o.source ?? o.backend) as { path: string }).path;
    assertEquals(got, path, type);
  }
  // Absolute paths stay, and flags keep relative ones as given.
  const abs = parsed("keyboard", { socket: "/run/k.sock" }, ctx).options;
  assertEquals(abs.socket, "/run/k.sock");
  assertEquals(parsed("keyboard", { socket: "k.sock" }).options.socket, "k.sock");
});

Deno.test("describeDevice() opens and creates nothing: no image, socket or back-end file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/temps`, "20\n");
    const before = await listFolder(dir);
    const ctx = pathsRelativeTo(dir);
    const specs = [
      parsed("storage", { image: "new.img;other.img", size: "1M" }, ctx),
      parsed("keyboard", { socket: "k.sock" }, ctx),
      parsed("mouse", { socket: "m.sock" }, ctx),
      parsed("tablet", { socket: "t.sock" }, ctx),
      parsed("cdc-acm", { backend: "unix:acm.sock" }, ctx),
      parsed("cdc-acm", { backend: "file:acm.log" }, ctx),
      parsed("ftdi", { backend: "unix:ftdi.sock" }, ctx),
      parsed("gotemp", { source: "unix:g.sock" }, ctx),
      parsed("gotemp", { source: "file:temps" }, ctx),
    ];
    for (const spec of specs) {
      const d = await describeDevice(spec);
      assert(d !== undefined && d.origin === "emulated", spec.name);
    }
    assertEquals(await listFolder(dir), before);
    assertEquals(before, ["temps"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deviceTypesHelp() lists each type with its summary and each key with its default", () => {
  const help = deviceTypesHelp();
  const lines = help.split("\n");
  assertEquals(lines[0], "Device types:");
  for (const type of DEVICE_TYPES.values()) {
    const at = lines.indexOf(`  ${type.name.padEnd(12)} ${type.summary}`);
    assert(at > 0, type.name);
    const keys = Object.entries(type.keys);
    keys.forEach(([key, spec], i) => {
      const line = lines[at + 1 + i]!;
      assert(line.startsWith(`    ${key} `), `${type.name} ${key}: ${line}`);
      assertStringIncludes(line, spec.help);
      if (spec.required) assert(line.endsWith(" (required)"), line);
      else if (spec.default !== undefined) assert(line.endsWith(`; default ${spec.default}`), line);
      // The help of a choice names every value.
      for (const choice of spec.choices ?? []) assertStringIncludes(spec.help, choice);
    });
  }
  assertStringIncludes(help, "    speed      USB speed: high or full; default high");
  assertStringIncludes(help, "    serial     serial number string; default USBIPGW1");
});
