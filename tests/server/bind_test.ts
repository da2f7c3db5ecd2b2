// Tests of OP_REQ_BIND and OP_REQ_UNBIND (usbipgw's extension) in sessions: who may, what the
// handler gets, what the requester is told, the audit line of every decision, and the
// connection closing after the answer.
import { assert, assertEquals } from "@std/assert";
import {
  type Connection,
  memoryConnectionPair,
  OpStatus,
  type PeerInfo,
  UsbipServer,
  type UsbipServerOptions,
} from "../../mod.ts";
import { encodeOpReqBind, FrameReader, MAX_BIND_MESSAGE_BYTES } from "../../protocol.ts";
import type { HostDeviceAction } from "../../lib/server/session_host.ts";
import type { HostDeviceHandler } from "../../lib/server/server.ts";
import { requestBind, requestUnbind } from "../../lib/client/usbip_client.ts";
import { type LogCapture, render } from "./_logs.ts";
import { answered, auditLines, tcp, unix, withServer } from "./_requests.ts";

const GATEWAY_UID = 990;
const CONSOLE_UID = 1000;

/** Who may read the status, as the gateway decides it (lib/cli/serve.ts). */
const statusAccess = (peer: PeerInfo) =>
  peer.transport === "unix" && peer.uid !== undefined &&
  (peer.uid === 0 || peer.uid === GATEWAY_UID || peer.uid === CONSOLE_UID);

/** A handler that records its calls and answers with `answer`. */
function recorder(
  answer: (action: HostDeviceAction, busid: string) => Promise<{
    ok: boolean;
    message: string;
  }>,
) {
  const calls: [HostDeviceAction, string, PeerInfo][] = [];
  const handler: HostDeviceHandler = (action, busid, peer) => {
    calls.push([action, busid, peer]);
    return answer(action, busid);
  };
  return { calls, handler };
}

/** An in-memory connection whose server end reports `peer`. */
function pairFrom(peer: PeerInfo): [Connection, Connection] {
  const [client, end] = memoryConnectionPair();
  return [client, { ...end, peer }];
}

/** Sends one bind or unbind from `peer`; the answer, and the session's end reason. */
function ask(server: UsbipServer, peer: PeerInfo, action: HostDeviceAction, busid: string) {
  const [client, end] = pairFrom(peer);
  return answered(
    server,
    end,
    () => (action === "bind" ? requestBind : requestUnbind)(client, busid),
  );
}

/** Server options: the status access of the gateway, and `handler` (none when undefined). */
function handledBy(handler: HostDeviceHandler | undefined): UsbipServerOptions {
  return { statusAccess, ...(handler === undefined ? {} : { manageHostDevice: handler }) };
}

/** The audit lines about host devices, rendered, with their level. */
function hostDeviceLines(logs: LogCapture): [string, string][] {
  return auditLines(logs, (line) => line.includes("of host device"));
}

Deno.test("a TCP peer and a unix peer of another user get ST_NA, an audit line, and no handler call", async () => {
  const { calls, handler } = recorder(() => Promise.resolve({ ok: true, message: "done" }));
  await withServer(handledBy(handler), async (server, logs) => {
    for (const peer of [tcp, unix(1001)]) {
      for (const action of ["bind", "unbind"] as const) {
        const answer = await ask(server, peer, action, "3-1.2");
        assertEquals(answer.status, OpStatus.ST_NA);
        assertEquals(answer.message, `Not allowed: this peer may not ${action} host devices`);
        assertEquals(answer.endReason, `${action} of 3-1.2 answered`);
      }
    }
    assertEquals(calls, []);
    assertEquals(hostDeviceLines(logs), [
      [
        "info",
        "Session N (tcp 192.0.2.7:4000): bind of host device 3-1.2 refused: Not allowed: this peer may not bind host devices",
      ],
      [
        "info",
        "Session N (tcp 192.0.2.7:4000): unbind of host device 3-1.2 refused: Not allowed: this peer may not unbind host devices",
      ],
      [
        "info",
        "Session N (unix uid=1001 gid=1001 pid=4242): bind of host device 3-1.2 refused: Not allowed: this peer may not bind host devices",
      ],
      [
        "info",
        "Session N (unix uid=1001 gid=1001 pid=4242): unbind of host device 3-1.2 refused: Not allowed: this peer may not unbind host devices",
      ],
    ]);
  });
});

Deno.test("root, the gateway's own user and the console user reach the handler, which decides", async () => {
  const { calls, handler } = recorder((action, busid) =>
    Promise.resolve(
      action === "bind"
        ? { ok: true, message: `Exported ${busid}` }
        : { ok: false, message: `${busid} is not bound` },
    )
  );
  await withServer(handledBy(handler), async (server, logs) => {
    for (const uid of [0, GATEWAY_UID, CONSOLE_UID]) {
      const bound = await ask(server, unix(uid), "bind", "3-1.2");
      assertEquals([bound.status, bound.message], [OpStatus.ST_OK, "Exported 3-1.2"]);
      const unbound = await ask(server, unix(uid), "unbind", "3-1.4");
      assertEquals([unbound.status, unbound.message], [OpStatus.ST_ERROR, "3-1.4 is not bound"]);
    }
    assertEquals(
      calls,
      [0, GATEWAY_UID, CONSOLE_UID].flatMap((uid) => [
        ["bind", "3-1.2", unix(uid)],
        ["unbind", "3-1.4", unix(uid)],
      ]),
    );
    assertEquals(hostDeviceLines(logs).slice(0, 2), [
      [
        "info",
        "Session N (unix uid=0 gid=0 pid=4242): bind of host device 3-1.2 done: Exported 3-1.2",
      ],
      [
        "info",
        "Session N (unix uid=0 gid=0 pid=4242): unbind of host device 3-1.4 failed (status 5): 3-1.4 is not bound",
      ],
    ]);
    assertEquals(hostDeviceLines(logs).length, 6, "one audit line per decision");
  });
});

Deno.test("without a handler an authorized peer gets ST_ERROR, not supported; others still ST_NA", async () => {
  await withServer(handledBy(undefined), async (server, logs) => {
    const answer = await ask(server, unix(0), "bind", "1-1");
    assertEquals(answer.status, OpStatus.ST_ERROR);
    assertEquals(answer.message, "Not supported: this server cannot bind host devices");
    assertEquals((await ask(server, tcp, "bind", "1-1")).status, OpStatus.ST_NA);
    assertEquals(hostDeviceLines(logs).map(([, line]) => line), [
      "Session N (unix uid=0 gid=0 pid=4242): bind of host device 1-1 failed (status 5): Not supported: this server cannot bind host devices",
      "Session N (tcp 192.0.2.7:4000): bind of host device 1-1 refused: Not allowed: this peer may not bind host devices",
    ]);
  });
});

Deno.test("a malformed bus id, a failing handler and a long message are answered safely", async () => {
  const long = "é".repeat(MAX_BIND_MESSAGE_BYTES);
  const { calls, handler } = recorder((action, busid) => {
    if (busid === "2-2") return Promise.reject(new Error("usbfs is not mounted"));
    return Promise.resolve({ ok: true, message: action === "bind" ? long : "" });
  });
  await withServer(handledBy(handler), async (server, logs) => {
    const odd = await ask(server, unix(0), "bind", "1-1\nforged line");
    assertEquals(odd.status, OpStatus.ST_ERROR);
    assert(odd.message.startsWith('Invalid busid "1-1\\nforged line"'), odd.message);
    assertEquals(calls, [], "the handler never sees a malformed bus id");
    const failed = await ask(server, unix(0), "bind", "2-2");
    assertEquals(failed, {
      status: OpStatus.ST_ERROR,
      message: "Cannot bind 2-2: usbfs is not mounted",
      endReason: "bind of 2-2 answered",
    });
    // 2 bytes per "é": cut at a character boundary to the limit.
    const cut = await ask(server, unix(0), "bind", "2-3");
    assertEquals(cut.status, OpStatus.ST_OK);
    assertEquals(cut.message, "é".repeat(MAX_BIND_MESSAGE_BYTES / 2));
    assertEquals((await ask(server, unix(0), "unbind", "2-3")).message, "");
    const lines = hostDeviceLines(logs).map(([, line]) => line);
    assertEquals(lines.length, 4);
    assert(
      lines[0]!.includes('bind of host device "1-1\\nforged line" failed (status 5)'),
      "the bus id from the wire is quoted in the audit line: " + lines[0],
    );
    assert(!lines[0]!.includes("\n"), "no forged line in the log");
    assert(
      logs.records.some((r) =>
        r.level === "error" && render(r) === "Cannot bind host device 2-2: usbfs is not mounted"
      ),
    );
  });
});

Deno.test("the connection closes once a bind is answered", async () => {
  const server = new UsbipServer({ statusAccess: () => true });
  const [client, end] = memoryConnectionPair();
  const start = Date.now();
  const done = server.accept(end);
  await client.writable.getWriter().write(encodeOpReqBind("1-1"));
  const reader = new FrameReader(client.readable);
  assertEquals((await reader.readOpRepBind()).status, OpStatus.ST_ERROR);
  assertEquals(await reader.readExact(1), null, "end of stream after the answer");
  await done;
  assert(Date.now() - start < 1000, `closed after ${Date.now() - start} ms`);
  await server.close();
});
