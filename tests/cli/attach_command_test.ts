// End-to-end tests of `usbipgw attach`, `detach` and `port`: the real gateway process, the
// real CLI process, a fake vhci sysfs tree (plain files) instead of the kernel. Checks the
// text vhci would get, the records, the output and every documented exit code.
import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import { importDevice, requestDeviceList } from "../../lib/client/usbip_client.ts";
import { connectTcp, connectUnix } from "../../lib/transport/mod.ts";
import { runMain, startGateway, tempDir } from "../e2e/_gateway.ts";
import { controllerPorts, fakeSysfs } from "../client/_vhci_tree.ts";

Deno.test("usbipgw attach/detach/port against the real gateway", async (t) => {
  const dir = await tempDir();
  const sock = `${dir.path}/gw.sock`;
  const gw = await startGateway([
    "--tcp",
    "127.0.0.1:0",
    "--unix",
    sock,
    "--device",
    "gadget-zero:busid=1-1",
    "--device",
    "keyboard:busid=1-2",
    "--rule",
    "allow:transport=tcp,source=127.0.0.0/8,busid=1-1",
    "--rule",
    "allow:transport=unix",
  ]);
  const tree = await fakeSysfs([controllerPorts(0)]);
  const state = `${dir.path}/vhci_hcd`;
  const remote = `127.0.0.1:${gw.port}`;
  const common = ["--sysfs", tree.root, "--state-dir", state];
  // The devids vhci must get: busnum << 16 | devnum from the gateway's own device list.
  // (over the unix socket, which sees both devices).
  const listed = await requestDeviceList(await connectUnix(sock));
  const devid = new Map(listed.map((d) => [d.busid, (d.busnum << 16) | d.devnum]));
  try {
    await t.step(
      "attach over TCP prints the port and writes 'port sockfd devid speed'",
      async () => {
        const r = await runMain(["attach", "-r", remote, "-b", "1-1", ...common]);
        assertEquals(r.code, 0, r.stderr);
        assertEquals(r.stdout, "0\n");
        assertMatch(tree.read("attach"), new RegExp(`^0 \\d+ ${devid.get("1-1")} 3$`));
        assertEquals(Deno.readTextFileSync(`${state}/port0`), `127.0.0.1 ${gw.port} 1-1\n`);
        // Without vhci holding the socket the session ends at once: the gateway saw the import.
        await gw.waitFor(/imported 1-1 /);
      },
    );

    await t.step("attach over the unix socket records unix:PATH", async () => {
      const r = await runMain(["attach", "--unix", sock, "-b", "1-2", ...common]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout, "0\n");
      assertMatch(tree.read("attach"), new RegExp(`^0 \\d+ ${devid.get("1-2")} 2$`));
      assertEquals(Deno.readTextFileSync(`${state}/port0`), `unix:${sock} - 1-2\n`);
    });

    await t.step("the server's refusals map to exit codes 4, 5 and 6", async () => {
      const conn = await connectTcp("127.0.0.1", gw.port);
      const held = await importDevice(conn, "1-1");
      try {
        const busy = await runMain(["attach", "-r", remote, "-b", "1-1", ...common]);
        assertEquals(busy.code, 4, busy.stderr);
        assertStringIncludes(busy.stderr, "device busy");
      } finally {
        await held.close();
      }
      const nodev = await runMain(["attach", "-r", remote, "-b", "7-7", ...common]);
      assertEquals(nodev.code, 5, nodev.stderr);
      assertStringIncludes(nodev.stderr, "no such device");
      // The keyboard reaches TCP peers only through a rule that names it.
      const na = await runMain(["attach", "-r", remote, "-b", "1-2", ...common]);
      assertEquals(na.code, 6, na.stderr);
      assertStringIncludes(na.stderr, "policy");
    });

    await t.step("no server, no vhci_hcd, no free port: exit codes 3, 7 and 8", async () => {
      const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const unused = free.addr.port;
      free.close();
      const refused = await runMain([
        "attach",
        "-r",
        `127.0.0.1:${unused}`,
        "-b",
        "1-1",
        ...common,
      ]);
      assertEquals(refused.code, 3, refused.stderr);
      assertStringIncludes(refused.stderr, "ECONNREFUSED");
      const missing = await runMain([
        "attach",
        "-r",
        remote,
        "-b",
        "1-1",
        "--sysfs",
        dir.path,
        "--state-dir",
        state,
      ]);
      assertEquals(missing.code, 7, missing.stderr);
      assertStringIncludes(missing.stderr, "modprobe vhci-hcd");
      tree.setStatus(
        0,
        controllerPorts(0).map((p) =>
          p.hub === "hs" ? { ...p, status: 6, speed: 3, devid: 0x20000 + p.port, sockfd: 3 } : p
        ),
      );
      const full = await runMain(["attach", "-r", remote, "-b", "1-1", ...common]);
      assertEquals(full.code, 8, full.stderr);
      assertStringIncludes(full.stderr, "no free high-speed port");
    });

    await t.step("port lists the ports in use with their records", async () => {
      const ports = controllerPorts(0);
      ports[3] = { ...ports[3]!, status: 6, speed: 3, devid: 0x10001, sockfd: 6, busid: "3-1" };
      tree.setStatus(0, ports);
      Deno.writeTextFileSync(`${state}/port3`, `127.0.0.1 ${gw.port} 1-1\n`);
      const json = await runMain(["port", "--json", ...common]);
      assertEquals(json.code, 0, json.stderr);
      const list = JSON.parse(json.stdout);
      assertEquals(list.length, 1);
      assertEquals(list[0].port, 3);
      assertEquals(list[0].status, "in use");
      assertEquals([list[0].busnum, list[0].devnum, list[0].local_busid], [1, 1, "3-1"]);
      assertEquals(list[0].remote.uri, `usbip://127.0.0.1:${gw.port}/1-1`);
      const table = await runMain(["port", ...common]);
      assertStringIncludes(table.stdout, `usbip://127.0.0.1:${gw.port}/1-1`);
      assertStringIncludes(table.stdout, "001/001");
    });

    await t.step("detach writes the port; a free or unknown port is an error", async () => {
      const r = await runMain(["detach", "-p", "3", ...common]);
      // The fake kernel never frees the port: the command says so, and still succeeds.
      assertEquals(r.code, 0, r.stderr);
      assertEquals(tree.read("detach"), "3");
      assertStringIncludes(r.stderr, "not free yet");
      assert(!(await Deno.stat(`${state}/port3`).then(() => true, () => false)));
      const free = await runMain(["detach", "-p", "12", ...common]);
      assertEquals(free.code, 9, free.stderr);
      assertStringIncludes(free.stderr, "it is free");
      const none = await runMain(["detach", "-p", "40", ...common]);
      assertEquals(none.code, 2, none.stderr);
    });

    await t.step("usage errors exit 2", async () => {
      for (
        const args of [
          ["attach", "-b", "1-1"],
          ["attach", "-r", remote, "--unix", sock, "-b", "1-1"],
          ["attach", "-r", remote],
          ["attach", "-r", remote, "-b", "1-1", "--keepalive", "soon"],
          ["attach", "-r", remote, "-b", "1-1", "--bogus"],
          ["detach"],
          ["detach", "-p", "x"],
        ]
      ) {
        const r = await runMain(args);
        assertEquals(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      }
      const help = await runMain(["help", "attach"]);
      assertEquals(help.code, 0);
      assertStringIncludes(help.stdout, "TCP_USER_TIMEOUT 10 s");
      assertStringIncludes((await runMain(["help"])).stdout, "detach");
    });
  } finally {
    assertEquals((await gw.stop()).code, 0);
    await tree.remove();
    await dir.remove();
  }
});
