/**
 * What a {@linkcode Session} needs from the server that owns it ({@linkcode SessionHost}), and
 * the answers the server gives to the requests a session passes on.
 *
 * @module
 */

import type { UsbipLimits } from "../protocol/constants.ts";
import type { BufferPool } from "../protocol/buffer_pool.ts";
import type { AttachRequest } from "../protocol/op_messages.ts";
import type { Connection, PeerInfo } from "../transport/connection.ts";
import type { PolicyDecision } from "../policy/policy.ts";
import type { ExportedDevice } from "./exported_device.ts";
import type { Session } from "./session.ts";
import type { SessionLimits } from "./session_limits.ts";
import type { UrbObservers } from "./urb_observer.ts";

/** A device the policy hides from a peer's device list, and why. */
export interface HiddenDevice {
  /** The hidden device's bus id. */
  busid: string;
  /** The policy decision's reason: `rule 2 (...)` or `no rule matched: ...`. */
  reason: string;
}

/** What a device list shows a peer, and what it hides from it. */
export interface DeviceListing {
  /** The devices the peer may see, in bus id order of addition. */
  visible: ExportedDevice[];
  /** The devices the policy denies to the peer. */
  hidden: HiddenDevice[];
}

/** What OP_REQ_BIND and OP_REQ_UNBIND act on: a host device, as `usbip bind`/`unbind` do. */
export type HostDeviceAction = "bind" | "unbind";

/** The answer to OP_REQ_BIND or OP_REQ_UNBIND: an `OpStatus` and a message for people. */
export interface HostDeviceAnswer {
  /** An `OpStatus`: ST_OK done, ST_NA not allowed, ST_ERROR failed or not supported. */
  status: number;
  /** For the requester; cut to `MAX_BIND_MESSAGE_BYTES` bytes of UTF-8. */
  message: string;
}

/** The answer to OP_REQ_ATTACH: an `OpStatus`, the vhci port when attached, a message. */
export interface AttachAnswer {
  /** An `OpStatus`: ST_OK attached, ST_NA not allowed, another value failed. */
  status: number;
  /** The vhci port the device is attached to: required with ST_OK, ignored otherwise. */
  vhciPort?: number;
  /** For the requester; cut to `MAX_BIND_MESSAGE_BYTES` bytes of UTF-8. */
  message: string;
}

/** The answer to OP_REQ_DETACH: an `OpStatus` and a message for people. */
export interface DetachAnswer {
  /** An `OpStatus`: ST_OK detached, ST_NA not allowed, another value failed. */
  status: number;
  /** For the requester; cut to `MAX_BIND_MESSAGE_BYTES` bytes of UTF-8. */
  message: string;
}

/** What OP_REQ_CAPTURE asks for: a device (empty: every device) and a snap length. */
export interface CaptureRequest {
  /** The bus id to capture, or "" for every device. */
  busid: string;
  /** The most data bytes kept per record; 0 for all. */
  snaplen: number;
}

/** Where a live capture writes: the requester's connection, after OP_REP_CAPTURE. */
export interface LiveCaptureOutput {
  /** Queues one whole block for the requester; never blocks. */
  write(block: Uint8Array): void;
  /** Bytes queued and not yet written to the socket. */
  readonly pending: number;
  /** Bytes `pending` may reach before the capture must drop records instead of writing. */
  readonly maxQueued: number;
}

/**
 * The answer to OP_REQ_CAPTURE: an `OpStatus` and a message for people; with ST_OK, `start`
 * begins the capture into the connection and returns the function that stops it.
 */
export interface CaptureAnswer {
  /** An `OpStatus`: ST_OK the stream follows, ST_NA not allowed, ST_ERROR failed. */
  status: number;
  /** For the requester; cut to `MAX_BIND_MESSAGE_BYTES` bytes of UTF-8. */
  message: string;
  /** With ST_OK: starts writing to `out`; the function returned stops. */
  start?: (out: LiveCaptureOutput) => () => void;
}

/**
 * Asks the requester of a stream attach for its socket and receives it: sends the intermediate
 * OP_REP_ATTACH (ST_OK, `VHCI_PORT_SEND_SOCKET`), then waits at most `timeoutMs` (the
 * connection's default when absent) for the byte that carries the socket with SCM_RIGHTS, and
 * resolves with the received file descriptor, which the caller then owns. Usable once, for a
 * stream attach only; rejects when the connection cannot carry file descriptors (no
 * `Connection.receiveFd`), when the requester sent bytes before it was asked (the socket they
 * carried is lost), when the session has ended, and as `Connection.receiveFd` rejects (timeout,
 * hang-up). A handler must use it rather than `receiveFd` itself, which would not ask.
 */
export type SocketRequest = (timeoutMs?: number) => Promise<number>;

/** What a session needs from the server that owns it. */
export interface SessionHost {
  /** The limits every frame the session reads is checked against. */
  readonly limits: UsbipLimits;
  /** Limits on what one connection may make the server hold. */
  readonly sessionLimits: SessionLimits;
  /** Where OUT payload buffers come from and go back to; each session keeps its own if absent. */
  readonly bufferPool?: BufferPool;
  /** Who watches the traffic (capture, metrics); nobody if absent. */
  readonly observers?: UrbObservers;
  /** The devices this peer may see, and those the policy hides from it. */
  listDevices(peer: PeerInfo): DeviceListing;
  /** Claims `busid` for `session`. */
  claimDevice(busid: string, session: Session): ClaimResult;
  /** Gives a claimed device back. */
  releaseDevice(device: ExportedDevice, session: Session): void;
  /**
   * The gateway's status as JSON for OP_REQ_STATUS, or `undefined` when this peer may not see
   * it (answered with ST_NA).
   */
  statusFor?(peer: PeerInfo): string | undefined;
  /**
   * Answers OP_REQ_BIND or OP_REQ_UNBIND from `peer`: authorizes it, acts on the host device,
   * and says how it went. Never rejects.
   */
  answerHostDeviceRequest(
    action: HostDeviceAction,
    busid: string,
    peer: PeerInfo,
  ): Promise<HostDeviceAnswer>;
  /**
   * Answers OP_REQ_ATTACH from `peer` on `conn`: authorizes it, attaches the device into the
   * local kernel, and says how it went; a stream attach takes its socket with `requestSocket`.
   * The vhci port is a valid one whenever the status is ST_OK. Never rejects.
   */
  answerAttachRequest(
    request: AttachRequest,
    peer: PeerInfo,
    conn: Connection,
    requestSocket: SocketRequest,
  ): Promise<AttachAnswer>;
  /** Answers OP_REQ_DETACH from `peer`: authorizes it, detaches, says how it went. Never rejects. */
  answerDetachRequest(vhciPort: number, peer: PeerInfo): Promise<DetachAnswer>;
  /**
   * Answers OP_REQ_CAPTURE from `peer`: authorizes it and says how to start the capture.
   * Absent: answered ST_ERROR, not supported. Never throws.
   */
  answerCaptureRequest?(request: CaptureRequest, peer: PeerInfo): CaptureAnswer;
}

/** The outcome of an import request. */
export interface ClaimResult {
  /** An `OpStatus`. */
  status: number;
  /** The device, when the import succeeded. */
  device?: ExportedDevice;
  /** The policy's decision, when the device exists. */
  decision?: PolicyDecision;
}
