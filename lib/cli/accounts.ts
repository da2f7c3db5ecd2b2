/**
 * User and group names to ids, read from /etc/passwd and /etc/group (passwd(5), group(5)).
 *
 * @module
 */

import { UsageError } from "./usage_error.ts";

async function lookup(file: string, name: string, what: string): Promise<number> {
  if (/^\d+$/.test(name)) return Number(name);
  let text = "";
  try {
    text = await Deno.readTextFile(file);
  } catch {
    // Fall through to the error below.
  }
  for (const line of text.split("\n")) {
    const fields = line.split(":");
    if (fields[0] === name && fields[2] !== undefined && /^\d+$/.test(fields[2])) {
      return Number(fields[2]);
    }
  }
  throw new UsageError(`Unknown ${what} "${name}": not a number and not in ${file}`);
}

/** The uid of a user name or numeric id. */
export function userId(name: string): Promise<number> {
  return lookup("/etc/passwd", name, "user");
}

/** The gid of a group name or numeric id. */
export function groupId(name: string): Promise<number> {
  return lookup("/etc/group", name, "group");
}
