/**
 * A pool of payload buffers, reused by exact size, most recently returned first.
 *
 * @module
 */

import { WireSize } from "./constants.ts";

/**
 * What a device keeps of the IN buffers the server released (see `TransferResult.release`), to
 * fill them again: a few of the largest transfers (a 1 MiB SCSI command at SuperSpeed). A fresh
 * buffer per transfer costs zeroing, page faults when it is first written, and garbage
 * collection: most of a large IN transfer's cost in the gateway.
 */
export const DEVICE_IN_POOL_BYTES = 4 * 1024 * 1024;

/**
 * A device's pool of IN buffers ({@linkcode DEVICE_IN_POOL_BYTES}), each made with room for a
 * RET_SUBMIT header in front, so that the server sends header and data as one write without
 * copying the data (`TransferResult.headroom` in lib/devices/usb_device.ts).
 */
export function deviceInPool(): BufferPool {
  return new BufferPool(DEVICE_IN_POOL_BYTES, undefined, WireSize.URB_HEADER);
}

/**
 * Reuses payload buffers (the OUT data of CMD_SUBMITs) by exact size. A fresh 16 or 64 KiB
 * buffer per transfer costs an allocation, zeroing and garbage collection; a reused one costs
 * none of that, and the one handed out is the one returned last, still warm in the CPU caches.
 * A server shares one pool among all its sessions, so hundreds of sessions keep a few warm
 * buffers rather than a cold set each, and idle sessions hold none.
 *
 * The pool keeps at most `maxBytes` of buffers; to make room for a size in use it drops
 * buffers of other sizes. Only whole buffers of `minSize` bytes or more are taken back, and a
 * buffer already in the pool is never taken twice (that would hand it to two readers at once).
 *
 * @example
 * ```ts
 * import { BufferPool } from "./buffer_pool.ts";
 * const pool = new BufferPool(1 << 20);
 * const a = new Uint8Array(16384);
 * pool.give(a);
 * console.assert(pool.take(16384) === a);
 * console.assert(pool.take(16384) === undefined);
 * ```
 */
export class BufferPool {
  /** Most pooled bytes in all. */
  readonly maxBytes: number;
  /** Smaller buffers are not pooled (allocating them is cheap). */
  readonly minSize: number;
  #lists = new Map<number, Uint8Array[]>();
  /** The buffers in the lists, to refuse one given twice (a Set: a WeakSet costs the GC more). */
  #members = new Set<ArrayBufferLike>();
  #bytes = 0;
  /**
   * Bytes in front of each buffer this pool makes, in the same memory: room for a message's
   * header, so that header and data go out as one write without a copy (see
   * {@linkcode BufferPool.handOver}). Only buffers with this room in front are taken back.
   */
  readonly headroom: number;

  /**
   * A pool of at most `maxBytes`, of buffers of at least `minSize` bytes, each made with
   * `headroom` bytes in front of it.
   */
  constructor(maxBytes: number, minSize = 4096, headroom = 0) {
    this.maxBytes = maxBytes;
    this.minSize = minSize;
    this.headroom = headroom;
  }

  /** Bytes held in the pool now. */
  get bytes(): number {
    return this.#bytes;
  }

  /** A pooled buffer of exactly `n` bytes, the last one returned; `undefined` if none. */
  take(n: number): Uint8Array | undefined {
    const b = this.#lists.get(n)?.pop();
    if (b === undefined) return undefined;
    this.#bytes -= n;
    this.#members.delete(b.buffer);
    return b;
  }

  /**
   * A buffer of `n` bytes to fill and hand out (IN data): a pooled one, or a fresh one (with
   * the pool's headroom in front); `undefined` under `minSize`, where pooling is not worth it.
   * {@linkcode handOver} makes the result that gives it back.
   */
  lend(n: number): Uint8Array | undefined {
    if (n < this.minSize) return undefined;
    return this.take(n) ??
      (this.headroom === 0
        ? new Uint8Array(n)
        : new Uint8Array(new ArrayBuffer(this.headroom + n), this.headroom, n));
  }

  /**
   * The data of a transfer result (`TransferResult` of lib/devices/usb_device.ts) whose bytes
   * came from `lent` ({@linkcode lend}), with a `release` that gives `lent` back, and with the
   * pool's `headroom` when `data` starts where `lent` does (the bytes in front are then free for
   * the reply's header until the release). Only `data` when nothing was lent or `data` lies
   * elsewhere (a reader that returned a buffer of its own).
   */
  handOver(
    lent: Uint8Array | undefined,
    data: Uint8Array,
  ): { data: Uint8Array; release?: () => void; headroom?: number } {
    if (lent === undefined || data.buffer !== lent.buffer) return { data };
    const release = () => this.give(lent);
    const atStart = this.headroom > 0 && data.byteOffset === lent.byteOffset;
    return atStart ? { data, release, headroom: this.headroom } : { data, release };
  }

  /**
   * Returns `buffer` for reuse; its owner must not touch it afterwards. Other views into a
   * larger buffer (anything but the pool's headroom in front), buffers under `minSize` or over
   * `maxBytes`, and a buffer already pooled are left alone (to the garbage collector, or where
   * they are).
   */
  give(buffer: Uint8Array): void {
    const n = buffer.length;
    if (
      n < this.minSize || n > this.maxBytes || buffer.byteOffset !== this.headroom ||
      buffer.buffer.byteLength !== this.headroom + n || this.#members.has(buffer.buffer)
    ) {
      return;
    }
    if (this.#bytes + n > this.maxBytes) this.#evictFor(n);
    if (this.#bytes + n > this.maxBytes) return;
    let list = this.#lists.get(n);
    if (list === undefined) this.#lists.set(n, list = []);
    list.push(buffer);
    this.#members.add(buffer.buffer);
    this.#bytes += n;
  }

  /** Drops buffers of sizes other than `n`, oldest size first, until `n` bytes fit. */
  #evictFor(n: number): void {
    for (const [size, list] of this.#lists) {
      if (size === n) continue;
      while (list.length > 0 && this.#bytes + n > this.maxBytes) {
        this.#members.delete(list.pop()!.buffer);
        this.#bytes -= size;
      }
      if (list.length === 0) this.#lists.delete(size);
      if (this.#bytes + n <= this.maxBytes) return;
    }
  }
}
