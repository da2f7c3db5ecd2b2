// Clients that cannot reach a server get one ConnectError naming the target and the reason:
// connectTcp and connectUnix, and the kernel client's attachDevice (its ClientError "connect"
// carries the same ConnectError as its cause and message). Real sockets.
import { assert, assertEquals, assertRejects } from "@std/assert";
import { ConnectError } from "../../lib/transport/connect_error.ts";
import { connectTcp } from "../../lib/transport/tcp.ts";
import { connectUnix } from "../../lib/transport/unix.ts";
import { attachDevice, ClientError } from "../../lib/client/attach.ts";
import { controllerPorts, fakeSysfs } from "../client/_vhci_tree.ts";
import { foreignSocketProblem, withForeignSocket } from "./_restricted.ts";

/** A TCP port nobody listens on: bound, noted and closed again. */
function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

Deno.test("connectTcp() to a port nobody listens on throws a ConnectError: refused", async () => {
  const port = closedPort();
  const e = await assertRejects(() => connectTcp("127.0.0.1", port), ConnectError);
  assertEquals(
    e.message,
    `Cannot connect to 127.0.0.1:${port}: connection refused (ECONNREFUSED); is the gateway running?`,
  );
  assertEquals([e.failure, e.code, e.target], ["refused", "ECONNREFUSED", `127.0.0.1:${port}`]);
  assert(e.cause instanceof Deno.errors.ConnectionRefused, "the system's error is the cause");
  const v6 = await assertRejects(() => connectTcp("::1", port), ConnectError);
  assert(v6.message.startsWith(`Cannot connect to [::1]:${port}: `), v6.message);
});

Deno.test("connectTcp() to a host name that does not resolve says so", async () => {
  // .invalid never resolves (RFC 6761).
  const e = await assertRejects(() => connectTcp("no-such-host.invalid", 3240), ConnectError);
  assertEquals(e.failure, "unknown_host");
  assert(
    e.message.startsWith(
      "Cannot connect to no-such-host.invalid:3240: the host name does not resolve (",
    ),
    e.message,
  );
});

Deno.test("connectUnix() to a missing socket or a stale one throws a ConnectError", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const missing = `${dir}/usbipgw.sock`;
    const e = await assertRejects(() => connectUnix(missing), ConnectError);
    assertEquals(
      e.message,
      `Cannot connect to ${missing}: no such socket (ENOENT); is the gateway running?`,
    );
    assertEquals([e.failure, e.target], ["no_such_socket", missing]);
    // A socket file nobody accepts on, as a killed gateway leaves behind.
    const stale = `${dir}/stale.sock`;
    const leave = `Deno.listen({ transport: "unix", path: ${
      JSON.stringify(stale)
    } }); Deno.exit(0);`;
    assert((await new Deno.Command(Deno.execPath(), { args: ["eval", leave] }).output()).success);
    const s = await assertRejects(() => connectUnix(stale), ConnectError);
    assertEquals(
      s.message,
      `Cannot connect to ${stale}: nobody accepts on this socket (ECONNREFUSED); is the gateway running?`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

if (foreignSocketProblem) {
  console.log(`Skipping the socket permission test: ${foreignSocketProblem}`);
}

Deno.test({
  name: "connectUnix() to a socket this user may not use throws a ConnectError: permission denied",
  ignore: foreignSocketProblem !== undefined,
  // Owned by nobody, mode 0600: root without CAP_DAC_OVERRIDE is refused like any user.
  fn: () =>
    withForeignSocket(async (path) => {
      const script = `import { connectUnix } from ${
        JSON.stringify(new URL("../../lib/transport/unix.ts", import.meta.url).href)
      }; try { (await connectUnix(${
        JSON.stringify(path)
      })).close(); console.log("connected"); } catch (e) { console.log(e.name + ": " + e.message); }`;
      const out = await new Deno.Command("setpriv", {
        args: [
          "--bounding-set",
          "-dac_override,-dac_read_search",
          "--",
          Deno.execPath(),
          "eval",
          script,
        ],
        cwd: new URL("../../", import.meta.url).pathname,
      }).output();
      assertEquals(
        new TextDecoder().decode(out.stdout).trim(),
        `ConnectError: Cannot connect to ${path}: permission denied (EACCES); ` +
          "the socket's mode or owner keeps this user out",
      );
    }),
});

Deno.test("attachDevice() to a refused server throws ClientError connect with the same ConnectError", async () => {
  const tree = await fakeSysfs([controllerPorts(0)]);
  try {
    const port = closedPort();
    const e = await assertRejects(
      () =>
        attachDevice({
          remote: { transport: "tcp", host: "127.0.0.1", port },
          busid: "1-1",
          sysfsRoot: tree.root,
          stateDir: null,
        }),
      ClientError,
    );
    assertEquals(e.reason, "connect");
    assert(e.cause instanceof ConnectError, "the cause is the transport's ConnectError");
    assertEquals(e.cause.failure, "refused");
    assertEquals(
      e.message,
      `Cannot connect to 127.0.0.1:${port}: connection refused (ECONNREFUSED); is the gateway running?`,
    );
    const direct = await assertRejects(() => connectTcp("127.0.0.1", port), ConnectError);
    assertEquals(e.message, direct.message, "both paths word it alike");
    const dir = await Deno.makeTempDir();
    const u = await assertRejects(
      () =>
        attachDevice({
          remote: { transport: "unix", path: `${dir}/gw.sock` },
          busid: "1-1",
          sysfsRoot: tree.root,
          stateDir: null,
        }),
      ClientError,
    );
    await Deno.remove(dir);
    assertEquals(u.message, (await connectUnix(`${dir}/gw.sock`).catch((x) => x)).message);
  } finally {
    await tree.remove();
  }
});
