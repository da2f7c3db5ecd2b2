// The completion scripts, run in the real shells: bash drives the completion function through
// COMP_WORDS/COMP_CWORD, fish answers `complete -C`, and zsh completes inside a pseudo-terminal
// (zsh/zpty) with compadd wrapped to record the matches it adds, over a sample table; the
// scripts of main.ts's table pass each shell's syntax check.
import { assert, assertEquals, assertRejects, assertStringIncludes } from "@std/assert";
import { type Command, type CommandIo, flagsOf, parseFlags } from "../../lib/cli/command.ts";
import {
  COMPLETION_SHELLS,
  completionScript,
  type CompletionShell,
  isCompletionShell,
} from "../../lib/cli/completion.ts";
import { completionCommand } from "../../lib/cli/commands/completion.ts";
import { UsageError } from "../../lib/cli/usage_error.ts";
import { COMMANDS } from "../../main.ts";
import { hasCommand } from "../systemd/_service.ts";
import { SAMPLE } from "./_sample_table.ts";

const ALL_SERVE_FLAGS = [
  "--tcp",
  "-c",
  "--config",
  "--seat-dir",
  "--log-level",
  "--json",
  "-h",
  "--help",
];

/** A temporary folder: the scripts go in it, `files` has names to complete, `home` is HOME. */
interface Dirs {
  path: string;
  files: string;
  home: string;
  remove(): Promise<void>;
}

async function tempDirs(): Promise<Dirs> {
  const path = await Deno.makeTempDir({ prefix: "usbipgw-completion-" });
  const files = `${path}/files`;
  await Deno.mkdir(`${files}/sub`, { recursive: true });
  await Deno.writeTextFile(`${files}/a.toml`, "");
  await Deno.writeTextFile(`${files}/b.txt`, "");
  await Deno.mkdir(`${path}/home`);
  return {
    path,
    files,
    home: `${path}/home`,
    remove: () => Deno.remove(path, { recursive: true }),
  };
}

async function writeScript(dir: string, shell: CompletionShell, name = `usbipgw.${shell}`) {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, completionScript(shell, SAMPLE));
  return path;
}

async function output(
  command: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(command, {
    args,
    stdin: "null",
    ...options,
    signal: AbortSignal.timeout(30_000),
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

const sorted = (list: string[]) => [...new Set(list)].sort();

Deno.test("isCompletionShell() knows bash, zsh and fish", () => {
  assertEquals(COMPLETION_SHELLS, ["bash", "zsh", "fish"]);
  for (const shell of COMPLETION_SHELLS) assert(isCompletionShell(shell));
  assert(!isCompletionShell("tcsh"));
  assert(!isCompletionShell(undefined));
});

Deno.test("completionScript() rejects a shell it does not know", () => {
  let error: unknown;
  try {
    completionScript("tcsh" as CompletionShell, SAMPLE);
  } catch (e) {
    error = e;
  }
  assert(error instanceof TypeError);
  assertStringIncludes(error.message, `unknown shell "tcsh"`);
});

Deno.test("the completion command prints the script of the shell asked for, over the table it is given", async () => {
  let table: readonly Command[] = [];
  const command = completionCommand(() => table);
  table = [...SAMPLE, command];
  const written: string[] = [];
  const io: CommandIo = {
    out: (text) => Promise.resolve(void written.push(text)),
    err: () => {},
    env: () => undefined,
    execPath: "/usr/local/bin/usbipgw",
    version: "0.1.0",
  };
  assertEquals(await command.run(parseFlags(command, ["fish"]), io), 0);
  assertEquals(written, [completionScript("fish", table)]);
  assertStringIncludes(written[0]!, "-a 'completion'");
  await assertRejects(
    () => command.run(parseFlags(command, ["tcsh"]), io),
    UsageError,
    `"completion" needs a shell: bash, zsh, fish (not "tcsh")`,
  );
  await assertRejects(() => command.run(parseFlags(command, []), io), UsageError);
  await assertRejects(
    () => command.run(parseFlags(command, ["bash", "zsh"]), io),
    UsageError,
    `Unexpected argument "zsh"`,
  );
});

// ---------------------------------------------------------------------------------------- bash

const bash = await hasCommand("bash");
if (!bash) {
  console.log("%cskipping the bash completion tests: bash is not installed", "color: yellow");
}

/**
 * What the completion function bash registered for usbipgw puts in COMPREPLY for `words` (the
 * last one is the word under the cursor), run in `cwd`.
 */
async function bashComplete(script: string, words: string[], cwd?: string): Promise<string[]> {
  const driver = `source "$1" || exit 3
shift
spec=$(complete -p usbipgw) || exit 4
read -r -a parts <<<"\${spec##*-F }"
COMP_WORDS=("$@")
COMP_CWORD=$(( \${#COMP_WORDS[@]} - 1 ))
COMP_LINE="$*"
COMP_POINT=\${#COMP_LINE}
"\${parts[0]}" usbipgw "\${COMP_WORDS[COMP_CWORD]}" "\${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = await output(
    "bash",
    ["--norc", "--noprofile", "-c", driver, "bash", script, ...words],
    cwd !== undefined ? { cwd } : {},
  );
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.stderr, "");
  return r.stdout.split("\n").filter((l) => l !== "");
}

Deno.test({
  name: "bash completes commands, subcommands, flags and flag values",
  ignore: !bash,
  async fn() {
    const dir = await tempDirs();
    try {
      const script = await writeScript(dir.path, "bash");
      const spec = await output("bash", [
        "--norc",
        "-c",
        `source "$1"; complete -p usbipgw`,
        "bash",
        script,
      ]);
      assertEquals(spec.stdout, "complete -F _usbipgw usbipgw\n");
      const c = (...words: string[]) => bashComplete(script, words, dir.files);
      assertEquals(await c("usbipgw", "ser"), ["serve"]);
      assertEquals(await c("usbipgw", ""), ["serve", "policy", "version", "--version"]);
      assertEquals(await c("usbipgw", "--v"), ["--version"]);
      assertEquals(await c("usbipgw", "serve", "--t"), ["--tcp"]);
      assertEquals(await c("usbipgw", "serve", ""), ALL_SERVE_FLAGS);
      assertEquals(await c("usbipgw", "version", "-"), ["-h", "--help"]);
      assertEquals(await c("usbipgw", "--version", "--h"), ["--help"]);
      assertEquals(await c("usbipgw", "policy", ""), ["show", "check"]);
      assertEquals(await c("usbipgw", "policy", "ch"), ["check"]);
      assertEquals(await c("usbipgw", "policy", "-"), ["--peer", "--config", "-h", "--help"]);
      assertEquals(await c("usbipgw", "policy", "show", ""), [
        "--peer",
        "--config",
        "-h",
        "--help",
      ]);
      // Values: files, folders, words (quoted for the command line), nothing.
      assertEquals(sorted(await c("usbipgw", "serve", "--config", "")), ["a.toml", "b.txt", "sub"]);
      assertEquals(await c("usbipgw", "serve", "-c", "a"), ["a.toml"]);
      assertEquals(await c("usbipgw", "policy", "show", "--config", "b"), ["b.txt"]);
      assertEquals(await c("usbipgw", "serve", "--seat-dir", ""), ["sub"]);
      assertEquals(await c("usbipgw", "serve", "--log-level", ""), [
        "trace",
        "debug",
        "it\\'s\\ \\$odd",
      ]);
      assertEquals(await c("usbipgw", "serve", "--log-level", "d"), ["debug"]);
      assertEquals(await c("usbipgw", "serve", "--tcp", ""), []);
      assertEquals(await c("usbipgw", "policy", "--peer", ""), []);
      // --flag=VALUE, which bash splits into "--flag" "=" "VALUE".
      assertEquals(sorted(await c("usbipgw", "serve", "--config", "=")), [
        "a.toml",
        "b.txt",
        "sub",
      ]);
      assertEquals(await c("usbipgw", "serve", "--config", "=", "a"), ["a.toml"]);
      // An unknown command completes nothing.
      assertEquals(await c("usbipgw", "nope", ""), []);
    } finally {
      await dir.remove();
    }
  },
});

// ---------------------------------------------------------------------------------------- fish

const fish = await hasCommand("fish");
if (!fish) {
  console.log(
    "%cskipping the fish completion tests: fish is not installed (Debian: fish)",
    "color: yellow",
  );
}

/** fish's completions (`complete -C`) for `line`, as `[candidate, description]` pairs. */
async function fishComplete(script: string, line: string, dir: Dirs): Promise<[string, string][]> {
  const r = await output(
    "fish",
    ["--no-config", "-c", "source $argv[1]; or exit 3; complete -C $argv[2]", script, line],
    { cwd: dir.files, env: { HOME: dir.home, XDG_CONFIG_HOME: dir.home, XDG_DATA_HOME: dir.home } },
  );
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.stderr, "");
  return r.stdout.split("\n").filter((l) => l !== "").map((l) => {
    const [candidate, description = ""] = l.split("\t");
    return [candidate!, description];
  });
}

Deno.test({
  name: "fish completes commands, subcommands, flags and flag values",
  ignore: !fish,
  async fn() {
    const dir = await tempDirs();
    try {
      const script = await writeScript(dir.path, "fish");
      const syntax = await output("fish", ["--no-config", "--no-execute", script]);
      assertEquals(syntax.code, 0, syntax.stderr);
      const c = async (line: string) =>
        sorted((await fishComplete(script, line, dir)).map(([w]) => w));
      assertEquals(await fishComplete(script, "usbipgw ser", dir), [
        ["serve", "serve devices over TCP and unix sockets"],
      ]);
      assertEquals(await c("usbipgw "), ["--version", "policy", "serve", "version"]);
      assertEquals(await c("usbipgw --v"), ["--version"]);
      assertEquals(await c("usbipgw serve --t"), ["--tcp"]);
      assertEquals(await c("usbipgw serve -"), sorted(ALL_SERVE_FLAGS));
      assertEquals(await c("usbipgw version -"), ["--help", "-h"]);
      assertEquals(await c("usbipgw policy "), ["check", "show"]);
      assertEquals(await c("usbipgw policy show -"), ["--config", "--help", "--peer", "-h"]);
      assertEquals(await c("usbipgw serve --config "), ["a.toml", "b.txt", "sub/"]);
      assertEquals(await c("usbipgw serve -c a"), ["a.toml"]);
      assertEquals(await c("usbipgw serve --config=b"), ["--config=b.txt"]);
      assertEquals(await c("usbipgw serve --seat-dir "), ["sub/"]);
      assertEquals(await c("usbipgw serve --log-level "), ["debug", "it's $odd", "trace"]);
      assertEquals(await c("usbipgw serve --tcp "), []);
      // A flag's description is the first line of its help.
      assertEquals(await fishComplete(script, "usbipgw serve --log-l", dir), [
        ["--log-level", "how much to log"],
      ]);
      // The subcommands follow the command only.
      assertEquals(await c("usbipgw policy show "), []);
    } finally {
      await dir.remove();
    }
  },
});

// ----------------------------------------------------------------------------------------- zsh

const zsh = await hasCommand("zsh");
if (!zsh) {
  console.log(
    "%cskipping the zsh completion tests: zsh is not installed (Debian: zsh)",
    "color: yellow",
  );
}

Deno.test({
  name: "zsh reads the script, and compinit registers it both sourced and autoloaded from $fpath",
  ignore: !zsh,
  async fn() {
    const dir = await tempDirs();
    try {
      await Deno.mkdir(`${dir.path}/functions`);
      const script = await writeScript(`${dir.path}/functions`, "zsh", "_usbipgw");
      const syntax = await output("zsh", ["-n", script]);
      assertEquals(syntax.code, 0, syntax.stderr);
      const env = { HOME: dir.home, ZDOTDIR: dir.home };
      const sourced = await output("zsh", [
        "-f",
        "-c",
        'autoload -U compinit && compinit -u -D && source "$1" && print -r -- $_comps[usbipgw]',
        "zsh",
        script,
      ], { env });
      assertEquals([sourced.stdout, sourced.stderr, sourced.code], ["_usbipgw\n", "", 0]);
      const autoloaded = await output("zsh", [
        "-f",
        "-c",
        'fpath=("$1" $fpath); autoload -U compinit && compinit -u -D && print -r -- $_comps[usbipgw]',
        "zsh",
        `${dir.path}/functions`,
      ], { env });
      assertEquals([autoloaded.stdout, autoloaded.stderr, autoloaded.code], ["_usbipgw\n", "", 0]);
    } finally {
      await dir.remove();
    }
  },
});

/**
 * Completes each of `lines` in an interactive zsh inside a pseudo-terminal (zsh/zpty), with
 * the completion function autoloaded from `functions`, and returns the matches each got. The
 * inner shell wraps compadd: a call that adds matches (not one that only filters, with -O, -A
 * or -D) records them in a log file, one "== LINE" header per line.
 */
async function zshComplete(
  functions: string,
  lines: string[],
  dir: Dirs,
): Promise<Map<string, string[]>> {
  const log = `${dir.home}/completion.log`;
  // Keys typed while the inner shell still runs a command meet the terminal's line discipline
  // first (n_tty, in canonical mode): it echoes them at once, so the markers READY and DONEn are
  // spelled so that only their output matches, and it would take ^U as its kill character and
  // erase the line with its TAB before zsh's line editor read it, so the kill character is off.
  const driver = `zmodload zsh/zpty || exit 3
fpdir=$1 log=$2
shift 2
zpty inner zsh -f -i
zpty -w inner "stty kill undef; PS1='' RPS1=''; fpath=(\${(q)fpdir} \\$fpath); autoload -U compinit; compinit -u -D"
zpty -w inner 'compadd() {
  local arg
  for arg in "$@"; do
    case $arg in
      (-|--) break ;;
      (-O|-A|-D) builtin compadd "$@"; return ;;
    esac
  done
  local -a added
  builtin compadd -O added "$@"
  (( $#added )) && print -rl -- $added >> '"\${(q)log}"'
  builtin compadd "$@"
}'
zpty -w inner 'print \${:-RE}ADY'
zpty -r inner out '*READY*' || exit 4
n=0
for line in "$@"; do
  (( n++ ))
  zpty -w inner "print -r -- \${(q):-== $line} >> \${(q)log}"
  zpty -n -w inner "$line"$'\\t'
  zpty -n -w inner $'\\C-u'
  zpty -w inner "print \\\${:-DO}NE$n"
  zpty -r inner out "*DONE$n*" || exit 5
done
zpty -d inner`;
  try {
    const r = await output("zsh", ["-f", "-c", driver, "zsh", functions, log, ...lines], {
      cwd: dir.files,
      env: { TERM: "xterm", HOME: dir.home, ZDOTDIR: dir.home },
    });
    assertEquals(r.code, 0, `zsh driver failed: ${r.stderr}`);
    const matches = new Map<string, string[]>();
    let current: string[] | undefined;
    for (const l of (await Deno.readTextFile(log)).split("\n")) {
      if (l.startsWith("== ")) matches.set(l.slice(3), current = []);
      else if (l !== "") current!.push(l);
    }
    assertEquals([...matches.keys()], lines, "every line was completed");
    return matches;
  } finally {
    await Deno.remove(log).catch(() => {});
  }
}

Deno.test({
  name: "zsh completes commands, subcommands, flags and flag values in an interactive shell",
  ignore: !zsh,
  async fn() {
    const dir = await tempDirs();
    try {
      const functions = `${dir.path}/functions`;
      await Deno.mkdir(functions);
      {
        await writeScript(functions, "zsh", "_usbipgw");
        const expected: [string, string[]][] = [
          ["usbipgw ser", ["serve"]],
          ["usbipgw ", ["--version", "policy", "serve", "version"]],
          ["usbipgw --v", ["--version"]],
          ["usbipgw serve --t", ["--tcp"]],
          ["usbipgw serve -", sorted(ALL_SERVE_FLAGS)],
          // zsh leaves out a flag already given, unless it is repeatable.
          ["usbipgw serve --json --tcp x -", sorted(ALL_SERVE_FLAGS.filter((f) => f !== "--json"))],
          ["usbipgw version -", ["--help", "-h"]],
          ["usbipgw policy ", ["check", "show"]],
          ["usbipgw policy show -", ["--config", "--help", "--peer", "-h"]],
          ["usbipgw serve --config ", ["a.toml", "b.txt", "sub"]],
          ["usbipgw serve -c a", ["a.toml"]],
          ["usbipgw serve --config=b", ["b.txt"]],
          ["usbipgw serve --seat-dir ", ["sub"]],
          ["usbipgw serve --log-level ", ["debug", "it's $odd", "trace"]],
          ["usbipgw serve --tcp ", []],
        ];
        const got = await zshComplete(functions, expected.map(([l]) => l), dir);
        for (const [line, want] of expected) assertEquals(sorted(got.get(line)!), want, line);
      }
    } finally {
      await dir.remove();
    }
  },
});

// ------------------------------------------------------------------------- the real table

if (!bash && !zsh && !fish) {
  console.log(
    "%cskipping the syntax check of the real table's scripts: no bash, zsh or fish",
    "color: yellow",
  );
}

Deno.test({
  name: "the completion scripts of main.ts's table are valid, and offer every command and flag",
  ignore: !bash && !zsh && !fish,
  async fn() {
    const dir = await tempDirs();
    try {
      const check: Record<CompletionShell, string[] | undefined> = {
        bash: bash ? ["bash", "-n"] : undefined,
        zsh: zsh ? ["zsh", "-n"] : undefined,
        fish: fish ? ["fish", "--no-config", "--no-execute"] : undefined,
      };
      const scripts = {} as Record<CompletionShell, string>;
      for (const shell of COMPLETION_SHELLS) {
        scripts[shell] = `${dir.path}/usbipgw.${shell}`;
        await Deno.writeTextFile(scripts[shell], completionScript(shell, COMMANDS));
        const command = check[shell];
        if (command === undefined) continue;
        const r = await output(command[0]!, [...command.slice(1), scripts[shell]]);
        assertEquals(r.code, 0, `${shell}: ${r.stderr}`);
      }
      const names = COMMANDS.flatMap((c) => [c.name, ...(c.aliases ?? [])]);
      const flags = (c: Command) =>
        flagsOf(c).flatMap((f) => f.short ? [`-${f.short}`, `--${f.name}`] : [`--${f.name}`]);
      if (bash) {
        assertEquals(await bashComplete(scripts.bash, ["usbipgw", ""], dir.files), names);
        for (const c of COMMANDS) {
          assertEquals(
            await bashComplete(scripts.bash, ["usbipgw", c.name, "-"], dir.files),
            flags(c),
          );
        }
      }
      if (fish) {
        const words = async (line: string) =>
          sorted((await fishComplete(scripts.fish, line, dir)).map(([w]) => w));
        assertEquals(await words("usbipgw "), sorted(names));
        for (const c of COMMANDS) {
          assertEquals(await words(`usbipgw ${c.name} -`), sorted(flags(c)));
        }
      }
    } finally {
      await dir.remove();
    }
  },
});
