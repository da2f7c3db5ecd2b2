/**
 * The `pty` back-end: a pseudo-terminal whose slave programs open (posix_openpt(3),
 * ptsname(3)), after QEMU's chardev/char-pty.c. The slave starts in raw mode (cfmakeraw(3));
 * line settings the host sets are shown on the slave's termios (termios(3)).
 *
 * @module
 */

import { errorMessage } from "../../util/error_message.ts";
import { CharBackend, type CharBackendOptions, CHUNK, type LineSettings } from "./char_backend.ts";
import { PollEvent, PtyMaster } from "./_pty.ts";
import { BackendOpenError } from "../backend_error.ts";

const PTY_HANGUP_RECHECK_MS = 250;

class PtyBackend extends CharBackend {
  readonly address: string;
  #pty: PtyMaster;
  #polling = false;
  #running: Promise<void>;

  constructor(pty: PtyMaster, options: CharBackendOptions) {
    // A pty reports a hangup only after a slave was opened and closed; until then it counts
    // as connected, and its kernel buffer holds what the device writes.
    super("pty", options, true);
    this.#pty = pty;
    this.address = pty.path;
    const wake = () => {
      if (this.#polling) pty.wake();
    };
    const unsubscribe = [
      this.input.changed.listen(wake),
      this.output.changed.listen(wake),
      this.onLineSettings((s) => this.#applyLine(s)),
    ];
    this.#running = this.#run().finally(() => unsubscribe.forEach((u) => u()));
    this.log.info("pty back-end at {path}", { path: pty.path });
  }

  /** Shows the line settings on the slave's termios, where `stty -F` and programs see them. */
  #applyLine(s: LineSettings): void {
    if (this.closed) return;
    try {
      if (!this.#pty.setLineSettings(s)) {
        this.log.info("{backend}: {baud} baud is not a termios speed; the pty keeps its speed", {
          backend: this.description,
          baud: s.baudRate,
        });
      }
    } catch (e) {
      this.log.warn("{backend}: {error}", {
        backend: this.description,
        error: errorMessage(e),
      });
    }
  }

  async #poll(events: number, timeoutMs: number, watchMaster: boolean): Promise<number> {
    this.#polling = true;
    try {
      return await this.#pty.poll(events, timeoutMs, watchMaster);
    } finally {
      this.#polling = false;
    }
  }

  async #run(): Promise<void> {
    const pty = this.#pty;
    const buffer = new Uint8Array(CHUNK);
    let hangup = false;
    while (!this.closed) {
      if (hangup) {
        await this.#poll(0, PTY_HANGUP_RECHECK_MS, false);
        if (this.closed) break;
        const revents = await this.#poll(PollEvent.POLLIN, 0, true);
        hangup = (revents & PollEvent.POLLHUP) !== 0 && (revents & PollEvent.POLLIN) === 0;
        if (!hangup) this.setConnected(true);
        continue;
      }
      const events = (this.input.room > 0 ? PollEvent.POLLIN : 0) |
        (this.output.size > 0 ? PollEvent.POLLOUT : 0);
      const revents = await this.#poll(events, -1, true);
      if (this.closed) break;
      if ((revents & PollEvent.POLLIN) !== 0 && this.input.room > 0) {
        const r = pty.read(buffer.subarray(0, Math.min(CHUNK, this.input.room)));
        if (r === "hangup") hangup = true;
        else if (typeof r === "number") this.input.push(buffer.subarray(0, r));
      }
      if ((revents & PollEvent.POLLOUT) !== 0 && this.output.size > 0 && !hangup) {
        const w = pty.write(this.output.peek(CHUNK));
        if (w === "hangup") hangup = true;
        else if (typeof w === "number") this.output.consume(w);
      }
      if ((revents & PollEvent.POLLHUP) !== 0 && (revents & PollEvent.POLLIN) === 0) {
        hangup = true;
      }
      if (hangup) this.setConnected(false);
    }
  }

  protected async shutdown(): Promise<void> {
    this.#pty.wake();
    await this.#running;
    this.#pty.close();
  }
}

/**
 * Opens a pty and logs its slave's path.
 *
 * @throws {BackendOpenError} When no pty can be had.
 */
export function openPty(options: CharBackendOptions): CharBackend {
  let pty: PtyMaster;
  try {
    pty = PtyMaster.open();
  } catch (e) {
    const detail = errorMessage(e).replace(
      /^Cannot open a pty: /,
      "",
    );
    throw new BackendOpenError({ what: "pty back-end", detail, label: options.label, cause: e });
  }
  return new PtyBackend(pty, options);
}
