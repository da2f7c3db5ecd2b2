/** Tests of the pty back-end over a real pty. */

import { assert, assertEquals } from "@std/assert";
import { openCharBackend } from "../../../lib/backends/char/mod.ts";
import { ptyProblem } from "../_pty_facility.ts";
import { dec, enc, NEVER, readN, until } from "./_helpers.ts";

const noPty = ptyProblem();
if (noPty) console.log(`Skipping the pty test: ${noPty}`);

Deno.test({
  name: "pty gives a raw slave, carries data both ways and sees the slave hang up",
  ignore: noPty !== undefined,
  fn: async () => {
    const b = await openCharBackend("pty");
    try {
      assert(b.address.startsWith("/dev/pts/"), b.address);
      assertEquals(b.description, `pty ${b.address}`);
      const slave = await Deno.open(b.address, { read: true, write: true });
      await slave.write(enc.encode("from slave\n"));
      assertEquals(dec.decode(await readN(b, 11)), "from slave\n");
      await b.write(enc.encode("to slave\n"), NEVER);
      const got = new Uint8Array(9);
      let n = 0;
      while (n < 9) n += (await slave.read(got.subarray(n))) ?? 0;
      assertEquals(dec.decode(got), "to slave\n");
      // Raw mode: nothing was echoed back and no CR was added.
      assertEquals((await b.read(64, NEVER, 50))?.length, 0);
      slave.close();
      await until(() => !b.connected);
      assertEquals(await b.write(enc.encode("nobody"), NEVER), 6);
      assertEquals(b.stats.droppedOut, 6);
      const reopened = await Deno.open(b.address, { read: true, write: true });
      await until(() => b.connected);
      reopened.close();
    } finally {
      await b.close();
    }
  },
});
