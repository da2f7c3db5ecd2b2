/**
 * Memory that starts at a multiple of a given alignment in the address space, for I/O that
 * needs it: a write through a file opened with `O_DIRECT` must come from memory aligned to
 * the device's logical block size (open(2), "O_DIRECT"). The address is read through Deno's
 * FFI, so this needs the `ffi` permission and gives `undefined` without it. An ArrayBuffer's
 * memory stays where it was allocated, so the view stays aligned for its life.
 *
 * @module
 */

/** Whether {@linkcode alignedBytes} can place memory (the `ffi` permission is granted). */
export function canAlignMemory(): boolean {
  try {
    return Deno.permissions.querySync({ name: "ffi" }).state === "granted";
  } catch {
    return false;
  }
}

/**
 * `length` zeroed bytes starting at a multiple of `alignment` (a power of two), or `undefined`
 * when the address cannot be known.
 *
 * @example
 * ```ts
 * import { assert } from "@std/assert";
 * import { alignedBytes, canAlignMemory } from "./aligned_bytes.ts";
 * if (canAlignMemory()) {
 *   const bytes = alignedBytes(8192, 4096)!;
 *   assert(bytes.length === 8192);
 *   assert(Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes))) % 4096 === 0);
 * }
 * ```
 */
export function alignedBytes(length: number, alignment: number): Uint8Array | undefined {
  if (!canAlignMemory()) return undefined;
  const raw = new Uint8Array(length + alignment);
  const address = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(raw)));
  const skip = (alignment - (address % alignment)) % alignment;
  return raw.subarray(skip, skip + length);
}
