// What the memory of a capture's chunks costs its direct writes: 16 chunks of 4 MiB written
// again and again to a new file with O_DIRECT (lib/ffi/direct_file.ts, as the capture writes
// them), from memory in ordinary pages (lib/util/aligned_bytes.ts) and from memory in
// transparent huge pages (lib/ffi/huge_pages.ts), in turns; wall time and this process's
// system time (the writes run on one of Deno's threads for blocking calls) per GiB.
// Usage: deno run -A bench/direct_write.ts [FOLDER] (default: the system's temporary folder;
// BENCH_DIRECT_GIB sets the GiB per run, default 2; BENCH_DIRECT_ROUNDS the rounds, default 5).
import { DirectFile } from "../lib/ffi/direct_file.ts";
import { alignedBytes } from "../lib/util/aligned_bytes.ts";
import { hugePageBytes } from "../lib/ffi/huge_pages.ts";
import { median, statTimes } from "./_common.ts";

const CHUNK = 4 * 1024 * 1024;
const CHUNKS = 16;
const GIB_BYTES = 1024 ** 3;
const GIB = Number(Deno.env.get("BENCH_DIRECT_GIB") ?? 2);
const ROUNDS = Number(Deno.env.get("BENCH_DIRECT_ROUNDS") ?? 5);
const folder = Deno.args[0] ?? Deno.env.get("TMPDIR") ?? "/tmp";

/** This process's system CPU seconds so far. */
function systemSeconds(): number {
  return statTimes(Deno.readTextFileSync("/proc/self/stat")).system;
}

/** The chunks of one kind of memory, written once so that their pages exist. */
function chunks(make: (length: number) => Uint8Array | undefined): Uint8Array[] {
  return Array.from({ length: CHUNKS }, () => {
    const chunk = make(CHUNK);
    if (chunk === undefined) throw new Error("Aligned memory needs the ffi permission");
    return chunk.fill(0x5a);
  });
}

/** Writes GIB GiB of `memory` to a new file in `folder`: wall and system seconds. */
async function run(memory: Uint8Array[]): Promise<{ wall: number; system: number }> {
  const path = await Deno.makeTempFile({ dir: folder, prefix: "usbipgw-direct-" });
  const file = DirectFile.open(path);
  try {
    const total = GIB * GIB_BYTES;
    const start = performance.now();
    const before = systemSeconds();
    for (let offset = 0, i = 0; offset < total; offset += CHUNK, i++) {
      const n = await file.write(memory[i % CHUNKS]!, offset);
      if (n !== CHUNK) throw new Error(`A short direct write: ${n} of ${CHUNK} bytes`);
    }
    return { wall: (performance.now() - start) / 1000, system: systemSeconds() - before };
  } finally {
    file.close();
    await Deno.remove(path);
  }
}

const kinds = [
  { name: "ordinary pages (4 KiB)", memory: chunks((n) => alignedBytes(n, 4096)) },
  { name: "transparent huge pages", memory: chunks(hugePageBytes) },
];
const results = kinds.map(() => ({ wall: [] as number[], system: [] as number[] }));
for (let round = 0; round < ROUNDS; round++) {
  for (const k of round % 2 === 0 ? [0, 1] : [1, 0]) {
    const r = await run(kinds[k]!.memory);
    results[k]!.wall.push(r.wall / GIB);
    results[k]!.system.push(r.system / GIB);
  }
}
console.log(
  `${GIB} GiB per run in 4 MiB direct writes to ${folder}, ${ROUNDS} rounds; medians per GiB`,
);
console.log("| memory | wall, s per GiB | GB/s | system CPU, s per GiB |");
console.log("| --- | ---: | ---: | ---: |");
for (const [k, kind] of kinds.entries()) {
  const wall = median(results[k]!.wall);
  console.log(
    `| ${kind.name} | ${wall.toFixed(3)} | ${(GIB_BYTES / 1e9 / wall).toFixed(2)} | ${
      median(results[k]!.system).toFixed(3)
    } |`,
  );
}
