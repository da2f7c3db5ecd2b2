/**
 * A bounded byte FIFO over one fixed ring buffer, with waiters that are told of every change;
 * the building block of the character back-ends' back-pressure (no spec; plain data structure).
 *
 * @module
 */

import { Notifier } from "../../util/wait.ts";

/**
 * A FIFO of at most `capacity` bytes held in one ring buffer allocated up front, so its memory
 * never grows. {@linkcode ByteQueue.push} takes what fits; {@linkcode ByteQueue.changed}
 * fires after every push and every take.
 *
 * @example Pushing more than fits
 * ```ts
 * import { ByteQueue } from "./byte_queue.ts";
 * const q = new ByteQueue(4);
 * console.assert(q.push(new Uint8Array([1, 2, 3, 4, 5, 6])) === 4);
 * console.assert(q.take(3).join() === "1,2,3" && q.size === 1 && q.room === 3);
 * ```
 */
export class ByteQueue {
  /** Fires after every push or take that moved bytes, and on {@linkcode ByteQueue.clear}. */
  readonly changed: Notifier = new Notifier();
  #ring: Uint8Array;
  #head = 0;
  #size = 0;

  /**
   * Creates an empty queue.
   *
   * @throws {RangeError} If `capacity` is not a positive integer.
   */
  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`Cannot create a byte queue of ${capacity} bytes: expected 1 or more`);
    }
    this.#ring = new Uint8Array(capacity);
  }

  /** The most bytes the queue holds. */
  get capacity(): number {
    return this.#ring.length;
  }

  /** Bytes queued. */
  get size(): number {
    return this.#size;
  }

  /** Bytes that still fit. */
  get room(): number {
    return this.#ring.length - this.#size;
  }

  /** Copies as much of `data` as fits to the tail; returns how many bytes it took. */
  push(data: Uint8Array): number {
    const cap = this.#ring.length;
    const n = Math.min(data.length, cap - this.#size);
    if (n === 0) return 0;
    const tail = (this.#head + this.#size) % cap;
    const first = Math.min(n, cap - tail);
    this.#ring.set(data.subarray(0, first), tail);
    if (first < n) this.#ring.set(data.subarray(first, n), 0);
    this.#size += n;
    this.changed.notify();
    return n;
  }

  /** A view of up to `max` bytes at the head, without removing them (valid until a push). */
  peek(max: number): Uint8Array {
    const n = Math.min(max, this.#size, this.#ring.length - this.#head);
    return this.#ring.subarray(this.#head, this.#head + n);
  }

  /** Removes `n` bytes (at most {@linkcode ByteQueue.size}) from the head. */
  consume(n: number): void {
    const k = Math.min(n, this.#size);
    if (k <= 0) return;
    this.#head = (this.#head + k) % this.#ring.length;
    this.#size -= k;
    if (this.#size === 0) this.#head = 0;
    this.changed.notify();
  }

  /** Removes and returns (a copy of) up to `max` bytes from the head. */
  take(max: number): Uint8Array {
    const n = Math.min(max, this.#size);
    const out = new Uint8Array(n);
    const first = Math.min(n, this.#ring.length - this.#head);
    out.set(this.#ring.subarray(this.#head, this.#head + first));
    if (first < n) out.set(this.#ring.subarray(0, n - first), first);
    this.consume(n);
    return out;
  }

  /** Empties the queue; returns how many bytes were thrown away. */
  clear(): number {
    const n = this.#size;
    this.#head = 0;
    this.#size = 0;
    this.changed.notify();
    return n;
  }
}
