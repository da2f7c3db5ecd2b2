/**
 * Writes whole messages to a connection in order, each as one buffer, without making the
 * caller wait: a message written while another is in flight is queued, and queued messages go
 * out together in the next write. Uses the connection's direct I/O when it has one.
 *
 * @module
 */

import type { Connection } from "./connection.ts";

/** Messages are coalesced into one write up to this many bytes; larger ones go alone. */
const MAX_BATCH = 16 * 1024;

/**
 * An ordered, non-blocking message writer.
 *
 * @example
 * ```ts
 * import { ReplyWriter } from "./reply_writer.ts";
 * import { memoryConnectionPair } from "./memory.ts";
 * const [a, b] = memoryConnectionPair();
 * const w = new ReplyWriter(a, () => {});
 * w.write(new Uint8Array([1]));
 * w.write(new Uint8Array([2]));
 * await w.flush();
 * const r = b.readable.getReader();
 * console.assert((await r.read()).value?.[0] === 1);
 * a.close();
 * ```
 */
export class ReplyWriter {
  #conn: Connection;
  #writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  #queue: Uint8Array[] = [];
  /** The `written` callbacks of the messages in `#queue`, index for index. */
  #queueWritten: ((() => void) | undefined)[] = [];
  /** The `written` callbacks of the messages in the write under way. */
  #writing: (() => void)[] = [];
  #queued = 0;
  #busy = false;
  #failed = false;
  #idle: (() => void)[] = [];
  /** Waiters of {@linkcode ReplyWriter.drained}: each resolves once `#queued <= bytes`. */
  #draining: { bytes: number; resolve(): void }[] = [];
  #released = false;
  #onError: (e: unknown) => void;

  /** Writes to `conn`; `onError` hears of the first failed write, after which writes are dropped. */
  constructor(conn: Connection, onError: (e: unknown) => void) {
    this.#conn = conn;
    this.#onError = onError;
    if (conn.direct === undefined) this.#writer = conn.writable.getWriter();
  }

  /** Bytes accepted and not yet handed to the socket. */
  get pending(): number {
    return this.#queued;
  }

  /**
   * Queues `message`; it goes out after every message written before it. `written` is called
   * once the connection has taken all of `message` (or a copy of it), so that its buffer may be
   * used again; never if writing fails.
   */
  write(message: Uint8Array, written?: () => void): void {
    if (this.#failed) return;
    if (this.#busy) {
      this.#queue.push(message);
      this.#queueWritten.push(written);
      this.#queued += message.length;
      return;
    }
    if (written !== undefined) this.#writing.push(written);
    this.#run(message);
  }

  async #run(first: Uint8Array): Promise<void> {
    this.#busy = true;
    let next: Uint8Array | undefined = first;
    try {
      while (next !== undefined && !this.#failed) {
        await this.#writeAll(next);
        if (this.#writing.length > 0) this.#wrote();
        next = this.#take();
        if (this.#draining.length > 0) this.#wakeDrained();
      }
    } catch (e) {
      this.#failed = true;
      this.#queue.length = 0;
      this.#queueWritten.length = 0;
      this.#writing.length = 0;
      this.#queued = 0;
      this.#onError(e);
    } finally {
      this.#busy = false;
      for (const r of this.#idle.splice(0)) r();
      this.#wakeDrained();
    }
  }

  /** Calls the `written` callbacks of the write just done. */
  #wrote(): void {
    const done = this.#writing;
    this.#writing = [];
    for (const f of done) f();
  }

  #wakeDrained(): void {
    const done = this.#failed || this.#released;
    this.#draining = this.#draining.filter((w) => {
      if (!done && this.#queued > w.bytes) return true;
      w.resolve();
      return false;
    });
  }

  /**
   * Resolves once at most `bytes` are queued, or writing failed, or the writer is released:
   * a reader of requests waits on it to apply back-pressure to a peer that does not read its
   * replies.
   */
  drained(bytes: number): Promise<void> {
    if (this.#queued <= bytes || this.#failed || this.#released) return Promise.resolve();
    return new Promise((resolve) => this.#draining.push({ bytes, resolve }));
  }

  /**
   * Takes the next queued message, or several small ones joined into one buffer (up to
   * MAX_BATCH bytes): joining saves system calls for small replies, while a large reply is
   * cheaper to write alone than to copy.
   */
  #take(): Uint8Array | undefined {
    if (this.#queue.length <= 1 || this.#queue[0]!.length + this.#queue[1]!.length > MAX_BATCH) {
      const one = this.#queue.shift();
      const written = this.#queueWritten.shift();
      if (written !== undefined) this.#writing.push(written);
      this.#queued -= one?.length ?? 0;
      return one;
    }
    let size = 0;
    let count = 0;
    for (const m of this.#queue) {
      if (count > 0 && size + m.length > MAX_BATCH) break;
      size += m.length;
      count++;
    }
    const batch = new Uint8Array(size);
    let o = 0;
    for (const m of this.#queue.splice(0, count)) {
      batch.set(m, o);
      o += m.length;
    }
    for (const written of this.#queueWritten.splice(0, count)) {
      if (written !== undefined) this.#writing.push(written);
    }
    this.#queued -= size;
    return batch;
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    const direct = this.#conn.direct;
    if (direct === undefined) return await this.#writer!.write(bytes);
    let off = 0;
    while (off < bytes.length) off += await direct.write(off === 0 ? bytes : bytes.subarray(off));
  }

  /** Resolves once everything queued so far has been written (or writing failed). */
  flush(): Promise<void> {
    if (!this.#busy) return Promise.resolve();
    return new Promise((r) => this.#idle.push(r));
  }

  /** Releases the stream writer, if one was taken; waiters of `drained` resolve. */
  release(): void {
    this.#released = true;
    this.#wakeDrained();
    try {
      this.#writer?.releaseLock();
    } catch {
      // Pending writes still hold it; closing the connection ends them.
    }
  }
}
