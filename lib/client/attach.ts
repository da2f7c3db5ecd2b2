/**
 * Attaching a remote device to this machine's kernel, as `usbip attach` does
 * (tools/usb/usbip/src/usbip_attach.c): connect, OP_REQ_IMPORT, then hand the connected socket
 * to vhci_hcd with `"port sockfd devid speed"`; detaching a port; listing what is attached.
 * TCP connections get TCP_NODELAY and, unless turned off, keep-alive with a short dead-peer
 * timeout, so that vhci frees the port of a server that vanished without a FIN.
 *
 * @module
 */

import { errorMessage } from "../util/error_message.ts";
import { getLogger } from "../logtape.ts";
import { OpCode, OpStatus, Speed, WireSize } from "../protocol/constants.ts";
import {
  decodeDeviceRecord,
  decodeOpHeader,
  encodeOpReqImport,
  type UsbipDeviceRecord,
} from "../protocol/op_messages.ts";
import { UsbipProtocolError } from "../protocol/protocol_error.ts";
import { ImportRefusedError } from "./usbip_client.ts";
import { Errno } from "./_libc_socket.ts";
import {
  connectErrorFor,
  DEFAULT_DEAD_PEER_TIMEOUT_S,
  FdSocket,
  formatRemote,
  keepaliveFor,
  type KeepaliveOptions,
  OsError,
  type RemoteAddress,
} from "./fd_socket.ts";
import {
  type AttributeWriter,
  chooseFreePort,
  hubForSpeed,
  type PortRecord,
  readPortRecord,
  readVhciPorts,
  removePortRecord,
  VdevStatus,
  VHCI_STATE_DIR,
  type VhciHub,
  type VhciPort,
  writeAttribute,
  writePortRecord,
  writeVhciAttach,
  writeVhciDetach,
} from "./vhci.ts";
import { connectTls, startRelay, TlsClientError, type TlsRelayControl } from "./tls_client.ts";
import type { TlsCredentialFiles } from "../transport/tls.ts";
import { KtlsSession, ktlsUnavailableReason } from "../ffi/libssl.ts";

const log = getLogger(["usbipgw", "client"]);

export { ImportRefusedError } from "./usbip_client.ts";
export { VhciMissingError } from "./vhci.ts";

/** Why an attach or detach failed, for exit codes and retry decisions. */
export type ClientErrorReason =
  | "connect"
  | "protocol"
  | "no_free_port"
  | "attach_failed"
  | "no_such_port"
  | "port_free"
  | "detach_failed"
  /** The TLS handshake failed, or the server's certificate does not verify. */
  | "tls";

/**
 * A client-side failure that is not the server's refusal nor a missing vhci_hcd. A server
 * that cannot be reached is reason `connect` with the message of the `ConnectError`
 * (lib/transport) that `connectTcp` and `connectUnix` would throw, which is its `cause`.
 */
export class ClientError extends Error {
  /** What failed, for exit codes and retry decisions. */
  readonly reason: ClientErrorReason;
  /** The errno behind it, when a system call failed. */
  readonly errno: number | undefined;
  /** Builds the error. */
  constructor(reason: ClientErrorReason, message: string, errno?: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "ClientError";
    this.reason = reason;
    this.errno = errno;
  }
}

/** What {@linkcode attachDevice} needs. */
export interface AttachOptions {
  /** The USB/IP server: a TCP host and port, or a unix socket's path. */
  remote: RemoteAddress;
  /** The bus id of the device to import from that server, e.g. `1-1`. */
  busid: string;
  /** The sysfs mount (default `/sys`); tests point it at a folder of plain files. */
  sysfsRoot?: string;
  /** Where the port record goes (default `/var/run/vhci_hcd`); null writes none. */
  stateDir?: string | null;
  /**
   * TCP only: seconds after which a silent server is declared dead (keep-alive probes and
   * TCP_USER_TIMEOUT); 0 keeps the kernel's defaults (plain SO_KEEPALIVE, 2 h). Default 10.
   */
  deadPeerTimeoutS?: number;
  /** Time limit of the connect and of the import handshake, each (default 10000 ms). */
  timeoutMs?: number;
  /** Aborts the connect, and the import handshake unless kernel TLS carries it. */
  signal?: AbortSignal;
  /** The sysfs attribute writer (tests substitute one). */
  writeAttribute?: AttributeWriter;
  /** TCP only: USB/IP over TLS with these files, into vhci as {@linkcode AttachTls} says. */
  tls?: AttachTls;
}

/**
 * How `attach` speaks TLS: the client certificate, its key and the CAs that verify the server,
 * and the way into vhci. `auto` tries kernel TLS and falls back to the relay, with a log line,
 * when the kernel's `tls` module or libssl's kTLS is missing; `ktls` makes that an error;
 * `relay` goes straight to the relay.
 */
export interface AttachTls extends TlsCredentialFiles {
  /** Kernel TLS with the relay as fallback (`auto`), kernel TLS only, or the relay only. */
  mode: "auto" | "ktls" | "relay";
  /** The name the server's certificate must carry (default: the host of `remote`). */
  serverName?: string;
}

/** A device attached to a vhci port. */
export interface AttachResult {
  /** The vhci port the device is attached to, as {@linkcode detachPort} takes it. */
  port: number;
  /** The vhci root hub of that port: `hs` up to high speed, `ss` for SuperSpeed. */
  hub: VhciHub;
  /** `busnum << 16 | devnum` on the server, as vhci's status shows it. */
  devid: number;
  /** The speed written to vhci. */
  speed: number;
  /** The fd number written to vhci (now closed in this process; vhci's status shows it). */
  sockfd: number;
  /** The record the server sent in OP_REP_IMPORT. */
  device: UsbipDeviceRecord;
  /** The server, as the options named it. */
  remote: RemoteAddress;
  /** The port record written, if any. */
  record: PortRecord | undefined;
  /** Why no port record was written although one was asked for. */
  recordError?: string;
  /**
   * What vhci reads: the server's socket itself (`tcp`, `unix`), that socket with the kernel
   * doing TLS (`ktls`), or a socketpair that this process relays to a TLS connection (`relay`).
   */
  channel: "tcp" | "unix" | "ktls" | "relay";
  /** The relay, when `channel` is `relay`: it must run as long as the device is attached. */
  relay?: TlsRelayControl;
}

/** The port record for `remote` and `busid`: the usbip tool's `host service busid`. */
export function recordFor(remote: RemoteAddress, busid: string): PortRecord {
  return remote.transport === "unix"
    ? { host: `unix:${remote.path}`, service: "-", busid }
    : { host: remote.host, service: String(remote.port), busid };
}

/**
 * What an import runs over: a socket this process owns ({@linkcode FdSocket}), or a TLS session
 * over one (lib/ffi `KtlsSession`, whose keys the kernel holds afterwards).
 */
export interface ImportStream {
  /** What it is connected to, for messages (or `where` of the import's options). */
  readonly remote?: RemoteAddress;
  writeAll(
    bytes: Uint8Array,
    options?: { timeoutMs?: number; signal?: AbortSignal },
  ): Promise<void>;
  readExactly(
    length: number,
    options?: { timeoutMs?: number; signal?: AbortSignal },
  ): Promise<Uint8Array>;
}

/**
 * OP_REQ_IMPORT over a socket this process owns, reading exactly the reply and nothing of
 * what follows (the URB phase belongs to the kernel).
 *
 * @throws {ImportRefusedError} When the server answers a non-zero status.
 * @throws {ClientError} reason "protocol" for a malformed reply or another busid.
 */
export async function importOverSocket(
  sock: ImportStream,
  busid: string,
  options: { timeoutMs?: number; signal?: AbortSignal; where?: string } = {},
): Promise<UsbipDeviceRecord> {
  const where = options.where ?? (sock.remote ? formatRemote(sock.remote) : "the server");
  try {
    await sock.writeAll(encodeOpReqImport(busid), options);
    const header = decodeOpHeader(await sock.readExactly(WireSize.OP_HEADER, options));
    if (header.code !== OpCode.OP_REP_IMPORT) {
      throw new ClientError(
        "protocol",
        `Cannot import ${busid} from ${where}: the reply's code is 0x${
          header.code.toString(16).padStart(4, "0")
        }, expected OP_REP_IMPORT 0x0003`,
      );
    }
    if (header.status !== OpStatus.ST_OK) throw new ImportRefusedError(busid, header.status);
    const device = decodeDeviceRecord(await sock.readExactly(WireSize.DEVICE_RECORD, options));
    if (device.busid !== busid) {
      throw new ClientError(
        "protocol",
        `Cannot import ${busid} from ${where}: the server answered for ${device.busid}`,
      );
    }
    return device;
  } catch (e) {
    if (e instanceof UsbipProtocolError) {
      throw new ClientError("protocol", `Cannot import ${busid} from ${where}: ${e.message}`);
    }
    if (e instanceof Deno.errors.UnexpectedEof) {
      throw new ClientError("protocol", `Cannot import ${busid}: ${e.message}`, undefined, {
        cause: e,
      });
    }
    if (e instanceof OsError) {
      throw new ClientError("connect", `Cannot import ${busid}: ${e.message}`, e.errno, {
        cause: e,
      });
    }
    throw e;
  }
}

/** The speed vhci accepts for a device of `speed`; vhci has no SuperSpeed Plus hub. */
function vhciSpeed(speed: number, busid: string): number {
  if (speed === Speed.SUPER_PLUS) return Speed.SUPER;
  if (speed < Speed.LOW || speed > Speed.SUPER) {
    throw new ClientError(
      "protocol",
      `Cannot attach ${busid}: the server reports speed ${speed}, which vhci_hcd cannot take`,
    );
  }
  return speed;
}

/**
 * Imports `busid` from the server and attaches it to a free vhci port of the right hub.
 * Another process taking the chosen port first (EBUSY) makes it try the next free one.
 *
 * @throws {VhciMissingError} When vhci_hcd is not loaded (checked before connecting).
 * @throws {ImportRefusedError} When the server refuses (busy, no such device, policy).
 * @throws {ClientError} connect, protocol, no_free_port or attach_failed.
 */
export async function attachDevice(o: AttachOptions): Promise<AttachResult> {
  // Fails early, before the server hands the device to a connection vhci cannot take.
  await readVhciPorts(o.sysfsRoot ?? "/sys");
  if (o.tls) {
    if (o.remote.transport !== "tcp") throw new TypeError("TLS needs a TCP server address");
    return await attachOverTls({ ...o, remote: o.remote, tls: o.tls });
  }
  const sock = await connectTo(o);
  try {
    return await attachOverSocket(sock, o);
  } finally {
    // vhci holds its own reference to the socket; the usbip tool closes its fd the same way.
    sock.close();
  }
}

/** The keep-alive of a TCP connection to the server, from `deadPeerTimeoutS`. */
function keepaliveOf(o: AttachOptions): KeepaliveOptions | undefined {
  const timeout = o.deadPeerTimeoutS ?? DEFAULT_DEAD_PEER_TIMEOUT_S;
  return timeout > 0 ? keepaliveFor(timeout) : undefined;
}

/** Connects to the server, with TCP_NODELAY and keep-alive for TCP. */
async function connectTo(o: AttachOptions): Promise<FdSocket> {
  const wait = { timeoutMs: o.timeoutMs ?? 10000, ...(o.signal ? { signal: o.signal } : {}) };
  let sock: FdSocket;
  try {
    sock = await FdSocket.connect(o.remote, wait);
  } catch (e) {
    throw connectFailure(o.remote, e);
  }
  try {
    if (o.remote.transport === "tcp") sock.setTcpOptions(keepaliveOf(o));
  } catch (e) {
    sock.close();
    throw e;
  }
  return sock;
}

/** A ClientError "connect" for a connect that failed with an OsError; others as they are. */
function connectFailure(remote: RemoteAddress, e: unknown): unknown {
  if (!(e instanceof OsError)) return e;
  const cause = connectErrorFor(remote, e);
  return new ClientError("connect", cause.message, e.errno, { cause });
}

type TlsAttachOptions = AttachOptions & {
  remote: { transport: "tcp"; host: string; port: number };
  tls: AttachTls;
};

/**
 * USB/IP over TLS into vhci: kernel TLS where it works (the kernel then holds the session and
 * no process stays), else a relay in this process ({@linkcode AttachTls}).
 */
async function attachOverTls(o: TlsAttachOptions): Promise<AttachResult> {
  if (o.tls.mode !== "relay") {
    const attached = await attachOverKtls(o);
    if (typeof attached !== "string") return attached;
    if (o.tls.mode === "ktls") {
      throw new ClientError("tls", `Cannot attach ${o.busid} with kernel TLS: ${attached}`);
    }
    log.info("Kernel TLS is not available ({reason}); relaying through this process", {
      reason: attached,
    });
  }
  const where = formatRemote(o.remote);
  let socket;
  try {
    socket = await connectTls({
      ...o.tls,
      host: o.remote.host,
      port: o.remote.port,
      keepalive: keepaliveOf(o),
      ...(o.tls.serverName ? { serverName: o.tls.serverName } : {}),
      timeoutMs: o.timeoutMs ?? 10000,
      ...(o.signal ? { signal: o.signal } : {}),
    });
  } catch (e) {
    throw tlsFailure(o.remote, e);
  }
  const relay = startRelay(socket, where);
  try {
    const r = await attachOverSocket(relay.kernel, { ...o, remote: o.remote });
    return { ...r, channel: "relay", relay: { ended: relay.ended, stop: relay.stop } };
  } catch (e) {
    relay.stop();
    throw eofAfterHandshake(o, e);
  } finally {
    relay.kernel.close();
  }
}

/**
 * Attaches with kernel TLS: the handshake and the import through libssl with kTLS on, then the
 * socket itself to vhci. Returns why not, without importing anything, when libssl or the kernel
 * cannot do it.
 */
async function attachOverKtls(o: TlsAttachOptions): Promise<AttachResult | string> {
  const sock = await connectTo(o);
  let session: KtlsSession;
  try {
    sock.setBlocking();
    session = await KtlsSession.connect(sock.fd, {
      certFile: o.tls.certFile,
      keyFile: o.tls.keyFile,
      caFile: o.tls.caFile,
      serverName: o.tls.serverName ?? o.remote.host,
      timeoutMs: o.timeoutMs ?? 10000,
    });
  } catch (e) {
    sock.close();
    // No libssl.so.3 (or one that refuses a setting): the relay needs none.
    if (e instanceof TlsClientError && e.reason === "library") return e.message;
    throw tlsFailure(o.remote, e);
  }
  try {
    const on = session.ktls();
    if (!on.send || !on.recv) {
      session.close();
      return ktlsUnavailableReason() ??
        `libssl did not hand the keys to the kernel (send ${on.send ? "on" : "off"}, receive ${
          on.recv ? "on" : "off"
        })`;
    }
    const where = formatRemote(o.remote);
    const device = await importOverSocket(session, o.busid, {
      where,
      timeoutMs: o.timeoutMs ?? 10000,
    });
    // vhci reads records of application data only: nothing may wait in libssl's buffer.
    if (session.pending() !== 0) {
      throw new ClientError(
        "protocol",
        `Cannot attach ${o.busid}: ${where} sent more than the reply to OP_REQ_IMPORT`,
      );
    }
    const r = await attachImported(sock, device, o);
    // The kernel holds the session now: no close_notify, and the fd goes as the usbip tool's.
    session.release();
    return { ...r, channel: "ktls" };
  } catch (e) {
    session.close();
    throw eofAfterHandshake(o, e);
  } finally {
    sock.close();
  }
}

/** A TLS failure as the ClientError of an attach (exit code 3, as a server not reached). */
function tlsFailure(remote: RemoteAddress, e: unknown): unknown {
  if (e instanceof TlsClientError) {
    return new ClientError("tls", e.message, undefined, { cause: e });
  }
  return connectFailure(remote, e);
}

/**
 * In TLS 1.3 the client's handshake ends before the server has checked the client's certificate:
 * a server that refuses it closes the connection then, and the import fails reading.
 */
function eofAfterHandshake(o: TlsAttachOptions, e: unknown): unknown {
  // Through the relay, the server's close reaches vhci's end as an end of stream, or as a reset
  // when the relay had not read the import request yet (unix(7) resets a peer's unread data).
  const closed = e instanceof ClientError &&
    (e.cause instanceof Deno.errors.UnexpectedEof || e.errno === Errno.ECONNRESET);
  if (!closed) return e;
  return new ClientError(
    "tls",
    `${e.message} (the server closed the TLS connection: does it accept the certificate ${o.tls.certFile}?)`,
    undefined,
    { cause: e },
  );
}

/**
 * Imports `o.busid` over `sock`, a socket this process owns and has not read from (connected
 * here, or handed over), then attaches it to a free vhci port; `o.remote` names the server in
 * the port record. The caller closes `sock` afterwards: vhci holds its own reference.
 *
 * @throws {ImportRefusedError} When the server refuses (busy, no such device, policy).
 * @throws {ClientError} protocol, no_free_port or attach_failed.
 */
export async function attachOverSocket(
  sock: FdSocket,
  o: Omit<AttachOptions, "deadPeerTimeoutS">,
): Promise<AttachResult> {
  const wait = { timeoutMs: o.timeoutMs ?? 10000, ...(o.signal ? { signal: o.signal } : {}) };
  const device = await importOverSocket(sock, o.busid, wait);
  return await attachImported(sock, device, o);
}

/**
 * Attaches `device`, imported over `sock` already, to a free vhci port (see
 * {@linkcode attachOverSocket}).
 */
async function attachImported(
  sock: FdSocket,
  device: UsbipDeviceRecord,
  o: Omit<AttachOptions, "deadPeerTimeoutS">,
): Promise<AttachResult> {
  const sysfsRoot = o.sysfsRoot ?? "/sys";
  const write = o.writeAttribute ?? writeAttribute;
  const speed = vhciSpeed(device.speed, o.busid);
  const devid = ((device.busnum & 0xffff) << 16 | (device.devnum & 0xffff)) >>> 0;
  sock.setBlocking();
  const tried = new Set<number>();
  while (true) {
    const free = chooseFreePort(await readVhciPorts(sysfsRoot), speed, tried);
    if (free === undefined) {
      const hub = hubForSpeed(speed) === "ss" ? "SuperSpeed" : "high-speed";
      throw new ClientError(
        "no_free_port",
        `Cannot attach ${o.busid}: no free ${hub} port on vhci_hcd` +
          (tried.size > 0 ? ` (ports ${[...tried].join(", ")} were taken meanwhile)` : "") +
          `; detach one ("usbipgw port" lists them) or load vhci-hcd with more controllers (nr_hcs=N)`,
      );
    }
    tried.add(free.port);
    try {
      writeVhciAttach({ port: free.port, sockfd: sock.fd, devid, speed }, sysfsRoot, write);
    } catch (e) {
      const errno = (e as { errno?: number }).errno;
      // EBUSY: another attach took the port between the status read and the write.
      if (errno === Errno.EBUSY) continue;
      const hint = errno === Errno.EACCES || errno === Errno.EPERM
        ? " (attaching needs root)"
        : errno === Errno.EINVAL
        ? " (the kernel log says why: dmesg)"
        : "";
      throw new ClientError(
        "attach_failed",
        `Cannot attach ${o.busid} to vhci port ${free.port}: ${errorMessage(e)}${hint}`,
        errno,
      );
    }
    const result: AttachResult = {
      port: free.port,
      hub: free.hub,
      devid,
      speed,
      sockfd: sock.fd,
      device,
      remote: o.remote,
      record: undefined,
      channel: o.remote.transport,
    };
    const stateDir = o.stateDir === undefined ? VHCI_STATE_DIR : o.stateDir;
    if (stateDir !== null) {
      const record = recordFor(o.remote, o.busid);
      try {
        await writePortRecord(stateDir, free.port, record);
        result.record = record;
      } catch (e) {
        result.recordError = `Cannot record port ${free.port} in ${stateDir}: ${errorMessage(e)}`;
      }
    }
    return result;
  }
}

/** Options of {@linkcode detachPort} and {@linkcode listAttached}. */
export interface VhciOptions {
  /** The sysfs mount (default `/sys`); tests point it at a folder of plain files. */
  sysfsRoot?: string;
  /** The record folder (default `/var/run/vhci_hcd`); null: none. */
  stateDir?: string | null;
  /** The sysfs attribute writer, for `detach` (tests substitute one). */
  writeAttribute?: AttributeWriter;
}

/**
 * Detaches `port`: writes it to vhci's `detach` and removes its record. Resolves once the
 * port shows free, or after `waitMs` (default 5000) with `freed: false`.
 *
 * @throws {VhciMissingError} When vhci_hcd is not loaded.
 * @throws {ClientError} no_such_port, port_free, detach_failed.
 */
export async function detachPort(
  port: number,
  o: VhciOptions & { waitMs?: number } = {},
): Promise<{ freed: boolean }> {
  const sysfsRoot = o.sysfsRoot ?? "/sys";
  const ports = await readVhciPorts(sysfsRoot);
  const p = ports.find((x) => x.port === port);
  if (p === undefined) {
    const last = ports.at(-1)?.port ?? -1;
    throw new ClientError(
      "no_such_port",
      `Cannot detach port ${port}: vhci_hcd has ports 0 to ${last}`,
    );
  }
  const stateDir = o.stateDir === undefined ? VHCI_STATE_DIR : o.stateDir;
  if (p.status === VdevStatus.VDEV_ST_NULL) {
    if (stateDir !== null) await removePortRecord(stateDir, port);
    throw new ClientError("port_free", `Cannot detach port ${port}: it is free (nothing attached)`);
  }
  try {
    writeVhciDetach(port, sysfsRoot, o.writeAttribute ?? writeAttribute);
  } catch (e) {
    const errno = (e as { errno?: number }).errno;
    throw new ClientError(
      errno === Errno.EINVAL ? "port_free" : "detach_failed",
      `Cannot detach port ${port}: ${errorMessage(e)}${
        errno === Errno.EACCES || errno === Errno.EPERM ? " (detaching needs root)" : ""
      }`,
      errno,
    );
  }
  if (stateDir !== null) await removePortRecord(stateDir, port);
  const deadline = performance.now() + (o.waitMs ?? 5000);
  while (true) {
    const now = (await readVhciPorts(sysfsRoot)).find((x) => x.port === port);
    if (now?.status === VdevStatus.VDEV_ST_NULL) return { freed: true };
    if (performance.now() >= deadline) return { freed: false };
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A port that is not free, with what is known about its device. */
export interface AttachedPort extends VhciPort {
  /** The port record (usbip tool or usbipgw), if there is one. */
  record: PortRecord | undefined;
  /** `idVendor` of the local device, when sysfs has it (and `idProduct`). */
  idVendor?: number;
  /** `idProduct` of the local device, when sysfs has it (and `idVendor`). */
  idProduct?: number;
  /** The local device's product string, when it has one. */
  product?: string;
}

async function readHex(path: string): Promise<number | undefined> {
  try {
    const t = (await Deno.readTextFile(path)).trim();
    return /^[0-9a-fA-F]{1,4}$/.test(t) ? parseInt(t, 16) : undefined;
  } catch {
    return undefined;
  }
}

/** The ports in use (any state but free), with their records and local device ids. */
export async function listAttached(o: VhciOptions = {}): Promise<AttachedPort[]> {
  const sysfsRoot = o.sysfsRoot ?? "/sys";
  const stateDir = o.stateDir === undefined ? VHCI_STATE_DIR : o.stateDir;
  const out: AttachedPort[] = [];
  for (const p of await readVhciPorts(sysfsRoot)) {
    if (p.status === VdevStatus.VDEV_ST_NULL) continue;
    const a: AttachedPort = {
      ...p,
      record: stateDir === null ? undefined : await readPortRecord(stateDir, p.port),
    };
    if (p.localBusid !== null && /^[0-9.-]+$/.test(p.localBusid)) {
      const dev = `${sysfsRoot}/bus/usb/devices/${p.localBusid}`;
      const vid = await readHex(`${dev}/idVendor`);
      const pid = await readHex(`${dev}/idProduct`);
      if (vid !== undefined && pid !== undefined) {
        a.idVendor = vid;
        a.idProduct = pid;
      }
      try {
        a.product = (await Deno.readTextFile(`${dev}/product`)).trim();
      } catch {
        // No product string.
      }
    }
    out.push(a);
  }
  return out;
}
