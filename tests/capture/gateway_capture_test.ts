// The gateway process's captures, read back without tshark: a device's own capture=FILE holds
// that device's traffic alone while --capture holds everyone's; a capture file that cannot be
// created stops the start with a message naming it.
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { connectTcp, importDevice, Request } from "../../mod.ts";
import { runMain, startGateway, tempDir } from "../e2e/_gateway.ts";
import { readCapture } from "./_pcapng.ts";

Deno.test("a device's capture key captures that device alone; --capture captures all", async () => {
  const dir = await tempDir();
  const own = `${dir.path}/gz.pcapng`;
  const all = `${dir.path}/all.pcapng`;
  const gw = await startGateway([
    "--tcp",
    "127.0.0.1:0",
    "--device",
    `gadget-zero:busid=1-1,capture=${own}`,
    "--device",
    "gadget-zero:busid=1-2",
    "--rule",
    "allow:transport=tcp",
    "--capture",
    all,
  ]);
  try {
    for (const busid of ["1-1", "1-2"]) {
      const ch = await importDevice(await connectTcp("127.0.0.1", gw.port), busid);
      const r = await ch.control({
        bmRequestType: 0,
        bRequest: Request.SET_CONFIGURATION,
        wValue: 3,
        wIndex: 0,
        wLength: 0,
      });
      assertEquals(r.status, 0);
      await ch.close();
      await gw.waitFor(new RegExp(`device ${busid}\\) ended`));
    }
    assertEquals((await gw.stop()).code, 0);
    const mine = readCapture(await Deno.readFile(own));
    const everyone = readCapture(await Deno.readFile(all));
    const devnums = (c: typeof mine) => [...new Set(c.usb.map((r) => `${r.busnum}-${r.devnum}`))];
    assertEquals(devnums(mine).length, 1);
    assertEquals(devnums(everyone).length, 2);
    assert(mine.events.some((e) => e.includes("imported 1-1")));
    assert(!mine.events.some((e) => e.includes("1-2")), mine.events.join("\n"));
    assertStringIncludes(gw.lines.join("\n"), `Capture to ${own} ended`);
  } finally {
    await gw.stop();
    await dir.remove();
  }
});

Deno.test("serve stops at once when its capture file cannot be created", async () => {
  const r = await runMain([
    "serve",
    "--tcp",
    "127.0.0.1:0",
    "--capture",
    "/nonexistent-folder/gw.pcapng",
  ]);
  assertEquals(r.code, 1, r.stderr);
  assertStringIncludes(r.stderr, "Cannot create the capture file /nonexistent-folder/gw.pcapng");
});
