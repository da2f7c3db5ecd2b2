/**
 * Where each key of a TOML (v1.0) document is written: the line of every key and table header,
 * so that an error in a value can name `file:line: table[2].key` with the line of the key
 * itself. The TOML parser gives values only; this scanner reads the text once for positions.
 *
 * @module
 */

/**
 * Lines (1-based) by path: `tcp`, `limits`, `limits.max_connections`, `device[2]`,
 * `device[2].pattern`; and the keys written twice (TOML forbids it; the parser here keeps the
 * last value), with the line of the second one.
 */
export interface KeyLines {
  readonly lines: ReadonlyMap<string, number>;
  readonly duplicates: readonly { readonly path: string; readonly line: number }[];
}

function unquote(key: string): string {
  const k = key.trim();
  return (k.startsWith('"') && k.endsWith('"')) || (k.startsWith("'") && k.endsWith("'"))
    ? k.slice(1, -1)
    : k;
}

/** Splits a dotted key (`a."b.c".d`) into its parts. */
function keyParts(text: string): string[] {
  const parts: string[] = [];
  let current = "";
  let quote: string | undefined;
  for (const ch of text) {
    if (quote !== undefined) {
      current += ch;
      if (ch === quote) quote = undefined;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      current += ch;
    } else if (ch === ".") {
      parts.push(unquote(current));
      current = "";
    } else {
      current += ch;
    }
  }
  parts.push(unquote(current));
  return parts;
}

/**
 * The lines of the keys and headers of `text`. Array-of-tables entries are numbered from 1:
 * the second `[[device]]` is `device[2]`. Text inside strings and multi-line arrays is skipped.
 *
 * @example
 * ```ts
 * import { keyLines } from "./toml_lines.ts";
 * const { lines } = keyLines('tcp = [\n  "a",\n]\n[[device]]\ntype = "x"\n[[device]]\npattern = 1\n');
 * console.assert(lines.get("tcp") === 1 && lines.get("device[2]") === 6);
 * console.assert(lines.get("device[2].pattern") === 7);
 * ```
 */
export function keyLines(text: string): KeyLines {
  const found = new Map<string, number>();
  const duplicates: { path: string; line: number }[] = [];
  const counts = new Map<string, number>();
  let table = "";
  // Scanner state across lines: an open multi-line string, or open brackets of a value.
  let multiline: string | undefined;
  let depth = 0;
  const lines = text.split("\n");
  for (const [i, line] of lines.entries()) {
    const lineNo = i + 1;
    let pos = 0;
    if (multiline === undefined && depth === 0) {
      const trimmed = line.trimStart();
      const header = /^\[\[([^\]]+)\]\]|^\[([^\]]+)\]/.exec(trimmed);
      if (header) {
        const name = keyParts(header[1] ?? header[2]!).join(".");
        if (header[1] !== undefined) {
          const n = (counts.get(name) ?? 0) + 1;
          counts.set(name, n);
          table = `${name}[${n}]`;
        } else {
          table = name;
        }
        if (!found.has(table)) found.set(table, lineNo);
        continue;
      }
      const eq = findAssignment(trimmed);
      if (eq > 0) {
        const key = keyParts(trimmed.slice(0, eq)).join(".");
        const path = table === "" ? key : `${table}.${key}`;
        if (found.has(path)) duplicates.push({ path, line: lineNo });
        else found.set(path, lineNo);
        pos = line.length - trimmed.length + eq + 1;
      } else {
        continue;
      }
    }
    // Follow the value to see whether a string or bracket stays open past this line.
    for (let c = pos; c < line.length; c++) {
      if (multiline !== undefined) {
        if (line.startsWith(multiline, c)) {
          multiline = undefined;
          c += 2;
        } else if (line[c] === "\\" && multiline === '"""') {
          c++;
        }
        continue;
      }
      const ch = line[c]!;
      if (ch === "#") break;
      if (line.startsWith('"""', c) || line.startsWith("'''", c)) {
        multiline = line.slice(c, c + 3);
        c += 2;
      } else if (ch === '"' || ch === "'") {
        for (c++; c < line.length && line[c] !== ch; c++) {
          if (ch === '"' && line[c] === "\\") c++;
        }
      } else if (ch === "[" || ch === "{") {
        depth++;
      } else if (ch === "]" || ch === "}") {
        depth = Math.max(0, depth - 1);
      }
    }
  }
  return { lines: found, duplicates };
}

/** The index of the `=` of a `key = value` line (outside quotes), or -1. */
function findAssignment(line: string): number {
  if (line === "" || line.startsWith("#")) return -1;
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quote !== undefined) {
      if (ch === quote) quote = undefined;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
    } else if (ch === "=") {
      return i;
    } else if (ch === "#") {
      return -1;
    }
  }
  return -1;
}
