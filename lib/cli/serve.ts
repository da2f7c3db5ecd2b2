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
import { checkDeviceSpec, type CreatedDevice, hostSelector } from "./device_types.ts";
import type { DeviceSpec } from "./device_spec.ts";
import { HostDeviceWatcher } from "../devices/passthrough/host_watcher.ts";
import { UsbfsDevice } from "../devices/passthrough/usbfs_device.ts";
import { UsageError } from "./usage_error.ts";

const log = getLogger(["usbipgw", "cli"]);
const audit = getLogger(["usbipgw", "audit"]);

/** Where logind publishes seat state. */
export const DEFAULT_SEAT_DIR = "/run/systemd/seats";

/** A running gateway, as `serve` starts it. */
export interface Gateway {
  readonly server: UsbipServer;
  readonly listeners: Listener[];
  readonly policy: RulePolicy;
  readonly seat: SeatWatcher;
  /** Closes listeners, sessions, the seat watcher and device back-ends. */
  close(): Promise<void>;
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
async function watchHostDevice(spec: DeviceSpec, server: UsbipServer): Promise<HostDeviceWatcher> {
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
  return watcher;
}

/** Starts the gateway described by `config`. Usage mistakes throw {@linkcode UsageError}. */
export async function startGateway(config: ServeConfig): Promise<Gateway> {
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
  let server: UsbipServer;
  try {
    server = new UsbipServer({
      policy,
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
  const created: CreatedDevice[] = [];
  const listeners: Listener[] = [];
  const following: UnixListener[] = [];
  let unsubscribe = () => {};
  const watchers: HostDeviceWatcher[] = [];
  const close = async () => {
    unsubscribe();
    await Promise.all(watchers.map((w) => w.stop()));
    await server.close();
    for (const l of listeners) l.close();
    await seat.close();
    await Promise.all(created.map((c) => c.close?.()));
  };
  try {
    for (const spec of config.devices) {
      if (spec.type === "host") {
        watchers.push(await watchHostDevice(spec, server));
        continue;
      }
      const made = await checkDeviceSpec(spec).create(spec);
      created.push(made);
      const busid = made.busid ?? spec.options.busid;
      try {
        server.addDevice(made.device, {
          name: spec.type,
          ...(busid !== undefined ? { busid } : {}),
          ...(made.origin !== undefined ? { origin: made.origin } : {}),
        });
      } catch (e) {
        throw new UsageError(`Invalid device ${spec.origin}: ${(e as Error).message}`);
      }
    }
    for (const t of tcp) listeners.push(new TcpListener(t));
    for (const u of config.unix) {
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
  return { server, listeners, policy, seat, close };
}
