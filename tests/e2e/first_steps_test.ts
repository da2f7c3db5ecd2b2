// What a new user meets, through the real processes: the warning about devices hidden from TCP
// peers, runtime errors that name their object, JSON logs to the last line, stable bus ids
// across a reload, policy check that opens nothing, and the command line's aliases.
import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import { runMain, startGateway, tempDir } from "./_gateway.ts";
import { fakeSysfs as fakeUsbSysfs } from "../devices/passthrough/_fake_sysfs.ts";
import { type FakePort, fakeSysfs as fakeVhciSysfs } from "../client/_vhci_tree.ts";

async function listing(path: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(path)) names.push(e.name);
  return names.sort();
}

/** A keyboard and a Gadget Zero on loopback TCP, with `extra` flags. */
const twoDevices = (...extra: string[]) =>
  startGateway([
    "--tcp",
    "127.0.0.1:0",
    "--device",
    "keyboard",
    "--device",
    "gadget-zero",
    ...extra,
  ]);

Deno.test("devices hidden from every TCP peer are named at startup, with the rule that shows them", async () => {
  const gw = await twoDevices();
  try {
    const warning = await gw.waitFor(/hidden from every TCP peer/);
    assertStringIncludes(warning, "1-1 (keyboard)");
    assertStringIncludes(warning, "1-2 (gadget-zero)");
    assertStringIncludes(
      warning,
      "--rule 'allow:transport=tcp,source=127.0.0.0/8|::1,busid=1-1|1-2'",
    );
    // A list request that hides them says so, with the reason, at info level.
    const list = await runMain(["list", "-r", `127.0.0.1:${gw.port}`]);
    assertEquals(list.code, 0, list.stderr);
    assertStringIncludes(list.stdout, "No exportable devices");
    const hidden = await gw.waitFor(/hidden from the device list/);
    assertMatch(hidden, /1-1 \(no rule matched: .*keyboard/i);
  } finally {
    await gw.stop();
  }
  // The rule the warning shows lets loopback in: no warning, and the list shows both.
  const allowed = await twoDevices(
    "--rule",
    "allow:transport=tcp,source=127.0.0.0/8|::1,busid=1-1|1-2",
  );
  try {
    const list = await runMain(["list", "-r", `127.0.0.1:${allowed.port}`, "--json"]);
    assertEquals(list.code, 0, list.stderr);
    const devices = JSON.parse(list.stdout);
    assertEquals(devices.map((d: { busid: string }) => d.busid), ["1-1", "1-2"]);
    // VID and PID as four hex digits, as USB tools write them.
    assertEquals([devices[1].idVendor, devices[1].idProduct], ["0525", "a4a0"]);
    assert(!allowed.lines.some((l) => /hidden from every TCP peer/.test(l)));
  } finally {
    assertEquals((await allowed.stop()).code, 0);
  }
  // A normal shutdown does not report the devices as gone.
  assert(!allowed.lines.some((l) => /is gone|are gone/.test(l)), allowed.lines.join("\n"));
});

Deno.test("runtime errors name the address, folder or back-end that failed", async () => {
  const dir = await tempDir();
  const blocker = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    // (A TCP address in use: tests/cli/main_test.ts.)
    const port = blocker.addr.port;
    const noFolder = await runMain(["serve", "--unix", `${dir.path}/none/gw.sock`]);
    assertEquals(noFolder.code, 1);
    assertStringIncludes(noFolder.stderr, `the folder ${dir.path}/none does not exist`);

    const backend = await runMain([
      "serve",
      "--unix",
      `${dir.path}/gw.sock`,
      "--device",
      `cdc-acm:backend=tcp:127.0.0.1:${port}`,
    ]);
    assertEquals(backend.code, 1);
    assertStringIncludes(
      backend.stderr,
      `cdc-acm 1-1: Cannot open the tcp back-end on 127.0.0.1:${port}`,
    );

    // A bare port is a loopback address.
    const bare = await startGateway(["--tcp", "0", "--device", "gadget-zero"]);
    try {
      assertMatch(await bare.waitFor(/usbipgw serving/), /tcp 127\.0\.0\.1:\d+/);
    } finally {
      await bare.stop();
    }
    // A server that is not there: list exits 3, as attach does.
    blocker.close();
    const gone = await runMain(["list", "-r", `127.0.0.1:${port}`]);
    assertEquals(gone.code, 3, gone.stderr);
    assertStringIncludes(gone.stderr, `Cannot connect to 127.0.0.1:${port}: connection refused`);
  } finally {
    try {
      blocker.close();
    } catch {
      // Closed above.
    }
    await dir.remove();
  }
});

Deno.test("a reload never hands a removed device's bus id to another device", async () => {
  const dir = await tempDir();
  try {
    const file = `${dir.path}/gw.toml`;
    const sock = `${dir.path}/gw.sock`;
    const config = (types: string[]) =>
      `tcp = ["127.0.0.1:0"]\n[[unix]]\npath = "${sock}"\n` +
      types.map((t) => `[[device]]\ntype = "${t}"\n`).join("");
    await Deno.writeTextFile(file, config(["gadget-zero", "keyboard"]));
    const gw = await startGateway(["--config", file]);
    try {
      const busids = async () => {
        const r = await runMain(["status", "--unix", sock, "--json"]);
        assertEquals(r.code, 0, r.stderr);
        return Object.fromEntries(
          JSON.parse(r.stdout).devices.map((
            d: { busid: string; name: string },
          ) => [d.name, d.busid]),
        );
      };
      assertEquals(await busids(), { "gadget-zero": "1-1", keyboard: "1-2" });
      await Deno.writeTextFile(file, config(["keyboard", "mouse"]));
      gw.process.kill("SIGHUP");
      await gw.waitFor(/Reloaded: 1 added, 1 removed/);
      // The keyboard keeps 1-2; the mouse does not get the Gadget Zero's 1-1.
      assertEquals(await busids(), { keyboard: "1-2", mouse: "1-3" });
    } finally {
      await gw.stop();
    }
  } finally {
    await dir.remove();
  }
});

Deno.test("policy check opens nothing and exits 1 on deny", async () => {
  const dir = await tempDir();
  try {
    const before = await listing(dir.path);
    const args = (device: string, peer: string) => [
      "policy",
      "check",
      "--peer",
      peer,
      "--device",
      device,
    ];
    const storage = await runMain(
      args(`storage:image=${dir.path}/stick.img,size=1M`, "tcp:127.0.0.1"),
    );
    assertEquals(storage.code, 1, storage.stderr);
    assertMatch(storage.stdout, /^deny: tcp:127\.0\.0\.1 and 1-1 \(storage\)/);
    const keyboard = await runMain(args(`keyboard:socket=${dir.path}/kbd.sock`, "console"));
    assertEquals(keyboard.code, 0, keyboard.stderr);
    assertMatch(keyboard.stdout, /^allow: the console user and 1-1 \(keyboard\)/);
    const serial = await runMain(args(`cdc-acm:backend=unix:${dir.path}/serial.sock`, "unix:0"));
    assertEquals(serial.code, 0, serial.stderr);
    assertEquals(await listing(dir.path), before, "nothing was created");
    // The demo set's loopback rule is not the answer for a device given as a flag.
    const spec = await runMain(args("gadget-zero", "tcp:127.0.0.1"));
    assertEquals(spec.code, 1);
    assertStringIncludes(spec.stdout, "no rule matched");
    const demo = await runMain(args("1-1", "tcp:127.0.0.1"));
    assertEquals(demo.code, 0);
    assertStringIncludes(demo.stdout, "rule 1 (allow transport=tcp source=127.0.0.0/8|::1");
    const missing = await runMain(args("1-9", "tcp:127.0.0.1"));
    assertEquals(missing.code, 2);
    assertStringIncludes(missing.stderr, "No device 1-9 in the configuration");
    const badRule = await runMain([...args("1-1", "console"), "--rule", "allow:colour=red"]);
    assertEquals(badRule.code, 2);
    assertStringIncludes(badRule.stderr, "Invalid --rule allow:colour=red");
    assert(!badRule.stderr.includes("device spec"), badRule.stderr);
  } finally {
    await dir.remove();
  }
});

Deno.test("-V, --version, list -l and the help of every command come from one table", async () => {
  for (const flag of ["-V", "--version", "version"]) {
    const r = await runMain([flag]);
    assertEquals(r.code, 0, flag);
    assertMatch(r.stdout, /^usbipgw \d+\.\d+\.\d+ \(deno /);
  }
  const sysfs = await fakeUsbSysfs();
  try {
    const local = await runMain(["list", "-l", "--json", "--sysfs", sysfs.root]);
    const host = await runMain(["host", "--json", "--sysfs", sysfs.root]);
    assertEquals(local.code, 0, local.stderr);
    assertEquals(local.stdout, host.stdout);
    assert(JSON.parse(local.stdout).length > 0);
  } finally {
    await sysfs.remove();
  }
  const help = (await runMain(["help"])).stdout;
  const unknown = (await runMain(["nothing"])).stderr;
  for (const name of help.split("Commands:\n")[1]!.split("\n\n")[0]!.split("\n")) {
    const command = name.trim().split(/\s+/)[0]!;
    assertStringIncludes(unknown, command);
    const own = await runMain([command, "--help"]);
    assertEquals(own.code, 0, command);
    assertEquals(own.stdout, (await runMain(["help", command])).stdout, command);
    assertStringIncludes(own.stdout, `Usage: usbipgw ${command}`);
  }
});

Deno.test("detach -b BUSID and --all free the ports their records name", async () => {
  const dir = await tempDir();
  const used = (port: number, busid: string): FakePort => ({
    hub: "hs",
    port,
    status: 6,
    speed: 3,
    devid: 0x10002,
    sockfd: 3,
    busid,
  });
  const ports = (free: number[]): FakePort[] =>
    [0, 1, 2, 3].map((p) =>
      free.includes(p) ? { hub: "hs" as const, port: p } : used(p, `3-${p + 1}`)
    );
  const tree = await fakeVhciSysfs([ports([])]);
  const state = `${dir.path}/vhci_hcd`;
  await Deno.mkdir(state);
  // port0 and port2 came from a device whose bus id on its server is 1-1; port1 from 1-2.
  for (const [port, busid] of [[0, "1-1"], [1, "1-2"], [2, "1-1"]] as const) {
    await Deno.writeTextFile(`${state}/port${port}`, `192.0.2.1 3240 ${busid}\n`);
  }
  // The fake kernel: a port written to "detach" is freed.
  const freed: number[] = [];
  const kernel = setInterval(() => {
    const text = tree.read("detach").trim();
    if (text === "" || freed.includes(Number(text))) return;
    freed.push(Number(text));
    tree.setStatus(0, ports(freed));
  }, 20);
  const common = ["--sysfs", tree.root, "--state-dir", state];
  try {
    const b = await runMain(["detach", "-b", "1-1", ...common]);
    assertEquals(b.code, 0, b.stderr);
    assertEquals(b.stdout, "detached port 0\ndetached port 2\n");
    assertEquals(freed.sort(), [0, 2]);
    const none = await runMain(["detach", "-b", "9-9", ...common]);
    assertEquals(none.code, 2);
    assertStringIncludes(none.stderr, "No vhci port holds a device with bus id 9-9");
    const all = await runMain(["detach", "--all", ...common]);
    assertEquals(all.code, 0, all.stderr);
    assertEquals(all.stdout, "detached port 1\ndetached port 3\n");
    const both = await runMain(["detach", "--all", "-p", "1", ...common]);
    assertEquals(both.code, 2);
  } finally {
    clearInterval(kernel);
    await tree.remove();
    await dir.remove();
  }
});

Deno.test("bind and unbind talk to the running gateway and say why they cannot", async () => {
  const dir = await tempDir();
  const sock = `${dir.path}/gw.sock`;
  const gw = await startGateway(["--unix", sock, "--device", "gadget-zero"]);
  try {
    const absent = await runMain(["bind", "-b", "9-9", "--unix", sock]);
    assertEquals(absent.code, 1, absent.stderr);
    assertStringIncludes(absent.stderr, "bind 9-9: No USB device 9-9 on this host");
    const configured = await runMain(["unbind", "-b", "1-1", "--unix", sock]);
    assertEquals(configured.code, 1);
    assertStringIncludes(configured.stderr, "1-1 comes from the configuration");
    const taken = await runMain(["bind", "-b", "1-1", "--unix", sock]);
    assertEquals(taken.code, 1);
    assertStringIncludes(taken.stderr, "1-1 is exported already");
    const unbound = await runMain(["unbind", "-b", "9-9", "--unix", sock]);
    assertEquals(unbound.code, 1);
    assertStringIncludes(unbound.stderr, "9-9 is not bound");
    assertEquals((await runMain(["bind", "--unix", sock])).code, 2);
    const nobody = await runMain(["bind", "-b", "9-9", "--unix", `${dir.path}/none.sock`]);
    assertEquals(nobody.code, 3, nobody.stderr);
    // Every request is audited by the server.
    await gw.waitFor(/bind of host device 9-9/);
  } finally {
    await gw.stop();
    await dir.remove();
  }
});
