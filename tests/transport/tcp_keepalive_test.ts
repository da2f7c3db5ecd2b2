// The TCP listener's keep-alive settings reach the sockets it accepts (Linux inherits them
// from the listening socket), so that a client whose host vanished frees its device.
import { assertEquals } from "@std/assert";
import { DEFAULT_KEEPALIVE, TcpListener } from "../../lib/transport/tcp.ts";
import { fdOfSocket, readKeepalive, socketInodes } from "../../lib/transport/_tcp_keepalive.ts";

const ESTABLISHED = "01";

/** Accepts one connection from a fresh client and returns the accepted socket's settings. */
async function acceptedSettings(listener: TcpListener) {
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.port });
  const it = listener[Symbol.asyncIterator]();
  const accepted = (await it.next()).value!;
  try {
    // The accepted socket: local port = the listener's, remote port = the client's.
    const fd = fdOfSocket(socketInodes(listener.port, ESTABLISHED, client.localAddr.port));
    if (fd === undefined) throw new Error("the accepted socket is not among this process's fds");
    return readKeepalive(fd);
  } finally {
    accepted.close();
    client.close();
  }
}

Deno.test("accepted TCP connections inherit the listener's keep-alive and user timeout", async () => {
  const custom = { idleSeconds: 7, intervalSeconds: 2, count: 4, userTimeoutMs: 12_345 };
  const listener = new TcpListener({ hostname: "127.0.0.1", port: 0, keepalive: custom });
  try {
    assertEquals(listener.keepaliveProblem, undefined);
    assertEquals(await acceptedSettings(listener), { enabled: true, ...custom });
  } finally {
    listener.close();
  }
  const byDefault = new TcpListener({ hostname: "127.0.0.1", port: 0 });
  try {
    assertEquals(await acceptedSettings(byDefault), { enabled: true, ...DEFAULT_KEEPALIVE });
  } finally {
    byDefault.close();
  }
});

Deno.test("keepalive: false leaves the system's user timeout (0) on accepted connections", async () => {
  const listener = new TcpListener({ hostname: "127.0.0.1", port: 0, keepalive: false });
  try {
    const s = await acceptedSettings(listener);
    assertEquals(s.userTimeoutMs, 0);
    // wrapTcpConn still turns keep-alive on, with the system's timings.
    assertEquals(s.enabled, true);
  } finally {
    listener.close();
  }
});
