// The usbipgw(1) manual page: its roff escaping and sections, groff and mandoc read it without
// a warning (and do warn about a broken page), the rendered text shows every command, usage
// line and flag, and packaging/man/usbipgw.1 is the page of main.ts's table.
import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import denoJson from "../../deno.json" with { type: "json" };
import { type Command, flagsOf, flagSynopsis } from "../../lib/cli/command.ts";
import { manPage, manPageDate, VERSION_DATES } from "../../lib/cli/man_page.ts";
import { DEFAULT_UNIT_PATHS, SERVICE_SOCKET, SOCKET_LINK } from "../../lib/systemd/units.ts";
import { COMMANDS } from "../../main.ts";
import { MAN_PAGE_FILE, packagedManPage } from "../../packaging/man/generate.ts";
import { hasCommand } from "../systemd/_service.ts";
import { SAMPLE } from "./_sample_table.ts";

const INFO = { version: "1.2.3", date: "2026-11-21" };

async function output(
  command: string,
  args: string[],
  input: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(command, {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input));
  await writer.close();
  const out = await child.output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

const collapse = (text: string) => text.replace(/\s+/g, " ").trim();

Deno.test("manPage() escapes what roff would misread", () => {
  const page = manPage(SAMPLE, INFO);
  // Every line that starts with "." or "'" is one of the page's own macros.
  const requests = page.split("\n").filter((l) => l.startsWith(".") || l.startsWith("'"));
  for (const l of requests) {
    assertMatch(l, /^\.(\\"|TH|SH|SS|SY|YS|PP|IP|TP|TQ|RS|RE|nf|fi|B|I|BR)( |$)/);
  }
  assertStringIncludes(page, "\n.PP\n\\&.this paragraph starts with a dot, ");
  assertStringIncludes(page, " \\(aqand this one with an apostrophe");
  assertStringIncludes(page, "a back\\eslash and a\\-hyphen.");
  assertStringIncludes(page, "\n\\&.dot at the start of an example line\n");
  assertStringIncludes(page, "\\(dqusbip attach\\(dq");
  assertStringIncludes(page, "in \\[u00B0]C\n");
  // Options are set in bold with minus signs, placeholders in italics.
  assertStringIncludes(page, "\n.TP\n\\fB\\-c\\fR, \\fB\\-\\-config\\fR \\fIFILE\\fR\n");
  assertStringIncludes(page, "[\\fB\\-\\-tcp\\fR \\fIHOST\\fR:\\fIPORT\\fR]...");
  assert(!page.includes("--tcp"), "no hyphen in an option name is left a hyphen");
  // A multi-line help is one filled paragraph; example lines are kept as they are.
  assertStringIncludes(page, "read listeners, devices and rules from a TOML file\n");
  assertStringIncludes(
    page,
    ".RS 4\n.nf\nusbipgw serve \\-\\-tcp 0.0.0.0:3240 \\-\\-device \\(aqkeyboard:text=hi\\(aq\n",
  );
  // mandoc's style check: no input line over 80 bytes.
  for (const l of page.split("\n")) assert(l.length <= 80, l);
});

Deno.test("manPage() has the sections of a man page, in order, and the real paths", () => {
  const page = manPage(SAMPLE, INFO);
  const sections = page.split("\n").filter((l) => l.startsWith(".SH ")).map((l) => l.slice(4));
  assertEquals(sections, [
    "NAME",
    "SYNOPSIS",
    "DESCRIPTION",
    "COMMANDS",
    "EXIT STATUS",
    "FILES",
    "SEE ALSO",
  ]);
  assertStringIncludes(page, '.TH USBIPGW 1 "2026-11-21" "usbipgw 1.2.3" "User Commands"\n');
  assertEquals(
    page.split("\n").filter((l) => l.startsWith(".SS ")),
    [".SS serve", ".SS policy", ".SS version"],
  );
  const escaped = (path: string) => path.replaceAll("-", "\\-");
  for (const path of [DEFAULT_UNIT_PATHS.config, SERVICE_SOCKET, SOCKET_LINK]) {
    assertStringIncludes(page, `\n.I ${escaped(path)}\n`);
  }
  assertStringIncludes(page, "\n.I /usr/local/share/man/man1/usbipgw.1\n");
  assertStringIncludes(page, ".BR usbip (8),\n.BR usbipd (8),\n.BR systemd.socket (5)\n");
});

Deno.test("the man page is dated by the version, and deno.json's version has its day", () => {
  assert(denoJson.version in VERSION_DATES, `add ${denoJson.version} to VERSION_DATES`);
  for (const date of Object.values(VERSION_DATES)) assertMatch(date, /^\d{4}-\d{2}-\d{2}$/);
  assertEquals(manPageDate(denoJson.version), VERSION_DATES[denoJson.version]);
  assertStringIncludes(
    manPage(SAMPLE, { version: denoJson.version }),
    `.TH USBIPGW 1 "${VERSION_DATES[denoJson.version]}" "usbipgw ${denoJson.version}"`,
  );
});

Deno.test("packaging/man/usbipgw.1 is the page of main.ts's command table", async () => {
  const onDisk = await Deno.readTextFile(MAN_PAGE_FILE).catch(() => "");
  assertEquals(
    onDisk,
    packagedManPage(),
    "packaging/man/usbipgw.1 differs from the command table; run: deno run -A packaging/man/generate.ts",
  );
});

// ------------------------------------------------------------------------ groff and mandoc

const groff = await hasCommand("groff");
if (!groff) {
  console.log(
    "%cskipping the groff checks of the man page: groff is not installed (Debian: groff-base)",
    "color: yellow",
  );
}
const mandoc = await hasCommand("mandoc");
if (!mandoc) {
  console.log(
    "%cskipping the mandoc checks of the man page: mandoc is not installed (Debian: mandoc)",
    "color: yellow",
  );
}

/** groff's warnings (all of them: -ww) about `page`. */
async function groffWarnings(page: string): Promise<string> {
  const r = await output("groff", ["-man", "-Tutf8", "-ww", "-z"], page);
  return `${r.code === 0 ? "" : `exit ${r.code}\n`}${r.stderr}`;
}

/** mandoc's messages (style and up) about `page`. */
async function mandocMessages(page: string): Promise<string> {
  const r = await output("mandoc", ["-Tlint", "-Wstyle"], page);
  return `${r.code === 0 ? "" : `exit ${r.code}\n`}${r.stdout}${r.stderr}`;
}

/**
 * The page as `man` shows it: wide, not hyphenated, without bold or underline, spaces
 * collapsed, and the minus signs and hyphens of UTF-8 output as the `-` they were typed as.
 */
async function rendered(page: string): Promise<string> {
  const r = await output("groff", ["-man", "-Tutf8", "-rLL=250n", "-rHY=0", "-P-cbou"], page);
  assertEquals(r.code, 0, r.stderr);
  return collapse(r.stdout.replace(/[\u2010\u2212]/g, "-"));
}

/** Checks that the rendered `page` shows every command, usage line and flag of `commands`. */
async function assertShowsTable(page: string, commands: readonly Command[]) {
  const text = await rendered(page);
  for (const command of commands) {
    assertStringIncludes(text, ` ${command.name} ${collapse(command.summary)} `);
    for (const usage of command.usage) assertStringIncludes(text, `usbipgw ${collapse(usage)}`);
    for (const alias of command.aliases ?? []) assertStringIncludes(text, alias);
    for (const flag of flagsOf(command)) {
      assertStringIncludes(
        text,
        `${flagSynopsis(flag)} ${collapse(flag.help).slice(0, 30)}`,
        command.name,
      );
    }
  }
}

Deno.test({
  name: "groff reads the page without a warning, and warns about a broken one",
  ignore: !groff,
  async fn() {
    assertEquals(await groffWarnings(manPage(SAMPLE, INFO)), "");
    assertEquals(await groffWarnings(packagedManPage()), "");
    // The check can fail: an unknown macro and an unknown escape.
    const broken = `${manPage(SAMPLE, INFO)}.XX nothing\n\\fQbad font\n`;
    assertStringIncludes(await groffWarnings(broken), "warning");
  },
});

Deno.test({
  name: "mandoc -Tlint finds nothing in the page, and does in a broken one",
  ignore: !mandoc,
  async fn() {
    assertEquals(await mandocMessages(manPage(SAMPLE, INFO)), "");
    assertEquals(await mandocMessages(packagedManPage()), "");
    const broken = manPage(SAMPLE, INFO).replace(".SH FILES\n", ".SH FILES\n.XX nothing\n\n");
    assertStringIncludes(await mandocMessages(broken), "unknown macro");
  },
});

Deno.test({
  name: "the rendered page shows every command, usage line, alias and flag with its help",
  ignore: !groff,
  async fn() {
    await assertShowsTable(manPage(SAMPLE, INFO), SAMPLE);
    const text = await rendered(manPage(SAMPLE, INFO));
    // The texts come out as written: quotes, backslashes, leading dots, example lines.
    assertStringIncludes(
      text,
      `.this paragraph starts with a dot, 'and this one with an apostrophe, and has a back\\slash and a-hyphen.`,
    );
    assertStringIncludes(
      text,
      "usbipgw serve --tcp 0.0.0.0:3240 --device 'keyboard:text=hi' .dot at the start",
    );
    assertStringIncludes(text, "Exit codes: 0 stopped by a signal, 1 an error.");
    assertStringIncludes(text, "Also run as --version.");
  },
});

Deno.test({
  name: "the rendered page of main.ts's table shows every command, usage line and flag",
  ignore: !groff,
  async fn() {
    await assertShowsTable(packagedManPage(), COMMANDS);
  },
});
