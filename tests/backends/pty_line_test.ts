/** Tests that the pty back-end shows the device's line settings on the slave's termios. */

import { assert, assertEquals } from "@std/assert";
import { type CharBackend, openCharBackend } from "../../lib/backends/char_backend.ts";
import { PtyMaster, TERMIOS_SPEEDS } from "../../lib/backends/_pty.ts";

function openPty(): PtyMaster | undefined {
  try {
    return PtyMaster.open();
  } catch (e) {
    console.log(`Skipping: cannot open a pty (${(e as Error).message})`);
    return undefined;
  }
}

/** `stty -F PATH -a` of the host (coreutils or busybox), or undefined without stty. */
async function sttyAll(path: string): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("stty", { args: ["-F", path, "-a"], stderr: "piped" })
      .output();
    if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
    return new TextDecoder().decode(out.stdout);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

// Linux's pty driver keeps every pty at CS8 without parity (pty_set_termios clears CSIZE and
// PARENB and sets CS8): only the speed and the stop bits can show there.
Deno.test("PtyMaster.setLineSettings() sets the slave's speed and stop bits", () => {
  const pty = openPty();
  if (pty === undefined) return;
  try {
    assertEquals(
      pty.setLineSettings({ baudRate: 115200, dataBits: 7, parity: "even", stopBits: 2 }),
      true,
    );
    const s = pty.lineSettings();
    assertEquals([s.baudRate, s.stopBits], [115200, 2]);
    pty.setLineSettings({ baudRate: 9600, dataBits: 8, parity: "none", stopBits: 1 });
    assertEquals(pty.lineSettings(), { baudRate: 9600, dataBits: 8, parity: "none", stopBits: 1 });
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
});

Deno.test("the pty back-end sets the slave's termios when the line settings change", async () => {
  let b: CharBackend;
  try {
    b = await openCharBackend("pty");
  } catch (e) {
    console.log(`Skipping: cannot open a pty (${(e as Error).message})`);
    return;
  }
  try {
    const before = await sttyAll(b.address);
    if (before === undefined) {
      console.log("Skipping the stty check: no stty on this machine");
      return;
    }
    assert(!/speed 115200 baud/.test(before), before);
    b.setLineSettings({ baudRate: 115200, dataBits: 8, parity: "none", stopBits: 1 });
    const a = (await sttyAll(b.address))!;
    assert(/speed 115200 baud/.test(a), a);
    assert(/(^|\s)cs8(\s|$)/.test(a) && /-parenb/.test(a) && /-cstopb/.test(a), a);
    // Raw mode stays: no echo, no canonical input.
    assert(/-echo(\s|$)/.test(a) && /-icanon/.test(a), a);
    b.setLineSettings({ baudRate: 57600, dataBits: 8, parity: "none", stopBits: 2 });
    const c = (await sttyAll(b.address))!;
    assert(/speed 57600 baud/.test(c) && /(^|\s)cstopb/.test(c), c);
  } finally {
    await b.close();
  }
});
