/**
 * Why a client cannot reach a server, in words: {@linkcode ConnectError} names the target
 * (`host:port` or the socket's path), the reason and what to check (connect(2) errno values).
 * `connectTcp`, `connectUnix` and the kernel client's `attachDevice` all report a server
 * that cannot be reached with it, so that every command maps it to the same exit status.
 *
 * @module
 */

import { ErrnoFailure, type ErrnoFailureOptions, errorCode, failuresOf } from "./_errno.ts";
import { errorMessage } from "../util/error_message.ts";

/** What kept a client from connecting. */
export type ConnectFailure =
  /** ECONNREFUSED: nothing accepts on the port, or on the unix socket (a stale socket file). */
  | "refused"
  /** ENOENT: there is no unix socket at the path. */
  | "no_such_socket"
  /** EACCES or EPERM: the socket's mode or owner keeps this user out. */
  | "permission_denied"
  /** ETIMEDOUT: no answer in time. */
  | "timed_out"
  /** ENETUNREACH or EHOSTUNREACH: no route to the host. */
  | "unreachable"
  /** The host name does not resolve. */
  | "unknown_host"
  /** ECONNRESET or ECONNABORTED while connecting. */
  | "reset"
  /** Anything else; the detail is the system's own message. */
  | "other";

/** Options of a {@linkcode ConnectError}: hint, errno name and cause. */
export type ConnectErrorOptions = ErrnoFailureOptions;

/**
 * A server that cannot be reached: `Cannot connect to TARGET: DETAIL` and, where one helps,
 * `; HINT`. The command line exits with status 3 for it (`list`, `status`, `attach`).
 *
 * @example
 * ```ts
 * import { assert, assertEquals } from "@std/assert";
 * import { ConnectError, connectError } from "./connect_error.ts";
 * const e = connectError("127.0.0.1:3240", "tcp", { code: "ECONNREFUSED" });
 * assert(e instanceof ConnectError);
 * assertEquals(e.failure, "refused");
 * assertEquals(
 *   e.message,
 *   "Cannot connect to 127.0.0.1:3240: connection refused (ECONNREFUSED); is the gateway running?",
 * );
 * ```
 */
export class ConnectError extends ErrnoFailure<ConnectFailure> {
  /** Where it tried to connect: `host:port`, `[v6]:port` or a unix socket's path. */
  readonly target: string;

  /** Builds the error; the message is made from the target, the detail and the hint. */
  constructor(
    target: string,
    failure: ConnectFailure,
    detail: string,
    options: ConnectErrorOptions = {},
  ) {
    super(`Cannot connect to ${target}`, failure, detail, options);
    this.name = "ConnectError";
    this.target = target;
  }
}

const GATEWAY_HINT = "is the gateway running?";

/**
 * The {@linkcode ConnectError} for a failed connect to `target` over `transport`, from the
 * error the system gave: `code`, an errno name (by default the error's own `code`, as Deno
 * and `node:` errors carry it), says what happened. An error that is no connect failure (an
 * abort, Deno's own permission errors) is returned as it is.
 */
export function connectError(
  target: string,
  transport: "tcp" | "unix",
  error: unknown,
  code: string | undefined = errorCode(error),
): Error {
  if (
    error instanceof ConnectError || error instanceof Deno.errors.NotCapable ||
    (error instanceof DOMException && error.name === "AbortError")
  ) {
    return error as Error;
  }
  const message = errorMessage(error);
  const fail = failuresOf(
    error,
    code,
    (failure: ConnectFailure, detail, options) =>
      new ConnectError(target, failure, detail, options),
  );
  switch (code) {
    case "ECONNREFUSED":
      return transport === "unix"
        ? fail("refused", "nobody accepts on this socket", GATEWAY_HINT)
        : fail("refused", "connection refused", GATEWAY_HINT);
    case "ENOENT":
      return fail("no_such_socket", "no such socket", GATEWAY_HINT);
    case "EACCES":
    case "EPERM":
      return fail(
        "permission_denied",
        "permission denied",
        transport === "unix" ? "the socket's mode or owner keeps this user out" : undefined,
      );
    case "ETIMEDOUT":
      return fail("timed_out", "no answer in time", "is the host up, and is the port open?");
    case "ENETUNREACH":
      return fail("unreachable", "the network is unreachable");
    case "EHOSTUNREACH":
      return fail("unreachable", "no route to the host");
    case "ECONNRESET":
    case "ECONNABORTED":
      return fail("reset", "the server closed the connection at once");
  }
  const lookup = /^(?:failed to lookup address information|Cannot resolve [^:]*): (.*)$/s.exec(
    message,
  );
  if (lookup) return fail("unknown_host", `the host name does not resolve (${lookup[1]})`);
  return fail("other", message);
}
