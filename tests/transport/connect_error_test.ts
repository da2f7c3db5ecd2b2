// Clients that cannot reach a server get one ConnectError naming the target and the reason:
// connectTcp and connectUnix, on real sockets. attachDevice's ClientError "connect", which
// carries the same ConnectError, is tested in tests/client/attach_test.ts.
import { assert, assertEquals, assertRejects } from "@std/assert";
import { ConnectError } from "../../lib/transport/connect_error.ts";
import { connectTcp } from "../../lib/transport/tcp.ts";
import { connectUnix } from "../../lib/transport/unix.ts";
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
