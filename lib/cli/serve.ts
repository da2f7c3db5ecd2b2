/**
 * `usbipgw serve`: creates the configured devices and listeners, serves until the signal
 * aborts, then closes every session and back-end.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { USBIP_PORT } from "../protocol/constants.ts";
import { UsbipServer } from "../server/server.ts";
import { type Listener, parseHostPort, TcpListener, UnixListener } from "../transport/mod.ts";
import { groupId, userId } from "./accounts.ts";
import type { ServeConfig } from "./config.ts";
import { checkDeviceSpec, type CreatedDevice } from "./device_types.ts";
import { UsageError } from "./usage_error.ts";

const log = getLogger(["usbipgw", "cli"]);

/** A running gateway, as `serve` starts it. */
export interface Gateway {
  readonly server: UsbipServer;
  readonly listeners: Listener[];
  /** Closes listeners, sessions and device back-ends. */
  close(): Promise<void>;
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
  const server = new UsbipServer();
  const created: CreatedDevice[] = [];
  const listeners: Listener[] = [];
  const close = async () => {
    await server.close();
    for (const l of listeners) l.close();
    await Promise.all(created.map((c) => c.close?.()));
  };
  try {
    for (const spec of config.devices) {
      const made = await checkDeviceSpec(spec).create(spec);
      created.push(made);
      const busid = spec.options.busid;
      try {
        server.addDevice(made.device, {
          name: spec.type,
          ...(busid !== undefined ? { busid } : {}),
        });
      } catch (e) {
        throw new UsageError(`Invalid device ${spec.origin}: ${(e as Error).message}`);
      }
    }
    for (const t of tcp) listeners.push(new TcpListener(t));
    for (const u of config.unix) {
      listeners.push(
        await UnixListener.listen({
          path: u.path,
          mode: u.mode ?? 0o600,
          ...(u.owner !== undefined ? { uid: await userId(u.owner) } : {}),
          ...(u.group !== undefined ? { gid: await groupId(u.group) } : {}),
        }),
      );
    }
  } catch (e) {
    await close();
    throw e;
  }
  for (const l of listeners) server.listen(l);
  log.info("usbipgw serving {count} device(s) on {listeners}", {
    count: server.devices.length,
    listeners: listeners.map((l) => l.description).join(", "),
  });
  return { server, listeners, close };
}
