// Memory in transparent huge pages for the capture's chunks: aligned to a huge page, zeroed, and
// (where the kernel has transparent huge pages in "always" or "madvise" mode) advised so: its
// mapping in /proc/self/smaps is eligible for them. A fault gets a huge page only where one is
// free, which no test can count on.
import { assert, assertEquals } from "@std/assert";
import { HUGE_PAGE_BYTES, hugePageBytes } from "../../lib/ffi/huge_pages.ts";
import { BlockPacker } from "../../lib/capture/block_packer.ts";

const address = (bytes: Uint8Array) =>
  Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes)));

/** Why huge pages cannot be expected here, or `undefined` when they can. */
function noHugePages(): string | undefined {
  let mode: string;
  try {
    mode = Deno.readTextFileSync("/sys/kernel/mm/transparent_hugepage/enabled");
  } catch {
    return "the kernel has no transparent huge pages (no /sys/kernel/mm/transparent_hugepage)";
  }
  if (mode.includes("[never]")) return "transparent huge pages are off ([never])";
  try {
    const size = Number(
      Deno.readTextFileSync("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size"),
    );
    if (size !== HUGE_PAGE_BYTES) return `the huge page here is ${size} bytes, not 2 MiB`;
  } catch {
    // Older kernels do not say; 2 MiB is the x86_64 size.
  }
  return undefined;
}

/** A field of the mapping holding `at` in /proc/self/smaps ("THPeligible", "AnonHugePages"). */
function smapsField(at: number, field: string): number {
  let inside = false;
  for (const line of Deno.readTextFileSync("/proc/self/smaps").split("\n")) {
    const range = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (range !== null) {
      inside = parseInt(range[1]!, 16) <= at && at < parseInt(range[2]!, 16);
      continue;
    }
    const value = new RegExp(`^${field}:\\s+(\\d+)`).exec(line);
    if (inside && value !== null) return Number(value[1]);
  }
  throw new Error(`no ${field} for the mapping holding ${at.toString(16)} in /proc/self/smaps`);
}

const unavailable = noHugePages();
if (unavailable !== undefined) {
  console.log(`huge_pages_test: the huge page check is ignored: ${unavailable}`);
}

Deno.test("huge page memory starts on a huge page boundary, zeroed, with the length asked", () => {
  const length = 2 * HUGE_PAGE_BYTES + 4104;
  const bytes = hugePageBytes(length)!;
  assertEquals(bytes.length, length);
  assertEquals(address(bytes) % HUGE_PAGE_BYTES, 0);
  assert(bytes.every((b) => b === 0), "fresh memory is zeroed");
});

Deno.test({
  name: "huge page memory is advised as such: its mapping may take transparent huge pages",
  ignore: unavailable !== undefined,
  fn: () => {
    const bytes = hugePageBytes(2 * HUGE_PAGE_BYTES)!;
    bytes.fill(0xa5);
    // Whether a fault then gets a huge page is the kernel's best effort (none may be free), so
    // what is checked is the advice: in "madvise" mode only an advised mapping is eligible.
    assertEquals(smapsField(address(bytes), "THPeligible"), 1, "THPeligible of its mapping");
    const huge = smapsField(address(bytes), "AnonHugePages");
    console.log(`huge_pages_test: the mapping holds ${huge} KiB in huge pages`);
  },
});

Deno.test("an aligned packer's chunks start on a huge page boundary", () => {
  const packer = new BlockPacker(HUGE_PAGE_BYTES, 4096);
  assertEquals(packer.alignment, 4096, "this test needs the ffi permission");
  const first = packer.reserve(64);
  assertEquals((address(first)) % HUGE_PAGE_BYTES, 0);
});
