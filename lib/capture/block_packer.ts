/**
 * Packs whole blocks back to back into large reused buffers ("chunks"), for a capture that
 * writes many large records: a fresh 64 KiB buffer per record costs far more than copying the
 * record (a new allocation of that size is fresh zeroed memory each time, page faults and
 * all), while a chunk that goes back to a small pool once written costs only the copy. A
 * block larger than a chunk gets a buffer of its own. Views are taken in the order the blocks
 * were reserved, each holding whole blocks only.
 *
 * With an alignment (for a file written with `O_DIRECT`), chunks start at aligned addresses and
 * a chunk handed out whole ends with a pcapng padding block that takes its length to a multiple
 * of the alignment, so it can go to the disk as it is. Taking a chunk's blocks before it is full
 * closes it then, so that the blocks after them start a chunk that can again go out whole (the
 * rest of a chunk whose start was taken could not).
 *
 * @module
 */

import { alignedBytes, canAlignMemory } from "../util/aligned_bytes.ts";
import { HUGE_PAGE_BYTES, hugePageBytes } from "../ffi/huge_pages.ts";
import { paddingLength, writePaddingBlock } from "./pcapng.ts";

/** The default size of a chunk. */
const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;
/**
 * Chunks kept for reuse once written: 64 MiB of 4 MiB chunks, what a file capture may hold
 * waiting for its disk. A smaller pool let a busy capture, whose disk now and then fell behind,
 * allocate fresh chunks again and again (50 in a 5 s run with 4, against about a dozen once
 * warm with 16), each 4 MiB of new memory.
 */
const POOL_CHUNKS = 16;

interface Chunk {
  /** Its memory: a chunk's size, and room for a padding block after it when aligned. */
  readonly buf: Uint8Array;
  /** A chunk of the pool's size (not a large block's own buffer). */
  readonly pooled: boolean;
  /** Views of it taken and not yet released. */
  outstanding: number;
  /** No more blocks go into it. */
  retired: boolean;
}

/** Bytes of whole blocks to write, and the function to call once they are written. */
export interface PackedView {
  /** Whole blocks, in order. */
  readonly bytes: Uint8Array;
  /**
   * The bytes start at a multiple of the packer's alignment in memory and their length is a
   * multiple of it: a whole chunk, padded.
   */
  readonly aligned: boolean;
  /** Gives the space back (to the pool, once every view of its chunk is released). */
  release(): void;
}

/**
 * Reserves space for blocks in reused chunks and hands the filled space out in order.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { BlockPacker } from "./block_packer.ts";
 * const packer = new BlockPacker(16);
 * packer.reserve(8).fill(1);
 * packer.reserve(4).fill(2);
 * packer.reserve(8).fill(3); // does not fit: the next chunk
 * const first = packer.take()!;
 * assertEquals(Array.from(first.bytes), [1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2]);
 * first.release();
 * assertEquals(packer.take()!.bytes.length, 8);
 * assertEquals(packer.take(), undefined);
 * ```
 */
export class BlockPacker {
  #chunkBytes: number;
  #alignment: number;
  #pool: Uint8Array[] = [];
  #current: Chunk | undefined;
  /** Where the current chunk's blocks not yet taken start, and where its filled space ends. */
  #start = 0;
  #fill = 0;
  /** Views of retired chunks and of large blocks, not yet taken, in order (counted as out). */
  #ready: { chunk: Chunk; bytes: Uint8Array; aligned: boolean }[] = [];
  #pending = 0;
  #wholeChunks = 0;
  #padding = 0;

  /**
   * Packs into chunks of `chunkBytes` (4 MiB by default). With an `alignment` (a power of two,
   * a multiple of 4, dividing `chunkBytes`), whole chunks are handed out aligned and padded,
   * where the memory's address can be known ({@linkcode alignedBytes}); see `alignment`.
   */
  constructor(chunkBytes = DEFAULT_CHUNK_BYTES, alignment = 0) {
    this.#chunkBytes = chunkBytes;
    this.#alignment = alignment > 0 && canAlignMemory() ? alignment : 0;
  }

  /** The alignment of whole chunks, or 0: none (none asked for, or the address is unknown). */
  get alignment(): number {
    return this.#alignment;
  }

  /** The longest padding block a whole chunk can get (0 without an alignment). */
  get maxPadding(): number {
    return this.#alignment === 0 ? 0 : this.#alignment + 8;
  }

  /** Chunks handed out whole and aligned so far. */
  get wholeChunks(): number {
    return this.#wholeChunks;
  }

  /** Bytes of padding blocks added to them so far. */
  get padding(): number {
    return this.#padding;
  }

  /** Bytes reserved and not yet released. */
  get pending(): number {
    return this.#pending;
  }

  /** Bytes of the blocks in the chunk being filled that were not taken yet. */
  get filling(): number {
    return this.#current === undefined ? 0 : this.#fill - this.#start;
  }

  /**
   * Space for one block of `size` bytes, to fill at once (before the caller yields): its
   * contents are whatever was there before.
   */
  reserve(size: number): Uint8Array {
    this.#pending += size;
    if (this.#current !== undefined && this.#chunkBytes - this.#fill >= size) {
      const view = this.#current.buf.subarray(this.#fill, this.#fill + size);
      this.#fill += size;
      return view;
    }
    this.#retire();
    if (size > this.#chunkBytes) {
      // Counted as out from here: a ready view holds its chunk as a taken one does.
      const own = { buf: new Uint8Array(size), pooled: false, outstanding: 1, retired: true };
      this.#ready.push({ chunk: own, bytes: own.buf, aligned: false });
      return own.buf;
    }
    const buf = this.#pool.pop() ?? this.#newChunk();
    this.#current = { buf, pooled: true, outstanding: 0, retired: false };
    this.#start = 0;
    this.#fill = size;
    return buf.subarray(0, size);
  }

  /** Whether a full chunk (or a block of its own) waits to be taken. */
  get hasFull(): boolean {
    return this.#ready.length > 0;
  }

  /** The oldest full chunk's blocks (or a block of its own), or `undefined`: none is full. */
  takeFull(): PackedView | undefined {
    const next = this.#ready.shift();
    return next === undefined ? undefined : this.#view(next.chunk, next.bytes, next.aligned);
  }

  /**
   * The oldest blocks not yet taken, as one view (a full chunk's, else what the chunk being
   * filled holds), or `undefined` when there are none. With an alignment, taking what the chunk
   * being filled holds also closes it: the next block starts a new chunk.
   */
  take(): PackedView | undefined {
    const full = this.takeFull();
    if (full !== undefined) return full;
    const current = this.#current;
    if (current === undefined || this.#fill === this.#start) return undefined;
    const bytes = current.buf.subarray(this.#start, this.#fill);
    this.#start = this.#fill;
    current.outstanding++;
    if (this.#alignment > 0) this.#retire();
    return this.#view(current, bytes, false);
  }

  /** Forgets everything not yet taken (after a failure); taken views may still be released. */
  clear(): void {
    this.#retire();
    for (const { chunk, bytes } of this.#ready.splice(0)) {
      this.#pending -= bytes.length;
      chunk.outstanding--;
      this.#recycle(chunk);
    }
  }

  /** Memory for a chunk: aligned, with room for the padding, when the packer aligns. */
  #newChunk(): Uint8Array {
    if (this.#alignment === 0) return new Uint8Array(this.#chunkBytes);
    // The longest padding block is the alignment and 8 bytes (paddingLength).
    const length = this.#chunkBytes + this.maxPadding;
    return HUGE_PAGE_BYTES % this.#alignment === 0
      ? hugePageBytes(length)!
      : alignedBytes(length, this.#alignment)!;
  }

  /** A view of `chunk`, counted in its `outstanding` already. */
  #view(chunk: Chunk, bytes: Uint8Array, aligned: boolean): PackedView {
    let released = false;
    return {
      bytes,
      aligned,
      release: () => {
        if (released) return;
        released = true;
        this.#pending -= bytes.length;
        chunk.outstanding--;
        this.#recycle(chunk);
      },
    };
  }

  /** Closes the current chunk: what it holds and was not taken becomes a ready view. */
  #retire(): void {
    const current = this.#current;
    if (current === undefined) return;
    this.#current = undefined;
    current.retired = true;
    if (this.#fill === this.#start) {
      this.#recycle(current);
      return;
    }
    current.outstanding++;
    let end = this.#fill;
    // A chunk handed out whole is padded to the alignment; nothing else is written into it.
    const whole = this.#alignment > 0 && this.#start === 0;
    if (whole) {
      const padding = paddingLength(end, this.#alignment);
      if (padding > 0) writePaddingBlock(current.buf.subarray(end, end + padding));
      end += padding;
      this.#pending += padding;
      this.#padding += padding;
      this.#wholeChunks++;
    }
    this.#ready.push({
      chunk: current,
      bytes: current.buf.subarray(this.#start, end),
      aligned: whole,
    });
  }

  /** A retired chunk with no view out goes back to the pool (if it is a chunk's size). */
  #recycle(chunk: Chunk): void {
    if (!chunk.retired || chunk.outstanding > 0) return;
    if (chunk.pooled && this.#pool.length < POOL_CHUNKS) {
      this.#pool.push(chunk.buf);
    }
  }
}
