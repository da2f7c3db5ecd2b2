/** Tests of the loopback back-end. */

import { assert, assertEquals } from "@std/assert";
import { openCharBackend } from "../../../lib/backends/char/mod.ts";
import { dec, enc, NEVER } from "./_helpers.ts";

Deno.test("loopback echoes, reads in order, times out empty and stops on abort", async () => {
  const b = await openCharBackend("loopback");
  assertEquals(b.description, "loopback");
  assert(b.connected);
  const first = b.read(2, NEVER);
  const second = b.read(10, NEVER);
  assertEquals(await b.write(enc.encode("abcdef"), NEVER), 6);
  assertEquals(dec.decode((await first)!), "ab");
  assertEquals(dec.decode((await second)!), "cdef");
  const t0 = performance.now();
  assertEquals((await b.read(10, NEVER, 20))?.length, 0);
  assert(performance.now() - t0 >= 15);
  const ac = new AbortController();
  const pending = b.read(10, ac.signal);
  ac.abort();
  assertEquals(await pending, null);
  assertEquals(b.stats, { bytesIn: 6, bytesOut: 6, droppedOut: 0 });
  await b.close();
});
