// Tests of the client's attach and detach requests (usbipgw's OP_REQ_ATTACH and OP_REQ_DETACH)
// against a scripted gateway: the bytes sent, the two-step exchange of a stream attach, the
// answers refused as protocol errors, the bounded message, and the connection always closed.
import { assertEquals, assertRejects } from "@std/assert";
import { memoryConnectionPair, OpStatus } from "../../mod.ts";
import {
  type AttachRequest,
  encodeOpRepAttach,
  encodeOpRepDetach,
  encodeOpReqAttach,
  encodeOpReqDetach,
  FrameReader,
  UsbipProtocolError,
  VHCI_PORT_NONE,
  VHCI_PORT_SEND_SOCKET,
} from "../../protocol.ts";
import { requestAttach, requestDetach } from "../../lib/client/gateway_requests.ts";
import { local, stream } from "../server/_requests.ts";

const attachRep = (status: number, vhciPort: number, message = "") =>
  encodeOpRepAttach({ kind: "op_rep_attach", status, vhciPort, message });
const SEND_SOCKET = attachRep(OpStatus.ST_OK, VHCI_PORT_SEND_SOCKET);

/**
 * A scripted gateway on the far end of an in-memory connection: `script` gets what the client
 * sent (read with `read`) and writes answers with `write`. `closed` resolves once the client
 * has closed the connection (the gateway reads end of stream).
 */
function gateway(
  script: (gw: {
    read(n: number): Promise<Uint8Array | null>;
    write(bytes: Uint8Array): Promise<void>;
    close(): void;
  }) => Promise<void>,
) {
  const [client, end] = memoryConnectionPair();
  const reader = new FrameReader(end.readable);
  const writer = end.writable.getWriter();
  const gw = {
    read: (n: number) => reader.readExact(n),
    write: (bytes: Uint8Array) => writer.write(bytes),
    close: () => end.close(),
  };
  const ran = script(gw).catch(() => {
    // The client may close before the script is done.
  });
  const closed = ran.then(async () => {
    while ((await reader.readExact(1)) !== null) {
      // Drain until the client closes.
    }
  }).catch(() => {});
  return { client, closed };
}

Deno.test("requestAttach() sends OP_REQ_ATTACH, returns the answer and closes the connection", async () => {
  const sent: Uint8Array[] = [];
  const { client, closed } = gateway(async (gw) => {
    sent.push((await gw.read(300))!);
    await gw.write(attachRep(OpStatus.ST_OK, 3, "Attached 1-2 on port 3"));
  });
  assertEquals(await requestAttach(client, local), {
    status: OpStatus.ST_OK,
    vhciPort: 3,
    message: "Attached 1-2 on port 3",
  });
  await closed;
  assertEquals(sent, [encodeOpReqAttach(local)]);
});

Deno.test("requestAttach() reports a refusal without a port, whatever the gateway put there", async () => {
  const { client, closed } = gateway(async (gw) => {
    await gw.read(300);
    await gw.write(attachRep(OpStatus.ST_NA, 5, "Not allowed"));
  });
  assertEquals(await requestAttach(client, local), {
    status: OpStatus.ST_NA,
    vhciPort: VHCI_PORT_NONE,
    message: "Not allowed",
  });
  await closed;
});

Deno.test("requestAttach() of a stream sends the socket between the two answers", async () => {
  const events: string[] = [];
  const socketSent = Promise.withResolvers<void>();
  const { client, closed } = gateway(async (gw) => {
    await gw.read(300);
    events.push("gateway: send the socket now");
    await gw.write(SEND_SOCKET);
    await socketSent.promise;
    events.push("gateway: final answer");
    await gw.write(attachRep(OpStatus.ST_OK, 9, "Attached"));
  });
  const reply = await requestAttach(client, stream, () => {
    events.push("client: sendSocket");
    socketSent.resolve();
    return Promise.resolve();
  });
  assertEquals(reply, { status: OpStatus.ST_OK, vhciPort: 9, message: "Attached" });
  assertEquals(events, [
    "gateway: send the socket now",
    "client: sendSocket",
    "gateway: final answer",
  ]);
  await closed;
});

Deno.test("requestAttach() of a stream refused at once never sends the socket", async () => {
  let calls = 0;
  const { client, closed } = gateway(async (gw) => {
    await gw.read(300);
    await gw.write(attachRep(OpStatus.ST_NA, VHCI_PORT_NONE, "Streams are off"));
  });
  const reply = await requestAttach(client, stream, () => Promise.resolve(void calls++));
  assertEquals([reply.status, reply.message, calls], [OpStatus.ST_NA, "Streams are off", 0]);
  await closed;
});

Deno.test("requestAttach() refuses out-of-order answers as protocol errors and closes", async () => {
  const cases: [string, AttachRequest, Uint8Array[], string][] = [
    ["a socket asked for a local attach", local, [SEND_SOCKET], "the attach is of kind local"],
    ["a socket asked for twice", stream, [SEND_SOCKET, SEND_SOCKET], "asks for a socket twice"],
    ["ST_OK without a port", local, [attachRep(OpStatus.ST_OK, VHCI_PORT_NONE)], "0xffffffff"],
    [
      "another reply",
      local,
      [encodeOpRepDetach({ kind: "op_rep_detach", status: 0, message: "abcd" })],
      "expected 0x00f3",
    ],
    ["an end of stream", local, [], "ends after 0 of 16 bytes"],
  ];
  for (const [what, request, answers, detail] of cases) {
    const { client, closed } = gateway(async (gw) => {
      await gw.read(300);
      for (const a of answers) await gw.write(a);
      // As a gateway does after its answer.
      gw.close();
    });
    await assertRejects(
      () => requestAttach(client, request, () => Promise.resolve()),
      UsbipProtocolError,
      detail,
      what,
    );
    await closed;
  }
});

Deno.test("requestAttach() refuses a message over 1024 bytes before reading it", async () => {
  const { client, closed } = gateway(async (gw) => {
    await gw.read(300);
    const head = attachRep(OpStatus.ST_OK, 1);
    new DataView(head.buffer).setUint32(12, 1025);
    // The head alone: a client that tried to read the message would wait for ever.
    await gw.write(head);
  });
  await assertRejects(
    () => requestAttach(client, local),
    UsbipProtocolError,
    "Cannot decode OP_REP_ATTACH: length is 1025 bytes, limit is 1024",
  );
  await closed;
});

Deno.test("requestAttach() closes the connection on a bad request, a missing or failing sendSocket", async () => {
  // Nothing is sent for a request that cannot be encoded or a stream without sendSocket.
  for (
    const [request, error, detail] of [
      [{ kind: "local", busid: "1-" + "1".repeat(30) }, RangeError, "busid"],
      [stream, TypeError, "no sendSocket callback"],
    ] as const
  ) {
    let got: Uint8Array | null | undefined;
    const { client, closed } = gateway(async (gw) => {
      got = await gw.read(1);
    });
    await assertRejects(() => requestAttach(client, request), error, detail);
    await closed;
    assertEquals(got, null, "nothing sent, connection closed");
  }
  const { client, closed } = gateway(async (gw) => {
    await gw.read(300);
    await gw.write(SEND_SOCKET);
  });
  await assertRejects(
    () => requestAttach(client, stream, () => Promise.reject(new Error("sendmsg failed: EBADF"))),
    Error,
    "sendmsg failed: EBADF",
  );
  await closed;
});

Deno.test("requestDetach() sends OP_REQ_DETACH, returns the answer and closes; a long message is refused", async () => {
  const sent: Uint8Array[] = [];
  const { client, closed } = gateway(async (gw) => {
    sent.push((await gw.read(12))!);
    await gw.write(
      encodeOpRepDetach({ kind: "op_rep_detach", status: OpStatus.ST_NODEV, message: "None" }),
    );
  });
  assertEquals(await requestDetach(client, 4), { status: OpStatus.ST_NODEV, message: "None" });
  await closed;
  assertEquals(sent, [encodeOpReqDetach(4)]);

  const long = gateway(async (gw) => {
    await gw.read(12);
    const head = encodeOpRepDetach({ kind: "op_rep_detach", status: 0, message: "" });
    new DataView(head.buffer).setUint32(8, 0xffffffff);
    await gw.write(head);
  });
  await assertRejects(
    () => requestDetach(long.client, 4),
    UsbipProtocolError,
    "length is 4294967295 bytes, limit is 1024",
  );
  await long.closed;

  let got: Uint8Array | null | undefined;
  const bad = gateway(async (gw) => {
    got = await gw.read(1);
  });
  await assertRejects(() => requestDetach(bad.client, -1), RangeError, "vhciPort");
  await bad.closed;
  assertEquals(got, null);
});
