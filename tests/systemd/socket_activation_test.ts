// systemd socket activation: the real gateway started by systemd-socket-activate, which
// binds the sockets, waits for the first connection and passes them as fds 3, 4, ... with
// LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES, as a socket unit does.
import { assertEquals, assertRejects, assertStringIncludes, assertThrows } from "@std/assert";
import { connectTcp, connectUnix, requestDeviceList } from "../../mod.ts";
import { ConnectError } from "../../lib/transport/connect_error.ts";
import { MAX_LISTEN_FDS, parseListenFds } from "../../lib/systemd/socket_activation.ts";
import { hasCommand, spawnService } from "./_service.ts";
import { makeTestPki, opensslProblem, tlsServeFlags } from "../transport/_certs.ts";

const ACTIVATE = "systemd-socket-activate";
const available = await hasCommand(ACTIVATE);
if (!available) {
  console.log(
    `%cskipping the socket activation tests: ${ACTIVATE} is not installed (Debian: systemd)`,
    "color: yellow",
  );
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

Deno.test("parseListenFds() reads LISTEN_* as sd_listen_fds_with_names() does", () => {
  assertEquals(parseListenFds({}, 9), []);
  assertEquals(parseListenFds({ LISTEN_PID: "9", LISTEN_FDS: "0" }, 9), []);
  assertEquals(parseListenFds({ LISTEN_FDS: "2" }, 9), [], "no LISTEN_PID: not ours");
  assertEquals(parseListenFds({ LISTEN_PID: "8", LISTEN_FDS: "2" }, 9), [], "another pid's");
  assertEquals(parseListenFds({ LISTEN_PID: "9", LISTEN_FDS: "2", LISTEN_FDNAMES: "a" }, 9), [
    { fd: 3, name: "unknown" },
    { fd: 4, name: "unknown" },
  ]);
  assertEquals(
    parseListenFds({ LISTEN_PID: "9", LISTEN_FDS: "3", LISTEN_FDNAMES: "a::c" }, 9),
    [{ fd: 3, name: "a" }, { fd: 4, name: "" }, { fd: 5, name: "c" }],
  );
  assertThrows(
    () => parseListenFds({ LISTEN_PID: "9", LISTEN_FDS: "two" }, 9),
    TypeError,
    "Cannot use LISTEN_FDS=two",
  );
  assertThrows(
    () => parseListenFds({ LISTEN_PID: "x", LISTEN_FDS: "1" }, 9),
    TypeError,
    "Cannot use LISTEN_PID=x",
  );
  assertThrows(
    () => parseListenFds({ LISTEN_PID: "9", LISTEN_FDS: String(MAX_LISTEN_FDS + 1) }, 9),
    TypeError,
    `more than ${MAX_LISTEN_FDS}`,
  );
});

Deno.test({
  name: "adopted TCP and unix sockets serve the device list, and unix peers keep their credentials",
  ignore: !available,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "usbipgw-activate-" });
    const port = freePort();
    const unused = freePort();
    const sock = `${dir}/gw.sock`;
    const gw = spawnService(
      [
        "serve",
        // Replaced by the inherited sockets: this one must stay closed.
        "--tcp",
        `127.0.0.1:${unused}`,
        "--device",
        "gadget-zero:busid=1-1",
        "--device",
        "keyboard:busid=1-2",
        // Root over unix may not see 1-2: only a peer whose uid reached the policy matches.
        "--rule",
        "deny:transport=unix,uid=0,busid=1-2",
        "--rule",
        "allow:transport=tcp,source=127.0.0.0/8,busid=1-1",
      ],
      {
        wrapper: [ACTIVATE, "-l", `127.0.0.1:${port}`, "-l", sock, "--fdname=usbip:local"],
      },
    );
    try {
      // systemd-socket-activate starts the gateway at the first connection, which waits in
      // the inherited socket's backlog meanwhile.
      await gw.waitFor(/Listening on .* as 4/);
      const overTcp = await requestDeviceList(await connectTcp("127.0.0.1", port));
      assertEquals(overTcp.map((d) => d.busid), ["1-1"]);
      const ready = await gw.waitFor(/usbipgw serving/);
      assertStringIncludes(ready, `tcp 127.0.0.1:${port} (systemd), unix ${sock} (systemd)`);
      await gw.waitFor(/the configured listeners are not opened/);
      await assertRejects(
        () => connectTcp("127.0.0.1", unused),
        ConnectError,
        "connection refused",
      );

      const overUnix = await requestDeviceList(await connectUnix(sock));
      assertEquals(overUnix.map((d) => d.busid), ["1-1"]);
      await gw.waitFor(new RegExp(`connection from unix uid=0 gid=0 pid=${Deno.pid}\\b`));

      assertEquals((await gw.stop("SIGTERM")).code, 0);
      // The socket belongs to systemd: the gateway leaves it for the next activation.
      assertEquals((await Deno.lstat(sock)).isSocket, true);
    } finally {
      await gw.stop("SIGKILL");
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const strace = await hasCommand("strace");
if (available && !strace) {
  console.log(
    "%cskipping the TCP_NODELAY check of adopted sockets: strace is not installed",
    "color: yellow",
  );
}

Deno.test({
  name: "connections on an adopted TCP socket get TCP_NODELAY and keep-alive",
  ignore: !available || !strace,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "usbipgw-activate-" });
    const port = freePort();
    const trace = `${dir}/trace`;
    // strace outermost: systemd-socket-activate must exec the gateway itself, since the
    // sockets are for LISTEN_PID alone.
    const gw = spawnService(["serve", "--device", "gadget-zero"], {
      wrapper: [
        "strace",
        "-f",
        "-qq",
        "-e",
        "trace=setsockopt",
        "-o",
        trace,
        ACTIVATE,
        "-l",
        `127.0.0.1:${port}`,
      ],
    });
    try {
      await gw.waitFor(/Listening on .* as 3/);
      // Without a rule TCP peers see nothing; the connection is what counts here.
      assertEquals(await requestDeviceList(await connectTcp("127.0.0.1", port)), []);
      await gw.waitFor(/connection from tcp 127\.0\.0\.1:/);
      // The gateway is strace's child (systemd-socket-activate became it).
      const children = await Deno.readTextFile(
        `/proc/${gw.process.pid}/task/${gw.process.pid}/children`,
      );
      const gateway = Number(children.trim().split(" ")[0]);
      Deno.kill(gateway, "SIGTERM");
      assertEquals((await gw.process.status).code, 0);
      const text = await Deno.readTextFile(trace);
      // Only the gateway sets these: systemd-socket-activate made a plain listener.
      assertStringIncludes(text, "TCP_NODELAY, [1]");
      assertStringIncludes(text, "SO_KEEPALIVE, [1]");
      // ... and the keep-alive timings on the listener, which its connections inherit.
      assertStringIncludes(text, "setsockopt(3, SOL_TCP, TCP_USER_TIMEOUT, [30000], 4) = 0");
      assertStringIncludes(text, "setsockopt(3, SOL_TCP, TCP_KEEPIDLE, [10], 4) = 0");
    } finally {
      await gw.stop("SIGKILL");
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "an inherited datagram socket is refused with a clear message",
  ignore: !available,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "usbipgw-activate-" });
    const sock = `${dir}/dgram.sock`;
    const gw = spawnService(["serve", "--device", "gadget-zero"], {
      wrapper: [ACTIVATE, "--datagram", "-l", sock],
    });
    try {
      await gw.waitFor(/Listening on .* as 3/);
      const sender = Deno.listenDatagram(
        { transport: "unixpacket" } as Deno.UnixListenOptions & { transport: "unixpacket" },
      );
      await sender.send(new Uint8Array([1]), { transport: "unixpacket", path: sock });
      sender.close();
      const status = await gw.process.status;
      assertEquals(status.code, 1);
      await gw.waitFor(
        /^usbipgw: Cannot adopt inherited socket fd 3 \("unknown"\): it is not a stream socket/,
      );
    } finally {
      await gw.stop("SIGKILL");
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a passed socket on a port the configuration gives to TLS is refused, not served plain",
  ignore: !available || opensslProblem !== undefined,
  async fn() {
    const pki = await makeTestPki();
    const port = freePort();
    const gw = spawnService(
      ["serve", "--device", "gadget-zero", ...tlsServeFlags(pki, `127.0.0.1:${port}`)],
      { wrapper: [ACTIVATE, "-l", `127.0.0.1:${port}`] },
    );
    try {
      await gw.waitFor(/Listening on .* as 3/);
      // systemd-socket-activate starts the gateway at the first connection.
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      const status = await gw.process.status;
      assertEquals(status.code, 1);
      await gw.waitFor(new RegExp(`gives port ${port} to TLS`));
      assertEquals(await c.read(new Uint8Array(8)).catch(() => null), null, "nothing served");
      c.close();
    } finally {
      await gw.stop("SIGKILL");
      await pki.remove();
    }
  },
});
