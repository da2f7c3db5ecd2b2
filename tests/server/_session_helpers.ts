// Helpers for session tests: a server with devices, served over in-memory connections.
import { assertEquals } from "@std/assert";
import {
  type Connection,
  GadgetZero,
  importDevice,
  memoryConnectionPair,
  OpStatus,
  Request,
  type UrbChannel,
  UsbipServer,
} from "../../mod.ts";
import { encodeOpReqImport, FrameReader } from "../../protocol.ts";
import { ProbeDevice } from "./_probe_device.ts";

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

/**
 * Serves `end` and imports `busid` from `client` by hand (OP_REQ_IMPORT, checking that
 * OP_REP_IMPORT says OK): the serving's promise, and the client's writer and frame reader for
 * the URB phase.
 */
export async function importRaw(
  server: UsbipServer,
  client: Connection,
  end: Connection,
  busid: string,
): Promise<
  { done: Promise<void>; writer: WritableStreamDefaultWriter<Uint8Array>; reader: FrameReader }
> {
  const done = server.accept(end);
  const writer = client.writable.getWriter();
  await writer.write(encodeOpReqImport(busid));
  const reader = new FrameReader(client.readable);
  assertEquals((await reader.readOpRepImport()).status, 0);
  return { done, writer, reader };
}

/**
 * A server whose imports are refused each way there is: Gadget Zero on 1-1 (for the caller to
 * import first: then busy), a device whose import fails on 1-2, one the policy denies on
 * 1-3; and the bus ids with the status a second import of each gets, no device (9-9) first.
 */
export function refusingServer(): { server: UsbipServer; refusals: [string, number][] } {
  class Refusing extends ProbeDevice {
    override imported() {
      throw new Error("held by a host driver");
    }
  }
  const server = new UsbipServer({
    policy: {
      decide: (_peer, d) =>
        d.busid === "1-3"
          ? { effect: "deny" as const, rule: 1, reason: "rule 1 (deny busid=1-3)" }
          : { effect: "allow" as const, reason: "test" },
    },
  });
  server.addDevice(new GadgetZero(), { busid: "1-1" });
  server.addDevice(new Refusing(), { busid: "1-2" });
  server.addDevice(new ProbeDevice(), { busid: "1-3" });
  const refusals: [string, number][] = [
    ["9-9", OpStatus.ST_NODEV],
    ["1-3", OpStatus.ST_NA],
    ["1-1", OpStatus.ST_DEV_BUSY],
    ["1-2", OpStatus.ST_DEV_ERR],
  ];
  return { server, refusals };
}

/** SET_CONFIGURATION(value). */
export function setConfiguration(channel: UrbChannel, value: number) {
  return channel.control({
    bmRequestType: 0x00,
    bRequest: Request.SET_CONFIGURATION,
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
