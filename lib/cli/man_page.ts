/**
 * The usbipgw(1) manual page, made from the command table: roff with the man(7) macros
 * (groff_man(7), and the extension macros `.SY`/`.YS` both groff and mandoc know). Usage lines
 * set literal words in bold and placeholders in italics; every text from the table is escaped
 * for roff (backslashes, control characters at line starts, `-` as `\-`, quotes as `\(aq`).
 *
 * @module
 */

import { type Command, flagsOf, flagSynopsis } from "./command.ts";
import {
  DEFAULT_UNIT_PATHS,
  SERVICE_SOCKET,
  SERVICE_UNIT,
  SOCKET_LINK,
  SOCKET_UNIT,
} from "../systemd/units.ts";
import { DEFAULT_PREFIX, manPagePath, UNIT_DIR } from "./install_service.ts";

/** What the page says about the program that is not in the table. */
export interface ManPageInfo {
  /** The version of usbipgw, shown in the page's footer. */
  version: string;
  /** The page's date (`YYYY-MM-DD`), shown in the footer; by default the version's day. */
  date?: string;
}

/**
 * The day each version of usbipgw was set in `deno.json`. The man page carries its version's
 * day rather than today's, so that the generated page changes with the table or the version,
 * never with the calendar. A test checks that `deno.json`'s version is listed: add a line when
 * you change the version.
 */
export const VERSION_DATES: Readonly<Record<string, string>> = Object.freeze({
  "0.1.0": "2026-11-21",
});

/**
 * The man page's date for `version`: its day in {@linkcode VERSION_DATES}, or for a version
 * not listed there the newest day listed.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { manPageDate } from "./man_page.ts";
 * assertEquals(manPageDate("0.1.0"), "2026-11-21");
 * ```
 */
export function manPageDate(version: string): string {
  return VERSION_DATES[version] ?? Object.values(VERSION_DATES).sort().at(-1)!;
}

/**
 * `text` escaped for a roff text line or macro argument: backslashes, hyphens (as the minus
 * sign `\-`, which copies as the ASCII `-`), quotes (`\(aq`, `\(ga`, `\(dq`: these also keep a
 * leading `'` from being read as a request), and characters outside ASCII (`\[uXXXX]`).
 */
function _escape(text: string): string {
  let out = "";
  for (const c of text) {
    const code = c.codePointAt(0)!;
    if (c === "\\") out += "\\e";
    else if (c === "-") out += "\\-";
    else if (c === "'") out += "\\(aq";
    else if (c === "`") out += "\\(ga";
    else if (c === '"') out += "\\(dq";
    else if (code < 0x20 || code === 0x7f) out += " "; // Tabs, newlines: spaces.
    else if (code > 0x7e) out += `\\[u${code.toString(16).toUpperCase().padStart(4, "0")}]`;
    else out += c;
  }
  return out;
}

/** A text line that roff does not read as a request: `\&` before a leading `.`. */
function _line(escaped: string): string {
  return escaped.startsWith(".") ? `\\&${escaped}` : escaped;
}

/** The longest input line mandoc's style check accepts. */
const MAX_LINE = 80;

/**
 * Escaped text as input lines of at most {@linkcode MAX_LINE} bytes. Filled text breaks at
 * spaces (a longer word gets a line of its own); with `continued` (a tag, a no-fill line) the
 * lines end in `\`, an escaped newline, so roff reads them as one. Never inside an escape.
 */
function _wrap(escaped: string, continued: boolean): string[] {
  const atoms = escaped.match(/\\(?:\(..|\[[^\]]*\]|f.|.)|[^\\]/g) ?? [];
  const lines: string[] = [];
  let line = "";
  if (continued) {
    for (const atom of atoms) {
      if (line.length + atom.length + 1 > MAX_LINE) {
        lines.push(`${line}\\`);
        line = "";
      }
      line += line === "" ? _line(atom) : atom;
    }
    lines.push(line);
  } else {
    for (const word of atoms.join("").split(" ").filter((w) => w !== "")) {
      if (line !== "" && line.length + 1 + word.length > MAX_LINE) {
        lines.push(line);
        line = "";
      }
      line = line === "" ? _line(word) : `${line} ${word}`;
    }
    if (line !== "") lines.push(line);
  }
  return lines;
}

/**
 * A usage line or a flag synopsis in fonts: flags and lowercase (literal) words bold,
 * uppercase placeholders italic, the rest (`[ ] ( ) | ... , :`, numbers) roman.
 */
function _syntax(text: string): string {
  return text.replace(/[\w-]+|[^\w-]+/g, (token) => {
    const bold = /^--?[A-Za-z0-9]/.test(token) || /^[a-z][a-z0-9_-]*$/.test(token);
    if (bold) return `\\fB${_escape(token)}\\fR`;
    if (/^[A-Z][A-Z0-9_]*$/.test(token)) return `\\fI${_escape(token)}\\fR`;
    return _escape(token);
  });
}

/**
 * Plain text (a description, a flag's help, an epilogue) as roff: paragraphs at blank lines,
 * each started by `paragraph` (`.PP`, or `.IP` inside an option's entry); unindented lines are
 * filled, runs of indented lines (examples, small tables) kept as they are, indented.
 */
function _text(text: string, paragraph: ".PP" | ".IP"): string[] {
  const out: string[] = [];
  const blocks = text.replace(/\s+$/, "").split(/\n[ \t]*\n/);
  for (const block of blocks) {
    const lines = block.split("\n").filter((l) => l.trim() !== "");
    if (lines.length === 0) continue;
    let i = 0;
    while (i < lines.length) {
      const indented = /^[ \t]/.test(lines[i]!);
      const run: string[] = [];
      while (i < lines.length && /^[ \t]/.test(lines[i]!) === indented) run.push(lines[i++]!);
      if (!indented) {
        // After an indented run too: .RE returns to the margin of the paragraph's start.
        out.push(paragraph, ..._wrap(_escape(run.map((l) => l.trim()).join(" ")), false));
      } else {
        if (i === run.length) out.push(paragraph);
        const expanded = run.map((l) => l.replace(/\t/g, "        "));
        const indent = Math.min(...expanded.map((l) => l.length - l.trimStart().length));
        out.push(".RS 4", ".nf");
        for (const l of expanded) out.push(..._wrap(_escape(l.slice(indent).trimEnd()), true));
        out.push(".fi", ".RE");
      }
    }
  }
  return out;
}

/**
 * A synopsis of usage lines (`serve [--tcp HOST:PORT]...`): a `.SY` each, so that they follow
 * each other without space, and one `.YS`.
 */
function _synopsis(usages: readonly string[]): string[] {
  return [...usages.flatMap((u) => [".SY usbipgw", ..._wrap(_syntax(u), false)]), ".YS"];
}

function _command(command: Command): string[] {
  const out = [`.SS ${_escape(command.name)}`];
  out.push(..._synopsis(command.usage));
  if (command.aliases !== undefined && command.aliases.length > 0) {
    const names = command.aliases.map((a) => `\\fB${_escape(a)}\\fR`).join(", ");
    out.push(".PP", ..._wrap(`Also run as ${names}.`, false));
  }
  out.push(..._text(command.description, ".PP"));
  out.push(".PP", "Options:");
  for (const flag of flagsOf(command)) {
    out.push(".TP", ..._wrap(_syntax(flagSynopsis(flag)), true));
    // The entry's first paragraph follows the tag without a macro of its own.
    const help = _text(flag.help, ".IP");
    out.push(...(help[0] === ".IP" ? help.slice(1) : help));
  }
  if (command.epilogue) out.push(..._text(command.epilogue, ".PP"));
  return out;
}

/** A `.TH` argument, double-quoted; its hyphens stay hyphens (`2026-11-21`, `0.2.0-rc1`). */
function _thArgument(text: string): string {
  return `"${_escape(text).replaceAll("\\-", "-")}"`;
}

/**
 * The usbipgw(1) page for the commands of `commands`: NAME, SYNOPSIS (every usage line),
 * DESCRIPTION (with the command list), COMMANDS (each command's usage, description, options
 * and epilogue), EXIT STATUS, FILES and SEE ALSO.
 *
 * @example A page for a one-command table
 * ```ts
 * import { assertStringIncludes } from "@std/assert";
 * import type { Command } from "./command.ts";
 * import { manPage } from "./man_page.ts";
 * const version: Command = {
 *   name: "version",
 *   aliases: ["--version"],
 *   summary: "print the version",
 *   usage: ["version"],
 *   description: "Prints the version.",
 *   flags: [],
 *   run: () => Promise.resolve(0),
 * };
 * const page = manPage([version], { version: "0.1.0", date: "2026-11-21" });
 * assertStringIncludes(page, '.TH USBIPGW 1 "2026-11-21" "usbipgw 0.1.0" "User Commands"\n');
 * assertStringIncludes(page, "Also run as \\fB\\-\\-version\\fR.\n");
 * ```
 */
export function manPage(commands: readonly Command[], info: ManPageInfo): string {
  const out: string[] = [
    `.\\" usbipgw.1, made from the command table by "usbipgw help --man": do not edit.`,
    `.TH USBIPGW 1 ${_thArgument(info.date ?? manPageDate(info.version))} ${
      _thArgument(`usbipgw ${info.version}`)
    } "User Commands"`,
    ".SH NAME",
    "usbipgw \\- USB/IP gateway serving emulated and real USB devices",
    ".SH SYNOPSIS",
    ..._synopsis(["COMMAND [OPTIONS]", ...commands.flatMap((c) => c.usage)]),
    ".SH DESCRIPTION",
    ".B usbipgw",
    "serves USB devices, emulated ones and this host\\(aqs own, to USB/IP clients",
    "(Linux \\fBusbip attach\\fR, usbip\\-win2) over TCP and unix sockets, under",
    "access rules.",
    "It also lists a USB/IP server\\(aqs devices, attaches them to this machine",
    "through vhci_hcd, and installs itself as a systemd service.",
    ".PP",
    "Its commands are:",
  ];
  for (const c of commands) {
    out.push(".TP", `\\fB${_escape(c.name)}\\fR`, ..._wrap(_escape(c.summary), false));
  }
  const unitDir = _escape(UNIT_DIR);
  out.push(
    ".PP",
    "Each command is described under",
    ".BR COMMANDS ;",
    "\\fBusbipgw help\\fR \\fICOMMAND\\fR and",
    "\\fBusbipgw\\fR \\fICOMMAND\\fR \\fB\\-\\-help\\fR print the same.",
    ".SH COMMANDS",
    ...commands.flatMap(_command),
    ".SH EXIT STATUS",
    ".TP",
    ".B 0",
    "Success.",
    ".TP",
    ".B 1",
    "An error: a server or gateway that cannot be reached, an invalid",
    "configuration file, a failed operation.",
    ".TP",
    ".B 2",
    "A usage error: an unknown command or option, a missing or invalid argument.",
    ".PP",
    "Commands that use other statuses list them in their sections above.",
    ".SH FILES",
    ".TP",
    `.I ${_escape(DEFAULT_UNIT_PATHS.config)}`,
    "The configuration the service reads",
    "(\\fBserve \\-\\-config\\fR); \\fBinstall\\-service\\fR writes a first one when",
    "there is none.",
    ".TP",
    `.I ${_escape(SERVICE_SOCKET)}`,
    "The unix socket of the service (and of its socket unit).",
    ".TP",
    `.I ${_escape(SOCKET_LINK)}`,
    "A symbolic link to the service\\(aqs socket, where clients run as root look",
    "by default.",
    ".TP",
    ".I $XDG_RUNTIME_DIR/usbipgw.sock",
    "Where clients run by other users look by default, and where \\fBserve\\fR",
    "listens when such a user starts it.",
    ".TP",
    `.I ${unitDir}/${_escape(SERVICE_UNIT)}`,
    ".TQ",
    `.I ${unitDir}/${_escape(SOCKET_UNIT)}`,
    "The systemd units \\fBinstall\\-service\\fR writes.",
    ".TP",
    `.I ${_escape(`${DEFAULT_PREFIX}/bin/usbipgw`)}`,
    ".TQ",
    `.I ${_escape(manPagePath(DEFAULT_PREFIX))}`,
    "The program and this page, where \\fBinstall\\-service\\fR installs them",
    `(\\fB\\-\\-prefix\\fR \\fIDIR\\fR puts them in \\fIDIR\\fR instead of \\fI${
      _escape(DEFAULT_PREFIX)
    }\\fR).`,
    ".SH SEE ALSO",
    ".BR usbip (8),",
    ".BR usbipd (8),",
    ".BR systemd.socket (5)",
  );
  return out.join("\n") + "\n";
}
