/**
 * `usbipgw serve`: creates the configured devices, listeners and access policy, serves until
 * told to stop, then closes every session and back-end. Unix sockets without an explicit owner
 * follow the console user the way udev's `uaccess` tag hands device nodes to the active seat
 * user: owned by that user with mode 0600, re-owned at a seat switch, and the previous user's
 * unix sessions closed.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { DEFAULT_LIMITS, USBIP_PORT } from "../protocol/constants.ts";
import { RulePolicy } from "../policy/rules.ts";
import { SeatWatcher } from "../policy/seat.ts";
import { UsbipServer } from "../server/server.ts";
import {
  type Connection,
  describePeer,
  type Listener,
  parseHostPort,
  TcpListener,
  UnixListener,
} from "../transport/mod.ts";
import { groupId, userId } from "./accounts.ts";
import type { ServeConfig } from "./config.ts";
import { checkDeviceSpec, hostSelector } from "./device_types.ts";
import type { DeviceSpec } from "./device_spec.ts";
import { HostDeviceWatcher } from "../devices/passthrough/host_watcher.ts";
import { UsbfsDevice } from "../devices/passthrough/usbfs_device.ts";
import { UsageError } from "./usage_error.ts";

const log = getLogger(["usbipgw", "cli"]);
const audit = getLogger(["usbipgw", "audit"]);

/** Where logind publishes seat state. */
export const DEFAULT_SEAT_DIR = "/run/systemd/seats";

/** What a configuration reload changed. */
export interface ReloadSummary {
  /** Specs of the devices added (`TYPE:key=value,...`). */
  added: string[];
  /** Specs of the devices removed; their sessions were closed. */
  removed: string[];
  /** Specs kept as they were; their sessions are untouched. */
  unchanged: string[];
  /** Devices that could not be created, with the reason; the rest of the reload stands. */
  failed: string[];
  /** Whether the rules changed (they apply to the next list and import). */
  rulesChanged: boolean;
  /** Settings that changed but only take effect at a restart (listeners, limits, seat). */
  needsRestart: string[];
}

/** A running gateway, as `serve` starts it. */
export interface Gateway {
  readonly server: UsbipServer;
  readonly listeners: Listener[];
  readonly policy: RulePolicy;
  readonly seat: SeatWatcher;
  /**
   * Applies a new configuration (SIGHUP): devices whose spec is gone are removed (their
   * sessions end), new specs are exported, unchanged ones and their sessions are untouched,
   * and the rules are replaced. Listeners, limits and the seat settings need a restart; they
   * are named in the summary. Throws {@linkcode UsageError} for an invalid device spec, before
   * anything changes.
   */
  reload(config: ServeConfig): Promise<ReloadSummary>;
  /** Closes listeners, sessions, the seat watcher and device back-ends. */
  close(): Promise<void>;
}

/**
 * The identity of a device spec for a reload: its type and options, whatever their order
 * and wherever the spec was written.
 */
export function specKey(spec: DeviceSpec): string {
  const options = Object.keys(spec.options).sort().map((k) => `${k}=${spec.options[k]}`);
  return options.length === 0 ? spec.type : `${spec.type}:${options.join(",")}`;
}

/**
 * The specs by {@linkcode specKey}; a spec given twice (two identical Gadget Zeros on the next
 * free bus ids, say) is told apart by its occurrence: `KEY #2`.
 */
function keyedSpecs(specs: DeviceSpec[]): Map<string, DeviceSpec> {
  const keyed = new Map<string, DeviceSpec>();
  for (const spec of specs) {
    const key = specKey(spec);
    let unique = key;
    for (let n = 2; keyed.has(unique); n++) unique = `${key} #${n}`;
    keyed.set(unique, spec);
  }
  return keyed;
}

/** A device a spec put on the server, and how to take it off again. */
interface ServedSpec {
  spec: DeviceSpec;
  /** Removes the device (its session answers -ENODEV and hangs up) and frees its back-ends. */
  remove(): Promise<void>;
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
 * device is exported when it appears (also after a re-plug, under the same bus id: the
 * spec's `export_busid`, else the bus id it had when first seen) and removed when it goes.
 */
async function watchHostDevice(spec: DeviceSpec, server: UsbipServer): Promise<ServedSpec> {
  const selector = hostSelector(spec);
  let exportBusid = spec.options.export_busid;
  const open = new Map<string, UsbfsDevice>();
  const watcher = new HostDeviceWatcher(selector, {
    async added(host) {
      // A device this machine imported over USB/IP sits under vhci_hcd: serving it again would
      // loop it back to its own server.
      const real = await Deno.realPath(host.sysfsPath).catch(() => host.sysfsPath);
      if (real.includes("/vhci_hcd")) return;
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
          error: e instanceof Error ? e.message : String(e),
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
    spec,
    async remove() {
      await watcher.stop();
      for (const device of open.values()) {
        const exported = server.devices.find((d) => d.device === device);
        if (exported) server.removeDevice(exported.busid);
        await device.close();
      }
      open.clear();
    },
  };
}

/** Creates the device of an emulated spec and exports it. */
async function serveSpec(spec: DeviceSpec, server: UsbipServer): Promise<ServedSpec> {
  if (spec.type === "host") return await watchHostDevice(spec, server);
  const made = await checkDeviceSpec(spec).create(spec);
  const busid = made.busid ?? spec.options.busid;
  let exported;
  try {
    exported = server.addDevice(made.device, {
      name: spec.type,
      ...(busid !== undefined ? { busid } : {}),
      ...(made.origin !== undefined ? { origin: made.origin } : {}),
    });
  } catch (e) {
    await made.close?.();
    throw new UsageError(`Invalid device ${spec.origin}: ${(e as Error).message}`);
  }
  return {
    spec,
    async remove() {
      server.removeDevice(exported.busid);
      await made.close?.();
    },
  };
}

/** The settings a reload cannot change, as comparable text. */
function restartOnly(config: ServeConfig): Record<string, string> {
  return {
    listeners: JSON.stringify([config.tcp, config.unix]),
    limits: JSON.stringify(config.limits),
    seat: JSON.stringify([config.seatDir, config.consoleUid]),
  };
}

/** Options of {@linkcode startGateway} beyond the configuration. */
export interface GatewayOptions {
  /**
   * Listeners inherited from the service manager (systemd socket activation). When there are
   * any, they replace the configured TCP and unix listeners.
   */
  activated?: Listener[];
}

/** Starts the gateway described by `config`. Usage mistakes throw {@linkcode UsageError}. */
export async function startGateway(
  config: ServeConfig,
  options: GatewayOptions = {},
): Promise<Gateway> {
  for (const spec of config.devices) checkDeviceSpec(spec);
  const tcp = config.tcp.map((a) => {
    try {
      return parseHostPort(a, USBIP_PORT);
    } catch (e) {
      throw new UsageError(`Invalid --tcp ${a}: ${(e as Error).message}`);
    }
  });
  const seat = await SeatWatcher.open({
    seatDir: config.seatDir ?? DEFAULT_SEAT_DIR,
    ...(config.consoleUid !== undefined ? { fallbackUid: config.consoleUid } : {}),
  });
  const policy = new RulePolicy({ rules: config.rules, consoleUid: () => seat.consoleUid });
  const ownUid = Deno.uid();
  let server: UsbipServer;
  try {
    server = new UsbipServer({
      policy,
      // The status names peers and devices: root, the console user and the gateway's own user
      // may read it, over a unix socket only.
      statusAccess: (peer) =>
        peer.transport === "unix" && peer.uid !== undefined &&
        (peer.uid === 0 || peer.uid === ownUid || peer.uid === seat.consoleUid),
      sessionLimits: config.limits.session,
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
    if (e instanceof RangeError) throw new UsageError(`Invalid limits: ${e.message}`);
    throw e;
  }
  /** What each device spec put on the server, by {@linkcode specKey}. */
  const served = new Map<string, ServedSpec>();
  const listeners: Listener[] = [];
  const following: UnixListener[] = [];
  let unsubscribe = () => {};
  let current = restartOnly(config);
  let reloading: Promise<unknown> = Promise.resolve();
  const close = async () => {
    unsubscribe();
    await reloading.catch(() => {});
    const removals = [...served.values()].map((s) => s.remove());
    served.clear();
    await server.close();
    for (const l of listeners) l.close();
    await seat.close();
    await Promise.all(removals);
  };
  const reload = async (next: ServeConfig): Promise<ReloadSummary> => {
    for (const spec of next.devices) checkDeviceSpec(spec);
    const wanted = keyedSpecs(next.devices);
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
      summary.removed.push(key);
    }
    policy.setRules(next.rules);
    for (const [key, spec] of wanted) {
      if (served.has(key)) continue;
      try {
        served.set(key, await serveSpec(spec, server));
        summary.added.push(key);
      } catch (e) {
        summary.failed.push(`${spec.origin}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    const restart = restartOnly(next);
    summary.needsRestart = Object.keys(restart).filter((k) => restart[k] !== current[k]);
    current = restart;
    return summary;
  };
  try {
    for (const [key, spec] of keyedSpecs(config.devices)) {
      served.set(key, await serveSpec(spec, server));
    }
    const activated = options.activated ?? [];
    listeners.push(...activated);
    if (activated.length > 0 && (tcp.length > 0 || config.unix.length > 0)) {
      log.info("Serving on the sockets systemd passed; the configured listeners are not opened");
    }
    for (const t of activated.length > 0 ? [] : tcp) listeners.push(new TcpListener(t));
    for (const u of activated.length > 0 ? [] : config.unix) {
      const follows = u.owner === undefined && u.mode === undefined;
      const listener = await UnixListener.listen({
        path: u.path,
        mode: follows ? 0o600 : (u.mode ?? 0o600),
        ...(follows
          ? { uid: seat.consoleUid ?? 0 }
          : u.owner !== undefined
          ? { uid: await userId(u.owner) }
          : {}),
        ...(u.group !== undefined ? { gid: await groupId(u.group) } : {}),
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
    if (previous === undefined || previous === 0) return;
    for (const s of server.sessions) {
      if (s.conn.peer.transport === "unix" && s.conn.peer.uid === previous) {
        s.end(`the console user changed from ${previous} to ${uid ?? "none"}`);
      }
    }
  });
  for (const l of listeners) server.listen(l);
  log.info("usbipgw serving {count} device(s) on {listeners}", {
    count: server.devices.length,
    listeners: listeners.map((l) => l.description).join(", "),
  });
  return {
    server,
    listeners,
    policy,
    seat,
    reload(next) {
      // One reload at a time, in the order the signals came.
      const run = reloading.catch(() => {}).then(() => reload(next));
      reloading = run;
      return run;
    },
    close,
  };
}
