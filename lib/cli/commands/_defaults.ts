/**
 * The gateway's default unix socket, shared by `serve` (where it listens) and the commands
 * that talk to a running gateway (`status`, `bind`, `unbind`).
 *
 * @module
 */

import type { CommandIo } from "../command.ts";

/** The system gateway's socket, for root. */
export const SYSTEM_SOCKET = "/run/usbipgw.sock";

/**
 * `/run/usbipgw.sock` for root, `$XDG_RUNTIME_DIR/usbipgw.sock` for anyone else; `undefined`
 * when that variable is not set.
 */
export function defaultUnixPath(io: CommandIo): string | undefined {
  if (Deno.uid() === 0) return SYSTEM_SOCKET;
  const runtime = io.env("XDG_RUNTIME_DIR");
  return runtime ? `${runtime}/usbipgw.sock` : undefined;
}
