/**
 * The USB/IP server: a registry of exported devices, the listeners that feed it connections,
 * and the sessions that serve them. A device is held by at most one session; when that session
 * ends for any reason the device is reset and can be imported again at once. A bus id the
 * server picked is never handed out again in its life, so that a client still holding it
 * (a persistent attach) cannot reach another device under it. Connections over
 * {@linkcode SessionLimits.maxConnections} in all, or over
 * {@linkcode SessionLimits.maxConnectionsPerPeer} from one peer, are closed as they arrive.
 * usbipgw's own requests to bind host devices, and to attach devices into this machine's
 * kernel, are passed to the handlers given as options, after the checks of who may ask.
 *
 * @module
 */

import { errorMessage } from "../util/error_message.ts";
import { getLogger } from "../logtape.ts";
import {
  DEFAULT_LIMITS,
  OpStatus,
  type UsbipLimits,
  VHCI_PORT_SEND_SOCKET,
} from "../protocol/constants.ts";
import type { UsbDevice } from "../devices/usb_device.ts";
import type { AttachRequest } from "../protocol/op_messages.ts";
import { allowAll, type Policy } from "../policy/policy.ts";
import {
  type Connection,
  describePeer,
  type Listener,
  type PeerInfo,
} from "../transport/connection.ts";
import { deviceFacts, type ExportedDevice } from "./exported_device.ts";
import { busidProblem, busnumOf } from "../protocol/busid.ts";
import { Session, type SessionStats } from "./session.ts";
import type {
  AttachAnswer,
  CaptureAnswer,
  CaptureRequest,
  ClaimResult,
  DetachAnswer,
  DeviceListing,
  HostDeviceAction,
  HostDeviceAnswer,
  LiveCaptureOutput,
  SessionHost,
  SocketRequest,
} from "./session_host.ts";
import { peerKey, resolveSessionLimits, type SessionLimits } from "./session_limits.ts";
import { describeAttachRequest } from "./wire_text.ts";
import { BufferPool } from "../protocol/buffer_pool.ts";
import { UrbObservers } from "./urb_observer.ts";

/**
 * The most OUT payload buffers, in bytes, kept for reuse between transfers, for all sessions
 * together: enough for 64 KiB transfers 8 deep on several sessions at once, while hundreds of
 * sessions share the same few warm buffers.
 */
const SHARED_POOL_BYTES = 4 * 1024 * 1024;

const log = getLogger(["usbipgw", "server"]);
const audit = getLogger(["usbipgw", "audit"]);

/** Refused connections are logged at most this often; each line carries the running total. */
const REFUSAL_LOG_INTERVAL_MS = 1000;

/** Ports per bus of the bus ids the server picks (`1-1` .. `1-999`, then `2-1`, ...). */
const AUTO_PORTS_PER_BUS = 999;

/** How a host device handler says it went: `ok`, and a short message for the requester. */
export interface HostDeviceOutcome {
  /** Whether the bind or unbind worked: answered ST_OK, else ST_ERROR. */
  ok: boolean;
  /** Sent to the requester; cut to `MAX_BIND_MESSAGE_BYTES` bytes of UTF-8. */
  message: string;
}

/**
 * Binds (exports) or unbinds (withdraws) the host USB device with the host bus id `busid`, as
 * `usbip bind`/`usbip unbind` do; called only for a peer that
 * {@linkcode UsbipServerOptions.statusAccess} admits. A rejection counts as a failure.
 */
export type HostDeviceHandler = (
  action: HostDeviceAction,
  busid: string,
  peer: PeerInfo,
) => Promise<HostDeviceOutcome>;

/**
 * Attaches devices into this machine's kernel (vhci_hcd) for OP_REQ_ATTACH, and detaches them
 * for OP_REQ_DETACH, as `usbip attach`/`detach` run by root do. The server calls it only for a
 * unix peer with credentials (SO_PEERCRED); the service decides who may (root, the console
 * user, polkit) and what. A rejection is answered ST_ERROR and logged.
 */
export interface LocalAttachService {
  /**
   * Decides and carries out an attach asked for by `peer` over `conn`. A stream attach takes
   * the requester's socket with `requestSocket` (once it has decided to accept one; a refusal
   * need not ask for it), bounded by the timeout it gives. ST_OK must come with the vhci port,
   * else the answer counts as a failure.
   */
  attach(
    request: AttachRequest,
    peer: PeerInfo,
    conn: Connection,
    requestSocket: SocketRequest,
  ): Promise<AttachAnswer>;
  /** Decides and carries out the detach of `vhciPort` asked for by `peer`. */
  detach(vhciPort: number, peer: PeerInfo): Promise<DetachAnswer>;
}

/** Options of a {@linkcode UsbipServer}. */
export interface UsbipServerOptions {
  /** Who may list and import what; everything is allowed by default. */
  policy?: Policy;
  /** Limits on untrusted lengths and counts. */
  limits?: UsbipLimits;
  /**
   * Limits on connections and on what one connection may make the server hold; each one left
   * out takes its value from {@linkcode DEFAULT_SESSION_LIMITS}. Throws `RangeError` for a
   * value that is not a positive integer or `Infinity`.
   */
  sessionLimits?: Partial<SessionLimits>;
  /**
   * Who may read the server's status ({@linkcode UsbipServer.status}) with OP_REQ_STATUS, and
   * bind or unbind host devices with OP_REQ_BIND and OP_REQ_UNBIND; nobody when absent.
   */
  statusAccess?: (peer: PeerInfo) => boolean;
  /**
   * Acts on OP_REQ_BIND and OP_REQ_UNBIND from a peer that `statusAccess` admits. When absent,
   * such requests are answered ST_ERROR, "not supported".
   */
  manageHostDevice?: HostDeviceHandler;
  /**
   * Acts on OP_REQ_ATTACH and OP_REQ_DETACH from a unix peer with credentials, whatever
   * `statusAccess` says (the service decides who may); any other peer is answered ST_NA without
   * calling it. When absent, such requests are answered ST_ERROR, "Not supported".
   */
  localAttach?: LocalAttachService;
  /**
   * More of the status for OP_REQ_STATUS, from whoever owns the server (the gateway's ports
   * attached for users): merged into {@linkcode UsbipServer.status}'s JSON.
   */
  statusExtras?: () => Record<string, unknown>;
  /**
   * Streams the traffic as pcapng for OP_REQ_CAPTURE from a peer that `statusAccess` admits
   * (`liveCapture` of lib/capture/live_capture.ts makes one for a server). When absent, such
   * requests are answered ST_ERROR, "Not supported".
   */
  liveCapture?: LiveCaptureHandler;
}

/**
 * Starts a live capture of what `request` names for `peer`, writing pcapng blocks to `out`;
 * returns the function that stops it. Called only for a peer the status access admits.
 */
export type LiveCaptureHandler = (
  request: CaptureRequest,
  peer: PeerInfo,
  out: LiveCaptureOutput,
) => () => void;

/** One session as {@linkcode UsbipServer.status} reports it. */
export interface SessionStatus extends SessionStats {
  /** The session's number, as the logs name it. */
  id: number;
  /** The peer in words, as the logs give it: `tcp 10.0.0.5:40000`, `unix uid=1000 ...`. */
  peer: string;
  /** The transport the connection came over. */
  transport: PeerInfo["transport"];
  /** The peer's uid (SO_PEERCRED), unix sockets only. */
  uid?: number;
  /** The imported device, or null while in the op phase. */
  busid: string | null;
  /** ISO 8601 time of the connection. */
  since: string;
  /** URBs submitted and not yet answered nor unlinked. */
  pendingUrbs: number;
}

/** One exported device as {@linkcode UsbipServer.status} reports it. */
export interface DeviceStatus {
  /** The bus id the device is exported under. */
  busid: string;
  /** Its short name, as given to {@linkcode UsbipServer.addDevice} or its class name. */
  name: string;
  /** "emulated", or "passthrough" for a host device. */
  origin: ExportedDevice["origin"];
  /** The device descriptor's vendor ID. */
  idVendor: number;
  /** The device descriptor's product ID. */
  idProduct: number;
  /** The id of the session holding it, or null. */
  session: number | null;
}

/** What `usbipgw status` shows: the server's devices, sessions, peers and counters. */
export interface ServerStatus {
  /** ISO 8601 time the server started. */
  started: string;
  /** The open listeners' descriptions, e.g. `tcp 0.0.0.0:3240`. */
  listeners: string[];
  /** The exported devices, in order of addition. */
  devices: DeviceStatus[];
  /** The open sessions. */
  sessions: SessionStatus[];
  /** Open connections per peer (a unix uid or a TCP address). */
  peers: Record<string, number>;
  /** Counters since start, over every session, ended and open. */
  totals: {
    /** Sessions served since start, open ones included. */
    sessions: number;
    /** URBs completed (the sum of the sessions' `completed`). */
    urbs: number;
    /** Bytes of IN data sent to peers. */
    bytesIn: number;
    /** Bytes of OUT data devices took. */
    bytesOut: number;
    /** URBs completed with an error status other than an unlink. */
    errors: number;
    /** Connections closed on arrival for exceeding a connection limit. */
    refusedConnections: number;
  };
}

/** Options of {@linkcode UsbipServer.addDevice}. */
export interface AddDeviceOptions {
  /**
   * The bus id to export under; it may be one a removed device had. When absent, the server
   * picks the first `1-N` (then `2-N`, ...) it has never exported a device under.
   */
  busid?: string;
  /** A short name for logs and lists; the class name when absent. */
  name?: string;
  /** "emulated" (default) or "passthrough". */
  origin?: "emulated" | "passthrough";
}

/**
 * Serves exported devices to USB/IP clients over any number of listeners.
 *
 * @example Serving a device over an in-memory connection
 * ```ts
 * import { UsbipServer } from "./server.ts";
 * import { GadgetZero } from "../devices/gadget_zero.ts";
 * import { memoryConnectionPair } from "../transport/memory.ts";
 * const server = new UsbipServer();
 * server.addDevice(new GadgetZero());
 * const [client, end] = memoryConnectionPair();
 * const done = server.accept(end);
 * client.close();
 * await done;
 * await server.close();
 * ```
 */
export class UsbipServer implements SessionHost {
  /** The limits on untrusted lengths and counts ({@linkcode DEFAULT_LIMITS} unless given). */
  readonly limits: UsbipLimits;
  /** The limits in force, defaults filled in. */
  readonly sessionLimits: Readonly<SessionLimits>;
  /** OUT payload buffers, shared by every session (see {@linkcode BufferPool}). */
  readonly bufferPool: BufferPool = new BufferPool(SHARED_POOL_BYTES);
  /** Who watches the traffic of every session (a capture, the metrics): add and remove any time. */
  readonly observers: UrbObservers = new UrbObservers();
  #policy: Policy;
  /** Open connections per {@linkcode peerKey}. */
  #perPeer = new Map<string, number>();
  #refused = 0;
  #refusalLoggedAt = -Infinity;
  #refusalsUnlogged = 0;
  #devices = new Map<string, ExportedDevice>();
  /** Ends the `disconnected` listener of each exported device once it is forgotten. */
  #unwatch = new Map<ExportedDevice, AbortController>();
  /** Every bus id a device was ever exported under. */
  #issued = new Set<string>();
  /** Bus ids the server picked in order, by index: every one before this is issued. */
  #autoIndex = 0;
  #holders = new Map<string, Session>();
  #sessions = new Set<Session>();
  #listeners = new Set<Listener>();
  #loops = new Set<Promise<void>>();
  #closed = false;
  #statusAccess: (peer: PeerInfo) => boolean;
  #manageHostDevice: HostDeviceHandler | undefined;
  #statusExtras: (() => Record<string, unknown>) | undefined;
  #localAttach: LocalAttachService | undefined;
  #liveCapture: LiveCaptureHandler | undefined;
  #started = new Date();
  /** Counters of the sessions that have ended. */
  #ended = { sessions: 0, urbs: 0, bytesIn: 0, bytesOut: 0, errors: 0 };

  /** Creates a server with no devices and no listeners. */
  constructor(options: UsbipServerOptions = {}) {
    this.#statusAccess = options.statusAccess ?? (() => false);
    this.#manageHostDevice = options.manageHostDevice;
    this.#statusExtras = options.statusExtras;
    this.#localAttach = options.localAttach;
    this.#liveCapture = options.liveCapture;
    this.#policy = options.policy ?? allowAll;
    this.limits = options.limits ?? DEFAULT_LIMITS;
    this.sessionLimits = Object.freeze(resolveSessionLimits(options.sessionLimits));
  }

  /** The number of connections refused so far for exceeding a connection limit. */
  get refusedConnections(): number {
    return this.#refused;
  }

  /** The exported devices, in bus id order of addition. */
  get devices(): ExportedDevice[] {
    return [...this.#devices.values()];
  }

  /** The sessions currently open. */
  get sessions(): Session[] {
    return [...this.#sessions];
  }

  /** The session holding `busid`, if any. */
  holderOf(busid: string): Session | undefined {
    return this.#holders.get(busid);
  }

  /** Exports `device`. Throws `TypeError` for a malformed bus id, `Error` for a taken one. */
  addDevice(device: UsbDevice, options: AddDeviceOptions = {}): ExportedDevice {
    const busid = options.busid ?? this.#nextBusid();
    const busnum = busnumOf(busid);
    if (this.#devices.has(busid)) throw new Error(`Cannot export on busid ${busid}: it is taken`);
    const used = new Set(
      [...this.#devices.values()].filter((d) => d.busnum === busnum).map((d) => d.devnum),
    );
    let devnum = 2;
    while (used.has(devnum)) devnum++;
    if (devnum > 255) throw new Error(`Cannot export on bus ${busnum}: no free device number`);
    const exported: ExportedDevice = {
      busid,
      busnum,
      devnum,
      devid: (busnum << 16) | devnum,
      device,
      origin: options.origin ?? "emulated",
      name: options.name ?? device.constructor.name,
    };
    this.#devices.set(busid, exported);
    this.#issued.add(busid);
    const unwatch = new AbortController();
    this.#unwatch.set(exported, unwatch);
    device.disconnected.addEventListener("abort", () => this.#forget(exported, "gone"), {
      once: true,
      signal: unwatch.signal,
    });
    log.info("Exporting {name} on {busid}", { name: exported.name, busid });
    return exported;
  }

  /** Removes a device: a session holding it answers its URBs with -ENODEV and hangs up. */
  removeDevice(busid: string): boolean {
    const exported = this.#devices.get(busid);
    if (exported === undefined) return false;
    this.#forget(exported, "removed");
    exported.device.disconnect(`The device ${busid} was removed from the server`);
    return true;
  }

  /**
   * Drops a device from the registry, saying why: removed from the server, or gone on its own
   * (unplugged). Once the server is closed this is routine and logged at debug level only.
   */
  #forget(exported: ExportedDevice, why: "removed" | "gone"): void {
    if (this.#devices.get(exported.busid) !== exported) return;
    this.#devices.delete(exported.busid);
    this.#unwatch.get(exported)?.abort();
    this.#unwatch.delete(exported);
    const props = { busid: exported.busid, name: exported.name };
    if (this.#closed) log.debug("Device {busid} ({name}) closed", props);
    else if (why === "removed") log.info("Device {busid} ({name}) was removed", props);
    else log.info("Device {busid} ({name}) is gone", props);
  }

  /** The first bus id in `1-1`, `1-2`, ... `1-999`, `2-1`, ... never exported under. */
  #nextBusid(): string {
    while (true) {
      const bus = Math.floor(this.#autoIndex / AUTO_PORTS_PER_BUS) + 1;
      if (bus > 255) throw new Error("Cannot export: every bus id the server may pick was used");
      const busid = `${bus}-${(this.#autoIndex % AUTO_PORTS_PER_BUS) + 1}`;
      if (!this.#issued.has(busid)) return busid;
      this.#autoIndex++;
    }
  }

  /** Accepts connections from `listener` until it or the server closes. */
  listen(listener: Listener): Promise<void> {
    if (this.#closed) throw new Error("Cannot listen: the server is closed");
    this.#listeners.add(listener);
    log.info("Listening on {listener}", { listener: listener.description });
    const loop = (async () => {
      try {
        for await (const conn of listener) {
          if (this.#closed) {
            conn.close();
            break;
          }
          this.accept(conn);
        }
      } catch (e) {
        if (!this.#closed) {
          log.error("Listener {listener} failed: {error}", {
            listener: listener.description,
            error: errorMessage(e),
          });
        }
      } finally {
        this.#listeners.delete(listener);
      }
    })();
    this.#loops.add(loop);
    loop.finally(() => this.#loops.delete(loop));
    return loop;
  }

  /**
   * Serves one connection; resolves when its session has ended. A connection over
   * {@linkcode SessionLimits.maxConnections} or {@linkcode SessionLimits.maxConnectionsPerPeer}
   * is closed at once with an audit line, and the promise resolves at once.
   */
  accept(conn: Connection): Promise<void> {
    const transport = conn.peer.transport;
    if (this.observers.active) this.observers.report("event", { kind: "connection", transport });
    const key = peerKey(conn.peer);
    const fromPeer = this.#perPeer.get(key) ?? 0;
    const { maxConnections, maxConnectionsPerPeer } = this.sessionLimits;
    if (this.#sessions.size >= maxConnections) {
      this.#refuse(conn, "maxConnections", maxConnections, `${this.#sessions.size} open in all`);
      return Promise.resolve();
    }
    if (fromPeer >= maxConnectionsPerPeer) {
      this.#refuse(
        conn,
        "maxConnectionsPerPeer",
        maxConnectionsPerPeer,
        `${fromPeer} open from ${key}`,
      );
      return Promise.resolve();
    }
    this.#perPeer.set(key, fromPeer + 1);
    if (this.observers.active) this.observers.report("event", { kind: "session", transport });
    const session = new Session(conn, this);
    this.#sessions.add(session);
    return session.run().finally(() => {
      this.#sessions.delete(session);
      const e = this.#ended;
      e.sessions++;
      e.urbs += session.stats.completed;
      e.bytesIn += session.stats.bytesIn;
      e.bytesOut += session.stats.bytesOut;
      e.errors += session.stats.errors;
      const n = (this.#perPeer.get(key) ?? 1) - 1;
      if (n > 0) this.#perPeer.set(key, n);
      else this.#perPeer.delete(key);
    });
  }

  /**
   * Closes a connection over a connection limit. A flood of them is logged once per
   * REFUSAL_LOG_INTERVAL_MS, each line with the running total, so it cannot flood the log.
   */
  #refuse(conn: Connection, limit: keyof SessionLimits, value: number, detail: string): void {
    conn.close();
    this.#refused++;
    if (this.observers.active) this.observers.report("event", { kind: "limit", limit });
    const now = performance.now();
    if (now - this.#refusalLoggedAt < REFUSAL_LOG_INTERVAL_MS) {
      this.#refusalsUnlogged++;
      return;
    }
    audit.warn(
      "Refused a connection from {peer}: limit {limit}={value} reached ({detail}); {total} refused since start, {unlogged} not logged",
      {
        peer: describePeer(conn.peer),
        limit,
        value,
        detail,
        total: this.#refused,
        unlogged: this.#refusalsUnlogged,
      },
    );
    this.#refusalLoggedAt = now;
    this.#refusalsUnlogged = 0;
  }

  /** Stops every listener and ends every session. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const l of this.#listeners) l.close();
    const runs: Promise<void>[] = [];
    for (const s of this.#sessions) {
      runs.push(s.run());
      s.end("the server is shutting down");
    }
    await Promise.all([...runs, ...this.#loops]);
  }

  /** A snapshot of devices, sessions, peers and counters (`usbipgw status`). */
  status(): ServerStatus {
    const holders = new Map([...this.#holders].map(([busid, s]) => [busid, s.id]));
    const sessions = [...this.#sessions].map((s): SessionStatus => ({
      id: s.id,
      peer: describePeer(s.conn.peer),
      transport: s.conn.peer.transport,
      ...(s.conn.peer.uid !== undefined ? { uid: s.conn.peer.uid } : {}),
      busid: s.device?.busid ?? null,
      since: new Date(s.since).toISOString(),
      pendingUrbs: s.usage.pendingUrbs,
      ...s.stats,
    }));
    const totals = { ...this.#ended, refusedConnections: this.#refused };
    totals.sessions += sessions.length;
    for (const s of sessions) {
      totals.urbs += s.completed;
      totals.bytesIn += s.bytesIn;
      totals.bytesOut += s.bytesOut;
      totals.errors += s.errors;
    }
    return {
      started: this.#started.toISOString(),
      listeners: [...this.#listeners].map((l) => l.description),
      devices: this.devices.map((d) => {
        const summary = d.device.summary();
        return {
          busid: d.busid,
          name: d.name,
          origin: d.origin,
          idVendor: summary.idVendor,
          idProduct: summary.idProduct,
          session: holders.get(d.busid) ?? null,
        };
      }),
      sessions,
      peers: Object.fromEntries(this.#perPeer),
      totals,
    };
  }

  // SessionHost

  /** The status as JSON for a peer that {@linkcode UsbipServerOptions.statusAccess} admits. */
  statusFor(peer: PeerInfo): string | undefined {
    if (!this.#statusAccess(peer)) return undefined;
    return JSON.stringify({ ...this.status(), ...this.#statusExtras?.() });
  }

  /** The devices the policy lets `peer` see. */
  visibleDevices(peer: PeerInfo): ExportedDevice[] {
    return this.listDevices(peer).visible;
  }

  /** The devices the policy lets `peer` see, and those it hides, each with the reason. */
  listDevices(peer: PeerInfo): DeviceListing {
    const listing: DeviceListing = { visible: [], hidden: [] };
    const observed = this.observers.active;
    for (const d of this.#devices.values()) {
      const decision = this.#policy.decide(peer, deviceFacts(d));
      if (observed) this.observers.report("event", { kind: "policy", request: "list", decision });
      if (decision.effect === "deny") {
        listing.hidden.push({ busid: d.busid, reason: decision.reason });
      } else listing.visible.push(d);
    }
    return listing;
  }

  /**
   * Answers OP_REQ_BIND or OP_REQ_UNBIND: ST_NA for a peer that
   * {@linkcode UsbipServerOptions.statusAccess} does not admit; for one it admits, ST_ERROR when
   * there is no {@linkcode UsbipServerOptions.manageHostDevice} or the bus id is malformed, else
   * the handler's outcome (ST_OK or ST_ERROR) and message.
   */
  async answerHostDeviceRequest(
    action: HostDeviceAction,
    busid: string,
    peer: PeerInfo,
  ): Promise<HostDeviceAnswer> {
    if (!this.#statusAccess(peer)) {
      return {
        status: OpStatus.ST_NA,
        message: `Not allowed: this peer may not ${action} host devices`,
      };
    }
    const handler = this.#manageHostDevice;
    if (handler === undefined) {
      return {
        status: OpStatus.ST_ERROR,
        message: `Not supported: this server cannot ${action} host devices`,
      };
    }
    const problem = busidProblem(busid);
    if (problem !== undefined) return { status: OpStatus.ST_ERROR, message: problem };
    try {
      const outcome = await handler(action, busid, peer);
      return {
        status: outcome.ok ? OpStatus.ST_OK : OpStatus.ST_ERROR,
        message: outcome.message,
      };
    } catch (e) {
      const error = errorMessage(e);
      log.error("Cannot {action} host device {busid}: {error}", { action, busid, error });
      return { status: OpStatus.ST_ERROR, message: `Cannot ${action} ${busid}: ${error}` };
    }
  }

  /**
   * Answers OP_REQ_ATTACH: ST_NA for a peer that is not a unix peer with a uid; for one that is,
   * ST_ERROR when there is no {@linkcode UsbipServerOptions.localAttach} or the bus id of a local
   * device is malformed, else the service's answer; ST_ERROR when the service rejects, answers
   * an unknown status, or ST_OK without a valid vhci port.
   */
  async answerAttachRequest(
    request: AttachRequest,
    peer: PeerInfo,
    conn: Connection,
    requestSocket: SocketRequest,
  ): Promise<AttachAnswer> {
    const refusal = this.#localAttachRefusal("attach devices into", peer);
    if (refusal !== undefined) return refusal;
    if (request.kind === "local") {
      // This server's own bus ids all have this form (addDevice checks it).
      const malformed = busidProblem(request.busid);
      if (malformed !== undefined) return { status: OpStatus.ST_ERROR, message: malformed };
    }
    const target = describeAttachRequest(request);
    return await askAttachService(
      `attach ${target}`,
      { target },
      () => this.#localAttach!.attach(request, peer, conn, requestSocket),
      (answer) =>
        answerProblem(answer.status) ??
          (answer.status === OpStatus.ST_OK ? vhciPortProblem(answer.vhciPort) : undefined),
    );
  }

  /**
   * Answers OP_REQ_DETACH: as {@linkcode UsbipServer.answerAttachRequest}, ST_NA for a peer that
   * is not a unix peer with a uid, ST_ERROR without a service or when it rejects.
   */
  async answerDetachRequest(vhciPort: number, peer: PeerInfo): Promise<DetachAnswer> {
    const refusal = this.#localAttachRefusal("detach devices from", peer);
    if (refusal !== undefined) return refusal;
    return await askAttachService(
      `detach vhci port ${vhciPort}`,
      { vhciPort },
      () => this.#localAttach!.detach(vhciPort, peer),
      (answer) => answerProblem(answer.status),
    );
  }

  /**
   * Answers OP_REQ_CAPTURE as OP_REQ_STATUS is authorized: ST_NA for a peer that
   * {@linkcode UsbipServerOptions.statusAccess} does not admit (a capture shows every byte the
   * devices move); for one it admits, ST_ERROR without a
   * {@linkcode UsbipServerOptions.liveCapture} or for a malformed bus id, else ST_OK and the
   * capture to start. A bus id not exported (yet) is accepted: its traffic shows once it is.
   */
  answerCaptureRequest(request: CaptureRequest, peer: PeerInfo): CaptureAnswer {
    if (!this.#statusAccess(peer)) {
      return {
        status: OpStatus.ST_NA,
        message:
          "Not allowed: only root, the console user and the gateway's own user may capture, over its unix socket",
      };
    }
    const handler = this.#liveCapture;
    if (handler === undefined) {
      return { status: OpStatus.ST_ERROR, message: "Not supported: this server cannot capture" };
    }
    if (request.busid !== "") {
      const problem = busidProblem(request.busid);
      if (problem !== undefined) return { status: OpStatus.ST_ERROR, message: problem };
    }
    return {
      status: OpStatus.ST_OK,
      message: `Capturing ${request.busid === "" ? "every device" : request.busid}`,
      start: (out) => handler(request, peer, out),
    };
  }

  /**
   * The answer to an attach or detach request that does not reach the service: ST_NA for a
   * peer other than a unix peer with a uid, ST_ERROR without a service; `undefined` otherwise.
   */
  #localAttachRefusal(what: string, peer: PeerInfo): AttachAnswer | undefined {
    if (peer.transport !== "unix" || peer.uid === undefined) {
      return {
        status: OpStatus.ST_NA,
        message: `Not allowed: only a local user, over the unix socket, may ${what} this machine`,
      };
    }
    if (this.#localAttach === undefined) {
      return {
        status: OpStatus.ST_ERROR,
        message: `Not supported: this server cannot ${what} this machine's kernel`,
      };
    }
    return undefined;
  }

  /** Claims a device for a session: NODEV, NA (denied by the policy), DEV_BUSY or OK. */
  claimDevice(busid: string, session: Session): ClaimResult {
    const exported = this.#devices.get(busid);
    const peer = session.conn.peer;
    if (exported === undefined || exported.device.disconnected.aborted) {
      return { status: OpStatus.ST_NODEV };
    }
    const decision = this.#policy.decide(peer, deviceFacts(exported));
    if (this.observers.active) {
      this.observers.report("event", { kind: "policy", request: "import", decision });
    }
    if (decision.effect === "deny") {
      audit.info("Import of {busid} by {peer} denied: {reason}", {
        busid,
        peer: describePeer(peer),
        reason: decision.reason,
      });
      return { status: OpStatus.ST_NA, decision };
    }
    if (this.#holders.has(busid)) return { status: OpStatus.ST_DEV_BUSY, decision };
    this.#holders.set(busid, session);
    return { status: OpStatus.ST_OK, device: exported, decision };
  }

  /** Releases a device claimed by `session` and resets it for the next import. */
  releaseDevice(exported: ExportedDevice, session: Session): void {
    if (this.#holders.get(exported.busid) !== session) return;
    this.#holders.delete(exported.busid);
    if (exported.device.disconnected.aborted) return;
    const failed = (e: unknown) =>
      log.error("Device {busid} failed to release: {error}", {
        busid: exported.busid,
        error: errorMessage(e),
      });
    try {
      const done = exported.device.released();
      if (done instanceof Promise) done.catch(failed);
    } catch (e) {
      failed(e);
    }
  }
}

/**
 * The attach service's answer to `what` (`attach local device 1-2`, `detach vhci port 4`), or
 * ST_ERROR with an error log when it rejects or `problemOf` finds its answer wrong; `fields`
 * go into the log record.
 */
async function askAttachService<T extends DetachAnswer>(
  what: string,
  fields: Record<string, unknown>,
  ask: () => Promise<T>,
  problemOf: (answer: T) => string | undefined,
): Promise<T | DetachAnswer> {
  let answer: T;
  try {
    answer = await ask();
  } catch (e) {
    const error = errorMessage(e);
    log.error("Cannot {what}: {error}", { what, ...fields, error });
    return { status: OpStatus.ST_ERROR, message: `Cannot ${what}: ${error}` };
  }
  const problem = problemOf(answer);
  if (problem === undefined) return answer;
  log.error("Cannot {what}: the attach service answered {problem}", { what, ...fields, problem });
  return {
    status: OpStatus.ST_ERROR,
    message: `Cannot ${what}: the gateway's attach service answered ${problem}`,
  };
}

/** What is wrong with an `OpStatus` a handler answered, or `undefined`. */
function answerProblem(status: number): string | undefined {
  return (Object.values(OpStatus) as number[]).includes(status)
    ? undefined
    : `an unknown status ${JSON.stringify(status)}`;
}

/** What is wrong with the vhci port of an ST_OK attach answer, or `undefined`. */
function vhciPortProblem(vhciPort: number | undefined): string | undefined {
  return vhciPort !== undefined && Number.isInteger(vhciPort) && vhciPort >= 0 &&
      vhciPort < VHCI_PORT_SEND_SOCKET
    ? undefined
    : `ST_OK without a valid vhci port (${String(vhciPort)})`;
}
