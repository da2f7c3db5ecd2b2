/** Tests of what every character back-end shares (bounds, drops, order, line settings). */

import { assert, assertEquals } from "@std/assert";
import { formatLineSettings, openCharBackend } from "../../../lib/backends/char/mod.ts";
import { dec, enc, NEVER, until } from "./_helpers.ts";

Deno.test("a back-end that stops taking output stays bounded and counts what it drops", async () => {
  const b = await openCharBackend("loopback", { queueBytes: 1024, stallTimeoutMs: 50 });
  assertEquals(await b.write(new Uint8Array(1000), NEVER), 1000);
  const t0 = performance.now();
  assertEquals(await b.write(new Uint8Array(500), NEVER), 500);
  assert(performance.now() - t0 >= 40, "the write waited for room first");
  assertEquals(b.stats.droppedOut, 476);
  // Still full and stalled: further output is dropped at once.
  const t1 = performance.now();
  for (let i = 0; i < 1000; i++) await b.write(new Uint8Array(1024), NEVER);
  assert(performance.now() - t1 < 1000);
  assertEquals(b.stats.droppedOut, 476 + 1024 * 1000);
  assertEquals(b.inputAvailable, 1024);
  // Once the reader takes bytes, output flows again.
  assertEquals((await b.read(100, NEVER))?.length, 100);
  assertEquals(await b.write(new Uint8Array(100), NEVER), 100);
  assertEquals(b.stats.bytesOut, 1124);
  assertEquals(b.stats.droppedOut, 476 + 1024 * 1000);
  await b.close();
});

Deno.test("a write waiting for room ends with what was queued when aborted", async () => {
  const b = await openCharBackend("loopback", { queueBytes: 10, stallTimeoutMs: 10_000 });
  const ac = new AbortController();
  const pending = b.write(new Uint8Array(25), ac.signal);
  await until(() => b.inputAvailable === 10);
  ac.abort();
  assertEquals(await pending, 10);
  assertEquals(b.stats.droppedOut, 0);
  await b.close();
});

Deno.test("writes waiting for room keep their order", async () => {
  const b = await openCharBackend("loopback", { queueBytes: 10 });
  const first = b.write(enc.encode("a".repeat(15)), NEVER);
  const second = b.write(enc.encode("bbbbb"), NEVER);
  const third = b.write(enc.encode("cc"), NEVER);
  let text = "";
  while (text.length < 22) text += dec.decode((await b.read(3, NEVER))!);
  assertEquals(text, "a".repeat(15) + "bbbbb" + "cc");
  assertEquals(await Promise.all([first, second, third]), [15, 5, 2]);
  await b.close();
});

Deno.test("setLineSettings() records changes and tells listeners once per change", async () => {
  const b = await openCharBackend("loopback");
  const seen: string[] = [];
  const unsubscribe = b.onLineSettings((s) => seen.push(formatLineSettings(s)));
  assertEquals(b.lineSettings, undefined);
  const s = { baudRate: 115200, dataBits: 8, parity: "none", stopBits: 1 } as const;
  b.setLineSettings(s);
  b.setLineSettings(s);
  b.setLineSettings({ ...s, parity: "odd", stopBits: 2 });
  unsubscribe();
  b.setLineSettings(s);
  assertEquals(seen, ["115200 8N1", "115200 8O2"]);
  assertEquals(b.lineSettings, s);
  await b.close();
});
