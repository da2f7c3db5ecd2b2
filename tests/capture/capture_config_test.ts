// The capture settings of the configuration: `capture`, `capture_snaplen` and
// `capture_max_size` at the top, a device's own `capture` key (every type takes it, as busid),
// paths relative to the file's folder, one capture per file, and the flags of `serve`.
import { assertEquals, assertRejects, assertStringIncludes } from "@std/assert";
import { checkConfigText } from "../../lib/cli/config.ts";
import { UsageError } from "../../lib/cli/usage_error.ts";
import { runMain } from "../e2e/_gateway.ts";

Deno.test("checkConfigText() reads the capture file, snap length and size, and a device's own capture", async () => {
  const c = await checkConfigText(
    `capture = "all.pcapng"\ncapture_snaplen = 128\ncapture_max_size = "64MiB"\n` +
      `[[device]]\ntype = "keyboard"\ncapture = "/var/log/kbd.pcapng"\n` +
      `[[device]]\ntype = "gadget-zero"\n`,
    "/etc/usbipgw/gw.toml",
  );
  assertEquals(c.capture, {
    file: "/etc/usbipgw/all.pcapng",
    snaplen: 128,
    maxBytes: 64 * 1024 * 1024,
  });
  assertEquals(c.devices.map((d) => d.capture), ["/var/log/kbd.pcapng", undefined]);
  // The key is the gateway's: the keyboard's options do not see it.
  assertEquals(
    c.devices[0]!.device.options,
    (await checkConfigText(
      `[[device]]\ntype = "keyboard"\n`,
      "gw.toml",
    )).devices[0]!.device.options,
  );
});

Deno.test("checkConfigText() keeps everything and rotates at 1 GiB by default", async () => {
  const c = await checkConfigText(`capture_snaplen = "unlimited"\n`, "gw.toml");
  assertEquals(c.capture, { maxBytes: 1024 ** 3 });
  const off = await checkConfigText(`capture_max_size = "unlimited"\n`, "gw.toml");
  assertEquals(off.capture.maxBytes, Infinity);
});

Deno.test("checkConfigText() names wrong capture values and a file captured twice", async () => {
  const error = async (text: string) =>
    (await assertRejects(() => checkConfigText(text, "gw.toml"), UsageError)).message;
  assertEquals(
    await error(`capture = 1\n`),
    "gw.toml:1: capture: expected the path of a pcapng file",
  );
  assertStringIncludes(
    await error(`capture_snaplen = 0\n`),
    "gw.toml:1: capture_snaplen: expected",
  );
  assertStringIncludes(await error(`capture_max_size = "big"\n`), "gw.toml:1: capture_max_size:");
  assertEquals(
    await error(`[[device]]\ntype = "keyboard"\ncapture = ""\n`),
    "gw.toml:3: device[1].capture: expected the path of a pcapng file",
  );
  assertEquals(
    await error(
      `capture = "/tmp/a.pcapng"\n[[device]]\ntype = "keyboard"\ncapture = "/tmp/a.pcapng"\n`,
    ),
    "gw.toml:4: device[1].capture: /tmp/a.pcapng is already a capture file (gw.toml:1)",
  );
});

Deno.test("serve takes --capture-snaplen and names a wrong one; --device takes capture=", async () => {
  const bad = await runMain(["serve", "--capture-snaplen", "none", "--tcp", "127.0.0.1:0"]);
  assertEquals(bad.code, 2, bad.stderr);
  assertStringIncludes(bad.stderr, "Invalid --capture-snaplen none: expected");
  const check = await runMain(["policy", "show", "--device", "keyboard:capture=/tmp/k.pcapng"]);
  assertEquals(check.code, 0, check.stderr);
});
