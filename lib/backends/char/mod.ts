/**
 * Character back-ends for the emulated serial devices, after QEMU's chardevs (chardev/char-*.c):
 * `stdio`, `tcp:HOST:PORT` (server), `tcp-connect:HOST:PORT`, `unix:PATH` (server), `pty`,
 * `file:PATH` (output only) and `loopback` (echo), one a file beside this one. Each is a duplex
 * byte pipe with bounded queues and back-pressure both ways; bytes the device offers that
 * cannot be delivered are counted and logged, never dropped silently.
 *
 * @module
 */

export {
  type BackendStateListener,
  CharBackend,
  type CharBackendOptions,
  type CharBackendStats,
  formatLineSettings,
  type LineSettings,
  PARITY_NAMES,
  STOP_BITS,
} from "./char_backend.ts";
export {
  BACKEND_FORMS,
  BACKEND_KINDS,
  type BackendKind,
  type BackendSpec,
  parseBackendSpec,
} from "./spec.ts";

import type { CharBackend, CharBackendOptions } from "./char_backend.ts";
import { type BackendSpec, parseBackendSpec } from "./spec.ts";
import { openFile } from "./file.ts";
import { openLoopback } from "./loopback.ts";
import { openPty } from "./pty.ts";
import { connectTcp, listenTcp, listenUnix } from "./socket.ts";
import { openStdio } from "./stdio.ts";

/**
 * Opens a back-end. Servers (`tcp`, `unix`) listen at once and take one client at a time: a
 * second client is accepted and closed straight away (and logged) while one is connected.
 * `tcp-connect` connects in the background and reconnects with a backoff doubling from
 * {@linkcode CharBackendOptions.reconnectMinMs} to `reconnectMaxMs`. `pty` logs the slave's
 * path (also in {@linkcode CharBackend.address}); its slave starts in raw mode, and each
 * {@linkcode CharBackend.setLineSettings} change is set on the slave's termios (the speed when
 * it is a termios rate such as 115200, and the stop bits; Linux keeps a pty at 8 bits without
 * parity), where `stty -F PATH` and programs on the slave see it. `file` appends output and
 * never has input.
 *
 * @throws {TypeError} For a malformed description.
 * @throws {BackendOpenError} When it cannot open: a server cannot listen (the address is in
 * use, the socket's folder is missing or read-only, ...), the file cannot be created, no pty
 * can be had. The message starts with {@linkcode CharBackendOptions.label} when given, then
 * names the back-end, its address or path and the reason.
 */
export async function openCharBackend(
  spec: BackendSpec | string,
  options: CharBackendOptions = {},
): Promise<CharBackend> {
  const s = typeof spec === "string" ? parseBackendSpec(spec) : spec;
  switch (s.kind) {
    case "stdio":
      return openStdio(options);
    case "tcp":
      return listenTcp(s.hostname, s.port, options);
    case "tcp-connect":
      return connectTcp(s.hostname, s.port, options);
    case "unix":
      return await listenUnix(s.path, options);
    case "pty":
      return openPty(options);
    case "file":
      return await openFile(s.path, options);
    case "loopback":
      return openLoopback(options);
  }
}
