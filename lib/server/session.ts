/**
 * One USB/IP connection from accept to close, in the manner of Linux stub (stub_rx.c reads
 * requests, stub_tx.c sends answers): the op phase (DEVLIST, IMPORT), then the URB phase for
 * the imported device. As Linux usbipd (tools/usb/usbip/src/usbipd.c) does, the connection is
 * closed once a device list is answered or an import refused; usbipgw's own OP_REQ_BIND,
 * OP_REQ_UNBIND, OP_REQ_ATTACH and OP_REQ_DETACH are answered the same way, while
 * OP_REQ_STATUS leaves the connection open for another request. A granted OP_REQ_CAPTURE turns
 * the connection into a pcapng stream from the server until either side closes it.
 *
 * The URB phase reads CMD_SUBMIT and CMD_UNLINK into the per-endpoint queues
 * (`urb_queues.ts`) and answers each completion with the RET_SUBMIT that `ret_submit.ts`
 * makes of it. Every way a session ends aborts every pending transfer, releases the device at
 * once and logs the reason. A session that exceeds one of its {@linkcode SessionLimits} (time
 * to import, pending URBs, buffered bytes) is closed with an audit line naming the limit;
 * other sessions are not touched.
 *
 * @module
 */

import { errorMessage } from "../util/error_message.ts";
import { getLogger } from "../logtape.ts";
import {
  Direction,
  MAX_BIND_MESSAGE_BYTES,
  OpStatus,
  UrbStatus,
  VHCI_PORT_NONE,
  VHCI_PORT_SEND_SOCKET,
  WireSize,
} from "../protocol/constants.ts";
import { FrameReader } from "../protocol/frame_reader.ts";
import {
  type AttachRequest,
  encodeOpRepAttach,
  encodeOpRepBind,
  encodeOpRepCapture,
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
  encodeRetSubmitInto,
  encodeRetUnlink,
  type RetSubmit,
  retSubmitLength,
} from "../protocol/urb_messages.ts";
import { NODEV, type TransferResult } from "../devices/usb_device.ts";
import { type Connection, describePeer } from "../transport/connection.ts";
import { ReplyWriter } from "../transport/reply_writer.ts";
import { deviceRecord, type ExportedDevice } from "./exported_device.ts";
import { RET_HEADER_BASIC, retSubmitOf, urbCompletion } from "./ret_submit.ts";
import type {
  CaptureAnswer,
  CaptureRequest,
  HostDeviceAction,
  SessionHost,
  SocketRequest,
} from "./session_host.ts";
import { limitReason, type SessionLimits } from "./session_limits.ts";
import type { ObservedImport, UrbObservers } from "./urb_observer.ts";
import { type PendingUrb, UrbQueues } from "./urb_queues.ts";
import {
  describeAttachRequest,
  outcomeOf,
  printable,
  printableHost,
  truncateUtf8,
} from "./wire_text.ts";

const log = getLogger(["usbipgw", "session"]);
const audit = getLogger(["usbipgw", "audit"]);

const EMPTY = new Uint8Array(0);

/** How the op phase ended: with an import, a live capture, or the reason to end the session. */
type OpPhaseEnd =
  | { kind: "imported" }
  | { kind: "capture"; start: NonNullable<CaptureAnswer["start"]> }
  | { kind: "done"; reason: string };

/**
 * Bytes of pcapng a live capture may have queued for its reader (or half of maxBufferedBytes,
 * if less) before it drops records instead: a slow reader never holds sessions back.
 */
const LIVE_CAPTURE_QUEUE_BYTES = 16 * 1024 * 1024;

/**
 * Replies queued for the peer beyond this many bytes (or a quarter of maxBufferedBytes, if
 * less) pause the reading of requests until half of them are written.
 */
const READ_PAUSE_BYTES = 1024 * 1024;

/**
 * Status requests answered on one connection before the next one ends it: a client asks once
 * (`usbipgw status`, `usbipgw port`), or once before an import; a peer repeating it in a loop
 * would otherwise cost the gateway a reply (and a refusal an audit line) per 8 bytes it sends.
 */
const MAX_STATUS_REQUESTS = 8;

/**
 * The most IN data copied behind its RET_SUBMIT header into a reused buffer, so that the reply
 * is one write, when the device's buffer has no room in front for the header
 * (`TransferResult.headroom`); more goes as a second write straight from the device's buffer.
 * One write and a copy cost less than two writes up to this size: a 64 KiB bulk IN over
 * loopback gained 8-22% (BENCHMARKS.md, "One write per reply").
 */
const COPY_REPLY_MAX = 64 * 1024;

/** How long a hanging-up session waits for its last answers to be written. */
const FLUSH_TIMEOUT_MS = 2000;

/** Counters kept per session, for logs, `usbipgw status` and tests. */
export interface SessionStats {
  /** CMD_SUBMITs accepted. */
  submitted: number;
  /** URBs answered with a RET_SUBMIT, -ENODEV answers to a vanished device included. */
  completed: number;
  /** CMD_UNLINKs that cancelled a pending URB (answered -ECONNRESET). */
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
  /** The connection the session serves; closed when the session ends. */
  readonly conn: Connection;
  /** The session's counters, updated as it runs. */
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
  /** Runs from accept until a successful import (opPhaseTimeoutMs). */
  #opTimer: ReturnType<typeof setTimeout> | undefined;
  #reader: FrameReader;
  #out: ReplyWriter;
  #exported: ExportedDevice | undefined;
  /** The URBs of the imported device; created at the import. */
  #urbs: UrbQueues | undefined;
  #ended = false;
  /** Set while the session flushes its last answers before hanging up. */
  #closing = false;
  #endReason: string | undefined;
  #done: Promise<void> | undefined;
  /** The server's observers of the traffic, and this session's import as they see it. */
  #observers: UrbObservers | undefined;
  #observed: ObservedImport | undefined;
  #onDeviceGone = () => this.#deviceGone();

  /** Binds a session to a connection; nothing happens until {@linkcode Session.run}. */
  constructor(conn: Connection, host: SessionHost) {
    this.conn = conn;
    this.#host = host;
    this.#observers = host.observers;
    this.#maxPendingUrbs = host.sessionLimits.maxPendingUrbs;
    this.#maxBufferedBytes = host.sessionLimits.maxBufferedBytes;
    this.#pauseBytes = Math.min(READ_PAUSE_BYTES, this.#maxBufferedBytes / 4);
    this.#reader = new FrameReader(conn.direct ?? conn.readable, host.limits, host.bufferPool);
    this.#out = new ReplyWriter(conn, (e) => {
      this.end(`write failed: ${errorMessage(e)}`);
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
    return { pendingUrbs: this.#urbs?.size ?? 0, bufferedBytes: this.#held() };
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
      else if (op.kind === "capture") await this.#capturePhase(op.start);
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
        reason = `connection error: ${errorMessage(e)}`;
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
    if (this.#observers?.active) this.#observers.report("event", { kind: "limit", limit });
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
    const abortedUrbs = this.#urbs?.abortAll(new Deno.errors.ConnectionAborted(reason)) ?? [];
    const aborted = abortedUrbs.length;
    const exported = this.#exported;
    if (this.#observed && this.#observers?.active) {
      this.#observers.report("released", this.#observed, abortedUrbs.map((u) => u.cmd));
    }
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

  /** What the session holds: OUT data of pending URBs plus unwritten replies, in bytes. */
  #held(): number {
    return (this.#urbs?.heldOut ?? 0) + this.#out.pending;
  }

  #send(bytes: Uint8Array, written?: () => void): void {
    if (this.#ended) return;
    this.#out.write(bytes, written);
    if (this.#held() > this.#maxBufferedBytes) this.#overBuffered();
  }

  /** Closes the session for maxBufferedBytes, counting `more` bytes of OUT data not yet held. */
  #overBuffered(more = 0): void {
    const queued = this.#out.pending;
    const heldOut = (this.#urbs?.heldOut ?? 0) + more;
    this.#exceeded(
      "maxBufferedBytes",
      this.#maxBufferedBytes,
      `${
        heldOut + queued
      } bytes held (${heldOut} of OUT data in pending URBs, ${queued} of replies the peer has not read)`,
    );
  }

  /**
   * Serves op requests until a device is imported or the op phase is over: at a clean end of
   * stream, and after answering a device list, a refused import, a bind or an unbind (one such
   * request per connection, as Linux usbipd). A status request leaves the connection open, up
   * to MAX_STATUS_REQUESTS of them; the next request is read once no answer waits behind the
   * one being written.
   */
  async #opPhase(): Promise<OpPhaseEnd> {
    const peer = this.conn.peer;
    let statusRequests = 0;
    while (true) {
      // A peer that does not read the answers holds at most two: one being written, one waiting.
      await this.#out.drained(0);
      if (this.#ended) return { kind: "done", reason: "the session ended" };
      const req = await this.#reader.readOpRequest();
      if (req === null || this.#ended) {
        return { kind: "done", reason: "the peer closed the connection" };
      }
      if (req.kind === "op_req_status") {
        if (++statusRequests > MAX_STATUS_REQUESTS) {
          audit.warn(
            "Session {id} ({peer}): closing: more than {max} status requests on one connection",
            {
              id: this.id,
              peer: describePeer(peer),
              max: MAX_STATUS_REQUESTS,
            },
          );
          return {
            kind: "done",
            reason: `more than ${MAX_STATUS_REQUESTS} status requests on one connection`,
          };
        }
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
      if (req.kind === "op_req_capture") return this.#captureRequest(req);
      const { status, device, decision } = this.#host.claimDevice(req.busid, this);
      if (status !== OpStatus.ST_OK || device === undefined) {
        this.#importRefused(status);
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
        this.#importRefused(OpStatus.ST_DEV_ERR);
        audit.warn("Session {id} ({peer}): {busid} could not be taken for import: {error}", {
          id: this.id,
          peer: describePeer(peer),
          busid: device.busid,
          error: errorMessage(e),
        });
        this.#send(encodeOpRepImport({ kind: "op_rep_import", status: OpStatus.ST_DEV_ERR }));
        return {
          kind: "done",
          reason: `import of ${device.busid} refused (status ${OpStatus.ST_DEV_ERR})`,
        };
      }
      this.#exported = device;
      this.#observed = { session: this.id, transport: peer.transport, exported: device };
      if (this.#observers?.active) this.#observers.report("imported", this.#observed);
      // A read-only grant: devices that store data refuse writes (UsbTransfer.readOnly).
      const readOnly = decision?.effect === "read-only";
      this.#urbs = new UrbQueues(device.device, {
        completed: (urb, result) => this.#complete(urb, result),
        threw: (urb, error) => this.#threw(urb, error),
      }, readOnly);
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
        access: readOnly ? " read-only" : "",
        reason: decision?.reason ?? "no policy",
      });
      return { kind: "imported" };
    }
  }

  /** Tells the observers why an import was refused (its OP_REP_IMPORT status). */
  #importRefused(status: number): void {
    if (!this.#observers?.active) return;
    const reason = status === OpStatus.ST_NA
      ? "policy"
      : status === OpStatus.ST_DEV_BUSY
      ? "busy"
      : status === OpStatus.ST_NODEV
      ? "no_device"
      : "device_error";
    this.#observers.report("event", { kind: "import_refused", reason });
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
    if (this.#observers?.active) {
      this.#observers.report("event", {
        kind: "attach",
        attachKind: request.kind,
        status: answer.status,
      });
    }
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

  /**
   * Answers OP_REQ_CAPTURE, with an audit line for every decision. A granted capture ends the
   * op phase (and its timeout): the connection carries the pcapng stream from then on.
   */
  #captureRequest(request: CaptureRequest): OpPhaseEnd {
    const peer = this.conn.peer;
    const answer: CaptureAnswer = this.#host.answerCaptureRequest?.(request, peer) ?? {
      status: OpStatus.ST_ERROR,
      message: "Not supported: this server cannot capture its traffic",
    };
    const message = truncateUtf8(answer.message, MAX_BIND_MESSAGE_BYTES);
    this.#send(encodeOpRepCapture({ kind: "op_rep_capture", status: answer.status, message }));
    const what = request.busid === "" ? "every device" : printable(request.busid);
    const granted = answer.status === OpStatus.ST_OK && answer.start !== undefined;
    audit.info("Session {id} ({peer}): capture of {what} {outcome}: {message}", {
      id: this.id,
      peer: describePeer(peer),
      what,
      outcome: granted ? "granted" : outcomeOf(answer.status),
      busid: printable(request.busid),
      snaplen: request.snaplen,
      status: answer.status,
      message,
    });
    if (!granted) return { kind: "done", reason: `capture of ${what} refused` };
    clearTimeout(this.#opTimer);
    this.#opTimer = undefined;
    return { kind: "capture", start: answer.start! };
  }

  /**
   * Streams a live capture to the peer until it closes the connection or the session ends. The
   * peer sends nothing after its request; a byte from it is a protocol error.
   */
  async #capturePhase(start: NonNullable<CaptureAnswer["start"]>): Promise<void> {
    const out = this.#out;
    const stop = start({
      write: (block) => this.#send(block),
      get pending() {
        return out.pending;
      },
      maxQueued: Math.min(LIVE_CAPTURE_QUEUE_BYTES, this.#maxBufferedBytes / 2),
    });
    try {
      const more = await this.#reader.readExact(1, "capture");
      if (more !== null && !this.#ended) {
        throw new UsbipProtocolError(
          "capture",
          "stream",
          "has bytes from the client after OP_REQ_CAPTURE; a capture client only reads",
        );
      }
    } finally {
      stop();
    }
  }

  /** Answers OP_REQ_DETACH, with an audit line for every request. */
  async #detachRequest(vhciPort: number): Promise<OpPhaseEnd> {
    const peer = this.conn.peer;
    const answer = await this.#host.answerDetachRequest(vhciPort, peer);
    if (this.#observers?.active) {
      this.#observers.report("event", { kind: "detach", status: answer.status });
    }
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
      ep !== 0 && dev.transferType(ep, direction === Direction.USBIP_DIR_IN) === "isochronous";
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
    const urbs = this.#urbs!;
    if (urbs.has(cmd.seqnum)) {
      throw new UsbipProtocolError(
        "CMD_SUBMIT",
        "seqnum",
        `is ${cmd.seqnum}, which is already pending`,
      );
    }
    if (urbs.size >= this.#maxPendingUrbs) {
      this.#exceeded(
        "maxPendingUrbs",
        this.#maxPendingUrbs,
        `URB ${cmd.seqnum} would be pending number ${urbs.size + 1}`,
      );
      return;
    }
    const held = cmd.data.length;
    if (held > 0 && this.#held() + held > this.#maxBufferedBytes) {
      this.#overBuffered(held);
      return;
    }
    this.stats.submitted++;
    if (this.#observers?.active) this.#observers.report("submitted", this.#observed!, cmd);
    urbs.submit(cmd);
  }

  /** Logs a device handler that threw; its URB completes with -EPROTO. */
  #threw(urb: PendingUrb, e: unknown): void {
    log.error("Session {id}: device {busid} failed a transfer on ep {ep}: {error}", {
      id: this.id,
      busid: this.#exported?.busid,
      ep: urb.cmd.ep,
      error: errorMessage(e),
    });
  }

  /** Answers a completed URB with its RET_SUBMIT (ret_submit.ts). */
  #complete(urb: PendingUrb, r: TransferResult): void {
    const { cmd, transfer } = urb;
    this.stats.completed++;
    const c = urbCompletion(transfer, r);
    // The device is done with the OUT data ("Buffers" at UsbDevice): the buffer takes the next
    // payload of its size.
    if (!transfer.dirIn && cmd.ep !== 0 && cmd.isoPackets.length === 0) {
      this.#reader.recycle(cmd.data);
    }
    if (transfer.dirIn) this.stats.bytesIn += c.actualLength;
    else this.stats.bytesOut += c.actualLength;
    if (c.status !== UrbStatus.OK && c.status !== UrbStatus.ECONNRESET) this.stats.errors++;
    const ret = retSubmitOf(cmd.seqnum, c);
    const observed = this.#observers?.active === true;
    // The device's buffer goes back to it once the reply and every observer are done with it.
    const release = r.release !== undefined && observed ? afterBoth(r.release) : r.release;
    this.#reply(ret, r, release);
    if (observed) this.#observers!.reportCompleted(this.#observed!, cmd, c, release);
  }

  /**
   * Sends RET_SUBMIT `ret` for result `r`, whose buffer goes back to the device through
   * `release` once the reply no longer needs it. One write per reply: the header goes in front
   * of the data in the device's own buffer when the result leaves room there (no copy), else
   * the data are copied behind it (into a reused buffer from 4 KiB on); only data beyond
   * COPY_REPLY_MAX without room go as a second write, straight from the device's buffer.
   */
  #reply(ret: RetSubmit, r: TransferResult, release: (() => void) | undefined): void {
    const data = ret.data;
    const header = WireSize.URB_HEADER;
    if (
      release !== undefined && ret.isoPackets.length === 0 && (r.headroom ?? 0) >= header &&
      data.buffer === r.data?.buffer && data.byteOffset === r.data.byteOffset &&
      data.byteOffset >= header
    ) {
      const whole = new Uint8Array(data.buffer, data.byteOffset - header, header + data.length);
      encodeRetSubmitInto(whole, ret);
      this.#send(whole, release);
      return;
    }
    if (data.length > COPY_REPLY_MAX && ret.isoPackets.length === 0) {
      this.#send(encodeRetSubmit({ ...ret, data: EMPTY }));
      this.#send(data, release);
      return;
    }
    const pool = this.#host.bufferPool;
    const size = retSubmitLength(ret);
    const reused = pool?.lend(size);
    const out = reused ?? new Uint8Array(size);
    encodeRetSubmitInto(out, ret);
    this.#send(out, reused === undefined ? undefined : () => pool!.give(reused));
    release?.();
  }

  #unlink(cmd: CmdUnlink): void {
    const status = this.#urbs!.unlink(cmd.unlinkSeqnum);
    if (status !== UrbStatus.OK) this.stats.unlinked++;
    if (this.#observers?.active) {
      this.#observers.report("unlinked", this.#observed!, cmd.seqnum, cmd.unlinkSeqnum, status);
    }
    this.#send(encodeRetUnlink({
      kind: "ret_unlink",
      seqnum: cmd.seqnum,
      ...RET_HEADER_BASIC,
      status,
    }));
  }

  /** The device went away: answer every pending URB with -ENODEV, then hang up. */
  #deviceGone(): void {
    if (this.#ended || this.#closing) return;
    this.#closing = true;
    const urbs = this.#urbs?.abortAll(new Deno.errors.NotConnected("The device is gone")) ?? [];
    for (const { cmd, transfer } of urbs) {
      this.stats.completed++;
      const c = urbCompletion(transfer, NODEV);
      if (this.#observers?.active) this.#observers.report("completed", this.#observed!, cmd, c);
      this.#send(encodeRetSubmit(retSubmitOf(cmd.seqnum, c)));
    }
    // Let the -ENODEV answers reach the client before the connection closes, but do not wait
    // on a peer that has stopped reading.
    this.#flushBounded().finally(() => this.end("the device was disconnected"));
  }
}

/** `f`, called on the second call of the function returned (two holders of one buffer). */
function afterBoth(f: () => void): () => void {
  let calls = 0;
  return () => {
    if (++calls === 2) f();
  };
}
