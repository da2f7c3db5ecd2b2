/**
 * One USB/IP connection: the op phase (DEVLIST, IMPORT), then the URB phase for the imported
 * device. As Linux usbipd (tools/usb/usbip/src/usbipd.c) does, the connection is closed once a
 * device list is answered or an import refused; usbipgw's own OP_REQ_BIND, OP_REQ_UNBIND,
 * OP_REQ_ATTACH and OP_REQ_DETACH are answered the same way, while OP_REQ_STATUS leaves the
 * connection open for another request.
 * Many URBs may be pending at once; each endpoint completes in order, ep0 in FIFO
 * order, and an idle IN transfer blocks only its own endpoint. CMD_UNLINK follows
 * usbip_protocol.rst and Linux stub_rx.c: a cancelled URB gets RET_UNLINK(-ECONNRESET) and
 * never a RET_SUBMIT; an unknown or completed one gets RET_UNLINK(0). RET_SUBMIT and
 * RET_UNLINK carry devid, direction and ep 0, as Linux stub_tx.c sends them. Every way a
 * session ends aborts every pending transfer and releases the device at once. A session that
 * exceeds one of its {@linkcode SessionLimits} (time to import, pending URBs, buffered bytes) is
 * closed with an audit line naming the limit; other sessions are not touched.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import {
  MAX_BIND_MESSAGE_BYTES,
  OpStatus,
  TransferFlags,
  UrbStatus,
  type UsbipLimits,
  VHCI_PORT_NONE,
  VHCI_PORT_SEND_SOCKET,
} from "../protocol/constants.ts";
import type { BufferPool } from "../protocol/buffer_pool.ts";
import { FrameReader } from "../protocol/frame_reader.ts";
import {
  type AttachRequest,
  encodeOpRepAttach,
  encodeOpRepBind,
  encodeOpRepDetach,
  encodeOpRepDevlist,
  encodeOpRepImport,
  encodeOpRepStatus,
  encodeOpRepUnbind,
} from "../protocol/op_messages.ts";
import { UsbipProtocolError } from "../protocol/protocol_error.ts";
import {
  type CmdSubmit,
  type CmdUnlink,
  encodeRetSubmit,
  encodeRetUnlink,
  type IsoPacketDescriptor,
  packIsoData,
} from "../protocol/urb_messages.ts";
import { decodeSetupPacket } from "../devices/setup_packet.ts";
import type { TransferResult, TransferStatus, UsbTransfer } from "../devices/usb_device.ts";
import {
  type Connection,
  describePeer,
  formatHostPort,
  type PeerInfo,
} from "../transport/connection.ts";
import { ReplyWriter } from "../transport/reply_writer.ts";
import { BUSID_PATTERN, deviceRecord, type ExportedDevice } from "./exported_device.ts";
import { limitReason, type SessionLimits } from "./session_limits.ts";
import type { PolicyDecision } from "../policy/policy.ts";

const log = getLogger(["usbipgw", "session"]);
const audit = getLogger(["usbipgw", "audit"]);

/** A device the policy hides from a peer's device list, and why. */
export interface HiddenDevice {
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
  status: number;
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
  readonly limits: UsbipLimits;
  /** Limits on what one connection may make the server hold. */
  readonly sessionLimits: SessionLimits;
  /** Where OUT payload buffers come from and go back to; each session keeps its own if absent. */
  readonly bufferPool?: BufferPool;
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

/** How a device status becomes a URB status. */
const ERRNO: Record<TransferStatus, number> = {
  ok: UrbStatus.OK,
  stall: UrbStatus.EPIPE,
  cancelled: UrbStatus.ECONNRESET,
  nodev: UrbStatus.ENODEV,
  overflow: UrbStatus.EOVERFLOW,
  error: UrbStatus.EPROTO,
  shutdown: UrbStatus.ESHUTDOWN,
};

const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();

/** How the op phase ended: with an import, or with the reason to end the session. */
type OpPhaseEnd = { kind: "imported" } | { kind: "done"; reason: string };

/**
 * Replies queued for the peer beyond this many bytes (or a quarter of maxBufferedBytes, if
 * less) pause the reading of requests until half of them are written.
 */
const READ_PAUSE_BYTES = 1024 * 1024;

/**
 * IN data from this size on is written after its RET_SUBMIT header as a second write, straight
 * from the device's buffer, instead of being copied behind the header into one buffer. Below
 * it the copy costs less than the second write (measured on loopback: 32 KiB replies were
 * faster as one buffer, 64 KiB replies as two writes). The device must not change the buffer
 * it returned; none does (each returns a fresh buffer or one it never writes again).
 */
const SPLIT_REPLY_BYTES = 64 * 1024;

/** How long a hanging-up session waits for its last answers to be written. */
const FLUSH_TIMEOUT_MS = 2000;

interface PendingUrb {
  readonly cmd: CmdSubmit;
  readonly transfer: UsbTransfer;
  readonly controller: AbortController;
  readonly queue: EndpointQueue;
  running: boolean;
}

interface EndpointQueue {
  readonly items: PendingUrb[];
  busy: boolean;
}

/** Counters kept per session, for logs, `usbipgw status` and tests. */
export interface SessionStats {
  submitted: number;
  completed: number;
  unlinked: number;
  /** Bytes of IN data sent to the peer (RET_SUBMIT `actual_length` of IN URBs). */
  bytesIn: number;
  /** Bytes of OUT data the device took (RET_SUBMIT `actual_length` of OUT URBs). */
  bytesOut: number;
  /** URBs completed with a non-zero status other than an unlink (stalls included). */
  errors: number;
}

/** How much a session holds right now, for tests and diagnostics. */
export interface SessionUsage {
  /** URBs submitted and neither completed nor unlinked. */
  pendingUrbs: number;
  /** OUT data of pending URBs plus replies queued for the peer, in bytes. */
  bufferedBytes: number;
}

let nextSessionId = 1;

/**
 * A USB/IP session over one connection. {@linkcode Session.run} returns when the session has
 * ended for any reason, with every transfer aborted and the device released.
 */
export class Session {
  /** A number for logs. */
  readonly id: number = nextSessionId++;
  readonly conn: Connection;
  readonly stats: SessionStats = {
    submitted: 0,
    completed: 0,
    unlinked: 0,
    bytesIn: 0,
    bytesOut: 0,
    errors: 0,
  };
  /** When the connection was accepted (ms since the epoch). */
  readonly since: number = Date.now();
  #host: SessionHost;
  #maxPendingUrbs: number;
  #maxBufferedBytes: number;
  /** Unwritten replies over this many bytes pause reading requests (back-pressure). */
  #pauseBytes: number;
  /** OUT data held by pending URBs, in bytes. */
  #heldOut = 0;
  /** Runs from accept until a successful import (opPhaseTimeoutMs). */
  #opTimer: ReturnType<typeof setTimeout> | undefined;
  #reader: FrameReader;
  #out: ReplyWriter;
  #exported: ExportedDevice | undefined;
  #pending = new Map<number, PendingUrb>();
  #queues = new Map<number, EndpointQueue>();
  #ended = false;
  /** The policy granted read-only access: devices that store data refuse writes. */
  #readOnly = false;
  /** Set while the session flushes its last answers before hanging up. */
  #closing = false;
  #endReason: string | undefined;
  #done: Promise<void> | undefined;
  #onDeviceGone = () => this.#deviceGone();

  /** Binds a session to a connection; nothing happens until {@linkcode Session.run}. */
  constructor(conn: Connection, host: SessionHost) {
    this.conn = conn;
    this.#host = host;
    this.#maxPendingUrbs = host.sessionLimits.maxPendingUrbs;
    this.#maxBufferedBytes = host.sessionLimits.maxBufferedBytes;
    this.#pauseBytes = Math.min(READ_PAUSE_BYTES, this.#maxBufferedBytes / 4);
    this.#reader = new FrameReader(conn.direct ?? conn.readable, host.limits, host.bufferPool);
    this.#out = new ReplyWriter(conn, (e) => {
      this.end(`write failed: ${e instanceof Error ? e.message : String(e)}`);
    });
  }

  /** The imported device, once the import succeeded. */
  get device(): ExportedDevice | undefined {
    return this.#exported;
  }

  /** Why the session ended, once it has. */
  get endReason(): string | undefined {
    return this.#endReason;
  }

  /** What the session holds right now. */
  get usage(): SessionUsage {
    return { pendingUrbs: this.#pending.size, bufferedBytes: this.#heldOut + this.#out.pending };
  }

  /** Serves the connection until it ends; never rejects. */
  run(): Promise<void> {
    this.#done ??= this.#run();
    return this.#done;
  }

  async #run(): Promise<void> {
    const peer = describePeer(this.conn.peer);
    audit.info("Session {id}: connection from {peer}", { id: this.id, peer });
    const timeout = this.#host.sessionLimits.opPhaseTimeoutMs;
    if (Number.isFinite(timeout) && !this.#ended) {
      this.#opTimer = setTimeout(() => {
        this.#opTimer = undefined;
        this.#exceeded("opPhaseTimeoutMs", timeout, "no device imported in time");
      }, timeout);
    }
    let reason = "the peer closed the connection";
    try {
      const op = await this.#opPhase();
      if (op.kind === "imported") await this.#urbPhase();
      else reason = op.reason;
      // A peer that half-closes after its last request still gets the answers already made.
      if (!this.#ended) await this.#flushBounded();
    } catch (e) {
      if (this.#ended) {
        // The session was ended from outside (hang-up, device gone, server shutdown).
      } else if (e instanceof UsbipProtocolError) {
        reason = `protocol error: ${e.message}`;
        log.warn("Session {id} from {peer}: closing on a protocol error: {message}", {
          id: this.id,
          peer,
          message: e.message,
        });
      } else {
        reason = `connection error: ${e instanceof Error ? e.message : String(e)}`;
      }
    }
    this.end(reason);
  }

  /** Waits until queued replies are written, for at most FLUSH_TIMEOUT_MS. */
  async #flushBounded(): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((resolve) => timer = setTimeout(resolve, FLUSH_TIMEOUT_MS));
    await Promise.race([this.#out.flush(), timeout]);
    clearTimeout(timer);
  }

  /**
   * Closes the session for exceeding `limit`, with an audit line that names the limit and its
   * value (`detail` says by how much).
   */
  #exceeded(limit: keyof SessionLimits, value: number, detail: string): void {
    if (this.#ended) return;
    const reason = limitReason(limit, value, detail);
    audit.warn("Session {id} ({peer}, device {busid}): closing: {reason}", {
      id: this.id,
      peer: describePeer(this.conn.peer),
      busid: this.#exported?.busid ?? "-",
      limit,
      value,
      reason,
    });
    this.end(reason);
  }

  /** Ends the session at once: aborts every transfer, releases the device, closes the socket. */
  end(reason: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#endReason = reason;
    clearTimeout(this.#opTimer);
    this.#opTimer = undefined;
    const aborted = this.#abortAll(new Deno.errors.ConnectionAborted(reason));
    const exported = this.#exported;
    if (exported) {
      exported.device.disconnected.removeEventListener("abort", this.#onDeviceGone);
      this.#host.releaseDevice(exported, this);
    }
    this.#reader.cancel(reason).catch(() => {});
    this.#out.release();
    this.conn.close();
    const props = {
      id: this.id,
      peer: describePeer(this.conn.peer),
      busid: exported?.busid ?? "-",
      reason,
      aborted,
      ...this.stats,
    };
    if (exported) {
      audit.info(
        "Session {id} ({peer}, device {busid}) ended: {reason}; {submitted} URBs submitted, {completed} completed, {unlinked} unlinked, {aborted} aborted",
        props,
      );
    } else {
      log.debug("Session {id} ({peer}) ended: {reason}", props);
    }
  }

  #send(bytes: Uint8Array): void {
    if (this.#ended) return;
    this.#out.write(bytes);
    if (this.#heldOut + this.#out.pending > this.#maxBufferedBytes) this.#overBuffered();
  }

  #overBuffered(): void {
    const queued = this.#out.pending;
    this.#exceeded(
      "maxBufferedBytes",
      this.#maxBufferedBytes,
      `${
        this.#heldOut + queued
      } bytes held (${this.#heldOut} of OUT data in pending URBs, ${queued} of replies the peer has not read)`,
    );
  }

  /**
   * Serves op requests until a device is imported or the op phase is over: at a clean end of
   * stream, and after answering a device list, a refused import, a bind or an unbind (one such
   * request per connection, as Linux usbipd). A status request leaves the connection open.
   */
  async #opPhase(): Promise<OpPhaseEnd> {
    const peer = this.conn.peer;
    while (true) {
      const req = await this.#reader.readOpRequest();
      if (req === null || this.#ended) {
        return { kind: "done", reason: "the peer closed the connection" };
      }
      if (req.kind === "op_req_status") {
        const json = this.#host.statusFor?.(peer);
        this.#send(encodeOpRepStatus(json === undefined ? OpStatus.ST_NA : OpStatus.ST_OK, json));
        if (json === undefined) {
          audit.info("Session {id} ({peer}): status request refused", {
            id: this.id,
            peer: describePeer(peer),
          });
        }
        continue;
      }
      if (req.kind === "op_req_devlist") {
        const { visible, hidden } = this.#host.listDevices(peer);
        const devices = visible.map(deviceRecord);
        this.#send(encodeOpRepDevlist({ kind: "op_rep_devlist", status: OpStatus.ST_OK, devices }));
        if (hidden.length > 0) {
          audit.info("Session {id} ({peer}): hidden from the device list: {hidden}", {
            id: this.id,
            peer: describePeer(peer),
            hidden: hidden.map((h) => `${h.busid} (${h.reason})`).join("; "),
            devices: hidden,
          });
        }
        return { kind: "done", reason: "device list sent" };
      }
      if (req.kind === "op_req_bind" || req.kind === "op_req_unbind") {
        return await this.#hostDeviceRequest(
          req.kind === "op_req_bind" ? "bind" : "unbind",
          req.busid,
        );
      }
      if (req.kind === "op_req_attach") return await this.#attachRequest(req.request);
      if (req.kind === "op_req_detach") return await this.#detachRequest(req.vhciPort);
      const { status, device, decision } = this.#host.claimDevice(req.busid, this);
      if (status !== OpStatus.ST_OK || device === undefined) {
        audit.info("Session {id} ({peer}): import of {busid} refused with status {status}", {
          id: this.id,
          peer: describePeer(peer),
          busid: printable(req.busid),
          status,
        });
        this.#send(encodeOpRepImport({ kind: "op_rep_import", status }));
        return {
          kind: "done",
          reason: `import of ${printable(req.busid)} refused (status ${status})`,
        };
      }
      try {
        await device.device.imported();
      } catch (e) {
        this.#host.releaseDevice(device, this);
        audit.warn("Session {id} ({peer}): {busid} could not be taken for import: {error}", {
          id: this.id,
          peer: describePeer(peer),
          busid: device.busid,
          error: e instanceof Error ? e.message : String(e),
        });
        this.#send(encodeOpRepImport({ kind: "op_rep_import", status: OpStatus.ST_DEV_ERR }));
        return {
          kind: "done",
          reason: `import of ${device.busid} refused (status ${OpStatus.ST_DEV_ERR})`,
        };
      }
      this.#exported = device;
      this.#readOnly = decision?.effect === "read-only";
      clearTimeout(this.#opTimer);
      this.#opTimer = undefined;
      this.#send(
        encodeOpRepImport({ kind: "op_rep_import", status: 0, device: deviceRecord(device) }),
      );
      if (device.device.disconnected.aborted) {
        this.#deviceGone();
        return { kind: "done", reason: "the device was disconnected" };
      }
      device.device.disconnected.addEventListener("abort", this.#onDeviceGone, { once: true });
      audit.info("Session {id} ({peer}) imported {busid} ({name}){access}: {reason}", {
        id: this.id,
        peer: describePeer(peer),
        busid: device.busid,
        name: device.name,
        access: this.#readOnly ? " read-only" : "",
        reason: decision?.reason ?? "no policy",
      });
      return { kind: "imported" };
    }
  }

  /** Answers OP_REQ_BIND or OP_REQ_UNBIND, with an audit line for every decision. */
  async #hostDeviceRequest(action: HostDeviceAction, busid: string): Promise<OpPhaseEnd> {
    const peer = this.conn.peer;
    const answer = await this.#host.answerHostDeviceRequest(action, busid, peer);
    const message = truncateUtf8(answer.message, MAX_BIND_MESSAGE_BYTES);
    const rep = { status: answer.status, message };
    this.#send(
      action === "bind"
        ? encodeOpRepBind({ kind: "op_rep_bind", ...rep })
        : encodeOpRepUnbind({ kind: "op_rep_unbind", ...rep }),
    );
    const outcome = outcomeOf(answer.status);
    audit.info("Session {id} ({peer}): {action} of host device {busid} {outcome}: {message}", {
      id: this.id,
      peer: describePeer(peer),
      action,
      busid: printable(busid),
      outcome,
      status: answer.status,
      message,
    });
    return { kind: "done", reason: `${action} of ${printable(busid)} answered` };
  }

  /**
   * Answers OP_REQ_ATTACH, with an audit line for every request. The op-phase timeout runs on
   * while the host answers (a stream attach waits for its socket then too): a session it ends
   * gets no answer, and the audit line says so; what the handler did is not undone.
   */
  async #attachRequest(request: AttachRequest): Promise<OpPhaseEnd> {
    const peer = this.conn.peer;
    const answer = await this.#host.answerAttachRequest(
      request,
      peer,
      this.conn,
      this.#socketRequest(request),
    );
    const message = truncateUtf8(answer.message, MAX_BIND_MESSAGE_BYTES);
    const attached = answer.status === OpStatus.ST_OK;
    const vhciPort = attached ? answer.vhciPort ?? VHCI_PORT_NONE : VHCI_PORT_NONE;
    const undelivered = this.#ended ? `; not answered: the session ended (${this.#endReason})` : "";
    this.#send(
      encodeOpRepAttach({ kind: "op_rep_attach", status: answer.status, vhciPort, message }),
    );
    const target = describeAttachRequest(request);
    const outcome = attached ? `done on vhci port ${vhciPort}` : outcomeOf(answer.status);
    audit.info("Session {id} ({peer}): attach of {target} {outcome}{undelivered}: {message}", {
      id: this.id,
      peer: describePeer(peer),
      target,
      outcome,
      undelivered,
      kind: request.kind,
      busid: printable(request.busid),
      ...(request.kind === "remote"
        ? { host: printableHost(request.host), port: request.port }
        : {}),
      status: answer.status,
      vhciPort: attached ? vhciPort : null,
      message,
    });
    return { kind: "done", reason: `attach of ${target} answered` };
  }

  /**
   * The {@linkcode SocketRequest} of one attach request: sends the intermediate answer "send the
   * socket now", then receives the socket on the connection.
   */
  #socketRequest(request: AttachRequest): SocketRequest {
    let asked = false;
    return (timeoutMs) => {
      if (request.kind !== "stream") {
        return Promise.reject(
          new TypeError(`Cannot ask for a socket: the attach is of kind ${request.kind}`),
        );
      }
      if (asked) return Promise.reject(new Error("Cannot ask for a socket twice"));
      asked = true;
      const conn = this.conn;
      if (conn.receiveFd === undefined) {
        return Promise.reject(
          new Error("Cannot receive a socket: this connection cannot carry file descriptors"),
        );
      }
      if (this.#ended) {
        return Promise.reject(
          new Error(`Cannot receive a socket: the session ended (${this.#endReason})`),
        );
      }
      // The byte carrying the socket must be read with recvmsg; one read ahead with the request
      // has lost it already.
      const early = this.#reader.buffered;
      if (early > 0) {
        return Promise.reject(
          new Error(
            `Cannot receive a socket: the requester sent ${early} bytes before it was asked for`,
          ),
        );
      }
      this.#send(encodeOpRepAttach({
        kind: "op_rep_attach",
        status: OpStatus.ST_OK,
        vhciPort: VHCI_PORT_SEND_SOCKET,
        message: "",
      }));
      return conn.receiveFd(timeoutMs);
    };
  }

  /** Answers OP_REQ_DETACH, with an audit line for every request. */
  async #detachRequest(vhciPort: number): Promise<OpPhaseEnd> {
    const peer = this.conn.peer;
    const answer = await this.#host.answerDetachRequest(vhciPort, peer);
    const message = truncateUtf8(answer.message, MAX_BIND_MESSAGE_BYTES);
    this.#send(encodeOpRepDetach({ kind: "op_rep_detach", status: answer.status, message }));
    audit.info("Session {id} ({peer}): detach of vhci port {vhciPort} {outcome}: {message}", {
      id: this.id,
      peer: describePeer(peer),
      vhciPort,
      outcome: outcomeOf(answer.status),
      status: answer.status,
      message,
    });
    return { kind: "done", reason: `detach of vhci port ${vhciPort} answered` };
  }

  async #urbPhase(): Promise<void> {
    const dev = this.#exported!.device;
    const isochronous = (ep: number, direction: number) =>
      ep !== 0 && dev.transferType(ep, direction === 1) === "isochronous";
    while (!this.#ended) {
      if (this.#out.pending > this.#pauseBytes) {
        // Back-pressure: a peer that does not read its replies gets no more requests read
        // until it does; its socket buffers fill and its writes block.
        await this.#out.drained(this.#pauseBytes / 2);
        if (this.#ended) return;
      }
      const cmd = await this.#reader.readUrbCommand(isochronous);
      if (cmd === null || this.#ended) return;
      if (this.#closing) continue;
      if (cmd.kind === "cmd_submit") this.#submit(cmd);
      else this.#unlink(cmd);
    }
  }

  #submit(cmd: CmdSubmit): void {
    if (this.#pending.has(cmd.seqnum)) {
      throw new UsbipProtocolError(
        "CMD_SUBMIT",
        "seqnum",
        `is ${cmd.seqnum}, which is already pending`,
      );
    }
    if (this.#pending.size >= this.#maxPendingUrbs) {
      this.#exceeded(
        "maxPendingUrbs",
        this.#maxPendingUrbs,
        `URB ${cmd.seqnum} would be pending number ${this.#pending.size + 1}`,
      );
      return;
    }
    const held = cmd.data.length;
    if (held > 0) {
      this.#heldOut += held;
      if (this.#heldOut + this.#out.pending > this.#maxBufferedBytes) {
        this.#overBuffered();
        return;
      }
    }
    this.stats.submitted++;
    const dev = this.#exported!.device;
    const setup = cmd.ep === 0 ? decodeSetupPacket(cmd.setup) : undefined;
    const dirIn = setup ? (setup.bmRequestType & 0x80) !== 0 : cmd.direction === 1;
    const type = dev.transferType(cmd.ep, dirIn) ?? "bulk";
    const controller = new AbortController();
    const transfer: UsbTransfer = {
      endpoint: cmd.ep,
      dirIn,
      type,
      length: cmd.transferBufferLength,
      data: cmd.data,
      shortNotOk: (cmd.transferFlags & TransferFlags.URB_SHORT_NOT_OK) !== 0,
      zeroPacket: (cmd.transferFlags & TransferFlags.URB_ZERO_PACKET) !== 0,
      isoPackets: cmd.isoPackets.map(({ offset, length }) => ({ offset, length })),
      readOnly: this.#readOnly,
      signal: controller.signal,
    };
    if (setup) transfer.setup = setup;
    const key = cmd.ep === 0 ? 0 : (cmd.direction << 4) | cmd.ep;
    let queue = this.#queues.get(key);
    if (queue === undefined) {
      queue = { items: [], busy: false };
      this.#queues.set(key, queue);
    }
    const urb: PendingUrb = { cmd, transfer, controller, queue, running: false };
    this.#pending.set(cmd.seqnum, urb);
    if (dev.pipelined && cmd.ep !== 0) {
      // The device orders each endpoint's completions itself (a host controller does).
      urb.running = true;
      this.#transfer(urb).then((result) => this.#complete(urb, result));
      return;
    }
    queue.items.push(urb);
    if (!queue.busy) this.#pump(queue);
  }

  /** Runs one transfer on the device; a handler that throws fails only that URB. */
  async #transfer(urb: PendingUrb): Promise<TransferResult> {
    try {
      const r = this.#exported!.device.submit(urb.transfer);
      return r instanceof Promise ? await r : r;
    } catch (e) {
      return this.#failed(urb, e);
    }
  }

  /** Logs a handler that threw and fails its URB with -EPROTO. */
  #failed(urb: PendingUrb, e: unknown): TransferResult {
    log.error("Session {id}: device {busid} failed a transfer on ep {ep}: {error}", {
      id: this.id,
      busid: this.#exported?.busid,
      ep: urb.cmd.ep,
      error: e instanceof Error ? e.message : String(e),
    });
    return { status: "error" };
  }

  /** Runs an endpoint's transfers one after another; synchronous handlers finish in-line. */
  async #pump(queue: EndpointQueue): Promise<void> {
    queue.busy = true;
    const dev = this.#exported!.device;
    try {
      while (queue.items.length > 0 && !this.#ended) {
        const urb = queue.items[0]!;
        urb.running = true;
        // Synchronous handlers complete in-line, without a promise turn.
        let result: TransferResult;
        try {
          const r = dev.submit(urb.transfer);
          result = r instanceof Promise ? await r : r;
        } catch (e) {
          result = this.#failed(urb, e);
        }
        if (queue.items[0] === urb) queue.items.shift();
        this.#complete(urb, result);
      }
    } finally {
      queue.busy = false;
    }
  }

  #complete(urb: PendingUrb, r: TransferResult): void {
    const { cmd } = urb;
    if (this.#pending.get(cmd.seqnum) !== urb) return;
    this.#pending.delete(cmd.seqnum);
    this.#heldOut -= cmd.data.length;
    this.stats.completed++;
    const ret = retSubmitFor(cmd, urb.transfer, r);
    // The device is done with the OUT data (UsbTransfer.data is valid until completion): its
    // buffer takes the next payload of its size.
    if (!urb.transfer.dirIn && cmd.ep !== 0 && cmd.isoPackets.length === 0) {
      this.#reader.recycle(cmd.data);
    }
    if (urb.transfer.dirIn) this.stats.bytesIn += ret.actualLength;
    else this.stats.bytesOut += ret.actualLength;
    if (ret.status !== 0 && ret.status !== UrbStatus.ECONNRESET) this.stats.errors++;
    if (ret.data.length >= SPLIT_REPLY_BYTES && ret.isoPackets.length === 0) {
      // The header alone, then the device's buffer as it is: two writes, no copy of the data.
      this.#send(encodeRetSubmit({ ...ret, data: EMPTY }));
      this.#send(ret.data);
    } else {
      this.#send(encodeRetSubmit(ret));
    }
  }

  #unlink(cmd: CmdUnlink): void {
    const urb = this.#pending.get(cmd.unlinkSeqnum);
    let status: number = UrbStatus.OK;
    if (urb !== undefined) {
      this.#pending.delete(cmd.unlinkSeqnum);
      this.#heldOut -= urb.cmd.data.length;
      if (!urb.running) {
        const i = urb.queue.items.indexOf(urb);
        if (i >= 0) urb.queue.items.splice(i, 1);
      }
      urb.controller.abort(new DOMException("The URB was unlinked", "AbortError"));
      this.stats.unlinked++;
      status = UrbStatus.ECONNRESET;
    }
    // devid, direction and ep are 0, as Linux stub_tx.c (setup_base_pdu) sends them.
    this.#send(encodeRetUnlink({
      kind: "ret_unlink",
      seqnum: cmd.seqnum,
      devid: 0,
      direction: 0,
      ep: 0,
      status,
    }));
  }

  #abortAll(reason: Error): number {
    const n = this.#pending.size;
    for (const urb of this.#pending.values()) urb.controller.abort(reason);
    this.#pending.clear();
    this.#heldOut = 0;
    for (const q of this.#queues.values()) q.items.length = 0;
    return n;
  }

  /** The device went away: answer every pending URB with -ENODEV, then hang up. */
  #deviceGone(): void {
    if (this.#ended || this.#closing) return;
    this.#closing = true;
    const urbs = [...this.#pending.values()];
    this.#abortAll(new Deno.errors.NotConnected("The device is gone"));
    for (const urb of urbs) {
      this.stats.completed++;
      this.#send(encodeRetSubmit(retSubmitFor(urb.cmd, urb.transfer, { status: "nodev" })));
    }
    // Let the -ENODEV answers reach the client before the connection closes, but do not wait
    // on a peer that has stopped reading.
    this.#flushBounded().finally(() => this.end("the device was disconnected"));
  }
}

/** Builds the RET_SUBMIT that answers `cmd` with the device's result. */
function retSubmitFor(
  cmd: CmdSubmit,
  t: UsbTransfer,
  r: TransferResult,
): Parameters<typeof encodeRetSubmit>[0] {
  let status: number = ERRNO[r.status];
  let data: Uint8Array = EMPTY;
  let actualLength = 0;
  let isoPackets: IsoPacketDescriptor[] = [];
  let errorCount = 0;
  if (t.type === "isochronous" && cmd.isoPackets.length > 0) {
    isoPackets = cmd.isoPackets.map((p, i) => {
      const pr = r.isoPackets?.[i];
      const packetStatus = pr ? ERRNO[pr.status] : status;
      if (packetStatus !== 0) errorCount++;
      const actual = pr ? Math.min(pr.actualLength, p.length) : 0;
      actualLength += actual;
      return { offset: p.offset, length: p.length, actualLength: actual, status: packetStatus };
    });
    if (t.dirIn) {
      const buffer = r.data ?? EMPTY;
      const fits = isoPackets.every((p) => p.offset + p.actualLength <= buffer.length);
      if (!fits) {
        for (const p of isoPackets) p.actualLength = 0;
        actualLength = 0;
        status = UrbStatus.EPROTO;
      } else {
        data = packIsoData(buffer, isoPackets);
      }
    }
  } else if (t.dirIn) {
    data = r.data ?? EMPTY;
    if (data.length > cmd.transferBufferLength) {
      data = data.subarray(0, cmd.transferBufferLength);
      if (status === 0) status = UrbStatus.EOVERFLOW;
    }
    actualLength = data.length;
    if (status === 0 && t.shortNotOk && actualLength < cmd.transferBufferLength) {
      status = UrbStatus.EREMOTEIO;
    }
  } else {
    actualLength = Math.min(
      r.actualLength ?? (status === 0 ? cmd.transferBufferLength : 0),
      cmd.transferBufferLength,
    );
  }
  return {
    kind: "ret_submit",
    seqnum: cmd.seqnum,
    // As Linux stub_tx.c (setup_base_pdu): vhci matches a reply on its seqnum alone.
    devid: 0,
    direction: 0,
    ep: 0,
    status,
    actualLength,
    startFrame: 0,
    numberOfPackets: isoPackets.length,
    errorCount,
    data,
    isoPackets,
  };
}

/** A bus id from the wire as it can go into a log line: quoted unless it has the usual form. */
function printable(busid: string): string {
  return BUSID_PATTERN.test(busid) ? busid : JSON.stringify(busid);
}

/** The form of a host name or address that goes into a log line unquoted. */
const HOST_PATTERN = /^[A-Za-z0-9:][A-Za-z0-9.:-]{0,252}$/;

/** A host from the wire as it can go into a log line: quoted unless it has a usual form. */
function printableHost(host: string): string {
  return HOST_PATTERN.test(host) ? host : JSON.stringify(host);
}

/**
 * A printable form of an attach request for logs and messages, with the strings from the wire
 * quoted unless they have a usual form: `local device 1-2`, `remote device 1-2 at
 * 192.0.2.9:3240`, `device 1-2 over a handed-over socket`.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { describeAttachRequest } from "./session.ts";
 * const text = describeAttachRequest({ kind: "remote", host: "::1", port: 3240, busid: "2-1" });
 * assertEquals(text, "remote device 2-1 at [::1]:3240");
 * const odd = describeAttachRequest({ kind: "local", busid: "1-1\nforged" });
 * assertEquals(odd, 'local device "1-1\\nforged"');
 * ```
 */
export function describeAttachRequest(request: AttachRequest): string {
  const busid = printable(request.busid);
  switch (request.kind) {
    case "local":
      return `local device ${busid}`;
    case "remote": {
      const at = HOST_PATTERN.test(request.host)
        ? formatHostPort(request.host, request.port)
        : `${JSON.stringify(request.host)} port ${request.port}`;
      return `remote device ${busid} at ${at}`;
    }
    case "stream":
      return `device ${busid} over a handed-over socket`;
  }
}

/** How a status reads in an audit line: done, refused (ST_NA), or failed with the status. */
function outcomeOf(status: number): string {
  return status === OpStatus.ST_OK
    ? "done"
    : status === OpStatus.ST_NA
    ? "refused"
    : `failed (status ${status})`;
}

/** `text` cut to at most `maxBytes` bytes of UTF-8, never inside a character. */
function truncateUtf8(text: string, maxBytes: number): string {
  if (text.length <= maxBytes / 3 || utf8.encode(text).length <= maxBytes) return text;
  let out = "";
  let bytes = 0;
  for (const ch of text) {
    const n = utf8.encode(ch).length;
    if (bytes + n > maxBytes) break;
    out += ch;
    bytes += n;
  }
  return out;
}
