/**
 * Tests of the pty back-end over a real pty: the data path, and the line settings it shows on
 * the slave's termios.
 */

import { assert, assertEquals } from "@std/assert";
import { openCharBackend } from "../../../lib/backends/char/mod.ts";
import { PtyMaster, TERMIOS_SPEEDS } from "../../../lib/backends/char/_pty.ts";
import { onPath } from "../../_on_path.ts";
import { ptyProblem } from "./_pty_facility.ts";
import { dec, enc, NEVER, readN, until } from "./_helpers.ts";

const noPty = ptyProblem();
if (noPty) console.log(`Skipping the pty tests: ${noPty}`);
const noStty = noPty ??
  (await onPath("stty") ? undefined : "stty is not installed (Debian: coreutils)");
if (noStty && !noPty) console.log(`Skipping the pty termios test: ${noStty}`);

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

/** `stty -F PATH -a` of the host (coreutils or busybox). */
async function sttyAll(path: string): Promise<string> {
  const out = await new Deno.Command("stty", { args: ["-F", path, "-a"], stderr: "piped" })
    .output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

// Linux's pty driver keeps every pty at CS8 without parity (pty_set_termios clears CSIZE and
// PARENB and sets CS8): only the speed and the stop bits can show there.
Deno.test({
  name: "PtyMaster.setLineSettings() sets the slave's speed and stop bits",
  ignore: noPty !== undefined,
  fn: () => {
    const pty = PtyMaster.open();
    try {
      assertEquals(
        pty.setLineSettings({ baudRate: 115200, dataBits: 7, parity: "even", stopBits: 2 }),
        true,
      );
      const s = pty.lineSettings();
      assertEquals([s.baudRate, s.stopBits], [115200, 2]);
      pty.setLineSettings({ baudRate: 9600, dataBits: 8, parity: "none", stopBits: 1 });
      assertEquals(pty.lineSettings(), {
        baudRate: 9600,
        dataBits: 8,
        parity: "none",
        stopBits: 1,
      });
      // Every termios rate round-trips.
      for (const rate of TERMIOS_SPEEDS.keys()) {
        pty.setLineSettings({ baudRate: rate, dataBits: 8, parity: "none", stopBits: 1 });
        assertEquals(pty.lineSettings().baudRate, rate);
      }
      // A rate termios has no name for keeps the speed; the stop bits still change (1.5 is
      // shown as 2).
      pty.setLineSettings({ baudRate: 2400, dataBits: 8, parity: "none", stopBits: 1 });
      assertEquals(
        pty.setLineSettings({ baudRate: 115385, dataBits: 8, parity: "none", stopBits: 1.5 }),
        false,
      );
      assertEquals(pty.lineSettings(), {
        baudRate: 2400,
        dataBits: 8,
        parity: "none",
        stopBits: 2,
      });
    } finally {
      pty.close();
    }
  },
});

Deno.test({
  name: "the pty back-end sets the slave's termios when the line settings change",
  ignore: noStty !== undefined,
  fn: async () => {
    const b = await openCharBackend("pty");
    try {
      const before = await sttyAll(b.address);
      assert(!/speed 115200 baud/.test(before), before);
      b.setLineSettings({ baudRate: 115200, dataBits: 8, parity: "none", stopBits: 1 });
      const a = await sttyAll(b.address);
      assert(/speed 115200 baud/.test(a), a);
      assert(/(^|\s)cs8(\s|$)/.test(a) && /-parenb/.test(a) && /-cstopb/.test(a), a);
      // Raw mode stays: no echo, no canonical input.
      assert(/-echo(\s|$)/.test(a) && /-icanon/.test(a), a);
      b.setLineSettings({ baudRate: 57600, dataBits: 8, parity: "none", stopBits: 2 });
      const c = await sttyAll(b.address);
      assert(/speed 57600 baud/.test(c) && /(^|\s)cstopb/.test(c), c);
    } finally {
      await b.close();
    }
  },
});
