/**
 * An in-memory connection pair for unit tests of sessions: what one end writes, the other
 * reads. Closing either end ends both directions, as a socket hang-up does: the far end reads
 * what was already sent and then end-of-stream; the closing end's own pending reads end too.
 *
 * @module
 */

import type { Connection } from "./connection.ts";

interface Pipe {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
  shut(): void;
}

function pipe(): Pipe {
  let reader!: ReadableStreamDefaultController<Uint8Array>;
  let writer!: WritableStreamDefaultController;
  let open = true;
  const readable = new ReadableStream<Uint8Array>({
    start(c) {
      reader = c;
    },
    cancel() {
      open = false;
    },
  });
  const writable = new WritableStream<Uint8Array>({
    start(c) {
      writer = c;
    },
    write(chunk) {
      if (!open) throw new Deno.errors.BrokenPipe("The in-memory peer closed");
      reader.enqueue(chunk.slice());
    },
    close() {
      if (open) reader.close();
      open = false;
    },
  });
  return {
    readable,
    writable,
    shut() {
      if (!open) return;
      open = false;
      reader.close();
      writer.error(new Deno.errors.BrokenPipe("The in-memory connection closed"));
    },
  };
}

/**
 * Creates two connected in-memory {@linkcode Connection}s.
 *
 * @example Bytes cross over
 * ```ts
 * import { memoryConnectionPair } from "./memory.ts";
 * const [a, b] = memoryConnectionPair();
 * const w = a.writable.getWriter();
 * await w.write(new Uint8Array([1, 2]));
 * const r = b.readable.getReader();
 * console.assert((await r.read()).value?.length === 2);
 * a.close();
 * console.assert((await r.read()).done);
 * ```
 */
export function memoryConnectionPair(): [Connection, Connection] {
  const ab = pipe();
  const ba = pipe();
  const close = () => {
    ab.shut();
    ba.shut();
  };
  return [
    {
      readable: ba.readable,
      writable: ab.writable,
      peer: { transport: "memory", address: "memory:a" },
      close,
    },
    {
      readable: ab.readable,
      writable: ba.writable,
      peer: { transport: "memory", address: "memory:b" },
      close,
    },
  ];
}
