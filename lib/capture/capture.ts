/**
 * One running capture: a {@linkcode CaptureRecorder} joined to a server's observers, writing
 * into an output that is never allowed to hold sessions back. What the output has not taken
 * yet is bounded: past `maxQueued` bytes records are dropped, counted, logged (at most every
 * ten seconds) and, once the output takes records again, noted in the capture itself. The
 * blocks that start a file (header, descriptors) are never dropped.
 *
 * @module
 */

import { getLogger } from "../logtape.ts";
import type { ExportedDevice } from "../server/exported_device.ts";
import type { UsbipServer } from "../server/server.ts";
import type { ObservedImport, UrbObservers } from "../server/urb_observer.ts";
import { CaptureRecorder } from "./capture_recorder.ts";

const log = getLogger(["usbipgw", "capture"]);

/** Drops are logged at most this often; the line carries the running total. */
const DROP_LOG_INTERVAL_MS = 10_000;

/** Where a capture's blocks go. */
export interface CaptureOutput {
  /**
   * Space for one whole block of `size` bytes, which the caller fills at once (before it
   * yields); the output writes it out after the blocks reserved before it.
   */
  reserve(size: number): Uint8Array;
  /** Bytes reserved and not yet written out. */
  readonly pending: number;
}

/** What a capture watches: a server's observers and the devices imported now. */
export interface CaptureSource {
  /** The server's observers, which the capture joins. */
  readonly observers: UrbObservers;
  /** The imports running now, described when the capture starts or a file begins. */
  imports(): ObservedImport[];
}

/** Options of a {@linkcode Capture}. */
export interface CaptureOptions {
  /** Most bytes of data kept per record; all by default. */
  snaplen?: number;
  /** Which devices' traffic to record; all when absent. */
  includes?: (exported: ExportedDevice) => boolean;
  /** Bytes the output may hold before records are dropped. */
  maxQueued: number;
  /** Names the capture in logs: `capture to /tmp/gw.pcapng`. */
  label: string;
  /** The time in microseconds since the epoch (tests). */
  now?: () => number;
}

/**
 * A capture of `source`'s traffic into `output`; see the module documentation.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { Capture } from "./capture.ts";
 * import { UrbObservers } from "../server/urb_observer.ts";
 * const blocks: Uint8Array[] = [];
 * const observers = new UrbObservers();
 * const output = {
 *   reserve: (size: number) => blocks[blocks.push(new Uint8Array(size)) - 1]!,
 *   pending: 0,
 * };
 * const capture = new Capture({ observers, imports: () => [] }, output, {
 *   maxQueued: 1 << 20,
 *   label: "an example",
 * });
 * capture.start("capture started");
 * assertEquals([observers.active, blocks.length], [true, 2]); // the header, the start line
 * capture.stop();
 * assertEquals(observers.active, false);
 * ```
 */
export class Capture {
  #source: CaptureSource;
  #output: CaptureOutput;
  #maxQueued: number;
  #label: string;
  #recorder: CaptureRecorder;
  #remove: (() => void) | undefined;
  /** While true, writes are not dropped (the start of a file). */
  #essential = false;
  #written = 0;
  #dropped = 0;
  /** Drops not yet noted in the capture. */
  #unnoted = 0;
  #loggedAt = -Infinity;
  #loggedCount = 0;

  /** Prepares a capture; nothing is written until {@linkcode Capture.start}. */
  constructor(source: CaptureSource, output: CaptureOutput, options: CaptureOptions) {
    this.#source = source;
    this.#output = output;
    this.#maxQueued = options.maxQueued;
    this.#label = options.label;
    this.#recorder = new CaptureRecorder((size) => this.#reserve(size), {
      ...(options.snaplen !== undefined ? { snaplen: options.snaplen } : {}),
      ...(options.includes !== undefined ? { includes: options.includes } : {}),
      ...(options.now !== undefined ? { now: options.now } : {}),
    });
  }

  /** Records written to the output. */
  get written(): number {
    return this.#written;
  }

  /** Records dropped because the output held too much. */
  get dropped(): number {
    return this.#dropped;
  }

  /**
   * Writes the header, the line `why`, the devices imported now, and joins the observers.
   */
  start(why: string): void {
    this.begin(why);
    this.#remove ??= this.#source.observers.add(this.#recorder);
  }

  /**
   * Writes what a capture file starts with (at the start and after a rotation): the header,
   * the line `why`, and the descriptors of every device imported now. Never dropped.
   */
  begin(why: string): void {
    this.#essential = true;
    try {
      const header = this.#recorder.header();
      this.#output.reserve(header.length).set(header);
      this.#recorder.note(why);
      for (const i of this.#source.imports()) {
        this.#recorder.describe(i, "before this file began; its descriptors follow");
      }
    } finally {
      this.#essential = false;
    }
  }

  /** Leaves the observers; logs the records dropped, if any. Idempotent. */
  stop(): void {
    this.#remove?.();
    this.#remove = undefined;
    if (this.#dropped > this.#loggedCount) {
      log.warn("{label}: {dropped} record(s) dropped in all: the output did not keep up", {
        label: this.#label,
        dropped: this.#dropped,
      });
      this.#loggedCount = this.#dropped;
    }
  }

  /** Space for a block from the output, or `undefined` (dropped) when it holds too much. */
  #reserve(size: number): Uint8Array | undefined {
    if (this.#essential) {
      this.#written++;
      return this.#output.reserve(size);
    }
    if (this.#output.pending + size > this.#maxQueued) {
      this.#dropped++;
      this.#unnoted++;
      const now = performance.now();
      if (now - this.#loggedAt >= DROP_LOG_INTERVAL_MS) {
        this.#loggedAt = now;
        this.#loggedCount = this.#dropped;
        log.warn(
          "{label}: dropping records: {pending} bytes wait to be written (limit {limit}); {dropped} dropped so far",
          {
            label: this.#label,
            pending: this.#output.pending,
            limit: this.#maxQueued,
            dropped: this.#dropped,
          },
        );
      }
      return undefined;
    }
    if (this.#unnoted > 0) {
      const n = this.#unnoted;
      this.#unnoted = 0;
      this.#essential = true;
      try {
        this.#recorder.note(`${n} record(s) dropped here: the output did not keep up`);
      } finally {
        this.#essential = false;
      }
    }
    this.#written++;
    return this.#output.reserve(size);
  }
}

/**
 * A server as a capture's source: its observers, and its sessions that have imported a
 * device, as they report themselves to observers.
 */
export function serverSource(server: UsbipServer): CaptureSource {
  return {
    observers: server.observers,
    imports: () =>
      server.sessions.flatMap((s) =>
        s.device === undefined
          ? []
          : [{ session: s.id, transport: s.conn.peer.transport, exported: s.device }]
      ),
  };
}
