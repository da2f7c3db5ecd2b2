// Tests of ReplyWriter: order, one buffer per message, coalescing of small messages, failures.
import { assert, assertEquals } from "@std/assert";
import type { Connection } from "../../mod.ts";
import type { DirectIo } from "../../lib/transport/connection.ts";
import { ReplyWriter } from "../../lib/transport/reply_writer.ts";

/** A connection with direct I/O only, whose writes `write` answers. */
function directConnection(write: DirectIo["write"]): Connection {
  return {
    get readable(): ReadableStream<Uint8Array> {
      throw new Error("not used");
    },
    get writable(): WritableStream<Uint8Array> {
      throw new Error("not used");
    },
    peer: { transport: "memory", address: "test" },
    direct: { read: () => Promise.resolve(null), write },
    close() {},
  };
}

/** A connection whose direct writes are recorded and complete when the test says. */
function recordingConnection(accept = (b: Uint8Array) => b.length) {
  const writes: Uint8Array[] = [];
  const gates: (() => void)[] = [];
  const conn = directConnection((b) => {
    writes.push(b.slice());
    return new Promise((resolve) => gates.push(() => resolve(accept(b))));
  });
  return { conn, writes, gates };
}

Deno.test("ReplyWriter writes messages in order and joins small ones queued behind a write", async () => {
  const { conn, writes, gates } = recordingConnection();
  const w = new ReplyWriter(conn, () => {});
  w.write(new Uint8Array([1]));
  w.write(new Uint8Array([2, 2]));
  w.write(new Uint8Array([3]));
  assertEquals(writes.length, 1, "one write in flight at a time");
  assertEquals(w.pending, 3);
  gates.shift()!();
  await new Promise((r) => setTimeout(r, 0));
  assertEquals(writes.map((b) => [...b]), [[1], [2, 2, 3]]);
  gates.shift()!();
  await w.flush();
  assertEquals(w.pending, 0);
});

Deno.test("ReplyWriter writes a large message alone rather than copying it into a batch", async () => {
  const { conn, writes, gates } = recordingConnection();
  const w = new ReplyWriter(conn, () => {});
  w.write(new Uint8Array(10));
  w.write(new Uint8Array(65536));
  w.write(new Uint8Array(20));
  while (writes.length < 3) {
    gates.shift()?.();
    await new Promise((r) => setTimeout(r, 0));
  }
  gates.shift()?.();
  await w.flush();
  assertEquals(writes.map((b) => b.length), [10, 65536, 20]);
});

Deno.test("ReplyWriter finishes a partial write before the next message", async () => {
  const chunks: number[][] = [];
  // The socket takes at most 4 bytes per call.
  const conn = directConnection((b) => {
    chunks.push([...b.subarray(0, 4)]);
    return Promise.resolve(Math.min(b.length, 4));
  });
  const w = new ReplyWriter(conn, () => {});
  w.write(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
  w.write(new Uint8Array([11]));
  await w.flush();
  assertEquals(chunks, [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10], [11]]);
});

Deno.test("ReplyWriter reports the first failure once and drops later messages", async () => {
  let calls = 0;
  const conn = directConnection(() => {
    calls++;
    return Promise.reject(new Deno.errors.BrokenPipe("gone"));
  });
  const errors: unknown[] = [];
  const w = new ReplyWriter(conn, (e) => errors.push(e));
  w.write(new Uint8Array(1));
  w.write(new Uint8Array(1));
  await w.flush();
  w.write(new Uint8Array(1));
  await w.flush();
  assertEquals(errors.length, 1);
  assert(errors[0] instanceof Deno.errors.BrokenPipe);
  assertEquals(calls, 1);
});

Deno.test("ReplyWriter calls a message's `written` only once the write that carried it is done", async () => {
  const { conn, writes, gates } = recordingConnection((b) => Math.min(b.length, 40000));
  const w = new ReplyWriter(conn, () => {});
  const done: string[] = [];
  w.write(new Uint8Array(65536), () => done.push("large"));
  w.write(new Uint8Array(1), () => done.push("small a"));
  w.write(new Uint8Array(2));
  w.write(new Uint8Array(3), () => done.push("small b"));
  assertEquals(done, [], "nothing is written yet");
  gates.shift()!(); // 40000 of the 65536 bytes
  await new Promise((r) => setTimeout(r, 0));
  assertEquals(done, [], "a partly written message is not done");
  assertEquals(writes.length, 2);
  gates.shift()!(); // the rest
  await new Promise((r) => setTimeout(r, 0));
  assertEquals(done, ["large"]);
  assertEquals(writes.map((b) => b.length), [65536, 25536, 6], "the small ones joined");
  assertEquals(done, ["large"], "queued messages wait for their own write");
  gates.shift()!();
  await w.flush();
  assertEquals(done, ["large", "small a", "small b"]);
});

Deno.test("ReplyWriter never calls `written` of a message that was not written", async () => {
  const conn = directConnection(() => Promise.reject(new Deno.errors.BrokenPipe("gone")));
  const w = new ReplyWriter(conn, () => {});
  const done: number[] = [];
  w.write(new Uint8Array(1), () => done.push(1));
  w.write(new Uint8Array(1), () => done.push(2));
  await w.flush();
  w.write(new Uint8Array(1), () => done.push(3));
  await w.flush();
  assertEquals(done, []);
});
