/**
 * The pcapng blocks a capture is made of, as the pcapng draft (draft-ietf-opsawg-pcapng,
 * "PCAP Now Generic (pcapng) Capture File Format") lays them out: a Section Header Block, an
 * Interface Description Block per interface, and an Enhanced Packet Block per packet. Every
 * block is little-endian (the Section Header's byte-order magic says so), padded to 32 bits,
 * and carries its total length at both ends; options are code, length and a value padded to
 * 32 bits, ended by `opt_endofopt`. Pure encoders: no I/O.
 *
 * @module
 */

/** Block types (draft-ietf-opsawg-pcapng §4). */
export const BlockType = {
  SECTION_HEADER: 0x0a0d0d0a,
  INTERFACE_DESCRIPTION: 0x00000001,
  ENHANCED_PACKET: 0x00000006,
  /**
   * Filler that carries nothing: a type from the range the draft reserves for local use
   * (0x80000000-0xFFFFFFFF, "Block Type Codes"), which readers that do not know it skip
   * (Wireshark does: tests/capture/tshark_test.ts). A capture file uses it to end its large
   * writes on a multiple of the disk's block size.
   */
  PADDING: 0x8055_4750,
} as const;

/** The byte-order magic of a Section Header Block (§4.1). */
export const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

/** Option codes used here (§3.5, §4.1, §4.2, §4.3). */
export const OptionCode = {
  opt_endofopt: 0,
  opt_comment: 1,
  shb_userappl: 4,
  if_name: 2,
  if_description: 3,
  if_tsresol: 9,
} as const;

/** Link types (the tcpdump.org LINKTYPE_ registry) this project writes. */
export const LinkType = {
  /** Linux usbmon's binary header padded to 64 bytes, then ISO descriptors and data. */
  LINKTYPE_USB_LINUX_MMAPPED: 220,
  /** Wireshark's "exported PDU": tags naming a dissector, then its data. */
  LINKTYPE_WIRESHARK_UPPER_PDU: 252,
} as const;

const encoder = new TextEncoder();

/** `n` rounded up to a multiple of 4. */
function pad4(n: number): number {
  return (n + 3) & ~3;
}

/** One option: its code and its value (text is written as UTF-8, without a NUL). */
export interface PcapngOption {
  /** One of {@linkcode OptionCode}. */
  code: number;
  /** The value. */
  value: Uint8Array | string;
}

/** The bytes of `options` followed by `opt_endofopt`; nothing at all when there are none. */
function encodeOptions(options: readonly PcapngOption[]): Uint8Array {
  if (options.length === 0) return new Uint8Array(0);
  const values = options.map((o) =>
    typeof o.value === "string" ? encoder.encode(o.value) : o.value
  );
  const size = values.reduce((n, v) => n + 4 + pad4(v.length), 4);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  let o = 0;
  options.forEach((opt, i) => {
    const value = values[i]!;
    if (value.length > 0xffff) {
      throw new RangeError(`Cannot encode option ${opt.code}: ${value.length} bytes, limit 65535`);
    }
    v.setUint16(o, opt.code, true);
    v.setUint16(o + 2, value.length, true);
    out.set(value, o + 4);
    o += 4 + pad4(value.length);
  });
  // opt_endofopt: code 0, length 0 (the zeros are there already).
  return out;
}

/** A whole block: type, total length, `body` padded to 32 bits, options, total length. */
function block(type: number, body: Uint8Array, options: readonly PcapngOption[]): Uint8Array {
  const opts = encodeOptions(options);
  const total = 12 + pad4(body.length) + opts.length;
  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  v.setUint32(0, type, true);
  v.setUint32(4, total, true);
  out.set(body, 8);
  out.set(opts, 8 + pad4(body.length));
  v.setUint32(total - 4, total, true);
  return out;
}

/**
 * A Section Header Block (§4.1): version 1.0, section length unknown (-1), and the
 * application that wrote it (`shb_userappl`).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { encodeSectionHeader } from "./pcapng.ts";
 * const shb = encodeSectionHeader("usbipgw");
 * assertEquals([shb[0], shb[1], shb[2], shb[3]], [0x0a, 0x0d, 0x0d, 0x0a]);
 * assertEquals(shb.length % 4, 0);
 * ```
 */
export function encodeSectionHeader(application?: string): Uint8Array {
  const body = new Uint8Array(16);
  const v = new DataView(body.buffer);
  v.setUint32(0, BYTE_ORDER_MAGIC, true);
  v.setUint16(4, 1, true);
  v.setUint16(6, 0, true);
  v.setBigInt64(8, -1n, true);
  const options = application === undefined
    ? []
    : [{ code: OptionCode.shb_userappl, value: application }];
  return block(BlockType.SECTION_HEADER, body, options);
}

/** What an Interface Description Block says of an interface. */
export interface InterfaceDescription {
  /** One of {@linkcode LinkType}. */
  linkType: number;
  /** The most bytes captured per packet; 0 for no limit (§4.2). */
  snapLen: number;
  /** `if_name`. */
  name?: string;
  /** `if_description`. */
  description?: string;
  /** `if_tsresol`: timestamps count units of 10^-n seconds; the draft's default is 6. */
  tsresol?: number;
}

/** An Interface Description Block (§4.2). */
export function encodeInterfaceDescription(d: InterfaceDescription): Uint8Array {
  const body = new Uint8Array(8);
  const v = new DataView(body.buffer);
  v.setUint16(0, d.linkType, true);
  v.setUint32(4, d.snapLen, true);
  const options: PcapngOption[] = [];
  if (d.name !== undefined) options.push({ code: OptionCode.if_name, value: d.name });
  if (d.description !== undefined) {
    options.push({ code: OptionCode.if_description, value: d.description });
  }
  if (d.tsresol !== undefined) {
    options.push({ code: OptionCode.if_tsresol, value: new Uint8Array([d.tsresol]) });
  }
  return block(BlockType.INTERFACE_DESCRIPTION, body, options);
}

/** What an Enhanced Packet Block carries. */
export interface EnhancedPacket {
  /** The interface's index: the order of its Interface Description Block in the section. */
  interfaceId: number;
  /** The time in units of the interface's `if_tsresol` (an integer below 2^53). */
  timestamp: number;
  /**
   * The captured bytes, as parts written back to back (a header and the data, say, so that
   * the data are copied once, into the block).
   */
  parts: readonly Uint8Array[];
  /** The packet's length before any was cut (§4.3 "Original Packet Length"); the parts' sum if absent. */
  originalLength?: number;
  /** `opt_comment`. */
  comment?: string;
}

/**
 * A packet whose maker writes its data straight into the block (no part of it copied twice):
 * `captured` bytes, written by `fill` into the view it is given.
 */
export interface EnhancedPacketWriter extends Omit<EnhancedPacket, "parts"> {
  /** The number of captured bytes. */
  captured: number;
  /** Writes the captured bytes into `data` (exactly `captured` bytes of the block). */
  fill(data: Uint8Array): void;
}

/** The options of `p` (its comment), encoded. */
function packetOptions(p: EnhancedPacket | EnhancedPacketWriter): Uint8Array {
  return p.comment === undefined
    ? EMPTY
    : encodeOptions([{ code: OptionCode.opt_comment, value: p.comment }]);
}

function capturedLength(p: EnhancedPacket | EnhancedPacketWriter): number {
  if (!("parts" in p)) return p.captured;
  let captured = 0;
  for (const part of p.parts) captured += part.length;
  return captured;
}

/** The size of the Enhanced Packet Block of `p`, in bytes. */
export function enhancedPacketLength(p: EnhancedPacket | EnhancedPacketWriter): number {
  return 32 + pad4(capturedLength(p)) + packetOptions(p).length;
}

/**
 * Writes the Enhanced Packet Block of `p` (§4.3) at the start of `out`, padding included, so
 * that `out` may be reused memory; returns the block's length. Throws `RangeError` when `out`
 * is shorter than {@linkcode enhancedPacketLength}.
 */
export function writeEnhancedPacket(
  out: Uint8Array,
  p: EnhancedPacket | EnhancedPacketWriter,
): number {
  const captured = capturedLength(p);
  const opts = packetOptions(p);
  const total = 32 + pad4(captured) + opts.length;
  if (out.length < total) {
    throw new RangeError(
      `Cannot write an Enhanced Packet Block of ${total} bytes into ${out.length}`,
    );
  }
  const v = new DataView(out.buffer, out.byteOffset, total);
  v.setUint32(0, BlockType.ENHANCED_PACKET, true);
  v.setUint32(4, total, true);
  v.setUint32(8, p.interfaceId, true);
  v.setUint32(12, Math.floor(p.timestamp / 0x1_0000_0000), true);
  v.setUint32(16, p.timestamp >>> 0, true);
  v.setUint32(20, captured, true);
  v.setUint32(24, p.originalLength ?? captured, true);
  if ("parts" in p) {
    let o = 28;
    for (const part of p.parts) {
      out.set(part, o);
      o += part.length;
    }
  } else p.fill(out.subarray(28, 28 + captured));
  out.fill(0, 28 + captured, 28 + pad4(captured));
  out.set(opts, 28 + pad4(captured));
  v.setUint32(total - 4, total, true);
  return total;
}

/**
 * An Enhanced Packet Block (§4.3): interface, 64-bit timestamp as high and low words, captured
 * and original length, the data padded to 32 bits, and an optional comment.
 *
 * @example Lengths and padding
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { encodeEnhancedPacket } from "./pcapng.ts";
 * const b = encodeEnhancedPacket({ interfaceId: 0, timestamp: 1, parts: [new Uint8Array(5)] });
 * assertEquals(b.length, 32 + 8); // 28 bytes of fields and lengths, 5 bytes padded to 8
 * const v = new DataView(b.buffer);
 * assertEquals([v.getUint32(4, true), v.getUint32(b.length - 4, true)], [40, 40]);
 * ```
 */
export function encodeEnhancedPacket(p: EnhancedPacket): Uint8Array {
  const out = new Uint8Array(enhancedPacketLength(p));
  writeEnhancedPacket(out, p);
  return out;
}

const EMPTY = new Uint8Array(0);

/** The smallest block: type, total length and the length again (§3.1). */
const MIN_BLOCK_BYTES = 12;

/**
 * How long a padding block must be to take a stream from `offset` to the next multiple of
 * `alignment` (a multiple of 4): 0 when it is there, else at least the smallest block.
 */
export function paddingLength(offset: number, alignment: number): number {
  const gap = (alignment - (offset % alignment)) % alignment;
  return gap === 0 || gap >= MIN_BLOCK_BYTES ? gap : gap + alignment;
}

/**
 * Fills `out` (a multiple of 4, at least 12 bytes) with one {@linkcode BlockType.PADDING}
 * block of zeros.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { paddingLength, writePaddingBlock } from "./pcapng.ts";
 * assertEquals(paddingLength(4096 - 8, 4096), 4096 + 8); // 8 bytes cannot hold a block
 * const pad = new Uint8Array(paddingLength(100, 64));
 * writePaddingBlock(pad);
 * assertEquals(pad.length, 28);
 * assertEquals(new DataView(pad.buffer).getUint32(24, true), 28);
 * ```
 */
export function writePaddingBlock(out: Uint8Array): void {
  if (out.length < MIN_BLOCK_BYTES || out.length % 4 !== 0) {
    throw new RangeError(`Cannot write a padding block of ${out.length} bytes`);
  }
  out.fill(0);
  const v = new DataView(out.buffer, out.byteOffset, out.length);
  v.setUint32(0, BlockType.PADDING, true);
  v.setUint32(4, out.length, true);
  v.setUint32(out.length - 4, out.length, true);
}

/**
 * Splits a pcapng byte stream (little-endian, as this module writes it) into whole blocks, by
 * the total length each block starts with, so that whoever writes them out never ends a file
 * inside a block. A partial block at the end of the stream is left out. Throws (errors the
 * stream) on a block length that is not a multiple of 4 or below 12 (§3.1).
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { encodeSectionHeader, PcapngBlockStream } from "./pcapng.ts";
 * const shb = encodeSectionHeader("x");
 * const bytes = new Uint8Array([...shb, ...shb.subarray(0, 5)]);
 * const out = await Array.fromAsync(
 *   ReadableStream.from([bytes.subarray(0, 3), bytes.subarray(3)]).pipeThrough(new PcapngBlockStream()),
 * );
 * assertEquals(out, [shb]);
 * ```
 */
export class PcapngBlockStream extends TransformStream<Uint8Array, Uint8Array> {
  /** A transform from bytes to whole blocks. */
  constructor() {
    let held = new Uint8Array(0);
    super({
      transform(chunk, controller) {
        let bytes = chunk;
        if (held.length > 0) {
          bytes = new Uint8Array(held.length + chunk.length);
          bytes.set(held);
          bytes.set(chunk, held.length);
        }
        let o = 0;
        while (bytes.length - o >= 8) {
          const total = new DataView(bytes.buffer, bytes.byteOffset + o + 4, 4).getUint32(0, true);
          if (total < 12 || total % 4 !== 0) {
            throw new SyntaxError(`Cannot read pcapng: a block length is ${total}`);
          }
          if (bytes.length - o < total) break;
          controller.enqueue(bytes.slice(o, o + total));
          o += total;
        }
        held = bytes.slice(o);
      },
    });
  }
}
