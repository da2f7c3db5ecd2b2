/**
 * The `stdio` back-end: input from the process's standard input, output to its standard
 * output, after QEMU's chardev/char-stdio.c.
 *
 * @module
 */

import { CharBackend, type CharBackendOptions } from "./char_backend.ts";

class StdioBackend extends CharBackend {
  readonly address = "stdio";
  #writing: Promise<void>;

  constructor(options: CharBackendOptions) {
    super("stdio", options, true);
    this.#writing = this.#write();
    this.#read();
  }

  /** Not awaited on close: a read of stdin cannot be cancelled and ends with the process. */
  async #read(): Promise<void> {
    try {
      await this.pumpInput((buffer) => Deno.stdin.read(buffer), this.closing);
    } catch {
      // stdin was closed.
    }
  }

  async #write(): Promise<void> {
    try {
      await this.pumpOutput((bytes) => Deno.stdout.write(bytes), this.closing);
    } catch {
      this.setConnected(false);
    }
  }

  protected async shutdown(): Promise<void> {
    await this.#writing;
  }
}

/** Opens the stdio back-end: always connected. */
export function openStdio(options: CharBackendOptions): CharBackend {
  return new StdioBackend(options);
}
