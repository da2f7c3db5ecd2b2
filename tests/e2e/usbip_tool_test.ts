// Debian's `usbip` tool (apt-get install usbip) lists the gateway's devices with the right
// VID:PID and interface classes.
import { assertStringIncludes } from "@std/assert";
import { startGateway } from "./_gateway.ts";

async function findUsbip(): Promise<string | undefined> {
  for (const dir of ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin"]) {
    try {
      await Deno.stat(`${dir}/usbip`);
      return `${dir}/usbip`;
    } catch {
      // Not there.
    }
  }
  return undefined;
}

Deno.test("usbip list -r shows the served devices with VID:PID and interface classes", async () => {
  const usbip = await findUsbip();
  if (usbip === undefined) {
    if (Deno.env.get("CI")) {
      throw new Error("usbip is not installed: .ci/run must install it (apt-get install usbip)");
    }
    console.log("skipped: the usbip tool is not installed (apt-get install usbip)");
    return;
  }
  const gw = await startGateway([
    "--tcp",
    "127.0.0.1:0",
    "--device",
    "gadget-zero:busid=1-1",
    "--device",
    "keyboard:busid=1-2",
    "--rule",
    "allow:transport=tcp,busid=1-1|1-2",
  ]);
  try {
    const out = await new Deno.Command(usbip, {
      args: ["--tcp-port", String(gw.port), "list", "-r", "127.0.0.1"],
      stdin: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    const err = new TextDecoder().decode(out.stderr);
    if (!out.success) throw new Error(`usbip failed (${out.code}): ${err}`);
    assertStringIncludes(text, "1-1: ");
    assertStringIncludes(text, "(0525:a4a0)");
    assertStringIncludes(
      text,
      "0 - Vendor Specific Class / unknown subclass / unknown protocol (ff/00/00)",
    );
    assertStringIncludes(text, "1-2: ");
    assertStringIncludes(text, "(1209:0001)");
    assertStringIncludes(text, "(03/01/01)");
  } finally {
    await gw.stop();
  }
});
