/**
 * Putting a device this process emulates into this machine's kernel without root: the device
 * is served on one end of a socketpair, here, and the other end is handed to the local usbipgw
 * gateway (SCM_RIGHTS over its unix socket, a stream attach), which writes it to vhci_hcd's
 * `attach` file as root, if this user may (`[attach] streams` in the gateway's configuration,
 * then polkit or the console user).
 *
 * @module
 */

import type { UsbDevice } from "../devices/usb_device.ts";
import { UsbipServer } from "../server/server.ts";
import { wrapSocketFd } from "../transport/unix.ts";
import { socketPair } from "../ffi/socket_pair.ts";
import { closeFd, dupFd } from "../ffi/fd.ts";
import { OpStatus } from "../protocol/constants.ts";
import { connectErrorFor, FdSocket, OsError } from "./fd_socket.ts";
import { GatewayRefusal, requestAttach } from "./gateway_requests.ts";

/** Where the system gateway listens (`usbipgw install-service`'s socket). */
const SYSTEM_GATEWAY = "/run/usbipgw.sock";

/** Options of {@linkcode attachOwnDevice}. */
export interface OwnDeviceOptions {
  /** The gateway's unix socket (default `/run/usbipgw.sock`). */
  gatewaySocket?: string;
  /** The bus id the device is served under in this process (default `1-1`). */
  busid?: string;
}

/** A device of this process attached to this machine's kernel. */
export interface AttachedOwnDevice {
  /** The vhci port the gateway attached it to. */
  readonly vhciPort: number;
  /** Resolves when the kernel lets the device go (detached, or the port freed). */
  readonly ended: Promise<void>;
  /** Unplugs the device: ends its session, and the kernel frees the port. */
  close(): Promise<void>;
}

/**
 * Serves `device` in this process and asks the local gateway to attach it into this
 * machine's kernel, where its driver binds as for a device plugged in.
 *
 * @throws {GatewayRefusal} When the gateway refuses (not allowed, streams off, limits).
 * @throws {ConnectError} When no gateway listens on the socket.
 *
 * @example Serving a keyboard of one's own (needs a gateway with `[attach] streams` on)
 * ```ts ignore
 * import { attachOwnDevice, HidKeyboard } from "../../mod.ts";
 * const keyboard = new HidKeyboard();
 * const attached = await attachOwnDevice(keyboard);
 * await keyboard.type("hello\n");
 * await attached.close();
 * ```
 */
export async function attachOwnDevice(
  device: UsbDevice,
  options: OwnDeviceOptions = {},
): Promise<AttachedOwnDevice> {
  const busid = options.busid ?? "1-1";
  const gateway = options.gatewaySocket ?? SYSTEM_GATEWAY;
  const server = new UsbipServer();
  server.addDevice(device, { busid });
  const [mine, theirs] = socketPair();
  let ended: Promise<void>;
  try {
    // The session's peer is the gateway, to which the other end goes.
    ended = server.accept(wrapSocketFd(mine, { transport: "unix", address: `gateway ${gateway}` }));
  } catch (e) {
    closeFd(mine);
    closeFd(theirs);
    throw e;
  }
  const close = async () => {
    await server.close();
  };
  let request: FdSocket | undefined;
  try {
    const remote = { transport: "unix", path: gateway } as const;
    request = await FdSocket.connect(remote).catch((e) => {
      throw e instanceof OsError ? connectErrorFor(remote, e) : e;
    });
    // The request travels over node:net; the socket goes with sendmsg(2) on the same socket.
    const conn = wrapSocketFd(dupFd(request.fd), { transport: "unix", address: gateway });
    const sock = request;
    const reply = await requestAttach(
      conn,
      { kind: "stream", busid },
      () => sock.sendFd(theirs),
    );
    if (reply.status !== OpStatus.ST_OK) {
      throw new GatewayRefusal(reply.status, `Cannot attach ${busid}: ${reply.message}`);
    }
    return { vhciPort: reply.vhciPort, ended, close };
  } catch (e) {
    await close();
    throw e;
  } finally {
    request?.close();
    // The kernel (through the gateway) holds its own reference to the other end now.
    closeFd(theirs);
  }
}
