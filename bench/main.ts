// `deno task bench`: every benchmark of usbipgw beside a baseline measured in the same run,
// printed as one table. Arguments pick sections (urb, tls, scale, memory, startup, metrics,
// capture, churn; default all); BENCH_SECONDS sets the seconds per measured case. See
// BENCHMARKS.md.
import { SECONDS } from "./_common.ts";
import { urbSection } from "./_urb.ts";
import { scaleSection, scaleSetup } from "./_scale.ts";
import { memorySection } from "./_memory.ts";
import { startupSection } from "./_startup.ts";
import { tlsSection } from "./_tls.ts";
import { captureSection } from "./_capture.ts";
import { metricsSection } from "./_metrics.ts";
import { churnSection } from "./_churn.ts";
import { renderTable, type Row } from "./_table.ts";

const SECTIONS: Record<string, (dir: string) => Promise<Row[]>> = {
  urb: urbSection,
  tls: tlsSection,
  scale: scaleSection,
  memory: memorySection,
  startup: startupSection,
  metrics: metricsSection,
  capture: captureSection,
  churn: churnSection,
};

const picked = Deno.args.length > 0 ? Deno.args : Object.keys(SECTIONS);
for (const name of picked) {
  if (!(name in SECTIONS)) {
    console.error(`Unknown section ${name}; the sections are ${Object.keys(SECTIONS).join(", ")}`);
    Deno.exit(2);
  }
}

const dir = await Deno.makeTempDir({ prefix: "usbipgw-bench-" });
const rows: Row[] = [];
const started = performance.now();
try {
  for (const name of picked) {
    console.error(`bench: ${name}...`);
    rows.push(...await SECTIONS[name]!(dir));
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
const minutes = (performance.now() - started) / 60000;
console.log(
  `usbipgw benchmarks, ${SECONDS} s per case, Deno ${Deno.version.deno}, ` +
    `${navigator.hardwareConcurrency} CPUs; ${scaleSetup()}; took ${minutes.toFixed(1)} min`,
);
console.log(renderTable(rows));
