/**
 * The text of a `--device` or `--rule` flag: `HEAD[:key=value,...]`, e.g.
 * `keyboard:busid=1-2,text=hello` (HEAD is the device type) or `allow:source=10.0.0.0/8`
 * (HEAD is the action), read into the same {@linkcode TableInput} a `[[device]]` or `[[rule]]`
 * table of the configuration file gives.
 *
 * @module
 */

import { ConfigError, type Origin, type TableInput } from "./config.ts";

/**
 * Reads `text` of flag `flag` (`--device` or `--rule`): HEAD becomes the field `head`
 * (`type` or `action`). A value may contain `=`; a comma inside a value is written `\,`. A key
 * alone (`ro`) has an empty value and is listed in `alone`. An empty HEAD, an empty key and a
 * repeated key are errors that name the flag.
 *
 * @example
 * ```ts
 * import { readSpecFlag } from "./spec_flag.ts";
 * const t = readSpecFlag("--device", "keyboard:busid=1-2,text=hi\\, there", "type");
 * console.assert(t.fields.type === "keyboard" && t.fields.text === "hi, there");
 * ```
 */
export function readSpecFlag(flag: string, text: string, head: string): TableInput {
  const origin: Origin = { kind: "flag", flag, text };
  const fail = (problem: string): never => {
    throw new ConfigError(origin, problem);
  };
  const colon = text.indexOf(":");
  const first = (colon < 0 ? text : text.slice(0, colon)).trim();
  if (first === "") fail(`the ${head} is empty`);
  const fields: Record<string, string> = { [head]: first };
  const alone: string[] = [];
  if (colon >= 0) {
    const parts: string[] = [];
    let current = "";
    const rest = text.slice(colon + 1);
    for (let i = 0; i < rest.length; i++) {
      const ch = rest[i]!;
      if (ch === "\\" && rest[i + 1] === ",") {
        current += ",";
        i++;
      } else if (ch === ",") {
        parts.push(current);
        current = "";
      } else {
        current += ch;
      }
    }
    parts.push(current);
    for (const part of parts) {
      if (part === "") continue;
      const eq = part.indexOf("=");
      const key = (eq < 0 ? part : part.slice(0, eq)).trim();
      if (key === "") fail(`"${part}" is not key=value`);
      if (key in fields) fail(`${key} is given twice`);
      fields[key] = eq < 0 ? "" : part.slice(eq + 1);
      if (eq < 0) alone.push(key);
    }
  }
  return { fields, origin, keyOrigins: {}, ...(alone.length > 0 ? { alone } : {}) };
}
