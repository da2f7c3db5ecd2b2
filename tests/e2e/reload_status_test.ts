// The real gateway process: SIGHUP reloads the configuration (devices added and removed,
// rules replaced, unchanged sessions untouched, a bad file keeps the running one),
// `usbipgw status` over the unix socket, and `usbipgw config check`.
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import {
  importDevice,
  ImportRefusedError,
  requestDeviceList,
  requestStatus,
} from "../../lib/client/usbip_client.ts";
import { OpStatus } from "../../lib/protocol/constants.ts";
import { Request, RequestType } from "../../mod.ts";
import { connectTcp, connectUnix } from "../../lib/transport/mod.ts";
import { runMain, startGateway, tempDir } from "./_gateway.ts";

const GET_CONFIGURATION = {
  bmRequestType: RequestType.DIR_IN,
  bRequest: Request.GET_CONFIGURATION,
  wValue: 0,
  wIndex: 0,
  wLength: 1,
};

function configText(sock: string, devices: [string, string][], rules = ""): string {
  return [
    `tcp = ["127.0.0.1:0"]`,
    ``,
    `[[unix]]`,
    `path = "${sock}"`,
    ...devices.flatMap((
      [type, busid],
    ) => [``, `[[device]]`, `type = "${type}"`, `busid = "${busid}"`]),
    rules,
  ].join("\n") + "\n";
}

async function busids(sock: string): Promise<string[]> {
  return (await requestDeviceList(await connectUnix(sock))).map((d) => d.busid).sort();
}

Deno.test("SIGHUP adds and removes devices, replaces rules, and leaves other sessions alone", async () => {
  const dir = await tempDir();
  const sock = `${dir.path}/gw.sock`;
  const file = `${dir.path}/gw.toml`;
  await Deno.writeTextFile(
    file,
    configText(sock, [["gadget-zero", "1-1"], ["gadget-zero", "1-2"]]),
  );
  const gw = await startGateway(["--config", file]);
  try {
    assertEquals(await busids(sock), ["1-1", "1-2"]);
    const kept = await importDevice(await connectUnix(sock), "1-1");
    const dropped = await importDevice(await connectUnix(sock), "1-2");
    assertEquals((await kept.control(GET_CONFIGURATION)).status, 0);

    // 1-2 goes, a keyboard comes on 1-3, and a rule now denies 1-1 to everyone.
    await Deno.writeTextFile(
      file,
      configText(
        sock,
        [["gadget-zero", "1-1"], ["keyboard", "1-3"]],
        `\n[[rule]]\naction = "deny"\nbusid = "1-1"\n`,
      ),
    );
    gw.process.kill("SIGHUP");
    assertMatch(
      await gw.waitFor(/Reloaded:/),
      /1 added, 1 removed, 1 unchanged; rules replaced/,
    );

    // The removed device's session is closed; the kept one goes on as before.
    await dropped.closed;
    assert(dropped.closedReason !== undefined, "the session of the removed device ended");
    assertEquals((await kept.control(GET_CONFIGURATION)).status, 0, "an unchanged session");
    // The new rule hides 1-1 from the list and refuses a new import of it.
    assertEquals(await busids(sock), ["1-3"]);
    await kept.close();
    const refused = await assertRejects(
      async () => importDevice(await connectUnix(sock), "1-1"),
      ImportRefusedError,
    );
    assertEquals(refused.status, OpStatus.ST_NA);
    const kbd = await importDevice(await connectUnix(sock), "1-3");
    assertEquals((await kbd.control(GET_CONFIGURATION)).status, 0, "the added device works");
    await kbd.close();

    // A broken file is logged and the running configuration stays.
    await Deno.writeTextFile(file, `[[device]]\ntype = "gadget-zero"\nbogus = 1\n`);
    gw.process.kill("SIGHUP");
    assertStringIncludes(
      await gw.waitFor(/Reload failed/),
      `gw.toml:3: device[1].bogus`,
    );
    assertEquals(await busids(sock), ["1-3"]);
  } finally {
    await gw.stop();
    await dir.remove();
  }
});

Deno.test("status over the unix socket reports devices, sessions and counters; TCP is refused", async () => {
  const dir = await tempDir();
  const sock = `${dir.path}/gw.sock`;
  const gw = await startGateway([
    "--tcp",
    "127.0.0.1:0",
    "--unix",
    sock,
    "--device",
    "gadget-zero:busid=1-1",
    "--rule",
    "allow:transport=tcp",
  ]);
  try {
    const ch = await importDevice(await connectTcp("127.0.0.1", gw.port), "1-1");
    assertEquals((await ch.control(GET_CONFIGURATION)).status, 0);
    const set = {
      bmRequestType: 0x00,
      bRequest: Request.SET_CONFIGURATION,
      wValue: 1,
      wIndex: 0,
      wLength: 0,
    };
    assertEquals((await ch.control(set)).status, -32, "there is no configuration 1: a stall");
    assertEquals((await ch.control({ ...set, wValue: 3 })).status, 0, "source/sink");
    // Gadget Zero's source/sink: 4096 bytes out on ep1, 1024 in on ep1.
    const out = await ch.submit({ ep: 1, dirIn: false, data: new Uint8Array(4096) }).done;
    assertEquals(out.actualLength, 4096);
    const inn = await ch.submit({ ep: 1, dirIn: true, length: 1024 }).done;
    assertEquals(inn.actualLength, 1024);

    const r = await runMain(["status", "--unix", sock, "--json"]);
    assertEquals(r.code, 0, r.stderr);
    const status = JSON.parse(r.stdout);
    assertEquals(status.devices.length, 1);
    assertEquals(status.devices[0].busid, "1-1");
    const session = status.sessions.find((s: { busid: string | null }) => s.busid === "1-1");
    assert(session !== undefined, `no session on 1-1 in ${r.stdout}`);
    assertEquals(status.devices[0].session, session.id);
    assertEquals(session.transport, "tcp");
    assertEquals(session.completed, 5);
    assertEquals(session.bytesOut, 4096);
    assertEquals(session.bytesIn, 1024 + 1, "1024 bulk bytes and the 1-byte configuration");
    assertEquals(session.errors, 1, "the stalled SET_CONFIGURATION");

    const text = await runMain(["status", "--unix", sock]);
    assertEquals(text.code, 0, text.stderr);
    assertMatch(text.stdout, /1-1\s+0525:a4a0\s+gadget-zero\s+emulated\s+imported \(session \d+\)/);
    assertMatch(
      text.stdout,
      /Totals: \d+ session\(s\), 5 URBs, 1\.0 KiB in, 4\.0 KiB out, 1 URB error/,
    );

    const e = await assertRejects(() => connectTcp("127.0.0.1", gw.port).then(requestStatus));
    assertStringIncludes((e as Error).message, "the gateway refused");
    assertStringIncludes(await gw.waitFor(/status request refused/), "tcp 127.0.0.1");
    await ch.close();
  } finally {
    await gw.stop();
    await dir.remove();
  }
});

Deno.test("status without a gateway says which socket it tried", async () => {
  const dir = await tempDir();
  try {
    const r = await runMain(["status", "--unix", `${dir.path}/none.sock`]);
    assertEquals(r.code, 1);
    assertStringIncludes(r.stderr, `Cannot reach a gateway at ${dir.path}/none.sock`);
  } finally {
    await dir.remove();
  }
});

Deno.test("config check: a summary for a valid file, file:line:key for a bad one", async () => {
  const dir = await tempDir();
  try {
    const good = `${dir.path}/good.toml`;
    await Deno.writeTextFile(good, configText(`${dir.path}/s.sock`, [["gadget-zero", "1-1"]]));
    const ok = await runMain(["config", "check", good]);
    assertEquals(ok.code, 0, ok.stderr);
    assertStringIncludes(ok.stdout, "valid: 1 device(s), 0 rule(s)");
    const bad = `${dir.path}/bad.toml`;
    await Deno.writeTextFile(bad, `tcp = ["127.0.0.1:0"]\n\n[[rule]]\naction = "maybe"\n`);
    const no = await runMain(["config", "check", bad]);
    assertEquals(no.code, 1);
    assertMatch(no.stderr, /bad\.toml:4: rule\[1\]\.action/);
    assertEquals(no.stdout, "");
    const usage = await runMain(["config", "check"]);
    assertEquals(usage.code, 2);
  } finally {
    await dir.remove();
  }
});
