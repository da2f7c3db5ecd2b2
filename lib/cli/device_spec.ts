/**
 * Device specifications as the CLI and the configuration file give them:
 * `TYPE[:key=value,...]`, e.g. `gadget-zero:busid=1-1` or `keyboard:busid=1-2,text=hello`.
 *
 * @module
 */

import { UsageError } from "./usage_error.ts";

/** A parsed device specification: its type and its options as text. */
export interface DeviceSpec {
  type: string;
  options: Record<string, string>;
  /** Where the spec came from, for messages: `--device gadget-zero:...` or `file:12`. */
  origin: string;
  /**
   * Keys written alone, without `=value` (`storage:image=a.img,ro`); their value is empty.
   * Only the keys a device type lists as flags may be (`checkDeviceSpec` says so).
   */
  flags?: string[];
}

/**
 * Parses `TYPE[:key=value,...]`. A value may contain `=`; a comma inside a value can be
 * written as `\,`. A key alone (`ro`) has an empty value and is listed in `flags`. Repeated
 * keys and empty keys are errors.
 *
 * @example
 * ```ts
 * import { parseDeviceSpec } from "./device_spec.ts";
 * const spec = parseDeviceSpec("keyboard:busid=1-2,text=hi\\, there");
 * console.assert(spec.type === "keyboard" && spec.options.text === "hi, there");
 * ```
 */
export function parseDeviceSpec(text: string): DeviceSpec {
  const origin = `--device ${text}`;
  const colon = text.indexOf(":");
  const type = (colon < 0 ? text : text.slice(0, colon)).trim();
  if (type === "") throw new UsageError(`Invalid device spec "${text}": the type is empty`);
  const options: Record<string, string> = {};
  const flags: string[] = [];
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
      if (key === "") {
        throw new UsageError(`Invalid device spec "${text}": "${part}" is not key=value`);
      }
      if (key in options) {
        throw new UsageError(`Invalid device spec "${text}": ${key} is given twice`);
      }
      options[key] = eq < 0 ? "" : part.slice(eq + 1);
      if (eq < 0) flags.push(key);
    }
  }
  return flags.length > 0 ? { type, options, origin, flags } : { type, options, origin };
}
