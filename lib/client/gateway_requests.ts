/**
 * usbipgw's own requests to a gateway running as root to attach a device into this machine's
 * kernel (vhci_hcd) and to detach it: OP_REQ_ATTACH and OP_REQ_DETACH, one request per
 * connection, as the gateway answers them (`lib/server/session.ts`). The wire layout is in the
 * JSDoc of `OpCode.OP_REQ_ATTACH`.
 *
 * @module
 */

import {
  MAX_BIND_MESSAGE_BYTES,
  OpStatus,
  VHCI_PORT_NONE,
  VHCI_PORT_SEND_SOCKET,
} from "../protocol/constants.ts";
import { FrameReader } from "../protocol/frame_reader.ts";
import {
  type AttachRequest,
  encodeOpReqAttach,
  encodeOpReqDetach,
  type OpRepAttach,
} from "../protocol/op_messages.ts";
import { UsbipProtocolError } from "../protocol/protocol_error.ts";
import type { Connection } from "../transport/connection.ts";

/**
 * A gateway's refusal of a request it answers with an op status (attach, detach), with its
 * reason: ST_NA not allowed for this user, another status failed.
 */
export class GatewayRefusal extends Error {
  /** The `OpStatus` of the gateway's answer. */
  readonly status: number;
  /** Builds the error from the gateway's status and its message. */
  constructor(status: number, message: string) {
    super(message);
    this.name = "GatewayRefusal";
    this.status = status;
  }
}

/** A gateway's answer to an attach request. */
export interface AttachReply {
  /** An `OpStatus`: ST_OK attached, ST_NA not allowed for this peer, another value failed. */
  status: number;
  /** The vhci port the device is attached to; `VHCI_PORT_NONE` unless the status is ST_OK. */
  vhciPort: number;
  /** The gateway's message for people (at most `MAX_BIND_MESSAGE_BYTES` bytes). */
  message: string;
}

/** A gateway's answer to a detach request. */
export interface DetachReply {
  /** An `OpStatus`: ST_OK detached, ST_NA not allowed for this peer, another value failed. */
  status: number;
  /** The gateway's message for people (at most `MAX_BIND_MESSAGE_BYTES` bytes). */
  message: string;
}

/**
 * Asks a usbipgw gateway to attach a device into this machine's kernel (OP_REQ_ATTACH,
 * usbipgw's extension) on a fresh connection to its unix socket, and closes the connection
 * whatever happens. For a stream attach, `sendSocket` is called once the gateway answers "send
 * the socket now" (`VHCI_PORT_SEND_SOCKET`): it must send one byte carrying the connected
 * socket with SCM_RIGHTS on this connection; the final answer is read after it resolves. A
 * gateway that refuses a stream attach answers at once, and `sendSocket` is not called.
 *
 * Throws `TypeError` for a stream attach without `sendSocket` (nothing is sent), `RangeError`
 * for a request that cannot be encoded, `UsbipProtocolError` for a malformed or out-of-order
 * answer (a message over `MAX_BIND_MESSAGE_BYTES` bytes is refused before it is read), and
 * what `sendSocket` throws.
 *
 * @example Against a server without an attach service
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { requestAttach } from "./gateway_requests.ts";
 * import { UsbipServer } from "../server/server.ts";
 * import { memoryConnectionPair } from "../transport/memory.ts";
 * import { OpStatus, VHCI_PORT_NONE } from "../protocol/constants.ts";
 * const server = new UsbipServer();
 * const [client, end] = memoryConnectionPair();
 * const done = server.accept({ ...end, peer: { transport: "unix", address: "s", uid: 1000 } });
 * assertEquals(await requestAttach(client, { kind: "local", busid: "1-1" }), {
 *   status: OpStatus.ST_ERROR,
 *   vhciPort: VHCI_PORT_NONE,
 *   message: "Not supported: this server cannot attach devices into this machine's kernel",
 * });
 * await done;
 * await server.close();
 * ```
 */
export async function requestAttach(
  conn: Connection,
  request: AttachRequest,
  sendSocket?: () => Promise<void>,
): Promise<AttachReply> {
  const reader = new FrameReader(conn.readable);
  try {
    if (request.kind === "stream" && sendSocket === undefined) {
      throw new TypeError("Cannot request a stream attach: no sendSocket callback");
    }
    await _writeAll(conn, encodeOpReqAttach(request));
    let rep = await reader.readOpRepAttach(MAX_BIND_MESSAGE_BYTES);
    if (_asksForSocket(rep)) {
      if (request.kind !== "stream") {
        throw new UsbipProtocolError(
          "OP_REP_ATTACH",
          "vhciPort",
          `asks for a socket, but the attach is of kind ${request.kind}`,
        );
      }
      await sendSocket!();
      rep = await reader.readOpRepAttach(MAX_BIND_MESSAGE_BYTES);
      if (_asksForSocket(rep)) {
        throw new UsbipProtocolError("OP_REP_ATTACH", "vhciPort", "asks for a socket twice");
      }
    }
    if (rep.status !== OpStatus.ST_OK) {
      return { status: rep.status, vhciPort: VHCI_PORT_NONE, message: rep.message };
    }
    if (rep.vhciPort === VHCI_PORT_NONE) {
      throw new UsbipProtocolError("OP_REP_ATTACH", "vhciPort", "is 0xffffffff with status 0");
    }
    return { status: rep.status, vhciPort: rep.vhciPort, message: rep.message };
  } finally {
    await reader.cancel();
    conn.close();
  }
}

/**
 * Asks a usbipgw gateway to detach the device on vhci port `vhciPort` from this machine's
 * kernel (OP_REQ_DETACH, usbipgw's extension) on a fresh connection, and closes the connection
 * whatever happens. Returns the gateway's status and message. Throws `RangeError` for a port
 * that is not a u32 and `UsbipProtocolError` for a malformed answer.
 *
 * @example Refused to a TCP peer
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { requestDetach } from "./gateway_requests.ts";
 * import { UsbipServer } from "../server/server.ts";
 * import { memoryConnectionPair } from "../transport/memory.ts";
 * const server = new UsbipServer();
 * const [client, end] = memoryConnectionPair();
 * const done = server.accept({ ...end, peer: { transport: "tcp", address: "192.0.2.1:5000" } });
 * assertEquals((await requestDetach(client, 3)).status, 1);
 * await done;
 * await server.close();
 * ```
 */
export async function requestDetach(conn: Connection, vhciPort: number): Promise<DetachReply> {
  const reader = new FrameReader(conn.readable);
  try {
    await _writeAll(conn, encodeOpReqDetach(vhciPort));
    const { status, message } = await reader.readOpRepDetach(MAX_BIND_MESSAGE_BYTES);
    return { status, message };
  } finally {
    await reader.cancel();
    conn.close();
  }
}

/** Whether `rep` is the intermediate answer of a stream attach: "send the socket now". */
function _asksForSocket(rep: OpRepAttach): boolean {
  return rep.status === OpStatus.ST_OK && rep.vhciPort === VHCI_PORT_SEND_SOCKET;
}

/** Writes `bytes` to `conn` as one buffer. */
async function _writeAll(conn: Connection, bytes: Uint8Array): Promise<void> {
  const w = conn.writable.getWriter();
  try {
    await w.write(bytes);
  } finally {
    w.releaseLock();
  }
}
