/**
 * IPv4 and IPv6 address prefixes (CIDR, RFC 4632 and RFC 4291 text forms) for matching a TCP
 * peer's source address. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) match IPv4 prefixes.
 *
 * @module
 */

/** A parsed prefix: the address as 16 bytes (IPv4 mapped into IPv6) and its length in bits. */
export interface Cidr {
  /** The prefix as written, e.g. `10.0.0.0/8` or `fd00::/8`. */
  readonly text: string;
  /** The address as 16 bytes; an IPv4 address is mapped to `::ffff:a.b.c.d`. */
  readonly bytes: Uint8Array;
  /** The prefix length over those 16 bytes, 0..128: an IPv4 `/8` is 104. */
  readonly bits: number;
}

function parseV4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) {
    return undefined;
  }
  const out = new Uint8Array(16);
  out[10] = 0xff;
  out[11] = 0xff;
  parts.forEach((p, i) => out[12 + i] = Number(p));
  return out;
}

function parseV6(text: string): Uint8Array | undefined {
  let head = text;
  let tail4: Uint8Array | undefined;
  const lastColon = text.lastIndexOf(":");
  if (text.includes(".")) {
    tail4 = parseV4(text.slice(lastColon + 1));
    if (tail4 === undefined) return undefined;
    head = text.slice(0, lastColon + 1) + "0:0";
  }
  const halves = head.split("::");
  if (halves.length > 2) return undefined;
  const group = (s: string) => (s === "" ? [] : s.split(":"));
  const left = group(halves[0]!);
  const right = halves.length === 2 ? group(halves[1]!) : [];
  const missing = 8 - left.length - right.length;
  if ((halves.length === 1 && missing !== 0) || missing < 0) return undefined;
  const words = [...left, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...right];
  if (words.length !== 8 || !words.every((w) => /^[0-9a-fA-F]{1,4}$/.test(w))) return undefined;
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    const v = parseInt(w, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  });
  if (tail4) out.set(tail4.subarray(12), 12);
  return out;
}

/** Parses an IPv4 or IPv6 address into 16 bytes, or `undefined`. */
export function parseAddress(text: string): Uint8Array | undefined {
  return text.includes(":") ? parseV6(text) : parseV4(text);
}

/**
 * Parses `ADDRESS[/BITS]`; a bare address is a full-length prefix. Throws `TypeError`.
 *
 * @example
 * ```ts
 * import { cidrContains, parseCidr } from "./cidr.ts";
 * const lan = parseCidr("192.168.1.0/24");
 * console.assert(cidrContains(lan, "192.168.1.77") && !cidrContains(lan, "10.0.0.1"));
 * ```
 */
export function parseCidr(text: string): Cidr {
  const [addr, bitsText, extra] = text.split("/");
  const bytes = addr === undefined ? undefined : parseAddress(addr);
  const v4 = addr !== undefined && !addr.includes(":");
  const max = v4 ? 32 : 128;
  const bits = bitsText === undefined ? max : Number(bitsText);
  if (bytes === undefined || extra !== undefined || !/^\d*$/.test(bitsText ?? "") || bits > max) {
    throw new TypeError(
      `Invalid address prefix "${text}": expected e.g. 192.168.1.0/24 or fd00::/8`,
    );
  }
  return { text, bytes, bits: v4 ? bits + 96 : bits };
}

/** Whether `address` (an IPv4 or IPv6 literal) lies inside `cidr`. */
export function cidrContains(cidr: Cidr, address: string): boolean {
  const a = parseAddress(address);
  if (a === undefined) return false;
  let bits = cidr.bits;
  for (let i = 0; i < 16 && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((a[i]! & mask) !== (cidr.bytes[i]! & mask)) return false;
  }
  return true;
}

/** A prefix as bytes and bits alone: a {@linkcode Cidr} without its text. */
export type Prefix = Pick<Cidr, "bytes" | "bits">;

/** Every address: `::/0`, which holds the IPv4-mapped addresses too. */
export const ALL_ADDRESSES: Prefix = Object.freeze({ bytes: new Uint8Array(16), bits: 0 });

/** Bit `i` (0 = the most significant) of a 16-byte address. */
function bitAt(bytes: Uint8Array, i: number): number {
  return (bytes[i >> 3]! >> (7 - (i & 7))) & 1;
}

/** Whether the first `bits` bits of two addresses agree. */
function samePrefix(a: Uint8Array, b: Uint8Array, bits: number): boolean {
  for (let i = 0; i < bits; i++) if (bitAt(a, i) !== bitAt(b, i)) return false;
  return true;
}

/** Whether every address of `inner` lies in `outer`. */
export function prefixCovers(outer: Prefix, inner: Prefix): boolean {
  return outer.bits <= inner.bits && samePrefix(outer.bytes, inner.bytes, outer.bits);
}

/** Whether two prefixes share an address (then one of them holds the other). */
export function prefixesOverlap(a: Prefix, b: Prefix): boolean {
  return samePrefix(a.bytes, b.bytes, Math.min(a.bits, b.bits));
}

/**
 * The addresses of `set` (a list of prefixes) that are not in `cut`, as a list of prefixes.
 *
 * @example Taking IPv4 out of every address leaves all of IPv6 but no IPv4 address
 * ```ts
 * import { assert, assertEquals } from "@std/assert";
 * import { ALL_ADDRESSES, parseCidr, prefixesOverlap, subtractPrefix } from "./cidr.ts";
 * const rest = subtractPrefix([ALL_ADDRESSES], parseCidr("0.0.0.0/0"));
 * assertEquals(rest.length, 96);
 * assert(!rest.some((p) => prefixesOverlap(p, parseCidr("192.0.2.1"))));
 * assert(rest.some((p) => prefixesOverlap(p, parseCidr("2001:db8::1"))));
 * assertEquals(subtractPrefix(rest, parseCidr("::/0")), []);
 * ```
 */
export function subtractPrefix(set: readonly Prefix[], cut: Prefix): Prefix[] {
  const out: Prefix[] = [];
  for (const p of set) {
    if (prefixCovers(cut, p)) continue;
    if (!prefixCovers(p, cut)) {
      out.push(p);
      continue;
    }
    // `cut` lies inside `p`: what is left is, at each bit between them, the half that `cut`
    // does not take.
    for (let bit = p.bits; bit < cut.bits; bit++) {
      const bytes = cut.bytes.slice();
      bytes[bit >> 3]! ^= 0x80 >> (bit & 7);
      out.push({ bytes, bits: bit + 1 });
    }
  }
  return out;
}
