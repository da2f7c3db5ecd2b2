/**
 * Shell completion scripts for usbipgw, made from the command table: command names and
 * aliases, subcommands, each command's flags (long and short, `--help` included) and flag
 * values (files, folders or a list of words). Each script uses its shell's own documented
 * completion API: bash `complete -F` with `COMP_WORDS`/`COMP_CWORD`/`COMPREPLY` (bash(1),
 * "Programmable Completion"), zsh `_arguments` and `_describe` (zshcompsys(1)), fish
 * `complete` with `commandline` conditions (fish-doc, "Writing your own completions").
 *
 * @module
 */

import type { Command, Flag } from "./command.ts";
import { flagsOf } from "./command.ts";

/** The shells `usbipgw completion` writes scripts for. */
export const COMPLETION_SHELLS = ["bash", "zsh", "fish"] as const;

/** A shell of {@linkcode COMPLETION_SHELLS}. */
export type CompletionShell = typeof COMPLETION_SHELLS[number];

/**
 * Whether `name` is a shell `usbipgw completion` knows.
 *
 * @example Checking a command-line argument
 * ```ts
 * import { assert } from "@std/assert";
 * import { isCompletionShell } from "./completion.ts";
 * assert(isCompletionShell("fish"));
 * assert(!isCompletionShell("tcsh"));
 * ```
 */
export function isCompletionShell(name: string | undefined): name is CompletionShell {
  return (COMPLETION_SHELLS as readonly (string | undefined)[]).includes(name);
}

const PROGRAM = "usbipgw";

/** The first line of a help text, for one-line descriptions. */
function _firstLine(text: string): string {
  return text.split("\n")[0]!.trim();
}

/** Every name that runs `command`: its name, then its aliases. */
function _names(command: Command): string[] {
  return [command.name, ...(command.aliases ?? [])];
}

/** `--name` and, when it has one, `-s`. */
function _spellings(flag: Flag): string[] {
  return flag.short ? [`-${flag.short}`, `--${flag.name}`] : [`--${flag.name}`];
}

// ---------------------------------------------------------------------------------------- bash

/** `text` as one bash word, single-quoted. */
function _bashQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/** The `case $prev in` branch that completes `flag`'s value, if it takes one. */
function _bashValueBranch(flag: Flag): string | undefined {
  if (flag.value === undefined) return undefined;
  const pattern = _spellings(flag).map(_bashQuote).join("|");
  let action: string;
  if (flag.complete === "file") action = "_usbipgw_paths -f; ";
  else if (flag.complete === "dir") action = "_usbipgw_paths -d; ";
  else if (flag.complete !== undefined) {
    action = `_usbipgw_words ${flag.complete.map(_bashQuote).join(" ")}; `;
  } else action = ""; // A value nothing can be offered for (HOST:PORT): offer nothing.
  return `        ${pattern}) ${action}return 0 ;;`;
}

function _bashScript(commands: readonly Command[]): string {
  const branches = commands.map((command) => {
    const flags = flagsOf(command);
    const values = flags.map(_bashValueBranch).filter((b) => b !== undefined);
    const lines = [`    ${_names(command).map(_bashQuote).join("|")})`];
    if (values.length > 0) lines.push(`      case $prev in`, ...values, `      esac`);
    if (command.subcommands !== undefined && command.subcommands.length > 0) {
      lines.push(
        `      if (( COMP_CWORD == 2 )) && [[ $cur != -* ]]; then`,
        `        _usbipgw_words ${command.subcommands.map(_bashQuote).join(" ")}`,
        `        return 0`,
        `      fi`,
      );
    }
    lines.push(`      _usbipgw_words ${flags.flatMap(_spellings).map(_bashQuote).join(" ")}`);
    lines.push(`      ;;`);
    return lines.join("\n");
  });
  const names = commands.flatMap(_names).map(_bashQuote).join(" ");
  return `# bash completion for ${PROGRAM}, made from its command table by "${PROGRAM} completion bash".
# Load it from ~/.bashrc with: source <(${PROGRAM} completion bash)
# or save it as ~/.local/share/bash-completion/completions/${PROGRAM} (bash-completion loads it).

# Adds the words among "$@" that start with $cur to COMPREPLY, quoted for the command line.
_usbipgw_words() {
  local word quoted
  for word in "$@"; do
    if [[ $word == "$cur"* ]]; then
      printf -v quoted %q "$word"
      COMPREPLY+=("$quoted")
    fi
  done
}

# Adds the file (-f) or folder (-d) names that start with $cur to COMPREPLY.
_usbipgw_paths() {
  compopt -o filenames 2>/dev/null
  local path
  while IFS= read -r path; do
    COMPREPLY+=("$path")
  done < <(compgen "$1" -- "$cur")
}

_usbipgw() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=""
  (( COMP_CWORD > 0 )) && prev=\${COMP_WORDS[COMP_CWORD-1]}
  COMPREPLY=()
  # --flag=VALUE: bash splits the word at "=" (COMP_WORDBREAKS), the value is completed alone.
  if [[ $cur == "=" && $prev == -* ]]; then
    cur=""
  elif [[ $prev == "=" ]] && (( COMP_CWORD > 2 )); then
    prev=\${COMP_WORDS[COMP_CWORD-2]}
  fi
  if (( COMP_CWORD == 1 )); then
    _usbipgw_words ${names}
    return 0
  fi
  case \${COMP_WORDS[1]} in
${branches.join("\n")}
  esac
  return 0
}

complete -F _usbipgw ${PROGRAM}
`;
}

// ----------------------------------------------------------------------------------------- zsh

/** `text` as one zsh word, single-quoted. */
const _zshQuote = _bashQuote;

/** `text` with `chars` (and backslashes) escaped by a backslash, for `_arguments` specs. */
function _zshEscape(text: string, chars: string): string {
  let out = "";
  for (const c of text) out += c === "\\" || chars.includes(c) ? `\\${c}` : c;
  return out;
}

/** A word of a `(word ...)` action, with the characters zsh would split or expand escaped. */
function _zshActionWord(word: string): string {
  return word.replace(/[^A-Za-z0-9_.,+=@%/-]/g, (c) => `\\${c}`);
}

/** The `_arguments` specs of `flag`: one per spelling. */
function _zshFlagSpecs(flag: Flag): string[] {
  const spellings = _spellings(flag);
  // A flag given once excludes its other spelling and itself; a repeatable one is starred.
  const prefix = flag.repeat ? "*" : `(${spellings.join(" ")})`;
  const help = `[${_zshEscape(_firstLine(flag.help), "[]:")}]`;
  let argument = "";
  if (flag.value !== undefined) {
    let action = " "; // No matches, the message only.
    if (flag.complete === "file") action = "_files";
    else if (flag.complete === "dir") action = "_files -/";
    else if (flag.complete !== undefined) {
      action = `(${flag.complete.map(_zshActionWord).join(" ")})`;
    }
    argument = `:${_zshEscape(flag.value, ":")}:${action}`;
  }
  return spellings.map((s) => {
    // -r VALUE or -rVALUE; --name VALUE or --name=VALUE.
    const takes = flag.value === undefined ? "" : s.startsWith("--") ? "=" : "+";
    return _zshQuote(`${prefix}${s}${takes}${help}${argument}`);
  });
}

function _zshScript(commands: readonly Command[]): string {
  const described = commands.flatMap((c) =>
    _names(c).map((n) => `      ${_zshQuote(`${_zshEscape(n, ":")}:${_firstLine(c.summary)}`)}`)
  );
  const branches = commands.map((command) => {
    const specs = flagsOf(command).flatMap(_zshFlagSpecs);
    if (command.subcommands !== undefined && command.subcommands.length > 0) {
      const words = command.subcommands.map(_zshActionWord).join(" ");
      specs.push(_zshQuote(`1:subcommand:(${words})`));
    }
    const pattern = _names(command).map(_zshQuote).join("|");
    return `    (${pattern})\n      _arguments -s -S : \\\n        ${
      specs.join(" \\\n        ")
    }\n      ;;`;
  });
  return `#compdef ${PROGRAM}
# zsh completion for ${PROGRAM}, made from its command table by "${PROGRAM} completion zsh".
# Save it as _${PROGRAM} in a folder of $fpath before compinit runs, or load it after compinit
# with: source <(${PROGRAM} completion zsh)

_usbipgw() {
  local -a names
  if (( CURRENT == 2 )); then
    names=(
${described.join("\n")}
    )
    _describe -t commands '${PROGRAM} command' names
    return
  fi
  # Complete the command's own arguments as if it were the command line.
  local command=$words[2]
  shift words
  (( CURRENT-- ))
  curcontext="\${curcontext%:*:*}:${PROGRAM}-$command:"
  case $command in
${branches.join("\n")}
  esac
}

# Autoloaded from $fpath, this file is the function's first call; sourced, it registers it.
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  _usbipgw "$@"
else
  compdef _usbipgw ${PROGRAM}
fi
`;
}

// ---------------------------------------------------------------------------------------- fish

/** `text` as one fish word, single-quoted (fish knows only `\\` and `\'` there). */
function _fishQuote(text: string): string {
  return `'${text.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;
}

/** `word` with fish's special characters backslash-escaped, so that fish reads it as itself. */
function _fishToken(word: string): string {
  return word.replace(/[$\\*?~%#(){}[\]<>^&;|"' \t\n]/g, (c) => {
    if (c === "\t") return "\\t";
    if (c === "\n") return "\\n";
    return `\\${c}`;
  });
}

function _fishFlagLine(command: Command, flag: Flag): string {
  const parts = [
    `complete -c ${PROGRAM}`,
    `-n ${_fishQuote(`__usbipgw_using ${_names(command).map(_fishToken).join(" ")}`)}`,
  ];
  if (flag.short) parts.push(`-s ${_fishToken(flag.short)}`);
  parts.push(`-l ${_fishToken(flag.name)}`);
  if (flag.value !== undefined) {
    // -r: takes a value; -F: files for it; -x (-r -f): no files, only the given arguments.
    if (flag.complete === "file") parts.push("-r -F");
    else if (flag.complete === "dir") parts.push("-x -a '(__fish_complete_directories)'");
    else if (flag.complete !== undefined) {
      parts.push(`-x -a ${_fishQuote(flag.complete.map(_fishToken).join(" "))}`);
    } else parts.push("-x");
  }
  parts.push(`-d ${_fishQuote(_firstLine(flag.help))}`);
  return parts.join(" ");
}

function _fishScript(commands: readonly Command[]): string {
  const lines: string[] = [];
  for (const command of commands) {
    lines.push(`\n# ${command.name}`);
    for (const name of _names(command)) {
      lines.push(
        `complete -c ${PROGRAM} -n __usbipgw_no_command -a ${_fishQuote(_fishToken(name))} -d ${
          _fishQuote(_firstLine(command.summary))
        }`,
      );
    }
    if (command.subcommands !== undefined && command.subcommands.length > 0) {
      lines.push(
        `complete -c ${PROGRAM} -n ${
          _fishQuote(`__usbipgw_subcommand_of ${_names(command).map(_fishToken).join(" ")}`)
        } -a ${_fishQuote(command.subcommands.map(_fishToken).join(" "))}`,
      );
    }
    for (const flag of flagsOf(command)) lines.push(_fishFlagLine(command, flag));
  }
  return `# fish completion for ${PROGRAM}, made from its command table by "${PROGRAM} completion fish".
# Save it as ~/.config/fish/completions/${PROGRAM}.fish, or load it with:
# ${PROGRAM} completion fish | source

complete -c ${PROGRAM} -e
# No file names unless a flag's value is a file.
complete -c ${PROGRAM} -f

# Whether only "${PROGRAM}" precedes the word being completed.
function __usbipgw_no_command
    test (count (commandline -opc)) -eq 1
end

# Whether the command (the word after "${PROGRAM}") is one of $argv.
function __usbipgw_using
    set -l words (commandline -opc)
    test (count $words) -ge 2; and contains -- $words[2] $argv
end

# Whether the word being completed directly follows the command, one of $argv.
function __usbipgw_subcommand_of
    set -l words (commandline -opc)
    test (count $words) -eq 2; and contains -- $words[2] $argv
end
${lines.join("\n")}
`;
}

/**
 * The completion script of `shell` for the commands of `commands`: command names (and
 * aliases) as the first word, a command's subcommands right after it, then its flags (`-s` and
 * `--long`, `--help` included), and after a flag that takes a value, files (`complete:
 * "file"`), folders (`"dir"`), the flag's words, or nothing.
 *
 * @example A bash script for a one-command table
 * ```ts
 * import { assertStringIncludes } from "@std/assert";
 * import type { Command } from "./command.ts";
 * import { completionScript } from "./completion.ts";
 * const serve: Command = {
 *   name: "serve",
 *   summary: "serve devices",
 *   usage: ["serve [--config FILE]"],
 *   description: "Serves devices.",
 *   flags: [{ name: "config", value: "FILE", help: "read a file", complete: "file" }],
 *   run: () => Promise.resolve(0),
 * };
 * const script = completionScript("bash", [serve]);
 * assertStringIncludes(script, "complete -F _usbipgw usbipgw\n");
 * assertStringIncludes(script, "'--config') _usbipgw_paths -f; return 0 ;;");
 * ```
 */
export function completionScript(shell: CompletionShell, commands: readonly Command[]): string {
  switch (shell) {
    case "bash":
      return _bashScript(commands);
    case "zsh":
      return _zshScript(commands);
    case "fish":
      return _fishScript(commands);
    default:
      throw new TypeError(`Cannot write a completion script: unknown shell "${shell as string}"`);
  }
}
