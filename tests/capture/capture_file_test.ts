// The capture's file: aligned views go to the disk with O_DIRECT (on a file system that takes
// it), everything else through the page cache, and the file reads back as the same blocks in
// the same order, with padding blocks wherever a direct write needed an aligned offset.
import { assert, assertEquals, assertFalse } from "@std/assert";
import { CaptureFile, DIRECT_ALIGNMENT, openDirect } from "../../lib/capture/capture_file.ts";
import { captureLogs } from "../server/_logs.ts";
import { BlockType, encodeEnhancedPacket, writePaddingBlock } from "../../lib/capture/pcapng.ts";
import { alignedBytes } from "../../lib/util/aligned_bytes.ts";
import { readBlocks } from "./_pcapng.ts";
import { tempDir } from "../e2e/_gateway.ts";
import { directUnavailable } from "./_direct.ts";
import { fdTests } from "../ffi/_fds.ts";

const unavailable = await directUnavailable();
if (unavailable !== undefined) {
  console.log(`capture_file_test: the direct write tests are ignored: ${unavailable}`);
}

/** A test of direct writes (ignored where there are none) on a file in a fresh folder. */
function directTest(name: string, fn: (path: string) => Promise<void>): void {
  Deno.test({
    name,
    ignore: unavailable !== undefined,
    fn: async () => {
      const dir = await tempDir();
      try {
        await fn(`${dir.path}/c.pcapng`);
      } finally {
        await dir.remove();
      }
    },
  });
}

/** A packet block of `size` bytes whose data is `fill`. */
function packet(size: number, fill: number): Uint8Array {
  return encodeEnhancedPacket({
    interfaceId: 0,
    timestamp: fill,
    parts: [new Uint8Array(size - 32).fill(fill)],
  });
}

/** `blocks` back to back in aligned memory, padded to a multiple of DIRECT_ALIGNMENT. */
function alignedChunk(blocks: Uint8Array[]): Uint8Array {
  const length = blocks.reduce((n, b) => n + b.length, 0);
  const padded = Math.ceil((length + 12) / DIRECT_ALIGNMENT) * DIRECT_ALIGNMENT;
  const chunk = alignedBytes(padded, DIRECT_ALIGNMENT)!;
  let o = 0;
  for (const b of blocks) {
    chunk.set(b, o);
    o += b.length;
  }
  writePaddingBlock(chunk.subarray(o));
  return chunk;
}

/** The blocks of the file at `path` other than padding. */
async function blocksOf(path: string): Promise<Uint8Array[]> {
  return readBlocks(await Deno.readFile(path))
    .filter((b) => b.type !== BlockType.PADDING)
    .map((b) => b.bytes);
}

directTest(
  "aligned writes go with O_DIRECT, others through the page cache, in order and whole",
  async (path) => {
    const file = await CaptureFile.open(path);
    assert(file.direct);
    const a = packet(100, 1); // an unaligned start: the next direct write needs padding first
    const b = [packet(3000, 2), packet(5000, 3)];
    const c = packet(64, 4);
    const d = [packet(4096, 5)];
    await file.write(a, false);
    const chunkB = alignedChunk(b);
    await file.write(chunkB, true);
    await file.write(c, false);
    const chunkD = alignedChunk(d);
    await file.write(chunkD, true);
    assertEquals(file.directBytes, chunkB.length + chunkD.length);
    assertEquals(file.size, (await Deno.stat(path)).size);
    file.close();
    assertEquals(await blocksOf(path), [a, ...b, c, ...d]);
  },
);

directTest(
  "a direct write the file system refuses is written through the page cache instead",
  async (path) => {
    const file = await CaptureFile.open(path);
    const blocks = [packet(4000, 7)];
    // Aligned in length but not in memory: O_DIRECT answers EINVAL.
    const misaligned = alignedBytes(2 * DIRECT_ALIGNMENT + 4, DIRECT_ALIGNMENT)!.subarray(4);
    misaligned.set(alignedChunk(blocks)); // one block and its padding: 4096 bytes
    await file.write(misaligned.subarray(0, DIRECT_ALIGNMENT), true);
    assertFalse(file.direct, "direct writes given up");
    assertEquals(file.directBytes, 0);
    const next = packet(200, 8);
    await file.write(next, false);
    file.close();
    assertEquals(await blocksOf(path), [...blocks, next]);
  },
);

Deno.test("a file that is not a regular one is written without O_DIRECT", async () => {
  const file = await CaptureFile.open("/dev/null");
  assertFalse(file.direct);
  await file.write(alignedChunk([packet(100, 1)]), true);
  assertEquals(file.directBytes, 0);
  file.close();
});

Deno.test("append starts after what the file holds; truncate cuts back to a size", async () => {
  const dir = await tempDir();
  const path = `${dir.path}/c.pcapng`;
  try {
    const first = packet(52, 1);
    await Deno.writeFile(path, first);
    const file = await CaptureFile.open(path, { append: true });
    assertEquals(file.size, first.length);
    const second = packet(4096, 2);
    await file.write(alignedChunk([second]), true);
    const size = file.size;
    await file.write(packet(100, 3), false);
    await file.truncate(size);
    const last = packet(60, 4);
    await file.write(last, false);
    file.close();
    assertEquals(await blocksOf(path), [first, second, last]);
  } finally {
    await dir.remove();
  }
});

Deno.test({
  name: "a path that names another file by the second open gets no direct writes, and a warning",
  ignore: unavailable !== undefined,
  fn: async () => {
    const logs = captureLogs();
    const dir = await tempDir();
    try {
      const first = `${dir.path}/first.pcapng`;
      const other = `${dir.path}/other.pcapng`;
      await Deno.writeFile(first, new Uint8Array(0));
      await Deno.writeFile(other, new Uint8Array(0));
      const stat = await Deno.stat(first);
      assertEquals(openDirect(other, stat), undefined, "another inode: refused");
      const warnings = logs.lines("capture").filter(([level]) => level === "warning");
      assertEquals(warnings.length, 1);
      assert(warnings[0]![1].includes("was replaced as it was opened"), warnings[0]![1]);
      const same = openDirect(first, stat);
      assert(same !== undefined, "the same file: opened");
      same.close();
    } finally {
      logs.stop();
      await dir.remove();
    }
  },
});

// In a process of its own, where the count of open descriptors is exact (tests/ffi/_fds.ts).
fdTests(import.meta.url)(
  "a closed capture file leaves no descriptor open, direct or not",
  async () => {
    const dir = await tempDir();
    try {
      for (let i = 0; i < 3; i++) {
        const file = await CaptureFile.open(`${dir.path}/c${i}.pcapng`);
        await file.write(alignedChunk([packet(100, i)]), true);
        file.close();
      }
    } finally {
      await dir.remove();
    }
  },
);
