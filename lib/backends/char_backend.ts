/**
 * Character back-ends for the emulated serial devices, after QEMU's chardevs: `stdio`,
 * `tcp:HOST:PORT` (server), `tcp-connect:HOST:PORT`, `unix:PATH` (server), `pty`,
 * `file:PATH` (output only) and `loopback` (echo). Each is a duplex byte pipe with bounded
 * queues and back-pressure both ways; bytes the device offers that cannot be delivered are
 * counted and logged, never dropped silently.
 *
 * @module
 */

import {
  type Connection,
  type DirectIo,
  formatHostPort,
  type Listener,
} from "../transport/connection.ts";
import { parseHostPort, TcpListener, wrapTcpConn } from "../transport/tcp.ts";
import { UnixListener } from "../transport/unix.ts";
import { ConnectError, connectError } from "../transport/connect_error.ts";
import { PollEvent, PtyMaster } from "./_pty.ts";
import { ByteQueue } from "./byte_queue.ts";
import { BackendOpenError, listenFailed, pathFailed } from "./backend_error.ts";
import { type BackendLogger, backendLogger } from "./_backend_log.ts";

/** A parsed back-end description (the `backend=` option of the serial devices). */
export type BackendSpec =
  | { kind: "stdio" }
  | { kind: "tcp"; hostname: string; port: number }
  | { kind: "tcp-connect"; hostname: string; port: number }
  | { kind: "unix"; path: string }
  | { kind: "pty" }
  | { kind: "file"; path: string }
  | { kind: "loopback" };

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

/**
 * Parses a back-end description: `stdio`, `tcp:HOST:PORT`, `tcp-connect:HOST:PORT`,
 * `unix:PATH`, `pty`, `file:PATH` or `loopback`. IPv6 hosts are bracketed (`tcp:[::1]:4555`).
 * A `tcp` server may use port 0 (any free port).
 *
 * @throws {TypeError} If the text names no known back-end or its address is malformed.
 *
 * @example
 * ```ts
 * import { parseBackendSpec } from "./char_backend.ts";
 * const spec = parseBackendSpec("tcp:127.0.0.1:4555");
 * console.assert(spec.kind === "tcp" && spec.port === 4555);
 * ```
 */
export function parseBackendSpec(text: string): BackendSpec {
  const i = text.indexOf(":");
  const kind = i < 0 ? text : text.slice(0, i);
  const rest = i < 0 ? undefined : text.slice(i + 1);
  const bare = (k: "stdio" | "pty" | "loopback"): BackendSpec => {
    if (rest !== undefined) {
      throw new TypeError(`Invalid back-end "${text}": ${k} takes no argument`);
    }
    return { kind: k };
  };
  const address = (k: "tcp" | "tcp-connect"): BackendSpec => {
    if (rest === undefined || !/:\d+$/.test(rest)) {
      throw new TypeError(`Invalid back-end "${text}": expected ${k}:HOST:PORT`);
    }
    let hostname: string;
    let port: number;
    try {
      ({ hostname, port } = parseHostPort(rest, 0, {
        role: k === "tcp" ? "listen" : "connect",
      }));
    } catch (e) {
      throw new TypeError(`Invalid back-end "${text}": ${(e as Error).message}`);
    }
    return { kind: k, hostname, port };
  };
  const path = (k: "unix" | "file"): BackendSpec => {
    if (rest === undefined || rest === "") {
      throw new TypeError(`Invalid back-end "${text}": expected ${k}:PATH`);
    }
    return { kind: k, path: rest };
  };
  switch (kind) {
    case "stdio":
    case "pty":
    case "loopback":
      return bare(kind);
    case "tcp":
    case "tcp-connect":
      return address(kind);
    case "unix":
    case "file":
      return path(kind);
    default:
      throw new TypeError(
        `Invalid back-end "${text}": expected one of stdio, tcp:HOST:PORT, ` +
          "tcp-connect:HOST:PORT, unix:PATH, pty, file:PATH, loopback",
      );
  }
}

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
const CHUNK = 16 * 1024;
const PTY_HANGUP_RECHECK_MS = 250;

/** Resolves `true` when `p` settles first, `false` when `signal` aborts first. */
function _untilOrAbort(p: Promise<unknown>, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => resolve(false);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    });
  });
}

/** Waits `ms` milliseconds or until `signal` aborts; leaves no timer behind. */
function _sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
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
    if (await _untilOrAbort(previous, signal)) return release;
    previous.then(release);
    return undefined;
  }
}

/** Direct I/O over a connection's web streams, for transports without `direct`. */
function _streamIo(conn: Connection): DirectIo {
  const reader = conn.readable.getReader();
  const writer = conn.writable.getWriter();
  let left: Uint8Array = new Uint8Array(0);
  return {
    async read(buffer) {
      if (left.length === 0) {
        const r = await reader.read();
        if (r.done) return null;
        left = r.value;
      }
      const n = Math.min(buffer.length, left.length);
      buffer.set(left.subarray(0, n));
      left = left.subarray(n);
      return n;
    },
    async write(buffer) {
      await writer.write(buffer.slice());
      return buffer.length;
    },
  };
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
 * import { openCharBackend } from "./char_backend.ts";
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
  readonly kind: BackendSpec["kind"];
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
    kind: BackendSpec["kind"],
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
        const outcome = await this.input.changed.wait([signal], deadline);
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
        const outcome = await this.output.changed.wait([signal, this.closing], deadline);
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
          error: e instanceof Error ? e.message : String(e),
        });
      }
    }
  }

  /**
   * Moves bytes between a connection and the queues until either side ends or the back-end
   * closes; marks the back-end connected meanwhile. Closes the connection.
   */
  protected async serveConnection(conn: Connection): Promise<void> {
    if (this.closed) {
      conn.close();
      return;
    }
    const io = conn.direct ?? _streamIo(conn);
    const stop = new AbortController();
    const end = () => {
      stop.abort();
      conn.close();
    };
    this.closing.addEventListener("abort", end, { once: true });
    this.setConnected(true);
    const reader = (async () => {
      const buffer = new Uint8Array(CHUNK);
      try {
        while (!stop.signal.aborted) {
          if (this.input.room === 0) {
            if (await this.input.changed.wait([stop.signal]) === "aborted") break;
            continue;
          }
          const n = await io.read(buffer.subarray(0, Math.min(CHUNK, this.input.room)));
          if (n === null) break;
          this.input.push(buffer.subarray(0, n));
        }
      } catch {
        // Reset by the peer, or closed under the read.
      } finally {
        end();
      }
    })();
    const writer = (async () => {
      try {
        while (!stop.signal.aborted) {
          if (this.output.size === 0) {
            if (await this.output.changed.wait([stop.signal]) === "aborted") break;
            continue;
          }
          // A copy: some sockets keep the buffer after write() resolves.
          const n = await io.write(this.output.peek(CHUNK).slice());
          this.output.consume(n);
        }
      } catch {
        // The peer went away; what is still queued is counted as dropped below.
      } finally {
        end();
      }
    })();
    await Promise.all([reader, writer]);
    this.closing.removeEventListener("abort", end);
    this.setConnected(false);
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

class _LoopbackBackend extends CharBackend {
  readonly address = "loopback";
  constructor(options: CharBackendOptions) {
    super("loopback", options, true, true);
  }
  protected shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** A server that takes one client at a time and refuses others while one is connected. */
class _ServerBackend extends CharBackend {
  readonly address: string;
  #listener: Listener;
  #accepting: Promise<void>;
  #client: Connection | undefined;
  #serving: Promise<void> = Promise.resolve();

  constructor(
    kind: "tcp" | "unix",
    listener: Listener,
    address: string,
    options: CharBackendOptions,
  ) {
    super(kind, options, false);
    this.#listener = listener;
    this.address = address;
    this.#accepting = this.#accept();
    this.log.info("{backend}: waiting for a client", { backend: this.description });
  }

  async #accept(): Promise<void> {
    for await (const conn of this.#listener) {
      if (this.#client !== undefined || this.closed) {
        this.log.warn("{backend}: refused {peer}, a client is already connected", {
          backend: this.description,
          peer: conn.peer.address,
        });
        conn.close();
        continue;
      }
      this.#client = conn;
      this.#serving = this.serveConnection(conn).finally(() => this.#client = undefined);
    }
  }

  protected async shutdown(): Promise<void> {
    this.#listener.close();
    this.#client?.close();
    await this.#accepting;
    await this.#serving;
  }
}

class _TcpConnectBackend extends CharBackend {
  readonly address: string;
  #running: Promise<void>;

  constructor(hostname: string, port: number, options: CharBackendOptions) {
    super("tcp-connect", options, false);
    this.address = formatHostPort(hostname, port);
    this.#running = this.#run(hostname, port, options);
  }

  async #run(hostname: string, port: number, options: CharBackendOptions): Promise<void> {
    const min = options.reconnectMinMs ?? 100;
    const max = options.reconnectMaxMs ?? 5000;
    let delay = min;
    let failures = 0;
    while (!this.closed) {
      let conn: Connection;
      try {
        conn = wrapTcpConn(
          await Deno.connect({ transport: "tcp", hostname, port, signal: this.closing }),
        );
      } catch (e) {
        if (this.closed) break;
        failures++;
        const why = connectError(this.address, "tcp", e);
        const fields = {
          backend: this.description,
          error: why instanceof ConnectError ? why.detail : why.message,
          delay,
        };
        if (failures === 1) this.log.warn("{backend}: cannot connect: {error}; retrying", fields);
        else this.log.debug("{backend}: cannot connect: {error}; retrying in {delay} ms", fields);
        await _sleep(delay, this.closing);
        delay = Math.min(max, delay * 2);
        continue;
      }
      failures = 0;
      delay = min;
      await this.serveConnection(conn);
      await _sleep(min, this.closing);
    }
  }

  protected async shutdown(): Promise<void> {
    await this.#running;
  }
}

class _FileBackend extends CharBackend {
  readonly address: string;
  #file: Deno.FsFile;
  #writing: Promise<void>;

  constructor(path: string, file: Deno.FsFile, options: CharBackendOptions) {
    super("file", options, true);
    this.address = path;
    this.#file = file;
    this.#writing = this.#write();
  }

  async #write(): Promise<void> {
    try {
      while (this.output.size > 0 || !this.closed) {
        if (this.output.size === 0) {
          await this.output.changed.wait([this.closing]);
          continue;
        }
        this.output.consume(await this.#file.write(this.output.peek(CHUNK)));
      }
    } catch (e) {
      this.log.error("{backend}: cannot write: {error}", {
        backend: this.description,
        error: e instanceof Error ? e.message : String(e),
      });
      this.setConnected(false);
    }
  }

  protected async shutdown(): Promise<void> {
    await this.#writing;
    this.#file.close();
  }
}

class _StdioBackend extends CharBackend {
  readonly address = "stdio";
  #writing: Promise<void>;

  constructor(options: CharBackendOptions) {
    super("stdio", options, true);
    this.#writing = this.#write();
    this.#read();
  }

  /** Not awaited on close: a read of stdin cannot be cancelled and ends with the process. */
  async #read(): Promise<void> {
    const buffer = new Uint8Array(CHUNK);
    try {
      while (!this.closed) {
        if (this.input.room === 0) {
          await this.input.changed.wait([this.closing]);
          continue;
        }
        const n = await Deno.stdin.read(buffer.subarray(0, Math.min(CHUNK, this.input.room)));
        if (n === null) break;
        if (!this.closed) this.input.push(buffer.subarray(0, n));
      }
    } catch {
      // stdin was closed.
    }
  }

  async #write(): Promise<void> {
    try {
      while (!this.closed) {
        if (this.output.size === 0) {
          await this.output.changed.wait([this.closing]);
          continue;
        }
        this.output.consume(await Deno.stdout.write(this.output.peek(CHUNK)));
      }
    } catch {
      this.setConnected(false);
    }
  }

  protected async shutdown(): Promise<void> {
    await this.#writing;
  }
}

class _PtyBackend extends CharBackend {
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
        error: e instanceof Error ? e.message : String(e),
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
 * Opens a back-end. Servers (`tcp`, `unix`) listen at once and take one client at a time: a
 * second client is accepted and closed straight away (and logged) while one is connected.
 * `tcp-connect` connects in the background and reconnects with a backoff doubling from
 * {@linkcode CharBackendOptions.reconnectMinMs} to `reconnectMaxMs`. `pty` logs the slave's
 * path (also in {@linkcode CharBackend.address}); its slave starts in raw mode, and each
 * {@linkcode CharBackend.setLineSettings} change is set on the slave's termios (the speed when
 * it is a termios rate such as 115200, and the stop bits; Linux keeps a pty at 8 bits without
 * parity), where `stty -F PATH` and programs on the slave see it. `file` appends output and never has input.
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
  const label = options.label;
  switch (s.kind) {
    case "loopback":
      return new _LoopbackBackend(options);
    case "stdio":
      return new _StdioBackend(options);
    case "tcp": {
      let listener: TcpListener;
      try {
        listener = new TcpListener({ hostname: s.hostname, port: s.port });
      } catch (e) {
        throw listenFailed("tcp back-end", `on ${formatHostPort(s.hostname, s.port)}`, e, label);
      }
      return new _ServerBackend(
        "tcp",
        listener,
        formatHostPort(s.hostname, listener.port),
        options,
      );
    }
    case "unix": {
      let listener: UnixListener;
      try {
        listener = await UnixListener.listen({ path: s.path, mode: options.unixMode ?? 0o600 });
      } catch (e) {
        throw listenFailed("unix back-end", `on ${s.path}`, e, label);
      }
      return new _ServerBackend("unix", listener, s.path, options);
    }
    case "tcp-connect":
      return new _TcpConnectBackend(s.hostname, s.port, options);
    case "file": {
      let file: Deno.FsFile;
      try {
        file = await Deno.open(s.path, { write: true, append: true, create: true });
      } catch (e) {
        throw await pathFailed("file back-end", s.path, e, "create", label);
      }
      return new _FileBackend(s.path, file, options);
    }
    case "pty": {
      let pty: PtyMaster;
      try {
        pty = PtyMaster.open();
      } catch (e) {
        const detail = (e instanceof Error ? e.message : String(e)).replace(
          /^Cannot open a pty: /,
          "",
        );
        throw new BackendOpenError({ what: "pty back-end", detail, label, cause: e });
      }
      return new _PtyBackend(pty, options);
    }
  }
}
