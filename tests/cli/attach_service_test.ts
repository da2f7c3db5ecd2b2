// The attach service's `max_per_user` against requests sent at once: local attaches by one user
// through the real socketpair plumbing into a fake vhci sysfs tree (plain files, a fake kernel
// that takes the attach writes), as the gateway makes them.
import { assertEquals, assertStringIncludes } from "@std/assert";
import { AttachService } from "../../lib/cli/attach_service.ts";
import { DEFAULT_ATTACH } from "../../lib/cli/config.ts";
import { LOCAL_PLUMBING } from "../../lib/cli/gateway.ts";
import {
  GadgetZero,
  memoryConnectionPair,
  OpStatus,
  type PeerInfo,
  UsbipServer,
} from "../../mod.ts";
import { controllerPorts, fakeSysfs } from "../client/_vhci_tree.ts";
import { fakeKernel, until } from "../e2e/_fake_vhci.ts";

Deno.test("attach requests one user sends at once hold no more than max_per_user ports", async () => {
  const tree = await fakeSysfs([controllerPorts(0)]);
  const kernel = fakeKernel(tree);
  // Where the port records go (made and removed by the service): in the tree's folder.
  const stateDir = `${tree.root}/vhci_hcd`;
  const server = new UsbipServer();
  const busids = ["1-1", "1-2", "1-3"];
  for (const busid of busids) server.addDevice(new GadgetZero(), { busid });
  const service = new AttachService({
    server,
    policy: { decide: () => ({ effect: "allow", reason: "this test allows all" }) },
    consoleUid: () => 1000,
    config: () => ({ ...DEFAULT_ATTACH, maxPerUser: 1, requestsPerSecond: 10 }),
    polkit: () => Promise.resolve({ authorized: false, reason: "not asked: the console user" }),
    plumbing: LOCAL_PLUMBING,
    socketPath: "/run/usbipgw.sock",
    sysfsRoot: tree.root,
    stateDir,
  });
  const peer: PeerInfo = {
    transport: "unix",
    address: "/run/usbipgw.sock",
    uid: 1000,
    pid: Deno.pid,
  };
  const [unused] = memoryConnectionPair();
  const noSocket = () => Promise.reject(new Error("a local attach asks for no socket"));
  try {
    const answers = await Promise.all(
      busids.map((busid) => service.attach({ kind: "local", busid }, peer, unused, noSocket)),
    );
    const attached = answers.filter((a) => a.status === OpStatus.ST_OK);
    assertEquals(attached.length, 1, JSON.stringify(answers));
    const refused = answers.filter((a) => a.status !== OpStatus.ST_OK);
    assertEquals(refused.length, 2);
    for (const a of refused) {
      assertEquals(a.status, OpStatus.ST_ERROR);
      assertStringIncludes(a.message, "max_per_user");
    }
    // Once that port is given back, the user may attach again.
    const port = attached[0]!.vhciPort!;
    await until(() => kernel.used.has(port), "the fake kernel took the attach");
    assertEquals((await service.detach(port, peer)).status, OpStatus.ST_OK);
    await until(() => !kernel.used.has(port), "the fake kernel took the detach");
    const again = await service.attach({ kind: "local", busid: "1-2" }, peer, unused, noSocket);
    assertEquals(again.status, OpStatus.ST_OK, again.message);
    await until(() => kernel.used.has(again.vhciPort!), "the fake kernel took the attach");
    assertEquals((await service.detach(again.vhciPort!, peer)).status, OpStatus.ST_OK);
  } finally {
    unused.close();
    kernel.stop();
    await server.close();
    await tree.remove();
  }
});
