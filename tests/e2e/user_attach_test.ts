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
import { controllerPorts, fakeSysfs } from "../client/_vhci_tree.ts";
import { asUser, fakeKernel, openSockets, until, USER_TOOLS } from "./_fake_vhci.ts";
import { captureLogs, render } from "../server/_logs.ts";
import { runMain, tempDir } from "./_gateway.ts";
import { attachOwnDevice } from "../../lib/client/own_device.ts";
import { GatewayRefusal } from "../../lib/client/gateway_requests.ts";
import { ownProcessTests } from "../ffi/_fds.ts";
import * as net from "node:net";
import { FdSocket } from "../../lib/client/fd_socket.ts";
import { dupFd } from "../../lib/ffi/fd.ts";
import { connectUnix, wrapSocketFd } from "../../lib/transport/unix.ts";
import { requestAttach } from "../../lib/client/gateway_requests.ts";
import { HidKeyboard } from "../../lib/devices/keyboard.ts";

/**
 * A test in a process of its own: it counts the process's sockets and captures LogTape's
 * records, which modules run side by side under `deno test --parallel` would share.
 */
function isolated(name: string, ignore: boolean, fn: () => Promise<void>): void {
  if (ignore) Deno.test({ name, ignore, fn });
  else ownProcessTests(import.meta.url)(name, fn);
}

const CONSOLE = 65534; // nobody
const OTHER = 65533;

if (Deno.uid() !== 0 || !USER_TOOLS) {
  console.log("user_attach_test: ignored: needs root (to act as other uids), setpriv and socat");
}

isolated(
  "users attach the gateway's devices as the console user or not at all, and lose them at a seat switch",
  Deno.uid() !== 0 || !USER_TOOLS,
  async () => {
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
      // So does the end of the console session: logind's seat file then names nobody.
      const seat = async (text: string) => {
        await Deno.writeTextFile(`${seats}/.#seat0`, text);
        await Deno.rename(`${seats}/.#seat0`, `${seats}/seat0`);
      };
      await seat(`ACTIVE=c3\nACTIVE_UID=${CONSOLE}\n`);
      await new Promise((r) => setTimeout(r, 1100));
      const last = await attach(CONSOLE, "1-1");
      assertEquals(last.status, OpStatus.ST_OK, last.message);
      await until(() => kernel.used.has(last.vhciPort), "the fake kernel saw the attach");
      await seat("");
      await until(
        () => !kernel.used.has(last.vhciPort),
        "the port taken back at the session's end",
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
);

isolated(
  "a program's own device goes into the kernel through the gateway only when streams are on",
  Deno.uid() !== 0,
  async () => {
    const dir = await tempDir();
    const tree = await fakeSysfs([controllerPorts(0)]);
    const kernel = fakeKernel(tree);
    const sock = `${dir.path}/gw.sock`;
    const fdsBefore = openSockets();
    const start = async (streams: string) =>
      await startGateway(
        await checkConfigText(
          `console_uid = ${CONSOLE}\n[[unix]]\npath = "${sock}"\n[[device]]\ntype = "gadget-zero"\n` +
            `[attach]\nstreams = ${streams}\nremotes = ["127.0.0.0/8"]\n`,
          `${dir.path}/gw.toml`,
        ),
        { vhci: { sysfsRoot: tree.root, stateDir: null } },
      );
    try {
      const off = await start("false");
      try {
        const e = await attachOwnDevice(new HidKeyboard(), { gatewaySocket: sock }).catch((e) => e);
        assert(e instanceof GatewayRefusal, String(e));
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

        // A listening socket handed over instead of a connected one: refused, nothing kept.
        const listener = net.createServer();
        await new Promise<void>((r) => listener.listen(`${dir.path}/l.sock`, r));
        const request = await FdSocket.connect({ transport: "unix", path: sock });
        try {
          const conn = wrapSocketFd(dupFd(request.fd), { transport: "unix", address: sock });
          // deno-lint-ignore no-explicit-any
          const listening: number = (listener as any)._handle.fd;
          const reply = await requestAttach(
            conn,
            { kind: "stream", busid: "2-1" },
            () => request.sendFd(listening),
          );
          assertEquals(reply.status, OpStatus.ST_ERROR, reply.message);
          assertStringIncludes(reply.message, "listening");
        } finally {
          request.close();
          await new Promise((r) => listener.close(r));
        }

        // Root asks for a remote attach of a server the configuration lists: the gateway
        // connects, imports and attaches. One it does not list is refused, to root as well.
        const server = await startGateway(
          await checkConfigText(
            `tcp = ["127.0.0.1:0"]\n[[device]]\ntype = "gadget-zero"\nbusid = "5-1"\n` +
              `[[rule]]\naction = "allow"\ntransport = "tcp"\n`,
            `${dir.path}/remote.toml`,
          ),
        );
        try {
          const port = Number(server.listeners[0]!.description.split(":").at(-1));
          const remote = (host: string) =>
            connectUnix(sock).then((c) =>
              requestAttach(c, { kind: "remote", host, port, busid: "5-1" })
            );
          const listed = await remote("127.0.0.1");
          assertEquals(listed.status, OpStatus.ST_OK, listed.message);
          await until(() => kernel.used.has(listed.vhciPort), "the fake kernel saw the attach");
          assertMatch(kernel.attached.at(-1)!, new RegExp(`^${listed.vhciPort} \\d+ 327682 3$`));
          const unlisted = await remote("localhost");
          assertEquals(unlisted.status, OpStatus.ST_NA, unlisted.message);
        } finally {
          await server.close();
        }
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
);
