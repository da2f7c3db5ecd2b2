// A user's own device program, written against mod.ts as a device author would: an HID
// keyboard served in this process and put into the kernel through the local gateway (a
// stream attach, no root). Prints the vhci port, then types every line read from stdin; at
// the end of stdin it unplugs the keyboard. Usage: user_keyboard.ts GATEWAY_SOCKET
import { TextLineStream } from "@std/streams";
import { attachOwnDevice, HidKeyboard } from "../../../mod.ts";

const keyboard = new HidKeyboard({ serial: "USERKBD1" });
const attached = await attachOwnDevice(keyboard, { gatewaySocket: Deno.args[0]! });
console.log(attached.vhciPort);
const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).pipeThrough(
  new TextLineStream(),
);
for await (const line of lines) await keyboard.type(`${line}\n`);
await attached.close();
