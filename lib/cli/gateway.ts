/**
 * The running gateway that `usbipgw serve` starts: creates the configured devices, listeners
 * and access policy, serves until told to stop, then closes every session and back-end. Unix sockets without an explicit owner
 * follow the console user the way udev's `uaccess` tag hands device nodes to the active seat
 * user: owned by that user with mode 0600, re-owned at a seat switch, and the previous user's
 * unix sessions closed.
 *
 * @module
 */

import { errorMessage } from "../util/error_message.ts";
import { getLogger } from "../logtape.ts";
import { DEFAULT_LIMITS } from "../protocol/constants.ts";
import { RulePolicy, tcpReachability, tlsReachability } from "../policy/rules.ts";
import { SeatWatcher } from "../policy/seat.ts";
import { type HostDeviceHandler, UsbipServer } from "../server/server.ts";
import { DEFAULT_SESSION_LIMITS } from "../server/session_limits.ts";
import { deviceFacts } from "../server/exported_device.ts";
import {
  type Connection,
  describePeer,
  type Listener,
  TcpListener,
  UnixListener,
} from "../transport/mod.ts";
import { type DeviceConfig, formatAddress, type GatewayConfig } from "./config.ts";
import { TlsListener } from "../transport/tls.ts";
import { createDevice } from "../devices/registry.ts";
import type { HostTypeOptions } from "../devices/types/host.ts";
import { HostDeviceWatcher } from "../devices/passthrough/host_watcher.ts";
import { UsbfsDevice } from "../devices/passthrough/usbfs_device.ts";
import { findHostDevice } from "../devices/passthrough/host_devices.ts";
import { type AttachPlumbing, AttachService } from "./attach_service.ts";
import { checkAuthorization, type CheckAuthorizationOptions } from "../policy/polkit.ts";
import { socketPair } from "../ffi/socket_pair.ts";
import { closeFd } from "../ffi/fd.ts";
import { wrapSocketFd } from "../transport/unix.ts";
import { FdSocket } from "../client/fd_socket.ts";
import type { ActivatedListener } from "../systemd/socket_activation.ts";
import { serveMetrics, type ServingMetrics } from "../metrics/serve_metrics.ts";
import { serverSource } from "../capture/capture.ts";
import { FileCapture } from "../capture/file_capture.ts";
import { liveCapture } from "../capture/live_capture.ts";
import type { ExportedDevice } from "../server/exported_device.ts";

const log = getLogger(["usbipgw", "cli"]);
const audit = getLogger(["usbipgw", "audit"]);

/** Where logind publishes seat state. */
export const DEFAULT_SEAT_DIR = "/run/systemd/seats";

/** What a configuration reload changed. */
export interface ReloadSummary {
  /** The devices added (`TYPE:key=value,...`). */
  added: string[];
  /** Specs of the devices removed; their sessions were closed. */
  removed: string[];
  /** Specs kept as they were; their sessions are untouched. */
  unchanged: string[];
  /**
   * What could not be applied, with the reason (a device not created, a certificate or a
   * capture file not opened); the rest of the reload stands.
   */
  failed: string[];
  /** Whether the rules changed (they apply to the next list and import). */
  rulesChanged: boolean;
  /**
   * Settings that changed but only take effect at a restart (listeners, limits, seat, metrics).
   */
  needsRestart: string[];
}

/** A running gateway, as `serve` starts it. */
export interface Gateway {
  readonly server: UsbipServer;
  readonly listeners: Listener[];
  readonly policy: RulePolicy;
  readonly seat: SeatWatcher;
  /** The metrics listener (`--metrics`), if any. */
  readonly metrics: ServingMetrics | undefined;
  /**
   * Applies a new configuration (SIGHUP): devices whose spec is gone are removed (their
   * sessions end), new specs are exported, unchanged ones and their sessions are untouched,
   * and the rules are replaced. Listeners, limits and the seat settings need a restart; they
   * are named in the summary. The configuration is checked already (`validateConfig`).
   */
  reload(config: GatewayConfig): Promise<ReloadSummary>;
  /** Closes listeners, sessions, the seat watcher and device back-ends. */
  close(): Promise<void>;
}

/**
 * The devices by their identity ({@linkcode DeviceConfig.key}); a device given twice (two
 * identical Gadget Zeros on the next free bus ids, say) is told apart by its occurrence:
 * `KEY #2`.
 */
function keyedDevices(devices: readonly DeviceConfig[]): Map<string, DeviceConfig> {
  const keyed = new Map<string, DeviceConfig>();
  for (const device of devices) {
    let unique = device.key;
    for (let n = 2; keyed.has(unique); n++) unique = `${device.key} #${n}`;
    keyed.set(unique, device);
  }
  return keyed;
}

/** A device a configuration entry put on the server, and how to take it off again. */
interface ServedDevice {
  /** Removes the device (its session answers -ENODEV and hangs up) and frees its back-ends. */
  remove(): Promise<void>;
  /** Whether `exported` is this entry's device (a host device's, whichever plug it is). */
  owns(exported: ExportedDevice): boolean;
}

/**
 * Yields only the connections `admit` accepts (it returns the refusal reason otherwise); the
 * others are closed at once with an audit line.
 */
function admitting(inner: Listener, admit: (conn: Connection) => string | undefined): Listener {
  return {
    description: inner.description,
    close: () => inner.close(),
    async *[Symbol.asyncIterator]() {
      for await (const conn of inner) {
        const refusal = admit(conn);
        if (refusal === undefined) {
          yield conn;
          continue;
        }
        audit.warn("Refused {peer} on {listener}: {reason}", {
          peer: describePeer(conn.peer),
          listener: inner.description,
          reason: refusal,
        });
        conn.close();
      }
    },
  };
}

/**
 * Exports the host device a `host` spec names while it is plugged in: sysfs is watched, the
 * device is exported when it appears (also after a re-plug, or once usbip-host has let it go,
 * under the same bus id: the spec's `export_busid`, else the bus id it had when first seen) and
 * removed when it goes or another driver takes it.
 */
async function watchHostDevice(
  config: { readonly origin: string },
  options: HostTypeOptions,
  server: UsbipServer,
): Promise<ServedDevice> {
  const { selector } = options;
  const spec = { origin: config.origin };
  let exportBusid = options.exportBusid;
  const open = new Map<string, UsbfsDevice>();
  const watcher = new HostDeviceWatcher(selector, {
    async added(host) {
      // A device this machine imported over USB/IP sits under vhci_hcd: serving it again would
      // loop it back to its own server.
      const real = await Deno.realPath(host.sysfsPath).catch(() => host.sysfsPath);
      if (real.includes("/vhci_hcd")) return;
      // The kernel's own USB/IP server holds it; it comes back (as a new appearance) when
      // usbip-host lets it go.
      if (host.driver === "usbip-host") {
        log.info("{spec}: {busid} is bound to usbip-host; exported again once it is not", {
          spec: spec.origin,
          busid: host.busid,
        });
        return;
      }
      exportBusid ??= host.busid;
      if (server.devices.some((d) => d.busid === exportBusid)) {
        log.warn("{spec}: {busid} is already exported; {devnode} is not", {
          spec: spec.origin,
          busid: exportBusid,
          devnode: host.devnode,
        });
        return;
      }
      try {
        const device = await UsbfsDevice.fromHost(host);
        open.set(host.devnode, device);
        server.addDevice(device, {
          busid: exportBusid,
          name: `host ${host.busid}`,
          origin: "passthrough",
        });
      } catch (e) {
        log.error("{spec}: cannot open {devnode}: {error}", {
          spec: spec.origin,
          devnode: host.devnode,
          error: errorMessage(e),
        });
      }
    },
    async removed(host) {
      const device = open.get(host.devnode);
      if (device === undefined) return;
      open.delete(host.devnode);
      const exported = server.devices.find((d) => d.device === device);
      if (exported) server.removeDevice(exported.busid);
      await device.close();
    },
  });
  // The first scan before serving, so that devices already plugged in are exported at once.
  await watcher.scan();
  if (watcher.present.length === 0) {
    log.warn("{spec}: no matching host USB device yet; it will be exported when plugged in", {
      spec: spec.origin,
    });
  }
  watcher.start((e) =>
    log.warn("{spec}: reading sysfs failed: {error}", { spec: spec.origin, error: String(e) })
  );
  return {
    async remove() {
      await watcher.stop();
      for (const device of open.values()) {
        const exported = server.devices.find((d) => d.device === device);
        if (exported) server.removeDevice(exported.busid);
        await device.close();
      }
      open.clear();
    },
    owns: (exported) => [...open.values()].some((d) => d === exported.device),
  };
}

/** Creates the device of a configuration entry and exports it under `busid`. */
async function serveDevice(
  config: DeviceConfig,
  busid: string | undefined,
  server: UsbipServer,
): Promise<ServedDevice> {
  if (config.device.name === "host") {
    return await watchHostDevice(config, config.device.options, server);
  }
  const made = await createDevice(config.device, {
    label: `${config.device.name}${busid !== undefined ? ` ${busid}` : ""}`,
  });
  let exported;
  try {
    exported = server.addDevice(made.device, {
      name: config.device.name,
      ...(busid !== undefined ? { busid } : {}),
      ...(made.origin !== undefined ? { origin: made.origin } : {}),
    });
  } catch (e) {
    await made.close?.();
    throw e;
  }
  return {
    async remove() {
      server.removeDevice(exported.busid);
      await made.close?.();
    },
    owns: (e) => e.device === made.device,
  };
}

/**
 * Serves the device of `config` as {@linkcode serveDevice} does, and captures its traffic into
 * its own file when it has a `capture` key; the file is closed after the device is removed.
 */
async function serveCaptured(
  config: DeviceConfig,
  busid: string | undefined,
  server: UsbipServer,
  capture: GatewayConfig["capture"],
): Promise<ServedDevice> {
  if (config.capture === undefined) return await serveDevice(config, busid, server);
  let entry: ServedDevice | undefined;
  const file = await FileCapture.open(serverSource(server), {
    path: config.capture,
    maxBytes: capture.maxBytes,
    ...(capture.snaplen !== undefined ? { snaplen: capture.snaplen } : {}),
    // No session can hold the device before it is served below.
    includes: (e) => entry?.owns(e) ?? false,
    what: config.origin,
  });
  try {
    entry = await serveDevice(config, busid, server);
  } catch (e) {
    await file.close();
    throw e;
  }
  const served = entry;
  return {
    async remove() {
      await served.remove();
      await file.close();
    },
    owns: served.owns,
  };
}

/**
 * Warns about the devices no TCP (or TLS) peer may see while the gateway listens on TCP (or
 * TLS): the default policy serves them to local users only, which is the first surprise of an
 * empty `usbip list -r`. Names each device, why, and the `--rule` that would let them in.
 */
function warnHiddenFromTcp(server: UsbipServer, policy: RulePolicy, listeners: Listener[]): void {
  const kinds = [
    {
      prefix: "tcp ",
      name: "TCP",
      reach: tcpReachability,
      rule: "transport=tcp,source=127.0.0.0/8|::1",
    },
    { prefix: "tls ", name: "TLS", reach: tlsReachability, rule: "transport=tls,cn=CLIENT" },
  ];
  for (const kind of kinds) {
    const on = listeners.filter((l) => l.description.startsWith(kind.prefix));
    if (on.length === 0) continue;
    const hidden = server.devices.flatMap((d) => {
      const r = kind.reach(policy.rules, deviceFacts(d));
      return r.reachable ? [] : [{ busid: d.busid, name: d.name, reason: r.reason }];
    });
    if (hidden.length === 0) continue;
    log.warn(
      "{count} device(s) are hidden from every {kind} peer on {listeners}: {devices}; to let clients use them: --rule 'allow:{rule},busid={busids}'",
      {
        count: hidden.length,
        kind: kind.name,
        listeners: on.map((l) => l.description).join(", "),
        devices: hidden.map((h) => `${h.busid} (${h.name}): ${h.reason}`).join("; "),
        rule: kind.rule,
        busids: hidden.map((h) => h.busid).join("|"),
        hidden,
      },
    );
  }
}

/** The settings a reload cannot change, as comparable text. */
function restartOnly(config: GatewayConfig): Record<string, string> {
  // A TLS listener's files are reloaded in place; its address needs a restart.
  const tls = config.tls.map((t) => [t.hostname, t.port, t.minVersion]);
  return {
    listeners: JSON.stringify([config.tcp, config.unix, tls]),
    limits: JSON.stringify(config.limits),
    seat: JSON.stringify([config.seatDir, config.consoleUid]),
    metrics: JSON.stringify(config.metrics ?? null),
  };
}

/** The settings of the capture of every device's traffic, as comparable text. */
function captureSettings(config: GatewayConfig): string {
  return JSON.stringify([config.capture.file, config.capture.snaplen, config.capture.maxBytes]);
}

/**
 * The sockets of local and stream attaches: a socketpair, and a socket handed over. Exported
 * for tests.
 */
export const LOCAL_PLUMBING: AttachPlumbing = {
  localPair(peer) {
    const [sessionEnd, kernelEnd] = socketPair();
    let kernel: FdSocket;
    try {
      kernel = FdSocket.adopt(kernelEnd, { transport: "unix", path: "socketpair" });
    } catch (e) {
      closeFd(sessionEnd);
      closeFd(kernelEnd);
      throw e;
    }
    try {
      return { session: wrapSocketFd(sessionEnd, peer), kernel };
    } catch (e) {
      closeFd(sessionEnd);
      kernel.close();
      throw e;
    }
  },
  async receiveStream(requestSocket) {
    const fd = await requestSocket(STREAM_TIMEOUT_MS);
    try {
      return FdSocket.adopt(fd, { transport: "unix", path: "a user's stream" });
    } catch (e) {
      // adopt() checks the socket (a connected stream, not a listener) and leaves it to us.
      closeFd(fd);
      throw e;
    }
  },
};

/** How long the gateway waits for the socket of a stream attach once it asked for it. */
const STREAM_TIMEOUT_MS = 5000;

/** Options of {@linkcode startGateway} beyond the configuration. */
export interface GatewayOptions {
  /** Where vhci_hcd's files and the port records are (tests point them at plain files). */
  vhci?: { sysfsRoot?: string; stateDir?: string | null };
  /**
   * Listeners inherited from the service manager (systemd socket activation). When there are
   * any, they replace the configured TCP and unix listeners.
   */
  activated?: ActivatedListener[];
  /** How the attach checks reach polkit; the system's pkcheck and bus when absent (tests). */
  polkitOptions?: CheckAuthorizationOptions;
}

/** Starts the gateway described by `config`. Usage mistakes throw {@linkcode UsageError}. */
export async function startGateway(
  config: GatewayConfig,
  options: GatewayOptions = {},
): Promise<Gateway> {
  const tcp = config.tcp;
  const seat = await SeatWatcher.open({
    seatDir: config.seatDir ?? DEFAULT_SEAT_DIR,
    ...(config.consoleUid !== undefined ? { fallbackUid: config.consoleUid } : {}),
  });
  const policy = new RulePolicy({ rules: [...config.rules], consoleUid: () => seat.consoleUid });
  const ownUid = Deno.uid();
  let server: UsbipServer;
  let attachConfig = config.attach;
  const attachService: AttachService = new AttachService({
    // The server is made below, with this service as its attach handler: read when used.
    get server() {
      return server;
    },
    policy,
    consoleUid: () => seat.consoleUid,
    config: () => attachConfig,
    polkit: (action, subject, details) =>
      checkAuthorization({ action, ...subject, details }, options.polkitOptions),
    plumbing: LOCAL_PLUMBING,
    socketPath: config.unix[0]?.path ?? "usbipgw",
    ...(options.vhci ?? {}),
  });
  /** Host devices exported at run time (`usbipgw bind`), by host bus id; reloads keep them. */
  const bound = new Map<string, ServedDevice>();
  const manageHostDevice: HostDeviceHandler = async (action, busid, peer) => {
    const who = describePeer(peer);
    if (action === "bind") {
      if (bound.has(busid) || server.devices.some((d) => d.busid === busid)) {
        return { ok: false, message: `${busid} is exported already` };
      }
      if (await findHostDevice({ busid }) === undefined) {
        return {
          ok: false,
          message: `No USB device ${busid} on this host ("usbipgw host" lists them)`,
        };
      }
      const entry = await watchHostDevice(
        { origin: `bind ${busid}` },
        { selector: { busid } },
        server,
      );
      if (!server.devices.some((d) => d.busid === busid)) {
        await entry.remove();
        return { ok: false, message: `Cannot export ${busid}: the gateway's log says why` };
      }
      bound.set(busid, entry);
      audit.info("{peer} bound host device {busid}: exported until unbound or a restart", {
        peer: who,
        busid,
      });
      return { ok: true, message: `Exported ${busid}` };
    }
    const entry = bound.get(busid);
    if (entry === undefined) {
      return {
        ok: false,
        message: server.devices.some((d) => d.busid === busid)
          ? `${busid} comes from the configuration: remove it there and reload`
          : `${busid} is not bound`,
      };
    }
    bound.delete(busid);
    await entry.remove();
    audit.info("{peer} unbound host device {busid}", { peer: who, busid });
    return { ok: true, message: `Withdrew ${busid}` };
  };
  try {
    server = new UsbipServer({
      policy,
      // The status names peers and devices: root, the console user and the gateway's own user
      // may read it, over a unix socket only.
      statusAccess: (peer) =>
        peer.transport === "unix" && peer.uid !== undefined &&
        (peer.uid === 0 || peer.uid === ownUid || peer.uid === seat.consoleUid),
      sessionLimits: config.limits.session,
      manageHostDevice,
      localAttach: attachService,
      statusExtras: () => ({ attachments: attachService.snapshot }),
      // `usbipgw capture`, authorized as the status is.
      liveCapture: liveCapture(() => server),
      ...(config.limits.maxTransferBufferLength !== undefined
        ? {
          limits: {
            ...DEFAULT_LIMITS,
            maxTransferBufferLength: config.limits.maxTransferBufferLength,
          },
        }
        : {}),
    });
  } catch (e) {
    await seat.close();
    throw e;
  }
  /** What each configured device put on the server, by its unique key. */
  const served = new Map<string, ServedDevice>();
  /** The bus id each device was exported under, by its key: it keeps it across reloads. */
  const busids = new Map<string, string>();
  /** Bus ids of devices that were removed: never assigned to another device again. */
  const retired = new Set<string>();
  /**
   * The bus id for `device`: the one it had before, else the one it was given; an assigned
   * one that another device holds or held moves on to the next free bus id.
   */
  const busidFor = (key: string, device: DeviceConfig): string | undefined => {
    const before = busids.get(key);
    if (before !== undefined) return before;
    let busid = device.busid;
    if (busid === undefined || !device.assigned) return busid;
    const inUse = new Set([...busids.values(), ...retired]);
    for (let port = 1; inUse.has(busid!); port++) busid = `1-${port}`;
    return busid;
  };
  const serve = async (key: string, device: DeviceConfig) => {
    const busid = busidFor(key, device);
    served.set(key, await serveCaptured(device, busid, server, config.capture));
    if (busid !== undefined) busids.set(key, busid);
  };
  const listeners: Listener[] = [];
  const tlsListeners: TlsListener[] = [];
  const following: UnixListener[] = [];
  let unsubscribe = () => {};
  let current = restartOnly(config);
  let capturing = captureSettings(config);
  let reloading: Promise<unknown> = Promise.resolve();
  /** The metrics listener (`--metrics`), if any. */
  let metrics: ServingMetrics | undefined;
  /** The capture of every device's traffic (`--capture`), if any. */
  let captureFile: FileCapture | undefined;
  const close = async () => {
    unsubscribe();
    await reloading.catch(() => {});
    await metrics?.close();
    // Ports attached for users that would outlive the gateway go first, then the sessions, so
    // that the devices leave a closed server (no "removed" lines).
    await attachService.close();
    await server.close();
    for (const l of listeners) l.close();
    await seat.close();
    await Promise.all([...served.values(), ...bound.values()].map((s) => s.remove()));
    served.clear();
    bound.clear();
    // Last: the sessions' ends and the devices' removals are in the file.
    await captureFile?.close();
  };
  /**
   * Starts the capture `capture` asks for, in place of the running one (none: it stops). A
   * capture into the same file ends and goes on in a new section of it; another file is opened
   * first, so that a file that cannot be created leaves the running capture as it was (and
   * throws).
   */
  const switchCapture = async (capture: GatewayConfig["capture"]) => {
    const running = captureFile;
    const append = running !== undefined && running.path === capture.file;
    if (append) {
      captureFile = undefined;
      await running.close();
    }
    captureFile = capture.file === undefined ? undefined : await FileCapture.open(
      serverSource(server),
      {
        path: capture.file,
        maxBytes: capture.maxBytes,
        append,
        ...(capture.snaplen !== undefined ? { snaplen: capture.snaplen } : {}),
      },
    );
    if (!append) await running?.close();
  };
  const reload = async (next: GatewayConfig): Promise<ReloadSummary> => {
    const wanted = keyedDevices(next.devices);
    const summary: ReloadSummary = {
      added: [],
      removed: [],
      unchanged: [],
      failed: [],
      rulesChanged: JSON.stringify(next.rules) !== JSON.stringify(policy.rules),
      needsRestart: [],
    };
    // Removed first, so that a spec changed in place can take the same bus id again.
    for (const [key, entry] of served) {
      if (wanted.has(key)) {
        summary.unchanged.push(key);
        continue;
      }
      served.delete(key);
      await entry.remove();
      const busid = busids.get(key);
      busids.delete(key);
      if (busid !== undefined) retired.add(busid);
      summary.removed.push(key);
    }
    policy.setRules([...next.rules]);
    attachConfig = next.attach;
    for (const [key, device] of wanted) {
      if (served.has(key)) continue;
      try {
        await serve(key, device);
        summary.added.push(key);
      } catch (e) {
        summary.failed.push(`${device.origin}: ${errorMessage(e)}`);
      }
    }
    warnHiddenFromTcp(server, policy, listeners);
    // New certificates, keys and CAs for new connections; sessions that run go on.
    for (const [i, l] of tlsListeners.entries()) {
      const was = config.tls[i]!;
      const t = next.tls.find((x) => x.hostname === was.hostname && x.port === was.port);
      // An address that is gone or new takes a restart (restartOnly names it).
      if (t === undefined) continue;
      try {
        await l.reload({ certFile: t.certFile, keyFile: t.keyFile, caFile: t.caFile });
        log.info("Reloaded the certificates of {listener}", { listener: l.description });
      } catch (e) {
        summary.failed.push(`${l.description}: ${errorMessage(e)}`);
      }
    }
    if (captureSettings(next) !== capturing) {
      try {
        await switchCapture(next.capture);
        capturing = captureSettings(next);
      } catch (e) {
        // Tried again at the next reload.
        summary.failed.push(`capture: ${errorMessage(e)}`);
      }
    }
    const restart = restartOnly(next);
    summary.needsRestart = Object.keys(restart).filter((k) => restart[k] !== current[k]);
    current = restart;
    return summary;
  };
  try {
    await switchCapture(config.capture);
    for (const [key, device] of keyedDevices(config.devices)) await serve(key, device);
    const activated = options.activated ?? [];
    listeners.push(...activated);
    if (activated.length > 0 && (tcp.length > 0 || config.unix.length > 0)) {
      log.info("Serving on the sockets systemd passed; the configured listeners are not opened");
    }
    if (activated.length > 0 && config.tls.length > 0) {
      // A socket systemd passed is served as plain TCP or unix: never on a TLS port.
      const tlsPorts = new Set(config.tls.map((t) => t.port));
      const clash = activated.find((l) => l.port !== undefined && tlsPorts.has(l.port));
      if (clash !== undefined) {
        throw new Error(
          `Cannot serve ${clash.description}: the configuration gives port ${clash.port} to TLS, and a socket systemd passes is served as plain USB/IP; remove it from the socket unit`,
        );
      }
      log.warn("TLS listeners are not opened under socket activation: run the service without it");
    }
    // A client still in its TLS handshake counts against the connection limits and the op
    // phase's time limit, as one that connected over TCP does.
    const session = { ...DEFAULT_SESSION_LIMITS, ...config.limits.session };
    for (const t of activated.length > 0 ? [] : tcp) listeners.push(new TcpListener(t));
    for (const t of activated.length > 0 ? [] : config.tls) {
      // The bound address once known (port 0 picks one).
      let where = `tls ${formatAddress(t)}`;
      const listener = await TlsListener.listen({
        hostname: t.hostname,
        port: t.port,
        certFile: t.certFile,
        keyFile: t.keyFile,
        caFile: t.caFile,
        minVersion: t.minVersion === "1.3" ? "TLSv1.3" : "TLSv1.2",
        maxHandshakes: session.maxConnections,
        maxHandshakesPerAddress: session.maxConnectionsPerPeer,
        ...(Number.isFinite(session.opPhaseTimeoutMs)
          ? { handshakeTimeoutMs: session.opPhaseTimeoutMs }
          : {}),
        onRefused: (address, reason, certificate) =>
          audit.warn("Refused TLS client {address} on {listener}: {reason}", {
            // With the certificate it showed, named as sessions name their peers.
            address: certificate
              ? describePeer({ transport: "tls", address, certificate }).replace(/^tls /, "")
              : address,
            listener: where,
            reason,
            ...(certificate ? { certificate } : {}),
          }),
      });
      where = listener.description;
      tlsListeners.push(listener);
      listeners.push(listener);
    }
    for (const u of activated.length > 0 ? [] : config.unix) {
      const follows = u.uid === undefined && u.mode === undefined;
      const listener = await UnixListener.listen({
        path: u.path,
        mode: follows ? 0o600 : (u.mode ?? 0o600),
        ...(follows ? { uid: seat.consoleUid ?? 0 } : u.uid !== undefined ? { uid: u.uid } : {}),
        ...(u.gid !== undefined ? { gid: u.gid } : {}),
      });
      if (!follows) {
        listeners.push(listener);
        continue;
      }
      following.push(listener);
      // The socket's mode already keeps other users out; this is the second layer.
      listeners.push(admitting(listener, (conn) => {
        const uid = conn.peer.uid;
        if (uid === 0 || (uid !== undefined && uid === seat.consoleUid)) return undefined;
        return `uid ${uid ?? "unknown"} is neither root nor the console user (${
          seat.consoleUid ?? "none"
        })`;
      }));
    }
    // Counting starts before any listener accepts, so the counters see every connection.
    if (config.metrics !== undefined) metrics = serveMetrics(server, config.metrics);
  } catch (e) {
    await close();
    throw e;
  }
  unsubscribe = seat.onChange(async (uid, previous) => {
    audit.info("The console user changed from {previous} to {uid}", {
      previous: previous ?? "none",
      uid: uid ?? "none",
    });
    for (const l of following) {
      try {
        await l.setOwner(uid ?? 0);
      } catch (e) {
        log.error("Cannot hand {path} to uid {uid}: {error}", {
          path: l.path,
          uid,
          error: (e as Error).message,
        });
      }
    }
    await attachService.revoke(
      `the console user changed from ${previous ?? "none"} to ${uid ?? "none"}`,
    );
    if (previous === undefined || previous === 0) return;
    for (const s of server.sessions) {
      if (s.conn.peer.transport === "unix" && s.conn.peer.uid === previous) {
        s.end(`the console user changed from ${previous} to ${uid ?? "none"}`);
      }
    }
  });
  for (const l of listeners) server.listen(l);
  warnHiddenFromTcp(server, policy, listeners);
  log.info("usbipgw serving {count} device(s) on {listeners}", {
    count: server.devices.length,
    listeners: listeners.map((l) => l.description).join(", "),
  });
  return {
    server,
    listeners,
    policy,
    seat,
    metrics,
    reload(next) {
      // One reload at a time, in the order the signals came.
      const run = reloading.catch(() => {}).then(() => reload(next));
      reloading = run;
      return run;
    },
    close,
  };
}
