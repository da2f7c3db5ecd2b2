/** Tests of the file back-end over a real file. */

import { assert, assertEquals } from "@std/assert";
import { openCharBackend } from "../../../lib/backends/char/mod.ts";
import { enc, NEVER } from "./_helpers.ts";

Deno.test("file appends output, has no input and writes what is queued before closing", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/out.log`;
  await Deno.writeTextFile(path, "before\n");
  const b = await openCharBackend(`file:${path}`);
  assert(b.connected);
  await b.write(enc.encode("line 1\n"), NEVER);
  await b.write(enc.encode("line 2\n"), NEVER);
  assertEquals(await b.read(10, NEVER, 10), new Uint8Array(0));
  await b.close();
  assertEquals(await Deno.readTextFile(path), "before\nline 1\nline 2\n");
  assertEquals(b.stats.droppedOut, 0);
  await Deno.remove(dir, { recursive: true });
});
