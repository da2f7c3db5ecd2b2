/**
 * Bus ids, the names devices are listed and imported by (the 32-byte `busid` field of
 * OP_REP_DEVLIST and OP_REQ_IMPORT, tools/usb/usbip/libsrc/usbip_common.h): the bus number, a
 * dash, and the port path, as Linux names USB devices in sysfs (`1-1`, `2-1.3`).
 *
 * @module
 */

/** The form of a bus id: bus number, a dash, and one or more dot-separated port numbers. */
export const BUSID_PATTERN = /^([1-9]\d{0,2})-([1-9]\d{0,2})((?:\.[1-9]\d{0,2})*)$/;

/**
 * What is wrong with `busid` as a bus id, the message naming it `key` (`busid`, or a device
 * type's `export_busid`), or `undefined` when it has the form of {@linkcode BUSID_PATTERN}
 * with a bus number up to 255. The bus id is quoted as JSON: one read from the wire or a file
 * may hold any character.
 *
 * @example
 * ```ts
 * import { busidProblem } from "./busid.ts";
 * console.assert(busidProblem("2-1.3") === undefined);
 * const problem = busidProblem("usb1", "export_busid");
 * console.assert(problem?.startsWith('Invalid export_busid "usb1": expected BUS-PORT'));
 * ```
 */
export function busidProblem(busid: string, key = "busid"): string | undefined {
  const m = BUSID_PATTERN.exec(busid);
  if (m !== null && Number(m[1]) <= 255) return undefined;
  return `Invalid ${key} ${
    JSON.stringify(busid)
  }: expected BUS-PORT[.PORT...] with numbers 1..255, e.g. 1-1 or 2-1.3`;
}

/** Parses a bus id into its bus number; throws `TypeError` with its {@linkcode busidProblem}. */
export function busnumOf(busid: string): number {
  const problem = busidProblem(busid);
  if (problem !== undefined) throw new TypeError(problem);
  return Number(BUSID_PATTERN.exec(busid)![1]);
}
