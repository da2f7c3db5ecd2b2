/**
 * The `file` back-end: output appended to a file (open(2) with `O_APPEND | O_CREAT`), no
 * input, after QEMU's chardev/char-file.c.
 *
 * @module
 */

import { errorMessage } from "../../util/error_message.ts";
import { CharBackend, type CharBackendOptions } from "./char_backend.ts";
import { pathFailed } from "../backend_error.ts";

class FileBackend extends CharBackend {
  readonly address: string;
  #file: Deno.FsFile;
  #writing: Promise<void>;

  constructor(path: string, file: Deno.FsFile, options: CharBackendOptions) {
    super("file", options, true);
    this.address = path;
    this.#file = file;
    this.#writing = this.#write();
  }

  /** Writes until closed, then what is still queued. */
  async #write(): Promise<void> {
    try {
      await this.pumpOutput((bytes) => this.#file.write(bytes), this.closing, true);
    } catch (e) {
      this.log.error("{backend}: cannot write: {error}", {
        backend: this.description,
        error: errorMessage(e),
      });
      this.setConnected(false);
    }
  }

  protected async shutdown(): Promise<void> {
    await this.#writing;
    this.#file.close();
  }
}

/**
 * Opens `path` for appending, creating it if missing.
 *
 * @throws {BackendOpenError} When the file cannot be created or opened.
 */
export async function openFile(path: string, options: CharBackendOptions): Promise<CharBackend> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { write: true, append: true, create: true });
  } catch (e) {
    throw await pathFailed("file back-end", path, e, "create", options.label);
  }
  return new FileBackend(path, file, options);
}
