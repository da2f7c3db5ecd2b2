/**
 * The USB/IP server: a registry of exported devices, the listeners that feed it connections,
 * and the sessions that serve them. A device is held by at most one session; when that session
 * ends for any reason the device is reset and can be imported again at once.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { DEFAULT_LIMITS, OpStatus, type UsbipLimits } from "../protocol/constants.ts";
import type { UsbDevice } from "../devices/usb_device.ts";
import { allowAll, type Policy } from "../policy/policy.ts";
import {
  type Connection,
  describePeer,
  type Listener,
  type PeerInfo,
} from "../transport/connection.ts";
import { busnumOf, deviceFacts, type ExportedDevice } from "./exported_device.ts";
import { type ClaimResult, Session, type SessionHost } from "./session.ts";

const log = getLogger(["usbipgw", "server"]);
const audit = getLogger(["usbipgw", "audit"]);

/** Options of a {@linkcode UsbipServer}. */
export interface UsbipServerOptions {
  /** Who may list and import what; everything is allowed by default. */
  policy?: Policy;
  /** Limits on untrusted lengths and counts. */
  limits?: UsbipLimits;
}

/** Options of {@linkcode UsbipServer.addDevice}. */
export interface AddDeviceOptions {
  /** The bus id to export under; the next free `1-N` when absent. */
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
  readonly limits: UsbipLimits;
  #policy: Policy;
  #devices = new Map<string, ExportedDevice>();
  #holders = new Map<string, Session>();
  #sessions = new Set<Session>();
  #listeners = new Set<Listener>();
  #loops = new Set<Promise<void>>();
  #closed = false;

  /** Creates a server with no devices and no listeners. */
  constructor(options: UsbipServerOptions = {}) {
    this.#policy = options.policy ?? allowAll;
    this.limits = options.limits ?? DEFAULT_LIMITS;
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
    device.disconnected.addEventListener("abort", () => this.#forget(exported), { once: true });
    log.info("Exporting {name} on {busid}", { name: exported.name, busid });
    return exported;
  }

  /** Removes a device: a session holding it answers its URBs with -ENODEV and hangs up. */
  removeDevice(busid: string): boolean {
    const exported = this.#devices.get(busid);
    if (exported === undefined) return false;
    exported.device.disconnect(`The device ${busid} was removed from the server`);
    this.#forget(exported);
    return true;
  }

  #forget(exported: ExportedDevice): void {
    if (this.#devices.get(exported.busid) === exported) {
      this.#devices.delete(exported.busid);
      log.info("Device {busid} ({name}) is gone", { busid: exported.busid, name: exported.name });
    }
  }

  #nextBusid(): string {
    for (let port = 1;; port++) {
      const busid = `1-${port}`;
      if (!this.#devices.has(busid)) return busid;
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
            error: e instanceof Error ? e.message : String(e),
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

  /** Serves one connection; resolves when its session has ended. */
  accept(conn: Connection): Promise<void> {
    const session = new Session(conn, this);
    this.#sessions.add(session);
    return session.run().finally(() => this.#sessions.delete(session));
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

  // SessionHost

  /** The devices the policy lets `peer` see. */
  visibleDevices(peer: PeerInfo): ExportedDevice[] {
    return this.devices.filter((d) => this.#policy.decide(peer, deviceFacts(d)).effect !== "deny");
  }

  /** Claims a device for a session: NODEV, NA (denied by the policy), DEV_BUSY or OK. */
  claimDevice(busid: string, session: Session): ClaimResult {
    const exported = this.#devices.get(busid);
    const peer = session.conn.peer;
    if (exported === undefined || exported.device.disconnected.aborted) {
      return { status: OpStatus.ST_NODEV };
    }
    const decision = this.#policy.decide(peer, deviceFacts(exported));
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
    if (!exported.device.disconnected.aborted) exported.device.reset();
  }
}
