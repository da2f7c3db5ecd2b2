/**
 * The one way a caught value becomes words for a message or a log line.
 *
 * @module
 */

/**
 * The message of an `Error`, or the value as text for anything else thrown.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { errorMessage } from "./error_message.ts";
 * assertEquals(errorMessage(new RangeError("too big")), "too big");
 * assertEquals(errorMessage("plain"), "plain");
 * ```
 */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
