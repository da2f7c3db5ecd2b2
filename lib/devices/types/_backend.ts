/**
 * The `backend` key of the serial device types (`cdc-acm`, `ftdi`): a character back-end
 * description checked with `parseBackendSpec`, its `unix:` and `file:` paths resolved. Private
 * to `lib/devices/types/`.
 *
 * @module
 */

import { type BackendSpec, parseBackendSpec } from "../../backends/char_backend.ts";
import type { KeySpec } from "../device_type.ts";
import type { KeyReader } from "./_keys.ts";

/** Where the serial devices' data can go, as the help and the messages list it. */
export const BACKEND_FORMS =
  "stdio, tcp:HOST:PORT, tcp-connect:HOST:PORT, unix:PATH, pty, file:PATH or loopback";

/** The `backend` key's spec. */
export const BACKEND_KEY: KeySpec = {
  kind: "backend",
  required: true,
  help: `where the serial data goes: ${BACKEND_FORMS}`,
};

/** Reads the required `backend` key of a `type` spec; opens nothing. */
export function readBackend(
  r: KeyReader,
  type: string,
  resolvePath: (path: string) => string,
): BackendSpec {
  const text = r.text("backend");
  if (text === undefined) {
    return r.fail("backend", `Missing backend=... for ${type}: expected ${BACKEND_FORMS}`);
  }
  let spec: BackendSpec;
  try {
    spec = parseBackendSpec(text);
  } catch (e) {
    return r.fail("backend", `Invalid backend for ${type}: ${(e as Error).message}`);
  }
  return spec.kind === "unix" || spec.kind === "file"
    ? { kind: spec.kind, path: resolvePath(spec.path) }
    : spec;
}
