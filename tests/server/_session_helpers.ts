// Helpers for session tests: a server with devices, served over in-memory connections.
import {
  importDevice,
  memoryConnectionPair,
  type UrbChannel,
  type UsbipServer,
} from "../../mod.ts";

/** Opens an in-memory connection to `server` and imports `busid` over it. */
export async function importOver(
  server: UsbipServer,
  busid: string,
): Promise<{ channel: UrbChannel; done: Promise<void> }> {
  const [client, end] = memoryConnectionPair();
  const done = server.accept(end);
  const channel = await importDevice(client, busid);
  return { channel, done };
}

/** SET_CONFIGURATION(value). */
export function setConfiguration(channel: UrbChannel, value: number) {
  return channel.control({
    bmRequestType: 0x00,
    bRequest: 9,
    wValue: value,
    wIndex: 0,
    wLength: 0,
  });
}

/** Waits until `predicate` holds, polling every millisecond, for at most `ms`. */
export async function eventually(predicate: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) throw new Error("Condition not met in time");
    await new Promise((r) => setTimeout(r, 1));
  }
}
