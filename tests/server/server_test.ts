// Tests of the server's device registry: bus ids it never hands out twice, the log line when a
// device leaves, and the audit line for the devices a list hides from a peer.
import { assert, assertEquals } from "@std/assert";
import {
  type Connection,
  GadgetZero,
  memoryConnectionPair,
  type PeerInfo,
  requestDeviceList,
  UsbipServer,
} from "../../mod.ts";
import { parseRule, RulePolicy } from "../../lib/policy/rules.ts";
import { ProbeDevice } from "./_probe_device.ts";
import { captureLogs, render } from "./_logs.ts";

Deno.test("a bus id the server picked is never picked again, even after its device left", async () => {
  const server = new UsbipServer();
  const add = (busid?: string) =>
    server.addDevice(new ProbeDevice(), busid === undefined ? {} : { busid }).busid;
  assertEquals([add(), add()], ["1-1", "1-2"]);
  assert(server.removeDevice("1-1"));
  assertEquals(add(), "1-3", "1-1 was removed: a client may still hold it");
  // A device that goes away on its own (unplugged) frees nothing for the server to pick.
  server.devices.find((d) => d.busid === "1-2")!.device.disconnect("unplugged");
  assertEquals(server.devices.map((d) => d.busid), ["1-3"]);
  assertEquals(add(), "1-4");
  // An explicit bus id may take a freed one; the server then skips it too.
  assertEquals(add("1-1"), "1-1");
  assertEquals(add("1-5"), "1-5");
  assert(server.removeDevice("1-5"));
  assertEquals(add(), "1-6");
  assertEquals(server.devices.map((d) => d.busid), ["1-3", "1-4", "1-1", "1-6"]);
  await server.close();
});

Deno.test("a removed device is logged as removed, an unplugged one as gone, none at shutdown", async () => {
  const logs = captureLogs();
  try {
    const server = new UsbipServer();
    const devices = ["1-1", "1-2", "1-3", "1-4"].map((busid) =>
      server.addDevice(new GadgetZero(), { busid, name: `gz${busid}` })
    );
    /** The server's lines about a device leaving. */
    const leaving = () => logs.lines("server").filter(([, m]) => m.startsWith("Device "));
    server.removeDevice("1-1");
    devices[1]!.device.disconnect("unplugged");
    assertEquals(leaving(), [
      ["info", "Device 1-1 (gz1-1) was removed"],
      ["info", "Device 1-2 (gz1-2) is gone"],
    ]);
    // At shutdown nothing per device; what leaves afterwards is routine, at debug level.
    await server.close();
    assertEquals(leaving().length, 2);
    server.removeDevice("1-3");
    devices[3]!.device.disconnect("closed by its owner");
    assertEquals(leaving().slice(2), [
      ["debug", "Device 1-3 (gz1-3) closed"],
      ["debug", "Device 1-4 (gz1-4) closed"],
    ]);
  } finally {
    logs.stop();
  }
});

/** An in-memory connection whose server end reports `peer`. */
function pairFrom(peer: PeerInfo): [Connection, Connection] {
  const [client, end] = memoryConnectionPair();
  return [client, { ...end, peer }];
}

Deno.test("a device list that hides devices from a peer says which, and why, in one audit line", async () => {
  const logs = captureLogs();
  try {
    const policy = new RulePolicy({
      rules: [
        parseRule({ action: "deny", busid: "1-2" }),
        parseRule({ action: "allow", transport: "tcp", busid: "1-1" }),
      ],
    });
    const server = new UsbipServer({ policy });
    for (const busid of ["1-1", "1-2", "1-3"]) server.addDevice(new GadgetZero(), { busid });
    const list = async (peer: PeerInfo) => {
      const [client, end] = pairFrom(peer);
      const done = server.accept(end);
      const busids = (await requestDeviceList(client)).map((d) => d.busid);
      await done;
      return busids;
    };
    const hiding = () =>
      logs.records.filter((r) =>
        r.category.join(".") === "usbipgw.audit" && render(r).includes("hidden from")
      );
    assertEquals(await list({ transport: "tcp", address: "192.0.2.7:4000" }), ["1-1"]);
    assertEquals(hiding().length, 1);
    const line = hiding()[0]!;
    assertEquals(line.level, "info");
    assertEquals(
      render(line),
      "Session " + line.properties.id + " (tcp 192.0.2.7:4000): hidden from the device list: " +
        "1-2 (rule 1 (deny busid=1-2)); " +
        "1-3 (no rule matched: TCP peers are denied unless a rule allows)",
    );
    assertEquals(line.properties.devices, [
      { busid: "1-2", reason: "rule 1 (deny busid=1-2)" },
      { busid: "1-3", reason: "no rule matched: TCP peers are denied unless a rule allows" },
    ]);
    // Root over the unix socket is denied 1-2 by rule 1 only.
    const root: PeerInfo = { transport: "unix", address: "/run/gw.sock", uid: 0, gid: 0, pid: 9 };
    assertEquals(await list(root), ["1-1", "1-3"]);
    assertEquals(hiding().length, 2);
    assertEquals(hiding()[1]!.properties.devices, [
      { busid: "1-2", reason: "rule 1 (deny busid=1-2)" },
    ]);
    // A list that hides nothing adds no line.
    policy.setRules([]);
    assertEquals(await list(root), ["1-1", "1-2", "1-3"]);
    assertEquals(hiding().length, 2);
    await server.close();
  } finally {
    logs.stop();
  }
});
