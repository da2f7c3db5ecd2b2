/**
 * Why a listener cannot open, in words: {@linkcode ListenError} names the TCP address or the
 * unix socket's path, the reason and, where one helps, what to check (bind(2), unix(7) and
 * open(2) errno values). {@linkcode describePathError} words a file that cannot be made or
 * opened the same way, for the back-ends that create files.
 *
 * @module
 */

import {
  ErrnoFailure,
  type ErrnoFailureOptions,
  errorCode,
  failuresOf,
  withCode,
} from "./_errno.ts";
import { errorMessage } from "../util/error_message.ts";

export { errorCode };

/** What kept a listener from opening. */
export type ListenFailure =
  /** EADDRINUSE, or a server accepting on the unix socket already. */
  | "address_in_use"
  /** EADDRNOTAVAIL: the address is not one of this host's. */
  | "address_not_available"
  /** EACCES or EPERM on a TCP port: a privileged port, or a security policy. */
  | "permission_denied"
  /** The host name does not resolve. */
  | "unknown_host"
  /** A file that is not a socket is at the socket's path. */
  | "not_a_socket"
  /** The path is longer than a unix socket address holds (107 bytes). */
  | "path_too_long"
  | PathFailure;

/** Why a file cannot be made or opened at a path. */
export type PathFailure =
  /** ENOENT: the folder the file would go in does not exist. */
  | "folder_missing"
  /** EROFS: the file system holding the folder is read-only. */
  | "folder_read_only"
  /** EACCES or EPERM: this user may not create files in the folder. */
  | "folder_not_writable"
  /** ENOTDIR: a part of the path is a file, not a folder. */
  | "not_a_folder"
  /** EISDIR: the path is a folder. */
  | "is_a_folder"
  /** ENOENT when reading: there is no such file. */
  | "file_missing"
  /** EACCES or EPERM on the file itself. */
  | "file_not_accessible"
  /** Anything else; the detail is the system's own message. */
  | "other";

/** Options of a {@linkcode ListenError}: hint, errno name and cause. */
export type ListenErrorOptions = ErrnoFailureOptions;

/**
 * A listener that cannot open: `Cannot listen on ADDRESS: DETAIL` and, where one helps,
 * `; HINT`. The command line prints the message as it is and exits with status 1.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { ListenError } from "./listen_error.ts";
 * const e = new ListenError("127.0.0.1:3240", "address_in_use", "the address is in use (EADDRINUSE)", {
 *   hint: "is another usbipgw or usbipd running?",
 * });
 * assertEquals(
 *   e.message,
 *   "Cannot listen on 127.0.0.1:3240: the address is in use (EADDRINUSE); is another usbipgw or usbipd running?",
 * );
 * ```
 */
export class ListenError extends ErrnoFailure<ListenFailure> {
  /** The TCP address (`host:port`, `[v6]:port`) or the unix socket's path. */
  readonly address: string;

  /** Builds the error; the message is made from the address, the detail and the hint. */
  constructor(
    address: string,
    failure: ListenFailure,
    detail: string,
    options: ListenErrorOptions = {},
  ) {
    super(`Cannot listen on ${address}`, failure, detail, options);
    this.name = "ListenError";
    this.address = address;
  }
}

/** The folder of `path`: `/run/x` for `/run/x/gw.sock`, `.` for a bare name. */
export function folderOf(path: string): string {
  const i = path.replace(/\/+$/, "").lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

async function _exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** How a path's problem is described: the failure and its words. */
export interface PathProblem {
  failure: PathFailure;
  /** E.g. `the folder /run/x does not exist (ENOENT)`. */
  detail: string;
  code: string | undefined;
}

/**
 * Words why a file could not be made (`create`: a socket, a log file) or read (`read`) at
 * `path`, from the error the system gave: the folder is missing, read-only or not writable
 * for this user, a part of the path is not a folder, and so on. Looks at the folder to tell
 * "the folder does not exist" from "no such file".
 */
export async function describePathError(
  path: string,
  error: unknown,
  mode: "create" | "read",
): Promise<PathProblem> {
  const code = errorCode(error);
  const folder = folderOf(path);
  const problem = (failure: PathFailure, words: string): PathProblem => ({
    failure,
    detail: withCode(words, code),
    code,
  });
  switch (code) {
    case "ENOENT":
      if (!await _exists(folder)) {
        return problem("folder_missing", `the folder ${folder} does not exist`);
      }
      return mode === "read"
        ? problem("file_missing", "there is no such file")
        : problem("folder_not_writable", `the folder ${folder} takes no new files`);
    case "EROFS":
      return problem("folder_read_only", `the folder ${folder} is read-only`);
    case "EACCES":
    case "EPERM":
      if (mode === "create" && !await _exists(path)) {
        return problem(
          "folder_not_writable",
          `permission denied: this user cannot create files in the folder ${folder}`,
        );
      }
      return problem(
        "file_not_accessible",
        `permission denied: the file is not ${
          mode === "read" ? "readable" : "writable"
        } for this user`,
      );
    case "ENOTDIR":
      return problem("not_a_folder", "a part of the path is a file, not a folder");
    case "EISDIR":
      return problem("is_a_folder", "it is a folder");
    default:
      return { failure: "other", detail: errorMessage(error), code };
  }
}

/**
 * The {@linkcode ListenError} for a TCP listener on `hostname:port` that could not bind.
 * Deno's own permission errors (`Deno.errors.NotCapable`) are returned as they are: they are
 * about how the program was started, not about the address.
 */
export function tcpListenError(address: string, port: number, error: unknown): Error {
  if (error instanceof Deno.errors.NotCapable) return error;
  const code = errorCode(error);
  const fail = failuresOf(
    error,
    code,
    (failure: ListenFailure, detail, options) => new ListenError(address, failure, detail, options),
  );
  switch (code) {
    case "EADDRINUSE":
      return fail(
        "address_in_use",
        "the address is in use",
        "is another usbipgw or usbipd running?",
      );
    case "EADDRNOTAVAIL":
      return fail(
        "address_not_available",
        "the address is not one of this host's",
        "listen on one of its addresses, or on 0.0.0.0 or [::] for all of them",
      );
    case "EACCES":
      return fail(
        "permission_denied",
        "permission denied",
        port > 0 && port < 1024 ? "ports below 1024 need root or CAP_NET_BIND_SERVICE" : undefined,
      );
    case "EPERM":
      return fail(
        "permission_denied",
        "the system does not allow it",
        "a security policy (such as systemd's SocketBindDeny=) forbids this port",
      );
  }
  if (/failed to lookup address|Name or service not known/i.test(errorMessage(error))) {
    return fail("unknown_host", `the host name does not resolve (${errorMessage(error)})`);
  }
  return fail("other", errorMessage(error));
}

/**
 * The {@linkcode ListenError} for a unix socket at `path` that could not be made: the folder
 * is missing, read-only or not writable, the path is too long, and so on.
 */
export async function unixListenError(path: string, error: unknown): Promise<Error> {
  if (error instanceof ListenError || error instanceof Deno.errors.NotCapable) return error;
  const code = errorCode(error);
  if (code === "EINVAL" && new TextEncoder().encode(path).length > 107) {
    return new ListenError(
      path,
      "path_too_long",
      "the path is longer than a unix socket address holds (107 bytes)",
      { code, cause: error },
    );
  }
  const p = await describePathError(path, error, "create");
  return new ListenError(path, p.failure, p.detail, {
    ...(p.code === undefined ? {} : { code: p.code }),
    cause: error,
  });
}
