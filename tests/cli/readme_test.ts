// The README stays true to the program: its command synopsis is the command table's usage
// lines, and its `deno install` line gives a working `usbipgw` command.
import { assert, assertEquals, assertMatch } from "@std/assert";
import { COMMANDS } from "../../main.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const README = await Deno.readTextFile(`${ROOT}README.md`);

/** The first fenced block after `heading`. */
function blockAfter(heading: string): string {
  const at = README.indexOf(`\n${heading}\n`);
  assert(at >= 0, `README has no "${heading}"`);
  const m = /```[a-z]*\n([\s\S]*?)```/.exec(README.slice(at));
  assert(m !== null, `no code block after "${heading}"`);
  return m[1]!;
}

Deno.test("the README's command synopsis is the command table's usage lines", () => {
  const synopsis = COMMANDS.flatMap((c) => c.usage.map((u) => `usbipgw ${u}`)).join("\n");
  assertEquals(blockAfter("## Command line").trimEnd(), synopsis);
});

Deno.test("the README's deno install line gives a usbipgw command that runs", async () => {
  const line = blockAfter("## Getting a `usbipgw` command").trim();
  assertMatch(line, /^deno install -g -A -n usbipgw /);
  const root = await Deno.makeTempDir({ prefix: "usbipgw-install-" });
  try {
    // The README's words, with --root so that the test installs into a folder of its own.
    const args = [...line.split(/\s+/).slice(1), "--root", root];
    const install = await new Deno.Command(Deno.execPath(), { args, cwd: ROOT }).output();
    assertEquals(install.code, 0, new TextDecoder().decode(install.stderr));
    // From another folder, as a user would run it.
    const run = await new Deno.Command(`${root}/bin/usbipgw`, { args: ["version"], cwd: root })
      .output();
    assertEquals(run.code, 0, new TextDecoder().decode(run.stderr));
    assertMatch(new TextDecoder().decode(run.stdout), /^usbipgw \d+\.\d+\.\d+ \(deno /);
    const help = await new Deno.Command(`${root}/bin/usbipgw`, { args: ["help"], cwd: root })
      .output();
    assert(new TextDecoder().decode(help.stdout).includes("serve"));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
