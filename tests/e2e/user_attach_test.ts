// Attaching for users who are not root, through the gateway: real processes of other uids
// (setpriv) over the gateway's real unix socket, a fake vhci sysfs tree (plain files) in place
// of the kernel, a seat file as logind writes it. Shows who may, the refusals, ownership of
// ports at detach, the take-back at a seat switch, the rate limit, and no fd leaked.
import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import { OpStatus } from "../../lib/protocol/constants.ts";
import {
  decodeOpRepAttach,
  decodeOpRepDetach,
  encodeOpReqAttach,
  encodeOpReqDetach,
} from "../../lib/protocol/op_messages.ts";
import { checkConfigText } from "../../lib/cli/config.ts";
import { startGateway } from "../../lib/cli/gateway.ts";
import { controllerPorts, type FakePort, fakeSysfs } from "../client/_vhci_tree.ts";
import { captureLogs, render } from "../server/_logs.ts";
import { runMain, tempDir } from "./_gateway.ts";
import { attachOwnDevice, OwnDeviceRefusedError } from "../../lib/client/own_device.ts";
import { HidKeyboard } from "../../lib/devices/keyboard.ts";

const CONSOLE = 65534; // nobody
const OTHER = 65533;

const tools = [["setpriv", "--version"], ["socat", "-V"]].every(([t, version]) => {
  try {
    return new Deno.Command(t!, { args: [version!] }).outputSync().success;
  } catch {
    return false;
  }
});
if (Deno.uid() !== 0 || !tools) {
  console.log("user_attach_test: ignored: needs root (to act as other uids), setpriv and socat");
}

/** Sends `request` over the gateway's socket as `uid`, through socat; returns the reply bytes. */
async function asUser(uid: number, socket: string, request: Uint8Array): Promise<Uint8Array> {
  const child = new Deno.Command("setpriv", {
    args: [
      `--reuid=${uid}`,
      `--regid=${uid}`,
      "--clear-groups",
      "socat",
      "-T",
      "10",
      // ignoreeof: no half-close after the request; socat ends when the gateway closes.
      "-,ignoreeof",
      `UNIX-CONNECT:${socket}`,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(request);
  await writer.close();
  const out = await child.output();
  if (out.stdout.length === 0) {
    throw new Error(`socat as uid ${uid}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return out.stdout;
}

/** The fake kernel: an attach written to the tree makes its port used, a detach frees it. */
function fakeKernel(tree: Awaited<ReturnType<typeof fakeSysfs>>) {
  const used = new Map<number, FakePort>();
  const attached: string[] = [];
  const detached: string[] = [];
  const timer = setInterval(() => {
    // Each write is taken once, as the kernel does; the file is emptied for the next one.
    const attach = tree.read("attach").trim();
    if (attach !== "") {
      attached.push(attach);
      Deno.writeTextFileSync(`${tree.vhci}/attach`, "");
      const [port = 0, sockfd = 0, devid = 0, speed = 0] = attach.split(" ").map(Number);
      used.set(port, { hub: "hs", port, status: 6, speed, devid, sockfd, busid: "3-1" });
    }
    const detach = tree.read("detach").trim();
    if (detach !== "") {
      detached.push(detach);
      Deno.writeTextFileSync(`${tree.vhci}/detach`, "");
      used.delete(Number(detach));
    }
    tree.setStatus(0, controllerPorts(0).map((p) => used.get(p.port) ?? p));
  }, 10);
  return { used, attached, detached, stop: () => clearInterval(timer) };
}

/** Waits (at most 1 s) until `done()` holds. */
async function until(done: () => boolean, what: string): Promise<void> {
  const start = performance.now();
  while (!done()) {
    assert(performance.now() - start < 1000, `not within 1 s: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * The sockets and pipes this process holds. (Deno 2.9.6's `watchFs`, which the seat watcher
 * uses, keeps its inotify and event fds after `close()`: not counted, they are not ours.)
 */
function openSockets(): string[] {
  const fds: string[] = [];
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      const target = Deno.readLinkSync(`/proc/self/fd/${e.name}`);
      if (/^(socket|pipe):/.test(target)) fds.push(`${e.name} ${target}`);
    } catch {
      // Closed meanwhile (the readDir's own fd).
    }
  }
  return fds.sort();
}

Deno.test({
  name:
    "users attach the gateway's devices as the console user or not at all, and lose them at a seat switch",
  ignore: Deno.uid() !== 0 || !tools,
  async fn() {
    const dir = await tempDir();
    await Deno.chmod(dir.path, 0o755); // other users reach the gateway's socket in it
    const tree = await fakeSysfs([controllerPorts(0)]);
    const kernel = fakeKernel(tree);
    const logs = captureLogs();
    const sock = `${dir.path}/gw.sock`;
    const seats = `${dir.path}/seats`;
    await Deno.mkdir(seats);
    await Deno.writeTextFile(`${seats}/seat0`, `ACTIVE=c1\nACTIVE_UID=${CONSOLE}\n`);
    const config = await checkConfigText(
      `seat_dir = "${seats}"\n[[unix]]\npath = "${sock}"\nmode = "0666"\n` +
        `[[device]]\ntype = "gadget-zero"\nbusid = "1-1"\n[[device]]\ntype = "keyboard"\nbusid = "1-2"\n` +
        `[attach]\nrequests_per_second = 3\nmax_per_user = 1\nremotes = ["127.0.0.0/8"]\n`,
      `${dir.path}/gw.toml`,
    );
    const fdsBefore = openSockets();
    const gw = await startGateway(config, {
      vhci: { sysfsRoot: tree.root, stateDir: `${dir.path}/vhci_hcd` },
    });
    const attach = async (uid: number, busid: string) =>
      decodeOpRepAttach(await asUser(uid, sock, encodeOpReqAttach({ kind: "local", busid })));
    const detach = async (uid: number, port: number) =>
      decodeOpRepDetach(await asUser(uid, sock, encodeOpReqDetach(port)));
    try {
      // A device the gateway does not have.
      const none = await attach(CONSOLE, "9-9");
      assertEquals(none.status, OpStatus.ST_NODEV, none.message);
      // The console user attaches Gadget Zero: the gateway writes vhci's attach file.
      const mine = await attach(CONSOLE, "1-1");
      assertEquals([mine.status, mine.vhciPort], [OpStatus.ST_OK, 0], mine.message);
      await until(() => kernel.attached.length === 1, "the fake kernel saw the attach");
      assertMatch(kernel.attached.at(-1)!, /^0 \d+ 65538 3$/, "port fd devid(1<<16|2), high speed");
      // Another user: not the console user, and polkit (not running here) does not say yes.
      const other = await attach(OTHER, "1-2");
      assertEquals(other.status, OpStatus.ST_NA, other.message);
      assertStringIncludes(other.message, "is not the console user");
      assertStringIncludes(other.message, "org.usbipgw.attach-local");
      // `port` shows who had the gateway attach the port, and how.
      const port = await runMain([
        "port",
        "--json",
        "--unix",
        sock,
        "--sysfs",
        tree.root,
        "--state-dir",
        `${dir.path}/vhci_hcd`,
      ]);
      assertEquals(port.code, 0, port.stderr);
      const by = JSON.parse(port.stdout)[0].attached_by;
      assertEquals([by.uid, by.kind, by.authority], [CONSOLE, "local", "console"]);
      // One port per user here (max_per_user = 1); remote attaches only to listed servers, and
      // then polkit decides even for the console user.
      await new Promise((r) => setTimeout(r, 1100));
      const second = await attach(CONSOLE, "1-2");
      assertEquals(second.status, OpStatus.ST_ERROR);
      assertStringIncludes(second.message, "max_per_user");
      const remote = (host: string) =>
        asUser(OTHER, sock, encodeOpReqAttach({ kind: "remote", host, port: 3240, busid: "1-1" }))
          .then(decodeOpRepAttach);
      const unlisted = await remote("192.0.2.7");
      assertEquals(unlisted.status, OpStatus.ST_NA);
      assertStringIncludes(unlisted.message, "[attach] remotes");
      const listed = await remote("127.0.0.1");
      assertEquals(listed.status, OpStatus.ST_NA);
      assertStringIncludes(listed.message, "org.usbipgw.attach-remote");
      // Only the user who attached a port may detach it.
      await new Promise((r) => setTimeout(r, 1100)); // the rate limit's window
      const stranger = await detach(OTHER, 0);
      assertEquals(stranger.status, OpStatus.ST_NA);
      assertStringIncludes(stranger.message, "was not attached for uid 65533");
      const own = await detach(CONSOLE, 0);
      assertEquals(own.status, OpStatus.ST_OK, own.message);
      await until(() => kernel.detached.length === 1, "the fake kernel saw the detach");
      assertEquals(kernel.detached, ["0"]);

      // A seat switch takes back the previous console user's ports within a second.
      await new Promise((r) => setTimeout(r, 1100));
      const again = await attach(CONSOLE, "1-2");
      assertEquals(again.status, OpStatus.ST_OK, again.message);
      await until(() => kernel.used.has(again.vhciPort), "the fake kernel saw the attach");
      await Deno.writeTextFile(`${seats}/.#seat0`, "ACTIVE=c2\nACTIVE_UID=1000\n");
      const switched = performance.now();
      await Deno.rename(`${seats}/.#seat0`, `${seats}/seat0`);
      await until(() => !kernel.used.has(again.vhciPort), "the port taken back");
      assert(performance.now() - switched < 1000);
      assert(
        logs.lines("audit").some(([, m]) =>
          m.includes(`Took back vhci port ${again.vhciPort} of uid ${CONSOLE}`)
        ),
      );

      // The rate limit: a burst beyond requests_per_second is refused with the reason.
      await new Promise((r) => setTimeout(r, 1100));
      const burst = await Promise.all([0, 1, 2, 3, 4].map(() => attach(OTHER, "1-1")));
      const limited = burst.filter((r) => r.message.includes("too many requests"));
      assert(limited.length >= 2, burst.map((r) => r.message).join("\n"));
    } finally {
      await gw.close();
      kernel.stop();
      logs.stop();
      await tree.remove();
      await dir.remove();
    }
    // Every decision is in the audit trail, and nothing was leaked.
    const audit = logs.records.filter((r) => r.category[1] === "audit").map(render);
    assert(audit.some((m) => m.includes("allowed as console")), audit.join("\n"));
    assert(audit.some((m) => m.includes("refused")), audit.join("\n"));
    assertEquals(openSockets(), fdsBefore, "every socket of the gateway is closed again");
  },
});

Deno.test({
  name: "a program's own device goes into the kernel through the gateway only when streams are on",
  ignore: Deno.uid() !== 0,
  async fn() {
    const dir = await tempDir();
    const tree = await fakeSysfs([controllerPorts(0)]);
    const kernel = fakeKernel(tree);
    const sock = `${dir.path}/gw.sock`;
    const fdsBefore = openSockets();
    const start = async (streams: string) =>
      await startGateway(
        await checkConfigText(
          `console_uid = ${CONSOLE}\n[[unix]]\npath = "${sock}"\n[[device]]\ntype = "gadget-zero"\n` +
            `[attach]\nstreams = ${streams}\n`,
          `${dir.path}/gw.toml`,
        ),
        { vhci: { sysfsRoot: tree.root, stateDir: null } },
      );
    try {
      const off = await start("false");
      try {
        const e = await attachOwnDevice(new HidKeyboard(), { gatewaySocket: sock }).catch((e) => e);
        assert(e instanceof OwnDeviceRefusedError, String(e));
        assertEquals(e.status, OpStatus.ST_NA);
        assertStringIncludes(e.message, "[attach] streams = false");
      } finally {
        await off.close();
      }
      const on = await start("true");
      try {
        // Root's program: the socket goes over SCM_RIGHTS, the gateway imports the keyboard over
        // it (checking the reply) and writes it to vhci.
        const keyboard = new HidKeyboard();
        const attached = await attachOwnDevice(keyboard, { gatewaySocket: sock, busid: "2-1" });
        await until(() => kernel.used.has(attached.vhciPort), "the fake kernel saw the attach");
        assertMatch(kernel.attached.at(-1)!, new RegExp(`^${attached.vhciPort} \\d+ 131074 2$`));
        await attached.close();
        await attached.ended;
      } finally {
        await on.close();
      }
    } finally {
      kernel.stop();
      await tree.remove();
      await dir.remove();
    }
    assertEquals(openSockets(), fdsBefore, "every socket is closed again");
  },
});
