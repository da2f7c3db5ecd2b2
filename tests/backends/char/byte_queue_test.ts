/** Tests of the bounded byte queue under the character back-ends. */

import { assertEquals, assertThrows } from "@std/assert";
import { ByteQueue } from "../../../lib/backends/char/byte_queue.ts";

Deno.test("ByteQueue never holds more than its capacity and wraps around", () => {
  const q = new ByteQueue(5);
  assertEquals(q.push(new Uint8Array([1, 2, 3])), 3);
  assertEquals([...q.take(2)], [1, 2]);
  assertEquals(q.push(new Uint8Array([4, 5, 6, 7, 8])), 4);
  assertEquals(q.size, 5);
  assertEquals(q.room, 0);
  assertEquals([...q.peek(10)], [3, 4, 5]);
  assertEquals([...q.take(10)], [3, 4, 5, 6, 7]);
  assertThrows(() => new ByteQueue(0), RangeError);
});
