import { assert, assertEquals, assertStrictEquals } from "@std/assert";
import { BufferPool } from "../../lib/protocol/buffer_pool.ts";

Deno.test("BufferPool: hands out the buffer returned last, of exactly the size asked", () => {
  const pool = new BufferPool(1 << 20);
  const a = new Uint8Array(16384);
  const b = new Uint8Array(16384);
  const c = new Uint8Array(65536);
  pool.give(a);
  pool.give(b);
  pool.give(c);
  assertEquals(pool.bytes, 16384 * 2 + 65536);
  assertStrictEquals(pool.take(16384), b, "last in, first out: the warmest buffer");
  assertStrictEquals(pool.take(16384), a);
  assertStrictEquals(pool.take(16384), undefined);
  assertStrictEquals(pool.take(32768), undefined, "no buffer of another size is cut down");
  assertStrictEquals(pool.take(65536), c);
  assertEquals(pool.bytes, 0);
});

Deno.test("BufferPool: views, small buffers and a buffer given twice are not taken", () => {
  const pool = new BufferPool(1 << 20, 4096);
  const whole = new Uint8Array(16384);
  pool.give(whole.subarray(0, 8192));
  pool.give(whole.subarray(8192));
  pool.give(new Uint8Array(1024));
  assertEquals(pool.bytes, 0);
  pool.give(whole);
  pool.give(whole);
  assertEquals(pool.bytes, 16384, "the second give of the same buffer was ignored");
  assertStrictEquals(pool.take(16384), whole);
  assertStrictEquals(pool.take(16384), undefined, "so it is never handed out twice");
  // Once taken, it may come back.
  pool.give(whole);
  assertStrictEquals(pool.take(16384), whole);
});

Deno.test("BufferPool: stays within maxBytes, making room for the size in use", () => {
  const pool = new BufferPool(64 * 1024);
  const small = Array.from({ length: 4 }, () => new Uint8Array(16384));
  for (const b of small) pool.give(b);
  assertEquals(pool.bytes, 65536);
  pool.give(new Uint8Array(16384));
  assertEquals(pool.bytes, 65536, "full: a fifth buffer of the same size is dropped");
  const big = new Uint8Array(32768);
  pool.give(big);
  assertEquals(pool.bytes, 65536, "two 16 KiB buffers made room for the 32 KiB one");
  assertStrictEquals(pool.take(32768), big);
  assertEquals([pool.take(16384) !== undefined, pool.take(16384) !== undefined], [true, true]);
  assertStrictEquals(pool.take(16384), undefined);
  pool.give(new Uint8Array(128 * 1024));
  assertEquals(pool.bytes, 0, "a buffer over maxBytes is never pooled");
});

Deno.test("BufferPool: with headroom, buffers are made and taken back with room in front", () => {
  const pool = new BufferPool(1 << 20, 4096, 48);
  const lent = pool.lend(8192)!;
  assertEquals([lent.byteOffset, lent.length, lent.buffer.byteLength], [48, 8192, 48 + 8192]);
  // A buffer without the room in front, or with other room, is not taken.
  pool.give(new Uint8Array(8192));
  pool.give(new Uint8Array(new ArrayBuffer(8192 + 64), 64, 8192));
  assertEquals(pool.bytes, 0);
  pool.give(lent);
  assertEquals(pool.bytes, 8192);
  assert(pool.lend(8192) === lent);
});

Deno.test("BufferPool.handOver: room in front only for data where the lent buffer starts", () => {
  const pool = new BufferPool(1 << 20, 4096, 48);
  const lent = pool.lend(8192)!;
  const whole = pool.handOver(lent, lent);
  assertEquals(whole.headroom, 48);
  assert(whole.data === lent);
  const short = pool.handOver(lent, lent.subarray(0, 100));
  assertEquals(short.headroom, 48);
  // Data further in: the bytes in front are the device's, not free.
  const inside = pool.handOver(lent, lent.subarray(8));
  assertEquals(inside.headroom, undefined);
  assert(inside.release !== undefined);
  // Data of the device's own: nothing to give back, no room.
  const own = pool.handOver(lent, new Uint8Array(8192));
  assertEquals([own.release, own.headroom], [undefined, undefined]);
  whole.release!();
  assertEquals(pool.bytes, 8192);
  // Without headroom the pool promises none.
  const plain = new BufferPool(1 << 20);
  const p = plain.lend(8192)!;
  assertEquals([p.byteOffset, plain.handOver(p, p).headroom], [0, undefined]);
});
