/**
 * Why a back-end (a serial line's far end, a text socket, a temperature source) cannot open:
 * {@linkcode BackendOpenError} names the device it belongs to, the back-end, its address or
 * path and the reason, e.g. `cdc-acm 1-3: Cannot open the tcp back-end on 127.0.0.1:4000:
 * the address is in use (EADDRINUSE)`.
 *
 * @module
 */

import { describePathError, ListenError } from "../transport/listen_error.ts";

/**
 * A back-end that cannot open. Its message starts with the device's label when there is one,
 * then `Cannot open the WHAT WHERE: DETAIL`. The command line prints it as it is and exits
 * with status 1; a malformed description is a `TypeError` instead (a usage error).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { BackendOpenError } from "./backend_error.ts";
 * const e = new BackendOpenError({
 *   what: "file back-end",
 *   where: "/x/y",
 *   detail: "the folder /x does not exist (ENOENT)",
 *   label: "cdc-acm 1-3",
 * });
 * assertEquals(
 *   e.message,
 *   "cdc-acm 1-3: Cannot open the file back-end /x/y: the folder /x does not exist (ENOENT)",
 * );
 * ```
 */
export class BackendOpenError extends Error {
  /** What could not open: `tcp back-end`, `text socket`, `temperature file`, ... */
  readonly what: string;
  /** Its address or path as the message gives it (`on 127.0.0.1:4000`, `/x/y`), if any. */
  readonly where: string | undefined;
  /** The reason alone: `the address is in use (EADDRINUSE)`. */
  readonly detail: string;
  /** The device the back-end belongs to, e.g. `cdc-acm 1-3`. */
  readonly label: string | undefined;

  /** Builds the error; the message is made from the label, what, where and the detail. */
  constructor(o: {
    what: string;
    where?: string | undefined;
    detail: string;
    label?: string | undefined;
    cause?: unknown;
  }) {
    super(
      `${o.label ? `${o.label}: ` : ""}Cannot open the ${o.what}${
        o.where ? ` ${o.where}` : ""
      }: ${o.detail}`,
      o.cause === undefined ? undefined : { cause: o.cause },
    );
    this.name = "BackendOpenError";
    this.what = o.what;
    this.where = o.where;
    this.detail = o.detail;
    this.label = o.label;
  }
}

/**
 * The {@linkcode BackendOpenError} for a listener that failed: the detail of a
 * {@linkcode ListenError} (its hint speaks of gateways, not of back-ends), or any other
 * error's message.
 */
export function listenFailed(
  what: string,
  where: string,
  error: unknown,
  label: string | undefined,
): Error {
  if (error instanceof Deno.errors.NotCapable) return error;
  const detail = error instanceof ListenError
    ? error.detail
    : error instanceof Error
    ? error.message
    : String(error);
  return new BackendOpenError({ what, where, detail, label, cause: error });
}

/**
 * The {@linkcode BackendOpenError} for a file at `path` that could not be made (`create`) or
 * read (`read`), worded by `describePathError` (the folder is missing, read-only, ...). Deno's
 * own permission errors (`Deno.errors.NotCapable`) are returned as they are.
 */
export async function pathFailed(
  what: string,
  path: string,
  error: unknown,
  mode: "create" | "read",
  label: string | undefined,
): Promise<Error> {
  if (error instanceof Deno.errors.NotCapable) return error;
  const { detail } = await describePathError(path, error, mode);
  return new BackendOpenError({ what, where: path, detail, label, cause: error });
}
