/**
 * The character back-end: the far end of an emulated serial line, after QEMU's `Chardev`
 * (chardev/char.c). A duplex byte pipe with bounded queues and back-pressure both ways;
 * bytes the device offers that cannot be delivered are counted and logged, never dropped
 * silently. The kinds live beside this file, one a file as QEMU's chardev/char-*.c.
 *
 * @module
 */

import { errorMessage } from "../../util/error_message.ts";
import type { BackendKind } from "./spec.ts";
import { ByteQueue } from "./byte_queue.ts";
import { waitFor } from "../../util/wait.ts";
import { type BackendLogger, backendLogger } from "../_backend_log.ts";

/** Tuning of a {@linkcode CharBackend}. */
export interface CharBackendOptions {
  /** Bytes each direction's queue holds (default 64 KiB; the loopback has one queue). */
  queueBytes?: number;
  /**
   * How long offered output may wait for room while the back-end takes nothing, in ms,
   * before it is dropped (default 2000). Output offered while the queue stays full after
   * such a drop is dropped at once, until the back-end takes bytes again.
   */
  stallTimeoutMs?: number;
  /** `tcp-connect`: first delay before reconnecting, in ms (default 100). */
  reconnectMinMs?: number;
  /** `tcp-connect`: the longest delay between attempts, in ms (default 5000). */
  reconnectMaxMs?: number;
  /** `unix`: the socket file's mode (default `0o600`). */
  unixMode?: number;
  /**
   * The device the back-end serves, e.g. `cdc-acm 1-3`: every log line of the back-end then
   * starts with it (and carries it as the `label` property), and so does an open error.
   */
  label?: string;
}

/** Byte counts of a {@linkcode CharBackend}. */
export interface CharBackendStats {
  /** Input bytes the device has read. */
  bytesIn: number;
  /** Output bytes the device offered that the back-end took. */
  bytesOut: number;
  /** Output bytes that could not be delivered and were dropped. */
  droppedOut: number;
}

/** The serial line's settings as the host set them through the device. */
export interface LineSettings {
  /** Bits per second. */
  baudRate: number;
  /** Data bits per character (5..8, or 16 for CDC). */
  dataBits: number;
  /** Parity bit: none, odd, even, always 1 (mark) or always 0 (space). */
  parity: "none" | "odd" | "even" | "mark" | "space";
  /** Stop bits per character. */
  stopBits: 1 | 1.5 | 2;
}

/** Parity names by the code CDC's bParityType and FTDI's SET_DATA both use (0..4). */
export const PARITY_NAMES = ["none", "odd", "even", "mark", "space"] as const;

/** Stop bits by the code CDC's bCharFormat and FTDI's SET_DATA both use (0..2). */
export const STOP_BITS = [1, 1.5, 2] as const;

/**
 * Formats line settings the way terminal programs do.
 *
 * @example
 * ```ts
 * import { formatLineSettings } from "./char_backend.ts";
 * const text = formatLineSettings({ baudRate: 115200, dataBits: 8, parity: "none", stopBits: 1 });
 * console.assert(text === "115200 8N1");
 * ```
 */
export function formatLineSettings(s: LineSettings): string {
  return `${s.baudRate} ${s.dataBits}${s.parity[0]!.toUpperCase()}${s.stopBits}`;
}

/** Called with the new state when a peer connects or goes away. */
export type BackendStateListener = (connected: boolean) => void;

const DEFAULT_QUEUE_BYTES = 64 * 1024;
const DEFAULT_STALL_MS = 2000;

/** The most bytes moved to or from a peer at a time. */
export const CHUNK = 16 * 1024;

/** Milliseconds from now until `deadline` (a `performance.now()` time), or undefined. */
function _msUntil(deadline: number | undefined): number | undefined {
  return deadline === undefined ? undefined : Math.max(0, deadline - performance.now());
}

/**
 * Takes callers in the order they arrive: each waits until every earlier caller has left, so
 * that transfers queued on one endpoint complete in order.
 */
class _Turnstile {
  #tail: Promise<void> = Promise.resolve();

  /** The function that lets the next caller in, or `undefined` if `signal` aborted first. */
  async enter(signal: AbortSignal): Promise<(() => void) | undefined> {
    const previous = this.#tail;
    let release!: () => void;
    this.#tail = new Promise<void>((r) => release = r);
    if (await waitFor((wake) => void previous.then(wake), signal) === "woken") return release;
    previous.then(release);
    return undefined;
  }
}

/**
 * A character back-end: the far end of an emulated serial line. The device reads input with
 * {@linkcode CharBackend.read} and offers output with {@linkcode CharBackend.write}; both
 * queue their callers in order. Input is bounded by a queue the back-end stops filling when
 * full (the peer then sees TCP or pty flow control). Output is bounded the same way and
 * waits for room; it is dropped, counted in {@linkcode CharBackend.stats} and logged when
 * no peer is connected, when the peer leaves with bytes still queued, or when the back-end
 * has taken nothing for {@linkcode CharBackendOptions.stallTimeoutMs}.
 *
 * @example A loopback echoes what is written
 * ```ts
 * import { openCharBackend } from "./mod.ts";
 * const echo = await openCharBackend("loopback");
 * const signal = new AbortController().signal;
 * await echo.write(new TextEncoder().encode("hi"), signal);
 * const back = await echo.read(16, signal);
 * console.assert(new TextDecoder().decode(back!) === "hi");
 * await echo.close();
 * ```
 */
export abstract class CharBackend {
  /** Which kind of back-end this is. */
  readonly kind: BackendKind;
  /** The device it serves ({@linkcode CharBackendOptions.label}), if given. */
  readonly label: string | undefined;
  /** Logs with the label (see {@linkcode CharBackendOptions.label}). */
  protected readonly log: BackendLogger;
  /** Bytes from the peer, waiting for the device. */
  protected readonly input: ByteQueue;
  /** Bytes from the device, waiting for the peer. */
  protected readonly output: ByteQueue;
  readonly #closer = new AbortController();
  readonly #stallMs: number;
  readonly #reads = new _Turnstile();
  readonly #writes = new _Turnstile();
  readonly #listeners = new Set<BackendStateListener>();
  #connected: boolean;
  #stalled = false;
  #stats: CharBackendStats = { bytesIn: 0, bytesOut: 0, droppedOut: 0 };
  #dropReason: string | undefined;
  #dropBytes = 0;
  #closing: Promise<void> | undefined;
  #line: LineSettings | undefined;
  readonly #lineListeners = new Set<(s: LineSettings) => void>();

  /** Sets up the queues; `loop` makes input and output one queue (an echo). */
  protected constructor(
    kind: BackendKind,
    options: CharBackendOptions,
    connected: boolean,
    loop = false,
  ) {
    this.kind = kind;
    this.label = options.label;
    this.log = backendLogger(options.label);
    const size = options.queueBytes ?? DEFAULT_QUEUE_BYTES;
    this.input = new ByteQueue(size);
    this.output = loop ? this.input : new ByteQueue(size);
    this.#stallMs = options.stallTimeoutMs ?? DEFAULT_STALL_MS;
    this.#connected = connected;
  }

  /** Where the back-end is: `host:port`, a socket, pty or file path, or the kind's name. */
  abstract readonly address: string;

  /** A printable description, e.g. `tcp 127.0.0.1:4555` or `pty /dev/pts/3`. */
  get description(): string {
    return this.address === this.kind ? this.kind : `${this.kind} ${this.address}`;
  }

  /** Whether a peer is there to take output (always true for stdio, file and loopback). */
  get connected(): boolean {
    return this.#connected;
  }

  /** Whether {@linkcode CharBackend.close} was called. */
  get closed(): boolean {
    return this.#closer.signal.aborted;
  }

  /** Input bytes waiting for the device. */
  get inputAvailable(): number {
    return this.input.size;
  }

  /** Output bytes the peer has not taken yet. */
  get outputPending(): number {
    return this.output === this.input ? 0 : this.output.size;
  }

  /** Whether the output queue is full. */
  get outputFull(): boolean {
    return this.output.room === 0;
  }

  /** Byte counts so far (a copy). */
  get stats(): CharBackendStats {
    return { ...this.#stats };
  }

  /** Aborted when the back-end is closing. */
  protected get closing(): AbortSignal {
    return this.#closer.signal;
  }

  /** Calls `listener` whenever the connected state changes; returns the unsubscribe. */
  onStateChange(listener: BackendStateListener): () => void {
    const l: BackendStateListener = (c) => listener(c);
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }

  /** The line settings the device last reported, if any. */
  get lineSettings(): LineSettings | undefined {
    return this.#line && { ...this.#line };
  }

  /**
   * Records the line settings the host set through the device (baud rate, data bits, parity,
   * stop bits); a change is logged and passed to the {@linkcode CharBackend.onLineSettings}
   * listeners. The bytes are carried as they are: no back-end paces or frames them.
   */
  setLineSettings(settings: LineSettings): void {
    const old = this.#line;
    if (
      old !== undefined && old.baudRate === settings.baudRate &&
      old.dataBits === settings.dataBits && old.parity === settings.parity &&
      old.stopBits === settings.stopBits
    ) return;
    this.#line = { ...settings };
    this.log.info("{backend}: line settings {settings}", {
      backend: this.description,
      settings: formatLineSettings(settings),
    });
    for (const l of [...this.#lineListeners]) l({ ...settings });
  }

  /** Calls `listener` whenever the line settings change; returns the unsubscribe. */
  onLineSettings(listener: (settings: LineSettings) => void): () => void {
    const l = (s: LineSettings) => listener(s);
    this.#lineListeners.add(l);
    return () => this.#lineListeners.delete(l);
  }

  /**
   * Reads up to `max` input bytes, in turn with earlier callers. Resolves as soon as at least
   * one byte is there; with an empty array if `timeoutMs` passes first (the time counts from
   * when this caller's turn comes); with `null` if `signal` aborts first.
   */
  async read(max: number, signal: AbortSignal, timeoutMs?: number): Promise<Uint8Array | null> {
    const release = await this.#reads.enter(signal);
    if (release === undefined) return null;
    try {
      const deadline = timeoutMs === undefined ? undefined : performance.now() + timeoutMs;
      while (true) {
        if (signal.aborted) return null;
        if (this.input.size > 0 || max <= 0) {
          const bytes = this.input.take(Math.max(0, max));
          this.#stats.bytesIn += bytes.length;
          return bytes;
        }
        const outcome = await this.input.changed.wait(signal, _msUntil(deadline));
        if (outcome === "aborted") return null;
        if (outcome === "timeout") return new Uint8Array(0);
      }
    } finally {
      release();
    }
  }

  /**
   * Offers output bytes, in turn with earlier callers, waiting while the queue is full.
   * Resolves with `data.length` once every byte was queued or dropped (and counted), or with
   * the number queued so far if `signal` aborts first.
   */
  async write(data: Uint8Array, signal: AbortSignal): Promise<number> {
    const release = await this.#writes.enter(signal);
    if (release === undefined) return 0;
    try {
      let offset = 0;
      let deadline = performance.now() + this.#stallMs;
      while (offset < data.length) {
        if (signal.aborted) return offset;
        const rest = data.length - offset;
        const reason = this.closed
          ? "the back-end is closed"
          : !this.#connected
          ? "no peer is connected"
          : this.#stalled && this.output.room === 0
          ? this.#stallReason()
          : undefined;
        if (reason !== undefined) {
          this.#drop(rest, reason);
          return data.length;
        }
        const n = this.output.push(data.subarray(offset));
        if (n > 0) {
          offset += n;
          this.#stats.bytesOut += n;
          this.#stalled = false;
          this.#endDrops();
          deadline = performance.now() + this.#stallMs;
          continue;
        }
        const outcome = await this.output.changed.wait([signal, this.closing], _msUntil(deadline));
        if (outcome === "timeout") {
          this.#stalled = true;
          this.#drop(rest, this.#stallReason());
          return data.length;
        }
      }
      return data.length;
    } finally {
      release();
    }
  }

  #stallReason(): string {
    return `the back-end took nothing for ${this.#stallMs} ms`;
  }

  /** Counts dropped output bytes; logs when a run of drops starts and when it ends. */
  #drop(n: number, reason: string): void {
    if (n <= 0) return;
    this.#stats.droppedOut += n;
    if (this.#dropReason !== reason) {
      this.#endDrops();
      this.#dropReason = reason;
      this.log.warn("Dropping output for {backend}: {reason}", {
        backend: this.description,
        reason,
      });
    }
    this.#dropBytes += n;
  }

  #endDrops(): void {
    if (this.#dropReason === undefined) return;
    this.log.warn("Dropped {count} output bytes for {backend}: {reason}", {
      count: this.#dropBytes,
      backend: this.description,
      reason: this.#dropReason,
    });
    this.#dropReason = undefined;
    this.#dropBytes = 0;
  }

  /** Records that a peer connected or went away; output still queued for it is dropped. */
  protected setConnected(connected: boolean): void {
    if (connected === this.#connected) return;
    this.#endDrops();
    this.#connected = connected;
    if (!connected && this.output !== this.input) {
      this.#drop(this.output.clear(), "the peer went away before taking them");
      this.#endDrops();
    }
    this.#stalled = false;
    this.log.info(connected ? "{backend}: a peer connected" : "{backend}: the peer went away", {
      backend: this.description,
    });
    this.input.changed.notify();
    this.output.changed.notify();
    for (const l of [...this.#listeners]) {
      try {
        l(connected);
      } catch (e) {
        this.log.error("A state listener of {backend} failed: {error}", {
          backend: this.description,
          error: errorMessage(e),
        });
      }
    }
  }

  /**
   * Moves the peer's bytes into the input queue with `read` (`null` at the end) until the
   * peer ends or `until` aborts, waiting while the queue is full. Bytes read after
   * {@linkcode CharBackend.close} are discarded. Errors of `read` reach the caller.
   */
  protected async pumpInput(
    read: (buffer: Uint8Array) => Promise<number | null>,
    until: AbortSignal,
  ): Promise<void> {
    const buffer = new Uint8Array(CHUNK);
    while (!until.aborted) {
      if (this.input.room === 0) {
        await this.input.changed.wait(until);
        continue;
      }
      const n = await read(buffer.subarray(0, Math.min(CHUNK, this.input.room)));
      if (n === null) break;
      if (!this.closed) this.input.push(buffer.subarray(0, n));
    }
  }

  /**
   * Hands queued output to `write` (which returns how many bytes it took) until `until`
   * aborts, and with `drain` until the queue is empty as well. Errors of `write` reach the
   * caller.
   */
  protected async pumpOutput(
    write: (bytes: Uint8Array) => Promise<number>,
    until: AbortSignal,
    drain = false,
  ): Promise<void> {
    while ((drain && this.output.size > 0) || !until.aborted) {
      if (this.output.size === 0) {
        await this.output.changed.wait(until);
        continue;
      }
      this.output.consume(await write(this.output.peek(CHUNK)));
    }
  }

  /**
   * Stops the back-end and releases everything it holds (listeners, sockets, files, the pty).
   * Output still queued is dropped and counted, except for `file`, which writes it first.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closer.abort();
      this.input.changed.notify();
      this.output.changed.notify();
      await this.shutdown();
      if (this.output !== this.input) this.#drop(this.output.clear(), "the back-end closed");
      this.#endDrops();
    })();
    return this.#closing;
  }

  /** Releases the kind's resources once {@linkcode CharBackend.closing} has aborted. */
  protected abstract shutdown(): Promise<void>;
}
