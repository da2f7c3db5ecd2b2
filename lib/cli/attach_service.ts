/**
 * Attaching into this machine's kernel for users who are not root: the gateway, running as
 * root, is the one that writes vhci_hcd's `attach` and `detach` files (mode 0200, root:
 * drivers/usb/usbip/vhci_sysfs.c), on behalf of a unix peer it identified by SO_PEERCRED. It
 * checks who asks, acts, records the port as that user's, and takes it back when that user is
 * no longer entitled to it (a seat switch, the end of the console session).
 *
 * Who may ask, in order, each decision in the audit trail:
 * - root: anything;
 * - the console user (seat0's active uid): the gateway's own devices;
 * - anyone else, and the console user for the other kinds: polkit (`pkcheck`), with the actions
 *   `org.usbipgw.attach-local`, `-remote` and `-stream`. polkit unreachable or unsure is a no.
 * Then the gateway's access rules apply to that user and device, as for any import.
 *
 * The three kinds: `local` (a device of this gateway, served on one end of a socketpair whose
 * other end goes to the kernel; the session's peer is the requesting user), `remote` (a server
 * that `[attach] remotes` lists), `stream` (a connected socket the user's own program hands
 * over; only with `[attach] streams = true`).
 *
 * @module
 */

import { errorMessage } from "../util/error_message.ts";
import { getLogger } from "../logtape.ts";
import { OpStatus, USBIP_PORT } from "../protocol/constants.ts";
import { deviceFacts } from "../server/exported_device.ts";
import type { LocalAttachService, UsbipServer } from "../server/server.ts";
import type { AttachAnswer, DetachAnswer, SocketRequest } from "../server/session_host.ts";
import type { AttachRequest } from "../protocol/op_messages.ts";
import type { Policy } from "../policy/policy.ts";
import { cidrContains, parseAddress } from "../policy/cidr.ts";
import { type Connection, describePeer, type PeerInfo } from "../transport/connection.ts";
import {
  attachDevice,
  attachOverSocket,
  type AttachResult,
  detachPort,
  ImportRefusedError,
  VhciMissingError,
} from "../client/attach.ts";
import type { FdSocket, RemoteAddress } from "../client/fd_socket.ts";
import { readVhciPorts } from "../client/vhci.ts";
import { stillAttached } from "../client/persist.ts";
import type { AttributeWriter } from "../client/vhci.ts";
import type { AttachConfig } from "./config.ts";
import { PolkitAction, type PolkitActionId } from "../polkit/actions.ts";
import { type PolkitDetails, readProcessStartTime } from "../policy/polkit.ts";

const audit = getLogger(["usbipgw", "audit"]);
const log = getLogger(["usbipgw", "attach"]);

/** What a user asks to attach: `local`, `remote` or `stream`. */
export type AttachKind = AttachRequest["kind"];

/** Who decided that a user may attach. */
export type Authority = "root" | "console" | "polkit";

/** A port the gateway attached for a user. */
export interface Attachment {
  vhciPort: number;
  uid: number;
  /**
   * The requesting process and its start time, for polkit's check again at a seat switch (a
   * process that has exited, or another with its pid, is not the requester: polkit says no).
   */
  pid?: number;
  startTime?: number;
  /** What polkit was asked about, asked again the same at a seat switch. */
  details: PolkitDetails;
  kind: AttachKind;
  busid: string;
  /** The server, for remote attaches: `HOST:PORT`. */
  remote?: string;
  authority: Authority;
  /** ISO 8601 time of the attach. */
  since: string;
  /** What vhci's status shows for the port while it is this attachment's. */
  devid: number;
  sockfd: number;
}

/** polkit's answer, as the gateway uses it. */
export interface PolkitAnswer {
  authorized: boolean;
  /** For the audit line: `authorized`, `not authorized`, `polkit unavailable: ...`. */
  reason: string;
}

/** Asks polkit whether the process `pid` of `uid` may do `action` (`checkAuthorization`). */
export type PolkitCheck = (
  action: PolkitActionId,
  subject: { pid: number; uid: number; startTime?: number },
  details: PolkitDetails,
) => Promise<PolkitAnswer>;

/** The polkit action of each kind (`lib/polkit/actions.ts`). */
export const ATTACH_ACTIONS: Readonly<Record<AttachKind, PolkitActionId>> = Object.freeze({
  local: PolkitAction.ATTACH_LOCAL,
  remote: PolkitAction.ATTACH_REMOTE,
  stream: PolkitAction.ATTACH_STREAM,
});

/** How the service reaches the kernel and the sockets; tests substitute them. */
export interface AttachPlumbing {
  /**
   * A connected pair for a local attach: `session` is served as a session whose peer is
   * `peer`; `kernel` is the end whose fd goes to vhci.
   */
  localPair(peer: PeerInfo): { session: Connection; kernel: FdSocket };
  /**
   * The socket of a stream attach, asked for with `requestSocket` and checked to be a connected
   * stream socket.
   */
  receiveStream(requestSocket: SocketRequest): Promise<FdSocket>;
}

/** Options of an {@linkcode AttachService}. */
export interface AttachServiceOptions {
  server: UsbipServer;
  /** The access rules, which apply to the requesting user as for an import. */
  policy: Policy;
  /** The console user's uid now. */
  consoleUid: () => number | undefined;
  /** The `[attach]` settings now (a reload may change them). */
  config: () => AttachConfig;
  polkit: PolkitCheck;
  plumbing: AttachPlumbing;
  /** The gateway's unix socket, for the port records of local attaches. */
  socketPath: string;
  sysfsRoot?: string;
  stateDir?: string | null;
  writeAttribute?: AttributeWriter;
}

function answer(status: number, message: string, vhciPort?: number): AttachAnswer {
  return vhciPort === undefined ? { status, message } : { status, vhciPort, message };
}

/** The gateway's side of `usbipgw attach` and `detach` for users who are not root. */
export class AttachService implements LocalAttachService {
  readonly #o: AttachServiceOptions;
  readonly #attachments = new Map<number, Attachment>();
  /** Request times per uid in the last second, for `requests_per_second`. */
  readonly #recent = new Map<number, number[]>();
  /** Attaches past the `max_per_user` check and not yet done, per uid: they count as held. */
  readonly #underWay = new Map<number, number>();

  /** Creates the service; it attaches nothing until asked. */
  constructor(options: AttachServiceOptions) {
    this.#o = options;
  }

  /** The ports attached for users and still in use, in port order. */
  async attachments(): Promise<Attachment[]> {
    await this.#prune();
    return [...this.#attachments.values()].sort((a, b) => a.vhciPort - b.vhciPort);
  }

  /** The ports attached for users as last seen (no sysfs read), for the status. */
  get snapshot(): Attachment[] {
    return [...this.#attachments.values()].sort((a, b) => a.vhciPort - b.vhciPort);
  }

  /** Whether `uid` may make another request now; records it when so. */
  #withinRate(uid: number): boolean {
    const now = performance.now();
    const times = (this.#recent.get(uid) ?? []).filter((t) => now - t < 1000);
    if (times.length >= this.#o.config().requestsPerSecond) {
      this.#recent.set(uid, times);
      return false;
    }
    times.push(now);
    this.#recent.set(uid, times);
    return true;
  }

  /** Drops the records of ports that vhci has freed or given to someone else since. */
  async #prune(): Promise<void> {
    if (this.#attachments.size === 0) return;
    let ports;
    try {
      ports = await readVhciPorts(this.#o.sysfsRoot ?? "/sys");
    } catch {
      return;
    }
    for (const [port, a] of this.#attachments) {
      if (!stillAttached(ports, { port, devid: a.devid, sockfd: a.sockfd })) {
        this.#attachments.delete(port);
      }
    }
  }

  /** Whether `[attach] remotes` lets a remote attach reach `host`. */
  #remoteListed(host: string): boolean {
    const literal = host.replace(/^\[|\]$/g, "");
    const isAddress = parseAddress(literal) !== undefined;
    return this.#o.config().remotes.some((r) =>
      isAddress
        ? r.cidr !== undefined && cidrContains(r.cidr, literal)
        : r.host === host.toLowerCase()
    );
  }

  /** Who lets `peer` attach a `kind`, or why nobody does. */
  async #authorize(
    kind: AttachKind,
    peer: PeerInfo,
    details: PolkitDetails,
    startTime: number | undefined,
  ): Promise<{ authority: Authority } | { refused: string }> {
    const uid = peer.uid!;
    if (uid === 0) return { authority: "root" };
    const atConsole = uid === this.#o.consoleUid();
    if (
      atConsole &&
      (kind === "local" || (kind === "stream" && this.#o.config().streams === "console"))
    ) {
      return { authority: "console" };
    }
    if (peer.pid === undefined) return { refused: "the requester's pid is unknown to ask polkit" };
    const subject = { pid: peer.pid, uid, ...(startTime !== undefined ? { startTime } : {}) };
    const polkit = await this.#o.polkit(ATTACH_ACTIONS[kind], subject, details);
    if (polkit.authorized) return { authority: "polkit" };
    const who = kind === "local" && !atConsole ? `uid ${uid} is not the console user, and ` : "";
    return { refused: `${who}polkit says no to ${ATTACH_ACTIONS[kind]}: ${polkit.reason}` };
  }

  /**
   * Attaches what `request` names into this kernel for `peer`, if it may; `conn` carries the
   * socket of a stream attach. Never throws: every refusal and failure is an answer with a
   * reason, and an audit line.
   */
  async attach(
    request: AttachRequest,
    peer: PeerInfo,
    _conn: Connection,
    requestSocket: SocketRequest,
  ): Promise<AttachAnswer> {
    const who = describePeer(peer);
    const what = request.kind === "remote"
      ? `${request.busid} of ${request.host}:${request.port || USBIP_PORT}`
      : request.kind === "stream"
      ? `${request.busid} of a stream`
      : request.busid;
    const refuse = (status: number, message: string): AttachAnswer => {
      audit.info("Attach of {what} ({kind}) for {peer} refused: {reason}", {
        what,
        kind: request.kind,
        peer: who,
        reason: message,
      });
      return answer(status, message);
    };
    if (peer.transport !== "unix" || peer.uid === undefined) {
      return refuse(OpStatus.ST_NA, "only a local user over the unix socket may attach");
    }
    const uid = peer.uid;
    const config = this.#o.config();
    if (!this.#withinRate(uid)) {
      return refuse(
        OpStatus.ST_ERROR,
        `too many requests from uid ${uid}: at most ${config.requestsPerSecond} per second ([attach] requests_per_second)`,
      );
    }
    await this.#prune();
    // Counted with the attaches of this uid still under way: requests sent at once must not
    // all pass this check before the first of them is done.
    const held = [...this.#attachments.values()].filter((a) => a.uid === uid).length +
      (this.#underWay.get(uid) ?? 0);
    if (uid !== 0 && held >= config.maxPerUser) {
      return refuse(
        OpStatus.ST_ERROR,
        `uid ${uid} holds or is attaching ${held} port(s) through the gateway, the most allowed ([attach] max_per_user); detach one first`,
      );
    }
    this.#underWay.set(uid, (this.#underWay.get(uid) ?? 0) + 1);
    try {
      return await this.#attachHeld(request, peer, requestSocket, { what, refuse, config });
    } finally {
      const left = this.#underWay.get(uid)! - 1;
      if (left === 0) this.#underWay.delete(uid);
      else this.#underWay.set(uid, left);
    }
  }

  /** The rest of {@linkcode attach}, once the request counts against `max_per_user`. */
  async #attachHeld(
    request: AttachRequest,
    peer: PeerInfo,
    requestSocket: SocketRequest,
    { what, refuse, config }: {
      what: string;
      refuse: (status: number, message: string) => AttachAnswer;
      config: AttachConfig;
    },
  ): Promise<AttachAnswer> {
    const uid = peer.uid!;
    const who = describePeer(peer);
    if (request.kind === "remote" && !this.#remoteListed(request.host ?? "")) {
      return refuse(
        OpStatus.ST_NA,
        `${request.host} is not a server the configuration lets users attach from ([attach] remotes)`,
      );
    }
    if (request.kind === "stream" && !config.streams) {
      return refuse(
        OpStatus.ST_NA,
        "attaching a stream of one's own is off ([attach] streams = false)",
      );
    }
    const local = request.kind === "local"
      ? this.#o.server.devices.find((d) => d.busid === request.busid)
      : undefined;
    if (request.kind === "local" && local === undefined) {
      return refuse(OpStatus.ST_NODEV, `this gateway exports no device ${request.busid}`);
    }
    const details: { busid: string; vid_pid?: string; remote?: string } = {
      busid: request.busid,
    };
    if (local !== undefined) {
      const s = local.device.summary();
      const hex = (n: number) => n.toString(16).padStart(4, "0");
      details.vid_pid = `${hex(s.idVendor)}:${hex(s.idProduct)}`;
    }
    if (request.kind === "remote") details.remote = `${request.host}:${request.port || USBIP_PORT}`;
    // Read now, while the requester waits for the answer: polkit then judges this process.
    const startTime = peer.pid === undefined ? undefined : await readProcessStartTime(peer.pid);
    const decision = await this.#authorize(request.kind, peer, details, startTime);
    if ("refused" in decision) return refuse(OpStatus.ST_NA, decision.refused);
    if (local !== undefined) {
      const rule = this.#o.policy.decide(peer, deviceFacts(local));
      if (rule.effect === "deny") return refuse(OpStatus.ST_NA, rule.reason);
    }
    let result: AttachResult;
    try {
      result = await this.#act(request, peer, requestSocket);
    } catch (e) {
      const status = e instanceof ImportRefusedError ? e.status : OpStatus.ST_ERROR;
      const message = e instanceof VhciMissingError
        ? "vhci-hcd is not loaded on this machine (modprobe vhci-hcd)"
        : e instanceof Error
        ? e.message
        : String(e);
      return refuse(status, message);
    }
    const attachment: Attachment = {
      vhciPort: result.port,
      uid,
      ...(peer.pid !== undefined ? { pid: peer.pid } : {}),
      ...(startTime !== undefined ? { startTime } : {}),
      details,
      kind: request.kind,
      busid: request.busid,
      ...(request.kind === "remote" ? { remote: details.remote! } : {}),
      authority: decision.authority,
      since: new Date().toISOString(),
      devid: result.devid,
      sockfd: result.sockfd,
    };
    this.#attachments.set(result.port, attachment);
    audit.info(
      "Attached {what} ({kind}) for {peer} on vhci port {port}, allowed as {authority}",
      { what, kind: request.kind, peer: who, port: result.port, authority: decision.authority },
    );
    return answer(OpStatus.ST_OK, `attached ${what} on vhci port ${result.port}`, result.port);
  }

  /** Does the attach itself, by kind. */
  async #act(
    request: AttachRequest,
    peer: PeerInfo,
    requestSocket: SocketRequest,
  ): Promise<AttachResult> {
    const vhci = {
      busid: request.busid,
      ...(this.#o.sysfsRoot !== undefined ? { sysfsRoot: this.#o.sysfsRoot } : {}),
      ...(this.#o.stateDir !== undefined ? { stateDir: this.#o.stateDir } : {}),
      ...(this.#o.writeAttribute !== undefined ? { writeAttribute: this.#o.writeAttribute } : {}),
    };
    if (request.kind === "remote") {
      const remote: RemoteAddress = {
        transport: "tcp",
        host: request.host,
        port: request.port || USBIP_PORT,
      };
      return await attachDevice({ ...vhci, remote });
    }
    if (request.kind === "stream") {
      const sock = await this.#o.plumbing.receiveStream(requestSocket);
      try {
        return await attachOverSocket(sock, {
          ...vhci,
          remote: { transport: "unix", path: `uid-${peer.uid}-stream` },
        });
      } finally {
        sock.close();
      }
    }
    // Local: the vhci port record names the gateway's socket, as an attach over it would.
    const { session, kernel } = this.#o.plumbing.localPair(peer);
    const served = this.#o.server.accept(session);
    try {
      return await attachOverSocket(kernel, {
        ...vhci,
        remote: { transport: "unix", path: this.#o.socketPath },
      });
    } catch (e) {
      session.close();
      await served;
      throw e;
    } finally {
      kernel.close();
    }
  }

  /**
   * Detaches `vhciPort` for `peer`: root any port, anyone else only a port the gateway attached
   * for them. Never throws.
   */
  async detach(vhciPort: number, peer: PeerInfo): Promise<DetachAnswer> {
    const who = describePeer(peer);
    const uid = peer.uid;
    if (peer.transport !== "unix" || uid === undefined) {
      return answer(OpStatus.ST_NA, "only a local user over the unix socket may detach");
    }
    if (!this.#withinRate(uid)) {
      return answer(OpStatus.ST_ERROR, `too many requests from uid ${uid}`);
    }
    await this.#prune();
    const a = this.#attachments.get(vhciPort);
    if (uid !== 0 && a?.uid !== uid) {
      const message = `vhci port ${vhciPort} was not attached for uid ${uid}`;
      audit.info("Detach of vhci port {port} by {peer} refused: {reason}", {
        port: vhciPort,
        peer: who,
        reason: message,
      });
      return answer(OpStatus.ST_NA, message);
    }
    try {
      await this.#detach(vhciPort);
    } catch (e) {
      return answer(OpStatus.ST_ERROR, errorMessage(e));
    }
    audit.info("Detached vhci port {port} for {peer}", { port: vhciPort, peer: who });
    return answer(OpStatus.ST_OK, `detached vhci port ${vhciPort}`, vhciPort);
  }

  async #detach(vhciPort: number, waitMs?: number): Promise<void> {
    this.#attachments.delete(vhciPort);
    await detachPort(vhciPort, {
      ...(this.#o.sysfsRoot !== undefined ? { sysfsRoot: this.#o.sysfsRoot } : {}),
      ...(this.#o.stateDir !== undefined ? { stateDir: this.#o.stateDir } : {}),
      ...(this.#o.writeAttribute !== undefined ? { writeAttribute: this.#o.writeAttribute } : {}),
      ...(waitMs !== undefined ? { waitMs } : {}),
    });
  }

  /**
   * Takes back every port whose user is no longer entitled to it: the console user's ports
   * once someone else is at the console (or nobody), polkit's when polkit says no again. Root's
   * stay. Detaches without waiting for the kernel to free the ports, and logs each.
   */
  async revoke(why: string): Promise<void> {
    await this.#prune();
    log.debug("Checking {count} port(s) attached for users: {why}", {
      count: this.#attachments.size,
      why,
      ports: [...this.#attachments.values()],
    });
    // Why each port goes, if it does: decided for all ports at once (polkit asked in parallel).
    const verdicts = await Promise.all(
      [...this.#attachments.values()].map(async (a): Promise<[Attachment, string | undefined]> => {
        if (a.authority === "console") {
          return [
            a,
            a.uid === this.#o.consoleUid()
              ? undefined
              : `uid ${a.uid} is no longer the console user (${why})`,
          ];
        }
        if (a.authority !== "polkit") return [a, undefined];
        if (a.pid === undefined) return [a, `polkit cannot be asked again (${why}): no pid`];
        const subject = {
          pid: a.pid,
          uid: a.uid,
          ...(a.startTime !== undefined ? { startTime: a.startTime } : {}),
        };
        const polkit = await this.#o.polkit(ATTACH_ACTIONS[a.kind], subject, a.details);
        return [a, polkit.authorized ? undefined : `polkit says no now (${why}): ${polkit.reason}`];
      }),
    );
    const jobs: Promise<void>[] = [];
    for (const [a, reason] of verdicts) {
      if (reason === undefined) continue;
      jobs.push(
        this.#detach(a.vhciPort, 0).then(
          () =>
            audit.info("Took back vhci port {port} of uid {uid}: {reason}", {
              port: a.vhciPort,
              uid: a.uid,
              reason,
            }),
          (e) =>
            log.error("Cannot take back vhci port {port} of uid {uid}: {error}", {
              port: a.vhciPort,
              uid: a.uid,
              error: errorMessage(e),
            }),
        ),
      );
    }
    await Promise.all(jobs);
  }

  /**
   * At shutdown: detaches the ports attached for users that outlive the gateway (remote and
   * stream attaches; local ones end with their sessions), since nobody could take them back.
   */
  async close(): Promise<void> {
    await this.#prune();
    await Promise.all(
      [...this.#attachments.values()].filter((a) => a.kind !== "local").map((a) =>
        this.#detach(a.vhciPort, 0).catch(() => {})
      ),
    );
    this.#attachments.clear();
  }
}
