// End-to-end tests of the access policy with the real gateway process: local users at the
// unix socket, a seat switch, and keyboards kept from TCP peers.
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import {
  connectTcp,
  importDevice,
  ImportRefusedError,
  OpStatus,
  requestDeviceList,
} from "../../mod.ts";
import { startGateway, tempDir } from "./_gateway.ts";

/**
 * A client run as another user: it connects to the unix socket, asks to import 1-1, prints a
 * JSON line for each step, and waits for the gateway to hang up. No imports, so `deno eval`
 * needs no module cache.
 */
const CLIENT = `
const path = Deno.args[0];
const say = (o) => console.log(JSON.stringify(o));
let conn;
try { conn = await Deno.connect({ transport: "unix", path }); }
catch (e) { say({ step: "connect", error: e.name }); Deno.exit(0); }
say({ step: "connected" });
const req = new Uint8Array(40); req.set([0x01, 0x11, 0x80, 0x03]); req.set([0x31, 0x2d, 0x31], 8);
// The gateway may refuse (close) before the request is written: that is a hang-up too.
try { await conn.write(req); } catch { say({ step: "import", closed: true }); Deno.exit(0); }
const buf = new Uint8Array(320); let got = 0;
const read = async (b) => { try { return await conn.read(b); } catch { return null; } };
while (got < 8) { const n = await read(buf.subarray(got)); if (n === null) break; got += n; }
if (got < 8) { say({ step: "import", closed: true }); Deno.exit(0); }
const status = new DataView(buf.buffer).getUint32(4);
say({ step: "import", status });
while ((await read(new Uint8Array(4096))) !== null) { /* URB phase: wait for the hang-up */ }
say({ step: "hangup" });
`;

interface ClientRun {
  lines: Promise<Record<string, unknown>[]>;
  next(step: string): Promise<Record<string, unknown>>;
  process: Deno.ChildProcess;
}

async function runAs(uid: number, socket: string): Promise<ClientRun> {
  const home = `/tmp/usbipgw-test-home-${uid}`;
  await Deno.mkdir(home, { recursive: true });
  await Deno.chmod(home, 0o777);
  const process = new Deno.Command("setpriv", {
    args: [
      `--reuid=${uid}`,
      `--regid=${uid}`,
      "--clear-groups",
      "env",
      `HOME=${home}`,
      `DENO_DIR=${home}/deno`,
      Deno.execPath(),
      "eval",
      CLIENT,
      socket,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const seen: Record<string, unknown>[] = [];
  const waiters: { step: string; resolve(o: Record<string, unknown>): void }[] = [];
  const lines = (async () => {
    const decoder = new TextDecoder();
    let text = "";
    for await (const chunk of process.stdout) {
      text += decoder.decode(chunk, { stream: true });
      let nl;
      while ((nl = text.indexOf("\n")) >= 0) {
        const o = JSON.parse(text.slice(0, nl));
        text = text.slice(nl + 1);
        seen.push(o);
        for (const w of waiters.filter((w) => w.step === o.step)) w.resolve(o);
      }
    }
    await process.stderr.cancel();
    await process.status;
    return seen;
  })();
  return {
    lines,
    process,
    next(step: string) {
      const known = seen.find((o) => o.step === step);
      if (known) return Promise.resolve(known);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new Error(`No "${step}" from the uid ${uid} client; saw ${JSON.stringify(seen)}`),
            ),
          30000,
        );
        waiters.push({ step, resolve: (o) => (clearTimeout(timer), resolve(o)) });
      });
    },
  };
}

/** Writes a logind-like seat0 file the way logind does: a temporary file renamed over it. */
async function writeSeat(dir: string, uid: number) {
  await Deno.writeTextFile(
    `${dir}/.seat0.tmp`,
    `# This is private data. Do not parse.\nACTIVE=c${uid}\nACTIVE_UID=${uid}\nCAN_MULTI_SESSION=1\n`,
  );
  await Deno.rename(`${dir}/.seat0.tmp`, `${dir}/seat0`);
}

async function eventually(f: () => Promise<boolean>, ms = 10000) {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error("Condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

const hasSetpriv = (() => {
  try {
    return new Deno.Command("setpriv", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
})();
const asRoot = Deno.uid() === 0;
const ignore = !hasSetpriv || !asRoot;
if (ignore) {
  console.log(
    "policy tests with other local users skipped: they need root and setpriv (util-linux)",
  );
}

Deno.test({
  name:
    "a second local user is refused at the socket and, if the socket lets it in, by the uid check",
  ignore,
  fn: async () => {
    const dir = await tempDir();
    await Deno.chmod(dir.path, 0o755);
    const socket = `${dir.path}/gw.sock`;
    const gw = await startGateway([
      "--unix",
      socket,
      "--seat-dir",
      `${dir.path}/no-logind`,
      "--console-uid",
      "1000",
      "--device",
      "gadget-zero:busid=1-1",
    ]);
    try {
      const info = await Deno.stat(socket);
      assertEquals(
        [info.uid, info.mode! & 0o777],
        [1000, 0o600],
        "the socket belongs to the console user",
      );
      const stranger = await runAs(1001, socket);
      assertEquals((await stranger.next("connect")).error, "PermissionDenied");
      await stranger.lines;
      // A mistaken mode lets the stranger reach the socket: the uid check still refuses.
      await Deno.chmod(socket, 0o666);
      const again = await runAs(1001, socket);
      await again.next("connected");
      assertEquals((await again.next("import")).closed, true);
      await again.lines;
      assertStringIncludes(
        await gw.waitFor(/Refused unix uid=1001/),
        "neither root nor the console user (1000)",
      );
      // The console user gets in.
      const owner = await runAs(1000, socket);
      assertEquals((await owner.next("import")).status, 0);
      owner.process.kill("SIGTERM");
      await owner.lines;
    } finally {
      assertEquals((await gw.stop()).code, 0);
      await dir.remove();
    }
  },
});

Deno.test({
  name: "a seat switch hands the socket to the new user and closes the old user's sessions",
  ignore,
  fn: async () => {
    const dir = await tempDir();
    await Deno.chmod(dir.path, 0o755);
    const seats = `${dir.path}/seats`;
    await Deno.mkdir(seats);
    await writeSeat(seats, 1000);
    const socket = `${dir.path}/gw.sock`;
    const gw = await startGateway([
      "--unix",
      socket,
      "--seat-dir",
      seats,
      "--device",
      "gadget-zero:busid=1-1",
    ]);
    try {
      assertEquals((await Deno.stat(socket)).uid, 1000);
      const first = await runAs(1000, socket);
      assertEquals((await first.next("import")).status, 0);
      await writeSeat(seats, 1001);
      await first.next("hangup");
      await first.lines;
      await eventually(async () => (await Deno.stat(socket)).uid === 1001);
      assertEquals((await Deno.stat(socket)).mode! & 0o777, 0o600);
      assertStringIncludes(
        await gw.waitFor(/device 1-1\) ended/),
        "the console user changed from 1000 to 1001",
      );
      await gw.waitFor(/console user changed from 1000 to 1001/);
      const second = await runAs(1001, socket);
      assertEquals(
        (await second.next("import")).status,
        0,
        "the new console user may import at once",
      );
      second.process.kill("SIGTERM");
      await second.lines;
      const old = await runAs(1000, socket);
      assertEquals((await old.next("connect")).error, "PermissionDenied");
      await old.lines;
    } finally {
      await gw.stop();
      await dir.remove();
    }
  },
});

Deno.test("TCP peers can neither see nor import a keyboard unless a rule names it", async () => {
  const devices = ["--device", "gadget-zero:busid=1-1", "--device", "keyboard:busid=1-2"];
  const gw = await startGateway([
    "--tcp",
    "127.0.0.1:0",
    ...devices,
    "--rule",
    "allow:transport=tcp",
  ]);
  try {
    const listed = await requestDeviceList(await connectTcp("127.0.0.1", gw.port));
    assertEquals(listed.map((d) => d.busid), ["1-1"]);
    const e = await importDevice(await connectTcp("127.0.0.1", gw.port), "1-2").catch((e) => e);
    assert(e instanceof ImportRefusedError && e.status === OpStatus.ST_NA, String(e));
    assertStringIncludes(
      await gw.waitFor(/Import of 1-2 .* denied/),
      "keyboards and mice reach TCP peers only through a rule that names them",
    );
  } finally {
    await gw.stop();
  }
  const named = await startGateway([
    "--tcp",
    "127.0.0.1:0",
    ...devices,
    "--rule",
    "allow:transport=tcp,busid=1-2",
    "--rule",
    "allow:transport=tcp",
  ]);
  try {
    const listed = await requestDeviceList(await connectTcp("127.0.0.1", named.port));
    assertEquals(listed.map((d) => d.busid), ["1-1", "1-2"]);
    const ch = await importDevice(await connectTcp("127.0.0.1", named.port), "1-2");
    assertStringIncludes(
      await named.waitFor(/imported 1-2/),
      "rule 1 (allow transport=tcp busid=1-2)",
    );
    await ch.close();
  } finally {
    await named.stop();
  }
});

Deno.test("a TCP peer that no rule allows sees nothing and is refused with the rule logged", async () => {
  const gw = await startGateway([
    "--tcp",
    "127.0.0.1:0",
    "--device",
    "gadget-zero:busid=1-1",
    "--rule",
    "deny:busid=1-1",
    "--rule",
    "allow:transport=tcp",
  ]);
  try {
    assertEquals(await requestDeviceList(await connectTcp("127.0.0.1", gw.port)), []);
    const e = await importDevice(await connectTcp("127.0.0.1", gw.port), "1-1").catch((e) => e);
    assert(e instanceof ImportRefusedError && e.status === OpStatus.ST_NA, String(e));
    assertStringIncludes(await gw.waitFor(/Import of 1-1 .* denied/), "rule 1 (deny busid=1-1)");
  } finally {
    await gw.stop();
  }
});

Deno.test("a limit set on the command line closes only the connection that exceeds it", async () => {
  const gw = await startGateway([
    "--tcp",
    "127.0.0.1:0",
    "--device",
    "gadget-zero:busid=1-1",
    "--rule",
    "allow:transport=tcp",
    "--max-connections-per-peer",
    "1",
  ]);
  try {
    const first = await importDevice(await connectTcp("127.0.0.1", gw.port), "1-1");
    const second = await Deno.connect({ hostname: "127.0.0.1", port: gw.port });
    const refused = await second.read(new Uint8Array(8)).catch(() => null);
    assertEquals(refused, null, "the second connection from the same peer is closed at once");
    second.close();
    assertStringIncludes(await gw.waitFor(/maxConnectionsPerPeer/), "maxConnectionsPerPeer=1");
    const r = await first.control({
      bmRequestType: 0x80,
      bRequest: 8,
      wValue: 0,
      wIndex: 0,
      wLength: 1,
    });
    assertEquals(r.status, 0, "the first connection goes on");
    await first.close();
  } finally {
    await gw.stop();
  }
  const bad = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../../main.ts", import.meta.url).pathname,
      "serve",
      "--max-buffered",
      "lots",
    ],
    stdin: "null",
  }).output();
  assertEquals(bad.code, 2);
  assertStringIncludes(
    new TextDecoder().decode(bad.stderr),
    'Invalid --max-buffered lots: expected a positive whole number (KiB, MiB or GiB allowed) or "unlimited"',
  );
});
