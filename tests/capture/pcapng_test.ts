// The pcapng encoder (draft-ietf-opsawg-pcapng): block lengths at both ends, padding to 32
// bits, little-endian with the byte-order magic, options; and the usbmon header of link type
// 220 field by field (mon_bin.c's struct mon_bin_hdr). No tshark needed.
import { assertEquals, assertRejects } from "@std/assert";
import {
  encodeEnhancedPacket,
  encodeInterfaceDescription,
  encodeSectionHeader,
  PcapngBlockStream,
} from "../../lib/capture/pcapng.ts";
import { encodeUsbmonHeader } from "../../lib/capture/usbmon.ts";
import { packets, readBlocks, readOptions } from "./_pcapng.ts";

const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

Deno.test("encodeSectionHeader() writes the block type, byte-order magic, version 1.0 and an unknown section length", () => {
  const shb = encodeSectionHeader("usbipgw");
  const v = view(shb);
  assertEquals(Array.from(shb.subarray(0, 4)), [0x0a, 0x0d, 0x0d, 0x0a]);
  // The magic read little-endian: the section is little-endian.
  assertEquals(Array.from(shb.subarray(8, 12)), [0x4d, 0x3c, 0x2b, 0x1a]);
  assertEquals([v.getUint16(12, true), v.getUint16(14, true)], [1, 0]);
  assertEquals(v.getBigInt64(16, true), -1n);
  const [block] = readBlocks(shb);
  const options = readOptions(block!.body.subarray(16));
  assertEquals(new TextDecoder().decode(options.get(4)![0]), "usbipgw");
  // shb_userappl "usbipgw" (7 bytes) is padded to 8; then opt_endofopt.
  assertEquals(shb.length, 12 + 16 + (4 + 8) + 4);
  assertEquals(Array.from(shb.subarray(shb.length - 8, shb.length - 4)), [0, 0, 0, 0]);
});

Deno.test("encodeInterfaceDescription() writes the link type, snap length and if_tsresol", () => {
  const idb = encodeInterfaceDescription({ linkType: 220, snapLen: 0, tsresol: 6, name: "u" });
  const v = view(idb);
  assertEquals([v.getUint32(0, true), v.getUint32(4, true)], [1, idb.length]);
  assertEquals([v.getUint16(8, true), v.getUint16(10, true), v.getUint32(12, true)], [220, 0, 0]);
  const options = readOptions(readBlocks(idb)[0]!.body.subarray(8));
  assertEquals(Array.from(options.get(9)![0]!), [6]);
  assertEquals(new TextDecoder().decode(options.get(2)![0]), "u");
});

Deno.test("encodeEnhancedPacket() pads the data to 32 bits and repeats the total length", () => {
  for (let n = 0; n < 9; n++) {
    const data = new Uint8Array(n).fill(0xee);
    const b = encodeEnhancedPacket({ interfaceId: 1, timestamp: 5, parts: [data] });
    const v = view(b);
    assertEquals(b.length, 32 + ((n + 3) & ~3), `${n} bytes`);
    assertEquals(b.length % 4, 0);
    assertEquals([v.getUint32(4, true), v.getUint32(b.length - 4, true)], [b.length, b.length]);
    assertEquals([v.getUint32(20, true), v.getUint32(24, true)], [n, n]);
    // The padding is zeros.
    assertEquals(Array.from(b.subarray(28 + n, 28 + ((n + 3) & ~3))).every((x) => x === 0), true);
  }
});

Deno.test("encodeEnhancedPacket() splits the timestamp into high and low words and keeps parts in order", () => {
  const t = 1_700_000_000_123_456; // microseconds, above 2^32
  const b = encodeEnhancedPacket({
    interfaceId: 0,
    timestamp: t,
    parts: [new Uint8Array([1, 2]), new Uint8Array([3])],
    originalLength: 100,
    comment: "unlinked",
  });
  const [p] = packets(readBlocks(b));
  assertEquals(p!.timestamp, t);
  assertEquals(Array.from(p!.data), [1, 2, 3]);
  assertEquals(p!.originalLength, 100);
  assertEquals(p!.comment, "unlinked");
});

Deno.test("encodeUsbmonHeader() lays out an ISO completion as mon_bin.c does", () => {
  const h = encodeUsbmonHeader({
    idHigh: 3,
    idLow: 0x11223344,
    type: "C",
    transferType: "isochronous",
    endpoint: 0x83,
    devnum: 2,
    busnum: 1,
    timestampUs: 7_000_001,
    status: 0,
    length: 300,
    iso: {
      errorCount: 1,
      descs: [{ status: 0, offset: 0, length: 200 }, { status: -18, offset: 256, length: 100 }],
    },
    interval: 1,
    startFrame: 9,
    transferFlags: 0x202,
    data: new Uint8Array(356),
  }, 356);
  const v = view(h);
  assertEquals(h.length, 64 + 2 * 16);
  assertEquals(v.getBigUint64(0, true), 0x0000000311223344n);
  assertEquals([h[8], h[9], h[10], h[11], v.getUint16(12, true)], [0x43, 0, 0x83, 2, 1]);
  assertEquals([h[14], h[15]], [0x2d, 0], "no setup ('-'), data present (0)");
  assertEquals([Number(v.getBigInt64(16, true)), v.getInt32(24, true)], [7, 1]);
  assertEquals([v.getInt32(28, true), v.getUint32(32, true)], [0, 300]);
  assertEquals(v.getUint32(36, true), 2 * 16 + 356, "len_cap: descriptors and data");
  assertEquals([v.getInt32(40, true), v.getInt32(44, true)], [1, 2], "error_count, numdesc");
  assertEquals([v.getInt32(48, true), v.getInt32(52, true), v.getUint32(56, true)], [1, 9, 0x202]);
  assertEquals(v.getUint32(60, true), 2, "ndesc");
  assertEquals([v.getInt32(80, true), v.getUint32(84, true), v.getUint32(88, true)], [
    -18,
    256,
    100,
  ]);
});

Deno.test("encodeUsbmonHeader() marks an IN submit '<' and an OUT completion '>' without data", () => {
  const base = {
    idHigh: 0,
    idLow: 1,
    transferType: "bulk" as const,
    devnum: 2,
    busnum: 1,
    timestampUs: 0,
    interval: 0,
    startFrame: 0,
    transferFlags: 0,
    data: undefined,
  };
  const s = encodeUsbmonHeader({ ...base, type: "S", endpoint: 0x81, status: -115, length: 64 }, 0);
  const c = encodeUsbmonHeader({ ...base, type: "C", endpoint: 0x01, status: -32, length: 0 }, 0);
  assertEquals([s[15], view(s).getUint32(36, true), view(s).getInt32(28, true)], [0x3c, 0, -115]);
  assertEquals([c[15], view(c).getInt32(28, true)], [0x3e, -32]);
});

Deno.test("PcapngBlockStream yields whole blocks across chunk boundaries and drops a cut-off tail", async () => {
  const blocks = [
    encodeSectionHeader("x"),
    encodeEnhancedPacket({ interfaceId: 0, timestamp: 1, parts: [new Uint8Array(70)] }),
    encodeEnhancedPacket({ interfaceId: 0, timestamp: 2, parts: [new Uint8Array(3)] }),
  ];
  const all = new Uint8Array(blocks.reduce((n, b) => n + b.length, 0));
  let o = 0;
  for (const b of blocks) {
    all.set(b, o);
    o += b.length;
  }
  // One byte at a time, the last block cut short.
  const chunks = Array.from(all.subarray(0, all.length - 5), (x) => new Uint8Array([x]));
  const out = await Array.fromAsync(
    ReadableStream.from(chunks).pipeThrough(new PcapngBlockStream()),
  );
  assertEquals(out, blocks.slice(0, 2));
  const bad = new Uint8Array(12);
  view(bad).setUint32(4, 10, true);
  await assertRejects(
    () => Array.fromAsync(ReadableStream.from([bad]).pipeThrough(new PcapngBlockStream())),
    SyntaxError,
  );
});
