/**
 * The `loopback` back-end: what the device writes comes back as its input, one queue serving
 * both ways.
 *
 * @module
 */

import { CharBackend, type CharBackendOptions } from "./char_backend.ts";

class LoopbackBackend extends CharBackend {
  readonly address = "loopback";
  constructor(options: CharBackendOptions) {
    super("loopback", options, true, true);
  }
  protected shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** Opens a loopback: always connected, its output is its input. */
export function openLoopback(options: CharBackendOptions): CharBackend {
  return new LoopbackBackend(options);
}
