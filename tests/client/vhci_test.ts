// Tests of vhci_hcd's sysfs formats: status parsing (HS and SS hubs, several controllers, the
// pre-SuperSpeed format), port choice, the attach/detach writes and the usbip tool's records.
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import {
  chooseFreePort,
  formatAttach,
  formatPortRecord,
  hubForSpeed,
  parsePortRecord,
  parseVhciStatus,
  readPortRecord,
  readVhciPorts,
  recordUri,
  removePortRecord,
  VdevStatus,
  VhciMissingError,
  writePortRecord,
  writeVhciAttach,
  writeVhciDetach,
} from "../../lib/client/vhci.ts";
import { controllerPorts, fakeSysfs, statusText } from "./_vhci_tree.ts";

// Linux 6.1's format: the port 0 line as the interop rig's client_attach run read it (Gadget
// Zero attached through `usbipgw attach`), a SuperSpeed device on port 8 added in the same form.
const STATUS_6_1 = `hub port sta spd dev      sockfd local_busid
hs  0000 006 003 00010002 000022 1-1
hs  0001 004 000 00000000 000000 0-0
hs  0002 004 000 00000000 000000 0-0
hs  0003 004 000 00000000 000000 0-0
hs  0004 004 000 00000000 000000 0-0
hs  0005 004 000 00000000 000000 0-0
hs  0006 004 000 00000000 000000 0-0
hs  0007 004 000 00000000 000000 0-0
ss  0008 006 005 00020001 000004 4-1
ss  0009 004 000 00000000 000000 0-0
ss  0010 004 000 00000000 000000 0-0
ss  0011 004 000 00000000 000000 0-0
ss  0012 004 000 00000000 000000 0-0
ss  0013 004 000 00000000 000000 0-0
ss  0014 004 000 00000000 000000 0-0
ss  0015 004 000 00000000 000000 0-0
`;

Deno.test("parseVhciStatus() reads both hubs of the kernel's format", () => {
  const ports = parseVhciStatus(STATUS_6_1);
  assertEquals(ports.length, 16);
  assertEquals(ports.filter((p) => p.hub === "hs").map((p) => p.port), [0, 1, 2, 3, 4, 5, 6, 7]);
  assertEquals(ports.filter((p) => p.hub === "ss").map((p) => p.port), [
    8,
    9,
    10,
    11,
    12,
    13,
    14,
    15,
  ]);
  assertEquals(ports[0], {
    controller: 0,
    hub: "hs",
    port: 0,
    status: VdevStatus.VDEV_ST_USED,
    speed: 3,
    devid: 0x10002,
    busnum: 1,
    devnum: 2,
    sockfd: 22,
    localBusid: "1-1",
  });
  assertEquals(ports[8]!.busnum, 2);
  assertEquals(ports[8]!.devnum, 1);
  assertEquals(ports[8]!.localBusid, "4-1");
  assertEquals(ports[1]!.sockfd, null, "a free port has no sockfd");
  assertEquals(ports[1]!.localBusid, null);
  // Port 15 is "0015": decimal, not octal.
  assertEquals(ports[15]!.port, 15);
});

Deno.test("parseVhciStatus() reads the format before SuperSpeed ports (all high speed)", () => {
  const old = "port sta spd dev      socket           local_busid\n" +
    "0000 006 003 00010002 ffff8880061a2c00 3-1\n" +
    "0001 004 000 00000000 0000000000000000 0-0\n";
  const ports = parseVhciStatus(old);
  assertEquals(ports.map((p) => [p.hub, p.port, p.status, p.sockfd, p.localBusid]), [
    ["hs", 0, 6, null, "3-1"],
    ["hs", 1, 4, null, null],
  ]);
});

Deno.test("parseVhciStatus() names the line it cannot parse", () => {
  assertThrows(() => parseVhciStatus("what is this\n"), SyntaxError, "unknown header");
  assertThrows(
    () => parseVhciStatus("hub port sta spd dev sockfd local_busid\nhs 0000 004 000\n"),
    SyntaxError,
    "line 2",
  );
  assertThrows(
    () =>
      parseVhciStatus(
        "hub port sta spd dev sockfd local_busid\nxx  0000 004 000 00000000 000000 0-0\n",
      ),
    SyntaxError,
    'hub "xx"',
  );
  assertThrows(
    () =>
      parseVhciStatus(
        "hub port sta spd dev sockfd local_busid\nhs  0000 004 000 zzzz 000000 0-0\n",
      ),
    SyntaxError,
    "dev",
  );
});

Deno.test("readVhciPorts() reads every controller's status file in port order", async () => {
  const tree = await fakeSysfs([controllerPorts(0), controllerPorts(1), controllerPorts(2)]);
  try {
    const ports = await readVhciPorts(tree.root);
    assertEquals(ports.length, 48);
    assertEquals(ports.map((p) => p.port), Array.from({ length: 48 }, (_, i) => i));
    assertEquals(ports[16]!.controller, 1);
    assertEquals(ports[16]!.hub, "hs");
    assertEquals(ports[24]!.hub, "ss");
    assertEquals(ports[47]!.controller, 2);
  } finally {
    await tree.remove();
  }
});

Deno.test("readVhciPorts() without vhci_hcd says to load the module", async () => {
  const root = await Deno.makeTempDir();
  try {
    const e = await assertRejects(() => readVhciPorts(root), VhciMissingError);
    assert(e.message.includes("modprobe vhci-hcd"), e.message);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("chooseFreePort() picks the first free port of the hub that fits the speed", () => {
  const c0 = controllerPorts(0).map((p) => ({ ...p, status: 6, speed: 3, devid: 0x10001 }));
  const c1 = controllerPorts(1);
  c1[0] = { ...c1[0]!, status: 6, speed: 3, devid: 0x10002 };
  const ports = [
    ...parseVhciStatus(statusText(c0), 0),
    ...parseVhciStatus(statusText(c1), 1),
  ];
  // Controller 0 is full: high speed goes to controller 1's second HS port (17).
  assertEquals(chooseFreePort(ports, 3)?.port, 17);
  assertEquals(chooseFreePort(ports, 1)?.port, 17, "low speed uses the HS hub too");
  assertEquals(chooseFreePort(ports, 5)?.port, 24, "SuperSpeed: the first free SS port");
  assertEquals(chooseFreePort(ports, 6)?.port, 24, "SuperSpeed Plus as well");
  assertEquals(chooseFreePort(ports, 3, new Set([17, 18]))?.port, 19, "skips excluded ports");
  const full = parseVhciStatus(statusText(c0), 0);
  assertEquals(chooseFreePort(full, 3), undefined);
  assertEquals(hubForSpeed(4), "hs");
  assertEquals(hubForSpeed(5), "ss");
});

Deno.test("attach and detach write the kernel's formats to vhci's files", async () => {
  const tree = await fakeSysfs([controllerPorts(0)]);
  try {
    assertEquals(formatAttach({ port: 9, sockfd: 7, devid: 0x20003, speed: 5 }), "9 7 131075 5");
    // Through the real FFI writer: one write(2) into the existing file.
    writeVhciAttach({ port: 1, sockfd: 12, devid: 0x10002, speed: 3 }, tree.root);
    assertEquals(tree.read("attach"), "1 12 65538 3");
    writeVhciDetach(1, tree.root);
    assertEquals(tree.read("detach"), "1");
    // The writer never creates a missing attribute.
    await Deno.remove(`${tree.vhci}/detach`);
    const e = assertThrows(() => writeVhciDetach(1, tree.root));
    assertEquals((e as { errno?: number }).errno, 2, "ENOENT");
  } finally {
    await tree.remove();
  }
});

Deno.test("port records are the usbip tool's 'host service busid' lines", async () => {
  const dir = `${await Deno.makeTempDir()}/vhci_hcd`;
  try {
    const tcp = { host: "192.168.1.7", service: "3240", busid: "1-1" };
    assertEquals(formatPortRecord(tcp), "192.168.1.7 3240 1-1\n");
    assertEquals(recordUri(tcp), "usbip://192.168.1.7:3240/1-1");
    // A path with a space stays three words.
    const unix = { host: "unix:/run/my gw.sock", service: "-", busid: "1-2" };
    assertEquals(formatPortRecord(unix), "unix:/run/my%20gw.sock - 1-2\n");
    assertEquals(parsePortRecord(formatPortRecord(unix)), unix);
    assertEquals(parsePortRecord("only two\n"), undefined);

    await writePortRecord(dir, 3, tcp);
    assertEquals(Deno.readTextFileSync(`${dir}/port3`), "192.168.1.7 3240 1-1\n");
    assertEquals((await Deno.stat(dir)).mode! & 0o777, 0o700);
    assertEquals(await readPortRecord(dir, 3), tcp);
    // A record the usbip tool wrote (IPv6 host as the user typed it).
    Deno.writeTextFileSync(`${dir}/port8`, "::1 3240 2-1\n");
    assertEquals(await readPortRecord(dir, 8), { host: "::1", service: "3240", busid: "2-1" });
    assertEquals(await readPortRecord(dir, 5), undefined);
    await removePortRecord(dir, 3);
    assertEquals(await readPortRecord(dir, 3), undefined);
    assert(Deno.statSync(dir).isDirectory, "the folder stays while port8 is in it");
    await removePortRecord(dir, 8);
    assertThrows(() => Deno.statSync(dir), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir.replace(/\/vhci_hcd$/, ""), { recursive: true });
  }
});
