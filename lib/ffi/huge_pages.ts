/**
 * Memory backed by transparent huge pages where the kernel gives them: aligned to the huge
 * page size and advised with madvise(2) `MADV_HUGEPAGE` before its first touch, which is what
 * the default `madvise` mode of /sys/kernel/mm/transparent_hugepage/enabled asks for
 * (Documentation/admin-guide/mm/transhuge.rst). For buffers that go to a disk with `O_DIRECT`
 * again and again: the kernel pins a 2 MiB folio once instead of 512 pages, and the request
 * carries a few large segments instead of hundreds of small ones.
 *
 * @module
 */

import { lazyLibc } from "./libc.ts";
import { alignedBytes } from "../util/aligned_bytes.ts";

/**
 * The PMD-sized huge page of x86_64 and of aarch64 with 4 KiB pages. Elsewhere the advice
 * covers less than a huge page or nothing, and the memory is ordinary memory.
 */
export const HUGE_PAGE_BYTES = 2 * 1024 * 1024;

/** madvise(2) advice (include/uapi/asm-generic/mman-common.h), the same on x86_64 and aarch64. */
const MADV_HUGEPAGE = 14;

const lib = lazyLibc(
  {
    // int madvise(void *addr, size_t length, int advice);
    madvise: { parameters: ["pointer", "usize", "i32"], result: "i32" },
  } as const satisfies Deno.ForeignLibraryInterface,
);

/**
 * `length` zeroed bytes starting at a multiple of {@linkcode HUGE_PAGE_BYTES}, its whole huge
 * pages advised as such; `undefined` when the address cannot be known (no `ffi` permission).
 * Where the advice is refused (a kernel without transparent huge pages) the memory is still
 * aligned, in ordinary pages. The memory is taken when first written, so write it only after
 * this returns.
 */
export function hugePageBytes(length: number): Uint8Array | undefined {
  const bytes = alignedBytes(length, HUGE_PAGE_BYTES);
  const whole = length - (length % HUGE_PAGE_BYTES);
  if (bytes !== undefined && whole > 0) {
    lib().madvise(Deno.UnsafePointer.of(bytes), BigInt(whole), MADV_HUGEPAGE);
  }
  return bytes;
}
