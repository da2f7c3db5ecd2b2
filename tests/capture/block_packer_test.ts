// The capture's reused chunks: blocks come out in the order they were reserved, whole, and a
// chunk is reused only once every view of it was released (never while a view waits).
import { assert, assertEquals, assertFalse } from "@std/assert";
import { BlockPacker } from "../../lib/capture/block_packer.ts";
import { BlockType } from "../../lib/capture/pcapng.ts";

Deno.test("BlockPacker hands out blocks in order and counts what is not yet released", () => {
  const p = new BlockPacker(16);
  p.reserve(10).fill(1);
  const a = p.take()!;
  p.reserve(4).fill(2);
  p.reserve(40).fill(3); // larger than a chunk: a buffer of its own, after the 2s
  p.reserve(6).fill(4);
  assertEquals(p.pending, 60);
  const b = p.take()!;
  const c = p.take()!;
  const d = p.take()!;
  assertEquals(p.take(), undefined);
  assertEquals([a, b, c, d].map((v) => [v.bytes.length, v.bytes[0]]), [
    [10, 1],
    [4, 2],
    [40, 3],
    [6, 4],
  ]);
  for (const v of [a, b, c, d]) v.release();
  assertEquals(p.pending, 0);
});

Deno.test("BlockPacker reuses a chunk only after its last view is released", () => {
  const p = new BlockPacker(16);
  p.reserve(8).fill(1);
  const first = p.take()!; // taken, not yet written
  p.reserve(8).fill(2); // fills the chunk
  p.reserve(8).fill(3); // the next chunk; the first one's rest waits to be taken
  first.release();
  // The first chunk still holds the 2s: it must not be handed out for new blocks.
  p.reserve(8).fill(4); // fills the second chunk
  p.reserve(8).fill(5); // a third chunk: the pool may not give the first one yet
  const rest = p.take()!;
  assertEquals(Array.from(rest.bytes), Array(8).fill(2));
  rest.release();
  const second = p.take()!;
  assertEquals(Array.from(second.bytes), [...Array(8).fill(3), ...Array(8).fill(4)]);
  second.release();
  const third = p.take()!;
  assertEquals(Array.from(third.bytes), Array(8).fill(5));
  third.release();
  assertEquals(p.pending, 0);
});

Deno.test("BlockPacker.clear() forgets what was not taken; taken views still release", () => {
  const p = new BlockPacker(16);
  p.reserve(8);
  const taken = p.take()!;
  p.reserve(8);
  p.reserve(20);
  p.clear();
  assertEquals(p.take(), undefined);
  taken.release();
  assertEquals(p.pending, 0);
  assert(p.reserve(4).length === 4);
});

Deno.test("an aligning BlockPacker pads whole chunks to the alignment, in aligned memory", () => {
  const p = new BlockPacker(8192, 4096);
  assertEquals(p.alignment, 4096, "the test runs with the ffi permission");
  const address = (b: Uint8Array) => Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));
  for (let i = 0; i < 8; i++) p.reserve(1000).fill(i + 1);
  p.reserve(1020).fill(9); // 9020 bytes: the chunk is handed out with 8000
  const whole = p.take()!;
  assert(whole.aligned);
  assertEquals(whole.bytes.length, 8192);
  assertEquals(address(whole.bytes) % 4096, 0);
  const pad = new DataView(whole.bytes.buffer, whole.bytes.byteOffset + 8000, 192);
  assertEquals([pad.getUint32(0, true), pad.getUint32(4, true)], [BlockType.PADDING, 192]);
  assertEquals(pad.getUint32(188, true), 192);
  // Taken before the chunk is full: what it holds, unpadded; and the chunk is closed, so the
  // blocks after it start a chunk that goes out whole and aligned again.
  const partial = p.take()!;
  assertFalse(partial.aligned);
  assertEquals(partial.bytes.length, 1020);
  assertEquals(p.filling, 0);
  p.reserve(7164).fill(10);
  assertEquals(p.filling, 7164);
  p.reserve(1100).fill(11); // does not fit beside the 10s: the chunk of the 10s is full
  const next = p.take()!;
  assert(next.aligned, "a chunk started after a partial take");
  assertEquals(address(next.bytes) % 4096, 0);
  assertEquals([next.bytes.length, next.bytes[0], next.bytes[7163]], [8192, 10, 10]);
  const last = p.take()!;
  assertEquals([last.bytes.length, last.bytes[0]], [1100, 11]);
  for (const v of [whole, partial, next, last]) v.release();
  assertEquals(p.pending, 0);
  p.reserve(8184);
  p.reserve(16);
  const full = p.take()!;
  assertEquals(full.bytes.length, 8184 + 4104);
  assertEquals(address(full.bytes) % 4096, 0);
  full.release();
});

Deno.test("a BlockPacker without an alignment goes on filling a chunk after a partial take", () => {
  const p = new BlockPacker(64);
  p.reserve(20).fill(1);
  const first = p.take()!;
  p.reserve(20).fill(2);
  p.reserve(20).fill(3);
  assertEquals(p.filling, 40);
  const second = p.take()!;
  assertEquals(second.bytes.buffer, first.bytes.buffer, "the same chunk, after the first view");
  assertEquals(second.bytes.byteOffset, first.bytes.byteOffset + 20);
  first.release();
  second.release();
});

Deno.test("a BlockPacker without an alignment hands out nothing aligned and pads nothing", () => {
  const p = new BlockPacker(64);
  assertEquals(p.alignment, 0);
  p.reserve(60);
  p.reserve(60);
  const first = p.take()!;
  assertFalse(first.aligned);
  assertEquals(first.bytes.length, 60);
});
