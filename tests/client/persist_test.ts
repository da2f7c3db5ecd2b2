// Tests of the attach --persist state machine with a virtual clock, scripted attach results
// and scripted vhci status.
import { assert, assertEquals, assertRejects } from "@std/assert";
import type { AttachResult } from "../../lib/client/attach.ts";
import { ImportRefusedError } from "../../lib/client/usbip_client.ts";
import { type PersistState, runPersistent, stillAttached } from "../../lib/client/persist.ts";
import type { VhciPort } from "../../lib/client/vhci.ts";

function port(over: Partial<VhciPort> = {}): VhciPort {
  return {
    controller: 0,
    hub: "hs",
    port: 0,
    status: 4,
    speed: 0,
    devid: 0,
    busnum: 0,
    devnum: 0,
    sockfd: null,
    localBusid: null,
    ...over,
  };
}

function attached(p: number, sockfd: number): AttachResult {
  return {
    port: p,
    hub: "hs",
    devid: 0x10002,
    speed: 3,
    sockfd,
    remote: { transport: "tcp", host: "127.0.0.1", port: 3240 },
    channel: "tcp",
    device: {
      path: "",
      busid: "1-1",
      busnum: 1,
      devnum: 2,
      speed: 3,
      idVendor: 0x0525,
      idProduct: 0xa4a0,
      bcdDevice: 0,
      bDeviceClass: 0xff,
      bDeviceSubClass: 0,
      bDeviceProtocol: 0,
      bConfigurationValue: 3,
      bNumConfigurations: 2,
      bNumInterfaces: 1,
    },
    record: { host: "127.0.0.1", service: "3240", busid: "1-1" },
  };
}

function inUse(a: AttachResult): VhciPort {
  return port({
    port: a.port,
    status: 6,
    speed: 3,
    devid: a.devid,
    busnum: 1,
    devnum: 2,
    sockfd: a.sockfd,
    localBusid: "3-1",
  });
}

Deno.test("stillAttached() tells our port from a freed or re-used one", () => {
  const a = attached(0, 5);
  assert(stillAttached([inUse(a)], a));
  assert(stillAttached([port({ status: 5 })], a), "initializing (no devid shown yet)");
  assert(stillAttached([port({ status: 7 })], a), "error: not freed yet");
  assert(!stillAttached([port()], a), "free");
  assert(!stillAttached([{ ...inUse(a), sockfd: 9 }], a), "someone else's attach");
  assert(!stillAttached([{ ...inUse(a), devid: 0x10003 }], a), "another device");
  assert(!stillAttached([], a), "the port is gone");
});

/** A virtual clock: sleep() advances it and runs the scripted events due. */
function harness(script: {
  attach: (n: number, now: number) => AttachResult | Error;
  ports: (now: number, current: AttachResult | undefined) => VhciPort[];
  stopAt: number;
}) {
  let now = 0;
  const ac = new AbortController();
  const log: string[] = [];
  const states: [PersistState, number][] = [];
  let current: AttachResult | undefined;
  let n = 0;
  const detached: number[] = [];
  const removed: number[] = [];
  const run = runPersistent({
    signal: ac.signal,
    now: () => now,
    sleep: (ms) => {
      now += ms;
      if (now >= script.stopAt) ac.abort();
      return Promise.resolve();
    },
    attach: () => {
      const r = script.attach(n++, now);
      if (r instanceof Error) {
        log.push(`fail@${now}`);
        return Promise.reject(r);
      }
      current = r;
      log.push(`attach@${now}:${r.port}`);
      return Promise.resolve(r);
    },
    readPorts: () => Promise.resolve(script.ports(now, current)),
    detach: (p) => {
      detached.push(p);
      return Promise.resolve();
    },
    removeRecord: (p) => {
      removed.push(p);
      return Promise.resolve();
    },
    isFatal: (e) => e instanceof ImportRefusedError && e.status === 1,
    onState: (s, at) => states.push([s, at]),
  });
  return { run, log, states, detached, removed };
}

Deno.test("persist re-attaches after a drop, backing off 1, 2, 4 s while the server is away", async () => {
  // Attached at 0; the port is freed at 3 s; the server is back at 9 s.
  const h = harness({
    attach: (n, now) =>
      now >= 9000 || n === 0 ? attached(n === 0 ? 0 : 1, 10 + n) : new Error("ECONNREFUSED"),
    ports: (now, cur) => {
      const list = [port({ port: 0 }), port({ port: 1 })];
      if (cur !== undefined && !(cur.port === 0 && now >= 3000)) list[cur.port] = inUse(cur);
      return list;
    },
    stopAt: 20000,
  });
  const outcome = await h.run;
  // Polls every 500 ms: the drop is seen at 3000; attempts at 3000 (fail), then 4000, 6000,
  // 10000 (the delays 1, 2, 4 s), which succeeds.
  assertEquals(h.log, ["attach@0:0", "fail@3000", "fail@4000", "fail@6000", "attach@10000:1"]);
  assertEquals(h.removed, [0], "the freed port's record is removed");
  assertEquals(outcome.attaches, 2);
  assertEquals(outcome.drops, 1);
  // Stopped at 20 s with port 1 still ours: detached.
  assertEquals(h.detached, [1]);
  assertEquals(outcome.detachedPort, 1);
  assertEquals(h.states.at(-1)?.[0], "stopped");
  assertEquals(
    h.states.filter(([s]) => s === "waiting").map(([, at]) => at),
    [3000, 4000, 6000],
  );
});

Deno.test("persist caps the retry delay and resets it after a success", async () => {
  // Seven failures, an attach at 45 s, a drop at 50 s, one failure, an attach again.
  const h = harness({
    attach: (n) => n < 7 || n === 8 ? new Error("EHOSTUNREACH") : attached(0, n),
    ports: (now, cur) => cur && !(cur.sockfd === 7 && now >= 50000) ? [inUse(cur)] : [port()],
    stopAt: 60000,
  });
  await h.run;
  const fails = h.log.filter((l) => l.startsWith("fail")).map((l) => Number(l.split("@")[1]));
  const gaps = fails.slice(1, 7).map((t, i) => t - fails[i]!);
  assertEquals(gaps, [1000, 2000, 4000, 8000, 10000, 10000]);
  assertEquals(h.log.slice(7), ["attach@45000:0", "fail@50000", "attach@51000:0"]);
  assertEquals(h.detached, [0]);
});

Deno.test("persist does not detach a port someone else now holds, and stops on a fatal refusal", async () => {
  const a = attached(0, 3);
  const h = harness({
    attach: (n) => n === 0 ? a : new ImportRefusedError("1-1", 1),
    // At 2 s the port holds another attach (a different sockfd).
    ports: (now) => [now >= 2000 ? { ...inUse(a), sockfd: 99 } : inUse(a)],
    stopAt: 100000,
  });
  const e = await assertRejects(() => h.run, ImportRefusedError);
  assertEquals(e.status, 1);
  assertEquals(h.detached, [], "the port was not ours any more");
  assertEquals(h.log, ["attach@0:0", "fail@2000"]);
  assertEquals(h.states.at(-1)?.[0], "stopped");
});
