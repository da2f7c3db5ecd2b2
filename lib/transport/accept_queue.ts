/**
 * The connections a push-style server (`node:net`'s "connection" events) has accepted, handed
 * out one by one to a `for await` loop: the pull side of a {@linkcode Listener}.
 *
 * @module
 */

import type { Connection } from "./connection.ts";

/**
 * A queue of accepted connections with at most one waiting reader.
 *
 * @example
 * ```ts
 * import { AcceptQueue } from "./accept_queue.ts";
 * import { memoryConnectionPair } from "./memory.ts";
 * const q = new AcceptQueue();
 * const [a, b] = memoryConnectionPair();
 * q.push(b);
 * q.close();
 * const got = [];
 * for await (const c of q) got.push(c);
 * console.assert(got.length === 0, "closing closes what was not taken");
 * a.close();
 * ```
 */
export class AcceptQueue {
  #queue: Connection[] = [];
  #waiter: ((c: Connection | null) => void) | undefined;
  #closed = false;

  /** Whether {@linkcode AcceptQueue.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Hands `conn` to the waiting reader, or queues it; closes it if the queue is closed. */
  push(conn: Connection): void {
    if (this.#closed) {
      conn.close();
      return;
    }
    const w = this.#waiter;
    this.#waiter = undefined;
    if (w) w(conn);
    else this.#queue.push(conn);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Connection> {
    while (true) {
      const next = this.#queue.shift() ??
        (this.#closed ? null : await new Promise<Connection | null>((r) => this.#waiter = r));
      if (next === null) return;
      yield next;
    }
  }

  /** Ends the iteration and closes the connections nobody took. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const c of this.#queue.splice(0)) c.close();
    this.#waiter?.(null);
    this.#waiter = undefined;
  }
}
