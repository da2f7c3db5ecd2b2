/**
 * The back-end descriptions of the serial devices' `backend=` option, after QEMU's `-chardev`
 * syntax: the kinds, the form each is written in, and their parser.
 *
 * @module
 */

import { parseHostPort } from "../../transport/tcp.ts";

/** The back-end kinds, in the order the usage text lists them. */
export const BACKEND_KINDS = [
  "stdio",
  "tcp",
  "tcp-connect",
  "unix",
  "pty",
  "file",
  "loopback",
] as const;

/** One of {@linkcode BACKEND_KINDS}. */
export type BackendKind = typeof BACKEND_KINDS[number];

/** A parsed back-end description (the `backend=` option of the serial devices). */
export type BackendSpec =
  | { kind: "stdio" }
  | { kind: "tcp"; hostname: string; port: number }
  | { kind: "tcp-connect"; hostname: string; port: number }
  | { kind: "unix"; path: string }
  | { kind: "pty" }
  | { kind: "file"; path: string }
  | { kind: "loopback" };

/** What each kind takes after its name. */
const ARGUMENT = {
  stdio: "",
  tcp: ":HOST:PORT",
  "tcp-connect": ":HOST:PORT",
  unix: ":PATH",
  pty: "",
  file: ":PATH",
  loopback: "",
} as const satisfies Record<BackendKind, string> & Record<BackendSpec["kind"], string>;

/** Each kind as it is written, e.g. `tcp:HOST:PORT`, in the order of {@linkcode BACKEND_KINDS}. */
export const BACKEND_FORMS: readonly string[] = BACKEND_KINDS.map((k) => `${k}${ARGUMENT[k]}`);

/**
 * Parses a back-end description: `stdio`, `tcp:HOST:PORT`, `tcp-connect:HOST:PORT`,
 * `unix:PATH`, `pty`, `file:PATH` or `loopback`. IPv6 hosts are bracketed (`tcp:[::1]:4555`).
 * A `tcp` server may use port 0 (any free port).
 *
 * @throws {TypeError} If the text names no known back-end or its address is malformed.
 *
 * @example
 * ```ts
 * import { parseBackendSpec } from "./spec.ts";
 * const spec = parseBackendSpec("tcp:127.0.0.1:4555");
 * console.assert(spec.kind === "tcp" && spec.port === 4555);
 * ```
 */
export function parseBackendSpec(text: string): BackendSpec {
  const i = text.indexOf(":");
  const name = i < 0 ? text : text.slice(0, i);
  const rest = i < 0 ? undefined : text.slice(i + 1);
  const kind = BACKEND_KINDS.find((k) => k === name);
  const invalid = (why: string) => new TypeError(`Invalid back-end "${text}": ${why}`);
  if (kind === undefined) throw invalid(`expected one of ${BACKEND_FORMS.join(", ")}`);
  switch (kind) {
    case "stdio":
    case "pty":
    case "loopback":
      if (rest !== undefined) throw invalid(`${kind} takes no argument`);
      return { kind };
    case "tcp":
    case "tcp-connect": {
      if (rest === undefined || !/:\d+$/.test(rest)) {
        throw invalid(`expected ${kind}${ARGUMENT[kind]}`);
      }
      try {
        const { hostname, port } = parseHostPort(rest, 0, {
          role: kind === "tcp" ? "listen" : "connect",
        });
        return { kind, hostname, port };
      } catch (e) {
        throw invalid((e as Error).message);
      }
    }
    case "unix":
    case "file":
      if (rest === undefined || rest === "") throw invalid(`expected ${kind}${ARGUMENT[kind]}`);
      return { kind, path: rest };
  }
}
