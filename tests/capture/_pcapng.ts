// Reads back what the capture writes, independently of its encoders: pcapng blocks
// (draft-ietf-opsawg-pcapng) and the usbmon records of link type 220 (mon_bin.c's
// struct mon_bin_hdr, 64 bytes, then ISO descriptors and data), little-endian.

/** One pcapng block: its type, its body (between the lengths) and its options. */
export interface Block {
  type: number;
  /** The bytes between the leading and the trailing length. */
  body: Uint8Array;
  /** The whole block. */
  bytes: Uint8Array;
}

/** Splits `bytes` into blocks, checking that each one's two lengths agree. */
export function readBlocks(bytes: Uint8Array): Block[] {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const blocks: Block[] = [];
  let o = 0;
  while (o < bytes.length) {
    const type = v.getUint32(o, true);
    const total = v.getUint32(o + 4, true);
    if (total < 12 || total % 4 !== 0 || o + total > bytes.length) {
      throw new Error(`Block at ${o}: total length ${total}`);
    }
    const trailing = v.getUint32(o + total - 4, true);
    if (trailing !== total) throw new Error(`Block at ${o}: lengths ${total} and ${trailing}`);
    blocks.push({
      type,
      body: bytes.subarray(o + 8, o + total - 4),
      bytes: bytes.subarray(o, o + total),
    });
    o += total;
  }
  return blocks;
}

/** Reads options (code, length, value padded to 32 bits) until opt_endofopt. */
export function readOptions(b: Uint8Array): Map<number, Uint8Array[]> {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out = new Map<number, Uint8Array[]>();
  let o = 0;
  while (o + 4 <= b.length) {
    const code = v.getUint16(o, true);
    const length = v.getUint16(o + 2, true);
    if (code === 0) break;
    const list = out.get(code) ?? [];
    list.push(b.subarray(o + 4, o + 4 + length));
    out.set(code, list);
    o += 4 + ((length + 3) & ~3);
  }
  return out;
}

/** An Enhanced Packet Block's fields. */
export interface Packet {
  interfaceId: number;
  /** In the interface's units (microseconds here). */
  timestamp: number;
  data: Uint8Array;
  originalLength: number;
  comment?: string;
}

/** The Enhanced Packet Blocks of `blocks` (type 6). */
export function packets(blocks: Block[]): Packet[] {
  return blocks.filter((b) => b.type === 6).map((b) => {
    const v = new DataView(b.body.buffer, b.body.byteOffset, b.body.byteLength);
    const captured = v.getUint32(12, true);
    const data = b.body.subarray(20, 20 + captured);
    const options = readOptions(b.body.subarray(20 + ((captured + 3) & ~3)));
    const comment = options.get(1)?.[0];
    return {
      interfaceId: v.getUint32(0, true),
      timestamp: v.getUint32(4, true) * 2 ** 32 + v.getUint32(8, true),
      data,
      originalLength: v.getUint32(16, true),
      ...(comment !== undefined ? { comment: new TextDecoder().decode(comment) } : {}),
    };
  });
}

/** A usbmon record (link type 220). */
export interface UsbmonRecord {
  id: bigint;
  type: string;
  xferType: number;
  epnum: number;
  devnum: number;
  busnum: number;
  flagSetup: number;
  flagData: number;
  status: number;
  length: number;
  lenCap: number;
  setup: Uint8Array;
  errorCount: number;
  numdesc: number;
  interval: number;
  xferFlags: number;
  ndesc: number;
  descs: { status: number; offset: number; length: number }[];
  data: Uint8Array;
  comment?: string;
}

/** Decodes the usbmon record of a packet on interface 0. */
export function usbmon(p: Packet): UsbmonRecord {
  const d = p.data;
  const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
  const ndesc = v.getUint32(60, true);
  const descs = Array.from({ length: ndesc }, (_, i) => ({
    status: v.getInt32(64 + i * 16, true),
    offset: v.getUint32(68 + i * 16, true),
    length: v.getUint32(72 + i * 16, true),
  }));
  return {
    id: v.getBigUint64(0, true),
    type: String.fromCharCode(d[8]!),
    xferType: d[9]!,
    epnum: d[10]!,
    devnum: d[11]!,
    busnum: v.getUint16(12, true),
    flagSetup: d[14]!,
    flagData: d[15]!,
    status: v.getInt32(28, true),
    length: v.getUint32(32, true),
    lenCap: v.getUint32(36, true),
    setup: d.subarray(40, 48),
    errorCount: v.getInt32(40, true),
    numdesc: v.getInt32(44, true),
    interval: v.getInt32(48, true),
    xferFlags: v.getUint32(56, true),
    ndesc,
    descs,
    data: d.subarray(64 + ndesc * 16),
    ...(p.comment !== undefined ? { comment: p.comment } : {}),
  };
}

/** The usbmon records and the event lines (interface 1) of a capture, in order. */
export function readCapture(bytes: Uint8Array): { usb: UsbmonRecord[]; events: string[] } {
  const all = packets(readBlocks(bytes));
  return {
    usb: all.filter((p) => p.interfaceId === 0).map(usbmon),
    events: all.filter((p) => p.interfaceId === 1).map((p) => p.comment ?? ""),
  };
}
