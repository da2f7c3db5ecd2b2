// What sessions report to the server's observers (the capture and the metrics build on it):
// import, submit before the device sees the URB, completion with the RET_SUBMIT's status,
// unlink, and the URBs a hang-up left unanswered; an observer that throws harms nothing.
import { assert, assertEquals } from "@std/assert";
import { UsbipServer } from "../../mod.ts";
import {
  type ObservedImport,
  UrbObservers,
  urbTransferType,
} from "../../lib/server/urb_observer.ts";
import type { CmdSubmit } from "../../lib/protocol/urb_messages.ts";
import type { UrbCompletion } from "../../lib/server/ret_submit.ts";
import { ProbeDevice } from "./_probe_device.ts";
import { eventually, importOver, setConfiguration } from "./_session_helpers.ts";
import { captureLogs } from "./_logs.ts";

Deno.test("a session reports import, submit, completion, unlink and the URBs left at a hang-up", async () => {
  const server = new UsbipServer({});
  const probe = new ProbeDevice();
  server.addDevice(probe, { busid: "1-1" });
  const seen = { lines: [] as string[], imports: [] as ObservedImport[] };
  server.observers.add({
    imported: (i) => {
      seen.imports.push(i);
      seen.lines.push(`import ${i.exported.busid} ${i.transport}`);
    },
    submitted: (i, cmd) => {
      // Reported before the device sees it: the probe holds its data transfers as they come.
      const held = probe.held.length;
      seen.lines.push(`S ${cmd.seqnum} ${urbTransferType(i, cmd)} ep${cmd.ep} held ${held}`);
    },
    completed: (_i, cmd, c) => seen.lines.push(`C ${cmd.seqnum} ${c.status} ${c.actualLength}`),
    unlinked: (_i, seqnum, target, status) => seen.lines.push(`U ${seqnum}->${target} ${status}`),
    released: (_i, aborted) => seen.lines.push(`released ${aborted.map((c) => c.seqnum)}`),
  });
  const { channel, done } = await importOver(server, "1-1");
  const config = await setConfiguration(channel, 1);
  assertEquals(config.status, 0);
  const bulkIn = channel.submit({ ep: 1, dirIn: true, length: 64 });
  const interruptIn = channel.submit({ ep: 2, dirIn: true, length: 8 });
  const interruptDone = interruptIn.done.catch((e: Error) => e.name);
  await probe.waitHeld(2);
  probe.held[0]!.complete({ status: "ok", data: new Uint8Array(10) });
  assertEquals((await bulkIn.done).actualLength, 10);
  const unlink = await channel.unlink(interruptIn.seqnum);
  assertEquals([unlink.status, await interruptDone], [-104, "AbortError"]);
  const stalled = channel.submit({ ep: 1, dirIn: false, data: new Uint8Array(4) });
  await probe.waitHeld(3);
  probe.held[2]!.complete({ status: "stall" });
  assertEquals((await stalled.done).status, -32);
  const left = channel.submit({ ep: 1, dirIn: true, length: 64 });
  await probe.waitHeld(4);
  await channel.close();
  await done;
  await left.done.catch(() => {});
  const [c, b, i, s, l] = [1, bulkIn.seqnum, interruptIn.seqnum, stalled.seqnum, left.seqnum];
  assertEquals(seen.lines, [
    "import 1-1 memory",
    `S ${c} control ep0 held 0`,
    `C ${c} 0 0`,
    `S ${b} bulk ep1 held 0`,
    `S ${i} interrupt ep2 held 1`,
    `C ${b} 0 10`,
    `U ${unlink.seqnum}->${i} -104`,
    `S ${s} bulk ep1 held 2`,
    `C ${s} -32 0`,
    `S ${l} bulk ep1 held 3`,
    `released ${l}`,
  ]);
  assertEquals(seen.imports[0]?.exported.device, probe);
});

Deno.test("an observer that throws is logged once; the session and the other observers go on", async () => {
  const logs = captureLogs();
  try {
    const server = new UsbipServer({});
    server.addDevice(new ProbeDevice(), { busid: "1-1" });
    let completions = 0;
    server.observers.add({
      completed: () => {
        throw new Error("observer broke");
      },
    });
    const remove = server.observers.add({ completed: () => completions++ });
    const { channel, done } = await importOver(server, "1-1");
    for (let n = 0; n < 3; n++) assertEquals((await setConfiguration(channel, 1)).status, 0);
    assertEquals(completions, 3);
    remove();
    assertEquals((await setConfiguration(channel, 1)).status, 0);
    assertEquals(completions, 3);
    await channel.close();
    await done;
    const broke = () => logs.lines("server").filter(([, m]) => m.includes("observer broke"));
    await eventually(() => broke().length > 0);
    assertEquals(broke().length, 1);
    assert(server.observers.active);
  } finally {
    logs.stop();
  }
});

Deno.test("a completion is delivered after the code that reported it, and before any later report", async () => {
  const observers = new UrbObservers();
  const seen: string[] = [];
  observers.add({
    completed: (_i, cmd) => seen.push(`C ${cmd.seqnum}`),
    released: () => seen.push("released"),
    unlinked: (_i, seqnum) => seen.push(`U ${seqnum}`),
  });
  const i = {} as ObservedImport;
  const cmd = (seqnum: number) => ({ seqnum }) as CmdSubmit;
  const c = {} as UrbCompletion;
  observers.reportCompleted(i, cmd(1), c);
  observers.reportCompleted(i, cmd(2), c);
  seen.push("reply written");
  await Promise.resolve();
  assertEquals(seen, ["reply written", "C 1", "C 2"]);
  // Another report delivers those waiting first, so its order stays the sessions' order.
  observers.reportCompleted(i, cmd(3), c);
  observers.report("unlinked", i, 4, 3, 0);
  observers.reportCompleted(i, cmd(5), c);
  observers.report("released", i, []);
  await Promise.resolve();
  assertEquals(seen.slice(3), ["C 3", "U 4", "C 5", "released"]);
  // An observer added or removed sees no completion reported before it came, or after it left.
  const late: number[] = [];
  observers.reportCompleted(i, cmd(6), c);
  const remove = observers.add({ completed: (_i, cmd) => late.push(cmd.seqnum) });
  observers.reportCompleted(i, cmd(7), c);
  remove();
  await Promise.resolve();
  assertEquals([late, seen.slice(7)], [[7], ["C 6", "C 7"]]);
});
