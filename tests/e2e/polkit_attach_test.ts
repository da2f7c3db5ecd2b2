// Attaching for users who are not root with the real polkit deciding: the gateway in-process on
// a fake vhci sysfs tree with a fake kernel (as user_attach_test.ts), its pkcheck calls pointed
// at a polkitd on a private system bus (as polkit_test.ts), a rules.d rule that says yes to
// org.usbipgw.attach-local for the user "daemon" only, and the console user someone else.
// Shows, through the gateway's socket with requests of real processes of those uids: the
// rule's user attached, another user and auth_admin refused, polkit stopped refused with that
// reason, and at a seat switch the port polkit allowed checked again, kept while polkit says
// yes and taken back once polkit is gone.
import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import { OpStatus } from "../../lib/protocol/constants.ts";
import { decodeOpRepAttach, encodeOpReqAttach } from "../../lib/protocol/op_messages.ts";
import { checkConfigText } from "../../lib/cli/config.ts";
import { startGateway } from "../../lib/cli/gateway.ts";
import { PolkitAction } from "../../lib/polkit/actions.ts";
import { controllerPorts, fakeSysfs } from "../client/_vhci_tree.ts";
import { captureLogs } from "../server/_logs.ts";
import { tempDir } from "./_gateway.ts";
import { asUser, fakeKernel, gatewaySockets, until } from "./_fake_vhci.ts";
import { lookUp, realPolkitIgnored, startPolkitEnv, type User } from "../policy/_polkit_env.ts";

/** The console user: neither of the two users below. */
const CONSOLE = 65533;

const polkitIgnored = await realPolkitIgnored("the gateway's attach with a real polkitd", {
  commands: [["socat", "socat"], ["perl", "perl-base"]],
});

/**
 * The requester of {@linkcode lingeringRequest}: sends its stdin over the unix socket named by
 * its argument, copies the whole answer to stdout and closes it, then sleeps until killed.
 */
const LINGERING_REQUESTER = `
use strict;
use IO::Socket::UNIX;
binmode STDIN;
binmode STDOUT;
my $request = do { local $/; <STDIN> };
my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "cannot connect to $ARGV[0]: $!\\n";
syswrite($s, $request) == length($request) or die "cannot send the request: $!\\n";
my ($reply, $chunk) = ("", "");
while (sysread($s, $chunk, 65536)) { $reply .= $chunk }
print $reply;
close STDOUT;
close $s;
sleep 120;
`;

/**
 * Sends `request` over the gateway's socket as `user` from a process that stays after the
 * answer, so that its pid still names it when the gateway asks polkit again at a seat switch
 * (socat, as `asUser` runs it, ends with the answer).
 */
async function lingeringRequest(
  user: User,
  socket: string,
  request: Uint8Array,
): Promise<{ pid: number; reply: Uint8Array; stop(): Promise<void> }> {
  const child = new Deno.Command("setpriv", {
    args: [
      `--reuid=${user.uid}`,
      `--regid=${user.gid}`,
      "--clear-groups",
      "perl",
      "-e",
      LINGERING_REQUESTER,
      socket,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stopped: Promise<string> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      try {
        child.kill("SIGKILL");
      } catch {
        // It has exited.
      }
      const [said] = await Promise.all([new Response(child.stderr).text(), child.status]);
      return said;
    })();
  const writer = child.stdin.getWriter();
  await writer.write(request);
  await writer.close();
  const reply = await new Response(child.stdout).bytes();
  if (reply.length === 0) throw new Error(`perl as ${user.name}: ${await stop()}`);
  return { pid: child.pid, reply, stop: async () => void await stop() };
}

Deno.test({
  name:
    "the gateway asks the real polkit: the rule's user attaches, others and auth_admin are refused, and polkit gone refuses and takes back at a seat switch",
  ignore: polkitIgnored,
  async fn() {
    const allowed = (await lookUp("daemon"))!;
    const refused = (await lookUp("nobody"))!;
    // Without logind no subject is in an active session and polkit takes allow_any (no). The
    // rule stands in for an administrator's: "daemon" may attach the gateway's devices, and gets
    // auth_admin for attach-remote, which allow_active gives an active console session.
    const env = await startPolkitEnv({
      attach: `// Written by usbipgw's tests/e2e/polkit_attach_test.ts; removed when it ends.
polkit.addRule(function (action, subject) {
    if (subject.user != "${allowed.name}") return polkit.Result.NOT_HANDLED;
    if (action.id == "${PolkitAction.ATTACH_LOCAL}") return polkit.Result.YES;
    if (action.id == "${PolkitAction.ATTACH_REMOTE}") return polkit.Result.AUTH_ADMIN;
    return polkit.Result.NOT_HANDLED;
});
`,
    });
    const dir = await tempDir();
    const tree = await fakeSysfs([controllerPorts(0)]);
    const kernel = fakeKernel(tree);
    const logs = captureLogs();
    const sock = `${dir.path}/gw.sock`;
    // The gateway's sockets: none before it starts, and none once it is closed. (Not all of the
    // process's, as user_attach_test.ts counts them: `deno test --parallel` runs other test
    // modules in this process. Deno's sanitizers check this module's own resources: the
    // requesters' and pkcheck's pipes.)
    const socketsBefore = gatewaySockets(sock);
    let socketsWhileServing: string[] = [];
    const cleanups: (() => Promise<unknown>)[] = [];
    try {
      await Deno.chmod(dir.path, 0o755); // the other users reach the gateway's socket in it
      const seats = `${dir.path}/seats`;
      await Deno.mkdir(seats);
      const seat = async (uid: number) => {
        await Deno.writeTextFile(`${seats}/.#seat0`, `ACTIVE=c${uid}\nACTIVE_UID=${uid}\n`);
        await Deno.rename(`${seats}/.#seat0`, `${seats}/seat0`);
      };
      await seat(CONSOLE);
      // The gateway's own rules let both users import: polkit is what tells them apart.
      const config = await checkConfigText(
        `seat_dir = "${seats}"\n[[unix]]\npath = "${sock}"\nmode = "0666"\n` +
          `[[device]]\ntype = "gadget-zero"\nbusid = "1-1"\n` +
          `[[device]]\ntype = "keyboard"\nbusid = "1-2"\n` +
          `[[rule]]\naction = "allow"\nuid = [${allowed.uid}, ${refused.uid}]\n` +
          `[attach]\nremotes = ["127.0.0.0/8"]\n`,
        `${dir.path}/gw.toml`,
      );
      const gw = await startGateway(config, {
        vhci: { sysfsRoot: tree.root, stateDir: `${dir.path}/vhci_hcd` },
        polkitOptions: { systemBusAddress: env.address },
      });
      cleanups.push(() => gw.close());
      const local = (busid: string) => encodeOpReqAttach({ kind: "local", busid });
      const attach = async (user: User, request: Uint8Array) =>
        decodeOpRepAttach(await asUser(user.uid, sock, request));
      const audit = () => logs.lines("audit").map(([, m]) => m);
      const asked = (pid: number) =>
        logs.lines("policy").filter(([, m]) => m.includes(`(pid ${pid}): `)).map(([, m]) => m);
      const refusal = (pid: number) =>
        audit().find((m) => m.includes(`pid=${pid} refused: `)) ?? audit().join("\n");

      // The rule's user: polkit says yes, the gateway writes vhci's attach file.
      const held = await lingeringRequest(allowed, sock, local("1-1"));
      cleanups.push(() => held.stop());
      const yes = decodeOpRepAttach(held.reply);
      assertEquals(yes.status, OpStatus.ST_OK, yes.message);
      const port = yes.vhciPort;
      await until(() => kernel.used.has(port), "the fake kernel saw the attach");
      // PORT SOCKFD DEVID SPEED: Gadget Zero is device 2 on bus 1, high speed.
      assertMatch(kernel.attached.join("\n"), new RegExp(`^${port} \\d+ 65538 3$`));
      socketsWhileServing = gatewaySockets(sock);
      assert(
        audit().some((m) =>
          m.includes(`for unix uid=${allowed.uid} gid=${allowed.gid} pid=${held.pid} `) &&
          m.endsWith(`on vhci port ${port}, allowed as polkit`)
        ),
        audit().join("\n"),
      );
      assertEquals(asked(held.pid), [
        `polkit ${PolkitAction.ATTACH_LOCAL} for uid ${allowed.uid} (pid ${held.pid}): ` +
        `authorized, polkit authorizes uid ${allowed.uid} (pid ${held.pid}) for ` +
        PolkitAction.ATTACH_LOCAL,
      ]);

      // Another user, for the same device: polkit says no, and the answer and the audit line
      // give polkit's reason.
      const no = await attach(refused, local("1-1"));
      assertEquals(no.status, OpStatus.ST_NA, no.message);
      assertStringIncludes(no.message, `uid ${refused.uid} is not the console user, and polkit`);
      assertStringIncludes(no.message, `polkit does not authorize uid ${refused.uid} (pid `);
      const noPid = Number(/\(pid (\d+)\)/.exec(no.message)?.[1]);
      assertStringIncludes(refusal(noPid), `refused: ${no.message}`);

      // A remote attach from a listed server: polkit wants a password, which the gateway cannot
      // ask for: no.
      const remote = await attach(
        allowed,
        encodeOpReqAttach({ kind: "remote", host: "127.0.0.1", port: 3240, busid: "1-1" }),
      );
      assertEquals(remote.status, OpStatus.ST_NA, remote.message);
      assertStringIncludes(remote.message, `polkit wants uid ${allowed.uid} (pid `);
      assertStringIncludes(
        remote.message,
        `to authenticate for ${PolkitAction.ATTACH_REMOTE}, which a service cannot ask: no`,
      );
      const remotePid = Number(/\(pid (\d+)\)/.exec(remote.message)?.[1]);
      assertStringIncludes(refusal(remotePid), `refused: ${remote.message}`);
      assertEquals(kernel.attached.length, 1);

      // A seat switch while polkit runs: the port is checked again, polkit still says yes, and
      // the port stays.
      await seat(CONSOLE - 1);
      await until(() => asked(held.pid).length === 2, "polkit asked again", 5000);
      assertStringIncludes(asked(held.pid)[1]!, "authorized, polkit authorizes");
      assert(kernel.used.has(port));
      assert(!audit().some((m) => m.startsWith("Took back")), audit().join("\n"));

      // polkitd stopped: the next attach of the rule's user is refused, and says why.
      const polkitdSaid = await env.polkitd.stop();
      const down = await attach(allowed, local("1-2"));
      assertEquals(down.status, OpStatus.ST_NA, down.message);
      assertStringIncludes(
        down.message,
        `polkit says no to ${PolkitAction.ATTACH_LOCAL}: polkit is unavailable: `,
      );
      assertStringIncludes(down.message, "org.freedesktop.PolicyKit1", polkitdSaid);
      assert(
        audit().some((m) =>
          m.includes(`for unix uid=${allowed.uid} `) && m.endsWith(`refused: ${down.message}`)
        ),
        audit().join("\n"),
      );
      assertEquals(kernel.attached.length, 1);

      // The bus gone as well, a seat switch: the port polkit allowed is checked again, polkit
      // is unavailable, which is a no, and the port is taken back.
      await env.bus.stop();
      await seat(CONSOLE);
      await until(() => !kernel.used.has(port), "the port taken back", 5000);
      await until(() => audit().some((m) => m.startsWith("Took back")), "the audit line", 1000);
      assertEquals(kernel.detached, [String(port)]);
      const tookBack = audit().filter((m) => m.startsWith("Took back"));
      assertEquals(tookBack.length, 1, audit().join("\n"));
      assertStringIncludes(
        tookBack[0]!,
        `Took back vhci port ${port} of uid ${allowed.uid}: polkit says no now (the console ` +
          `user changed from ${CONSOLE - 1} to ${CONSOLE}): polkit is unavailable: `,
      );
      assertEquals(asked(held.pid).length, 3);
    } finally {
      for (const cleanup of cleanups.reverse()) await cleanup();
      kernel.stop();
      logs.stop();
      await tree.remove();
      await dir.remove();
      await env.restore();
    }
    // Nothing leaked, and the machine is as before.
    assertEquals(socketsBefore, []);
    assert(socketsWhileServing.length > 0, "the listener is seen");
    assertEquals(gatewaySockets(sock), socketsBefore, "every socket of the gateway is closed");
    await env.assertRestored();
  },
});
