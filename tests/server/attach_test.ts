// Tests of OP_REQ_ATTACH and OP_REQ_DETACH (usbipgw's extension) in sessions: who reaches the
// attach service, what it gets, what the requester is told, the two-step exchange of a stream
// attach, the audit line of every request, and the connection closing after the answer.
import { assert, assertEquals, assertMatch, assertRejects } from "@std/assert";
import {
  type Connection,
  memoryConnectionPair,
  OpStatus,
  type PeerInfo,
  type UsbipServer,
  type UsbipServerOptions,
} from "../../mod.ts";
import {
  type AttachRequest,
  encodeOpRepAttach,
  encodeOpReqAttach,
  encodeOpReqDetach,
  FrameReader,
  MAX_BIND_MESSAGE_BYTES,
  UsbipProtocolError,
  VHCI_PORT_NONE,
  VHCI_PORT_SEND_SOCKET,
} from "../../protocol.ts";
import type { AttachAnswer, DetachAnswer, SocketRequest } from "../../lib/server/session_host.ts";
import type { LocalAttachService } from "../../lib/server/server.ts";
import { requestAttach, requestDetach } from "../../lib/client/gateway_requests.ts";
import { type LogCapture, render } from "./_logs.ts";
import { answered, auditLines, local, remote, stream, tcp, unix, withServer } from "./_requests.ts";

const unixNoUid: PeerInfo = { transport: "unix", address: "/run/usbipgw.sock" };
const memory: PeerInfo = { transport: "memory", address: "memory:b" };

const NOT_ALLOWED_ATTACH =
  "Not allowed: only a local user, over the unix socket, may attach devices into this machine";
const NOT_ALLOWED_DETACH =
  "Not allowed: only a local user, over the unix socket, may detach devices from this machine";

/** One call of the fake service. */
type Call =
  | { op: "attach"; request: AttachRequest; peer: PeerInfo; conn: Connection }
  | { op: "detach"; vhciPort: number; peer: PeerInfo };

/** A service that records its calls and answers with the functions given. */
function recorder(
  attach: (request: AttachRequest, requestSocket: SocketRequest) => Promise<AttachAnswer>,
  detach: (vhciPort: number) => Promise<DetachAnswer> = () =>
    Promise.resolve({ status: OpStatus.ST_OK, message: "Detached" }),
) {
  const calls: Call[] = [];
  const service: LocalAttachService = {
    attach(request, peer, conn, requestSocket) {
      calls.push({ op: "attach", request, peer, conn });
      return attach(request, requestSocket);
    },
    detach(vhciPort, peer) {
      calls.push({ op: "detach", vhciPort, peer });
      return detach(vhciPort);
    },
  };
  return { calls, service };
}

/**
 * An in-memory connection whose server end reports `peer` and, unless `fds` is false, can
 * receive a file descriptor: `receiveFd` waits until the client side calls `sendFd`, or rejects
 * after its timeout.
 */
function pairFrom(peer: PeerInfo, fds = true) {
  const [client, end] = memoryConnectionPair();
  const sent = Promise.withResolvers<number>();
  const timeouts: number[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const receiveFd = (timeoutMs = 10_000): Promise<number> => {
    timeouts.push(timeoutMs);
    const late = new Promise<number>((_, reject) => {
      timer = setTimeout(() => reject(new Error("Timed out waiting for the socket")), timeoutMs);
    });
    return Promise.race([sent.promise, late]).finally(() => clearTimeout(timer));
  };
  const server: Connection = fds ? { ...end, peer, receiveFd } : { ...end, peer };
  return { client, server, sendFd: (fd: number) => sent.resolve(fd), timeouts };
}

/** Sends one attach from `peer` with the client; the reply, and the session's end reason. */
function attachFrom(server: UsbipServer, peer: PeerInfo, request: AttachRequest) {
  const pair = pairFrom(peer);
  const sendSocket = () => Promise.resolve(pair.sendFd(42));
  return answered(server, pair.server, () => requestAttach(pair.client, request, sendSocket));
}

/** Sends one detach from `peer`; the reply, and the session's end reason. */
function detachFrom(server: UsbipServer, peer: PeerInfo, vhciPort: number) {
  const pair = pairFrom(peer);
  return answered(server, pair.server, () => requestDetach(pair.client, vhciPort));
}

/** Server options: attach service `service` (none when undefined) and the op-phase timeout. */
function servedBy(
  service: LocalAttachService | undefined,
  opPhaseTimeoutMs = 10_000,
): UsbipServerOptions {
  return {
    sessionLimits: { opPhaseTimeoutMs },
    ...(service === undefined ? {} : { localAttach: service }),
  };
}

/** The audit lines about attach and detach requests, rendered, with their level. */
function attachLines(logs: LogCapture): [string, string][] {
  return auditLines(logs, (line) => /: (at|de)tach of /.test(line));
}

Deno.test("a TCP peer, a unix peer without a uid and an in-memory peer get ST_NA without reaching the service", async () => {
  const { calls, service } = recorder(() =>
    Promise.resolve({ status: OpStatus.ST_OK, vhciPort: 1, message: "attached" })
  );
  await withServer(servedBy(service), async (server, logs) => {
    for (const peer of [tcp, unixNoUid, memory]) {
      for (const request of [local, remote, stream]) {
        const reply = await attachFrom(server, peer, request);
        assertEquals(reply.status, OpStatus.ST_NA);
        assertEquals(reply.vhciPort, VHCI_PORT_NONE);
        assertEquals(reply.message, NOT_ALLOWED_ATTACH);
      }
      const detached = await detachFrom(server, peer, 3);
      assertEquals([detached.status, detached.message], [OpStatus.ST_NA, NOT_ALLOWED_DETACH]);
      assertEquals(detached.endReason, "detach of vhci port 3 answered");
    }
    assertEquals(calls, []);
    const lines = attachLines(logs);
    assertEquals(lines.length, 12, "one audit line per request");
    assertEquals(lines.slice(0, 4), [
      [
        "info",
        `Session N (tcp 192.0.2.7:4000): attach of local device 1-2 refused: ${NOT_ALLOWED_ATTACH}`,
      ],
      [
        "info",
        `Session N (tcp 192.0.2.7:4000): attach of remote device 3-1 at 192.0.2.9:3240 refused: ${NOT_ALLOWED_ATTACH}`,
      ],
      [
        "info",
        `Session N (tcp 192.0.2.7:4000): attach of device 1-1 over a handed-over socket refused: ${NOT_ALLOWED_ATTACH}`,
      ],
      [
        "info",
        `Session N (tcp 192.0.2.7:4000): detach of vhci port 3 refused: ${NOT_ALLOWED_DETACH}`,
      ],
    ]);
    assertEquals(lines[4]![1].startsWith("Session N (unix /run/usbipgw.sock): attach"), true);
  });
});

Deno.test("without an attach service a unix peer gets ST_ERROR, not supported; a TCP peer still ST_NA", async () => {
  await withServer(servedBy(undefined), async (server, logs) => {
    const reply = await attachFrom(server, unix(1000), local);
    assertEquals(reply, {
      status: OpStatus.ST_ERROR,
      vhciPort: VHCI_PORT_NONE,
      message: "Not supported: this server cannot attach devices into this machine's kernel",
      endReason: "attach of local device 1-2 answered",
    });
    const detached = await detachFrom(server, unix(0), 2);
    assertEquals(detached.status, OpStatus.ST_ERROR);
    assertEquals(
      detached.message,
      "Not supported: this server cannot detach devices from this machine's kernel",
    );
    assertEquals((await attachFrom(server, tcp, local)).status, OpStatus.ST_NA);
    assertEquals(attachLines(logs).map(([, line]) => line), [
      "Session N (unix uid=1000 gid=1000 pid=4242): attach of local device 1-2 failed (status 5): Not supported: this server cannot attach devices into this machine's kernel",
      "Session N (unix uid=0 gid=0 pid=4242): detach of vhci port 2 failed (status 5): Not supported: this server cannot detach devices from this machine's kernel",
      `Session N (tcp 192.0.2.7:4000): attach of local device 1-2 refused: ${NOT_ALLOWED_ATTACH}`,
    ]);
  });
});

Deno.test("any unix peer with a uid reaches the service, which decides; its answer is relayed", async () => {
  const { calls, service } = recorder(
    (request) =>
      Promise.resolve(
        request.kind === "local"
          ? { status: OpStatus.ST_OK, vhciPort: 3, message: "Attached 1-2 on port 3" }
          : { status: OpStatus.ST_NA, vhciPort: 5, message: "Remote attach is not allowed" },
      ),
    (vhciPort) =>
      Promise.resolve(
        vhciPort === 3
          ? { status: OpStatus.ST_OK, message: "Detached port 3" }
          : { status: OpStatus.ST_NODEV, message: `Nothing on port ${vhciPort}` },
      ),
  );
  await withServer(servedBy(service), async (server, logs) => {
    for (const uid of [0, 1000, 1001]) {
      assertEquals(await attachFrom(server, unix(uid), local), {
        status: OpStatus.ST_OK,
        vhciPort: 3,
        message: "Attached 1-2 on port 3",
        endReason: "attach of local device 1-2 answered",
      });
    }
    // A refusal never carries a port, whatever the service put in it.
    assertEquals(await attachFrom(server, unix(1000), remote), {
      status: OpStatus.ST_NA,
      vhciPort: VHCI_PORT_NONE,
      message: "Remote attach is not allowed",
      endReason: "attach of remote device 3-1 at 192.0.2.9:3240 answered",
    });
    assertEquals(
      [await detachFrom(server, unix(1000), 3), await detachFrom(server, unix(1000), 6)].map((
        r,
      ) => [r.status, r.message]),
      [[OpStatus.ST_OK, "Detached port 3"], [OpStatus.ST_NODEV, "Nothing on port 6"]],
    );
    assertEquals(calls.map((c) => c.op === "attach" ? [c.request, c.peer] : [c.vhciPort, c.peer]), [
      [local, unix(0)],
      [local, unix(1000)],
      [local, unix(1001)],
      [remote, unix(1000)],
      [3, unix(1000)],
      [6, unix(1000)],
    ]);
    const first = calls[0]!;
    assert(first.op === "attach" && first.conn.peer === first.peer, "the session's connection");
    assertEquals(attachLines(logs).slice(2), [
      [
        "info",
        "Session N (unix uid=1001 gid=1001 pid=4242): attach of local device 1-2 done on vhci port 3: Attached 1-2 on port 3",
      ],
      [
        "info",
        "Session N (unix uid=1000 gid=1000 pid=4242): attach of remote device 3-1 at 192.0.2.9:3240 refused: Remote attach is not allowed",
      ],
      [
        "info",
        "Session N (unix uid=1000 gid=1000 pid=4242): detach of vhci port 3 done: Detached port 3",
      ],
      [
        "info",
        "Session N (unix uid=1000 gid=1000 pid=4242): detach of vhci port 6 failed (status 4): Nothing on port 6",
      ],
    ]);
    const record = logs.records.find((r) => render(r).includes("attach of remote device"))!;
    assertEquals(
      [
        record.properties.kind,
        record.properties.busid,
        record.properties.host,
        record.properties.port,
        record.properties.status,
        record.properties.vhciPort,
      ],
      ["remote", "3-1", "192.0.2.9", 3240, OpStatus.ST_NA, null],
    );
  });
});

Deno.test("a stream attach: the intermediate answer, then the socket, then the final answer", async () => {
  const events: string[] = [];
  const { service } = recorder(async (request, requestSocket) => {
    events.push(`service: ${request.kind} ${request.busid}`);
    const fd = await requestSocket(5000);
    events.push(`service: got fd ${fd}`);
    return { status: OpStatus.ST_OK, vhciPort: 7, message: `Attached over fd ${fd}` };
  });
  await withServer(servedBy(service), async (server, logs) => {
    // By hand, to see the bytes of each answer.
    const pair = pairFrom(unix(1000));
    const done = server.accept(pair.server);
    const writer = pair.client.writable.getWriter();
    await writer.write(encodeOpReqAttach(stream));
    const reader = new FrameReader(pair.client.readable);
    const head = await reader.readExact(16);
    assertEquals(
      head,
      encodeOpRepAttach({
        kind: "op_rep_attach",
        status: OpStatus.ST_OK,
        vhciPort: VHCI_PORT_SEND_SOCKET,
        message: "",
      }),
    );
    events.push("client: asked for the socket");
    assertEquals(pair.timeouts, [5000], "the service's timeout reaches receiveFd");
    pair.sendFd(42);
    assertEquals(await reader.readOpRepAttach(), {
      kind: "op_rep_attach",
      status: OpStatus.ST_OK,
      vhciPort: 7,
      message: "Attached over fd 42",
    });
    assertEquals(await reader.readExact(1), null, "end of stream after the final answer");
    await done;
    assertEquals(events, [
      "service: stream 1-1",
      "client: asked for the socket",
      "service: got fd 42",
    ]);
    // With the client, whose sendSocket runs between the two answers.
    assertEquals(await attachFrom(server, unix(1000), stream), {
      status: OpStatus.ST_OK,
      vhciPort: 7,
      message: "Attached over fd 42",
      endReason: "attach of device 1-1 over a handed-over socket answered",
    });
    assertEquals(attachLines(logs).at(-1), [
      "info",
      "Session N (unix uid=1000 gid=1000 pid=4242): attach of device 1-1 over a handed-over socket done on vhci port 7: Attached over fd 42",
    ]);
  });
});

Deno.test("a stream attach refused before the socket is asked for is answered at once", async () => {
  const { service } = recorder(() =>
    Promise.resolve({ status: OpStatus.ST_NA, message: "Streams are not enabled" })
  );
  await withServer(servedBy(service), async (server) => {
    const pair = pairFrom(unix(1000));
    const done = server.accept(pair.server);
    let asked = 0;
    const reply = await requestAttach(pair.client, stream, () => {
      asked++;
      return Promise.resolve();
    });
    await done;
    assertEquals(reply, {
      status: OpStatus.ST_NA,
      vhciPort: VHCI_PORT_NONE,
      message: "Streams are not enabled",
    });
    assertEquals([asked, pair.timeouts], [0, []], "the client is never asked for the socket");
  });
});

Deno.test("the socket request refuses other kinds, a second call, a transport without fds and early bytes", async () => {
  const errors: string[] = [];
  const { service } = recorder(async (_request, requestSocket) => {
    try {
      const fd = await requestSocket(1000);
      await requestSocket(1000);
      return { status: OpStatus.ST_OK, vhciPort: 1, message: `fd ${fd}` };
    } catch (e) {
      errors.push((e as Error).message);
      throw e;
    }
  });
  await withServer(servedBy(service), async (server) => {
    const reply = await attachFrom(server, unix(1000), local);
    assertEquals(reply.status, OpStatus.ST_ERROR);
    assertEquals(
      reply.message,
      "Cannot attach local device 1-2: Cannot ask for a socket: the attach is of kind local",
    );
    assertEquals(
      (await attachFrom(server, unix(1000), stream)).message,
      "Cannot attach device 1-1 over a handed-over socket: Cannot ask for a socket twice",
    );
    // A transport that cannot carry file descriptors: the final answer comes at once.
    const noFds = pairFrom(unix(1000), false);
    const done = server.accept(noFds.server);
    let asked = 0;
    const refused = await requestAttach(noFds.client, stream, () => Promise.resolve(void asked++));
    await done;
    assertEquals([refused.status, asked], [OpStatus.ST_ERROR, 0]);
    assertEquals(
      refused.message,
      "Cannot attach device 1-1 over a handed-over socket: Cannot receive a socket: this connection cannot carry file descriptors",
    );
    // A byte sent with the request, before the gateway asked: the socket it carried is lost.
    const early = pairFrom(unix(1000));
    const earlyDone = server.accept(early.server);
    const writer = early.client.writable.getWriter();
    await writer.write(new Uint8Array([...encodeOpReqAttach(stream), 0]));
    const reader = new FrameReader(early.client.readable);
    const rep = await reader.readOpRepAttach();
    await earlyDone;
    assertEquals([rep.status, rep.vhciPort], [OpStatus.ST_ERROR, VHCI_PORT_NONE]);
    assertMatch(rep.message, /the requester sent 1 bytes before it was asked for$/);
    assertEquals(errors.length, 4);
  });
});

Deno.test("a service that throws or answers ST_OK without a port gets ST_ERROR and an error log", async () => {
  const { service } = recorder(
    (request) => {
      if (request.busid === "9-9") return Promise.resolve({ status: OpStatus.ST_OK, message: "?" });
      if (request.busid === "9-8") {
        return Promise.resolve({ status: 77, vhciPort: 1, message: "?" });
      }
      return Promise.reject(new Error("vhci_hcd is not loaded"));
    },
    () => Promise.reject(new Error("no such port")),
  );
  await withServer(servedBy(service), async (server, logs) => {
    assertEquals(await attachFrom(server, unix(0), local), {
      status: OpStatus.ST_ERROR,
      vhciPort: VHCI_PORT_NONE,
      message: "Cannot attach local device 1-2: vhci_hcd is not loaded",
      endReason: "attach of local device 1-2 answered",
    });
    assertEquals(
      (await attachFrom(server, unix(0), { kind: "local", busid: "9-9" })).message,
      "Cannot attach local device 9-9: the gateway's attach service answered ST_OK without a valid vhci port (undefined)",
    );
    assertEquals(
      (await attachFrom(server, unix(0), { kind: "local", busid: "9-8" })).message,
      "Cannot attach local device 9-8: the gateway's attach service answered an unknown status 77",
    );
    assertEquals(await detachFrom(server, unix(0), 4), {
      status: OpStatus.ST_ERROR,
      message: "Cannot detach vhci port 4: no such port",
      endReason: "detach of vhci port 4 answered",
    });
    const errors = logs.records.filter((r) => r.level === "error").map(render);
    assertEquals(errors, [
      "Cannot attach local device 1-2: vhci_hcd is not loaded",
      "Cannot attach local device 9-9: the attach service answered ST_OK without a valid vhci port (undefined)",
      "Cannot attach local device 9-8: the attach service answered an unknown status 77",
      "Cannot detach vhci port 4: no such port",
    ]);
    assertEquals(attachLines(logs).length, 4, "and one audit line each");
  });
});

Deno.test("strings from the wire are quoted in the audit line, and a long message is cut", async () => {
  const long = "é".repeat(MAX_BIND_MESSAGE_BYTES);
  const { calls, service } = recorder(() =>
    Promise.resolve({ status: OpStatus.ST_ERROR, message: long })
  );
  await withServer(servedBy(service), async (server, logs) => {
    const odd: AttachRequest = {
      kind: "remote",
      host: "evil\nSession 1 forged",
      port: 3240,
      busid: "1-1\nforged",
    };
    const reply = await attachFrom(server, unix(1000), odd);
    assertEquals(reply.message, "é".repeat(MAX_BIND_MESSAGE_BYTES / 2));
    const [[, line]] = attachLines(logs) as [[string, string]];
    assert(
      line.includes(
        'attach of remote device "1-1\\nforged" at "evil\\nSession 1 forged" port 3240 failed (status 5)',
      ),
      line,
    );
    assert(!line.includes("\n"), "no forged line in the log");
    // A bus id of this gateway's own devices has the usual form: another never reaches the service.
    const ownOdd = await attachFrom(server, unix(1000), { kind: "local", busid: "1-1\nforged" });
    assertEquals(ownOdd.status, OpStatus.ST_ERROR);
    assertEquals(
      ownOdd.message,
      'Invalid busid "1-1\\nforged": expected BUS-PORT[.PORT...] with numbers 1..255, e.g. 1-1 or 2-1.3',
    );
    assertEquals(calls.length, 1, "only the remote request reached the service");
    assertEquals(
      attachLines(logs)[1]![1],
      `Session N (unix uid=1000 gid=1000 pid=4242): attach of local device "1-1\\nforged" failed (status 5): ${ownOdd.message}`,
    );
  });
});

Deno.test("the connection closes once an attach or a detach is answered", async () => {
  await withServer(servedBy(undefined), async (server) => {
    for (const request of [encodeOpReqAttach(local), encodeOpReqDetach(1)]) {
      const pair = pairFrom(unix(1000));
      const start = Date.now();
      const done = server.accept(pair.server);
      await pair.client.writable.getWriter().write(request);
      const reader = new FrameReader(pair.client.readable);
      if (request.length === 300) await reader.readOpRepAttach();
      else await reader.readOpRepDetach();
      assertEquals(await reader.readExact(1), null, "end of stream after the answer");
      await done;
      assert(Date.now() - start < 1000, `closed after ${Date.now() - start} ms`);
    }
  });
});

Deno.test("a malformed OP_REQ_ATTACH ends the session as a protocol error, unanswered", async () => {
  const { service } = recorder(() => Promise.reject(new Error("never")));
  await withServer(servedBy(service), async (server) => {
    const pair = pairFrom(unix(1000));
    const done = server.accept(pair.server);
    const session = server.sessions.at(-1)!;
    const bytes = encodeOpReqAttach(local);
    bytes[9] = 1;
    await pair.client.writable.getWriter().write(bytes);
    assertEquals(await new FrameReader(pair.client.readable).readExact(1), null);
    await done;
    assertEquals(
      session.endReason,
      "protocol error: Cannot decode OP_REQ_ATTACH: reserved is 1, expected 0",
    );
  });
});

Deno.test("the op-phase timeout runs on while the service waits for the socket", async () => {
  const { service } = recorder(async (_request, requestSocket) => {
    await requestSocket(150);
    return { status: OpStatus.ST_OK, vhciPort: 1, message: "late" };
  });
  await withServer(servedBy(service, 50), async (server, logs) => {
    const pair = pairFrom(unix(1000));
    const done = server.accept(pair.server);
    const session = server.sessions.at(-1)!;
    await pair.client.writable.getWriter().write(encodeOpReqAttach(stream));
    const reader = new FrameReader(pair.client.readable);
    assertEquals((await reader.readOpRepAttach()).vhciPort, VHCI_PORT_SEND_SOCKET);
    // The client never sends the socket: the session ends at the op-phase timeout, and the
    // service's own wait ends later, with no one left to answer.
    await assertRejects(() => reader.readOpRepAttach(), UsbipProtocolError, "ends after 0");
    assertMatch(session.endReason!, /^limit opPhaseTimeoutMs=50 exceeded/);
    await done;
    assertEquals(attachLines(logs).map(([, line]) => line), [
      `Session N (unix uid=1000 gid=1000 pid=4242): attach of device 1-1 over a handed-over socket failed (status 5); not answered: the session ended (${session.endReason}): Cannot attach device 1-1 over a handed-over socket: Timed out waiting for the socket`,
    ]);
  });
});
