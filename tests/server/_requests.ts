// Helpers for the tests of usbipgw's extension requests (OP_REQ_BIND, OP_REQ_UNBIND,
// OP_REQ_ATTACH, OP_REQ_DETACH): the requests and the peers they come from, a server with the
// log records captured, one request answered over an in-memory connection, and the audit lines.
import { type Connection, type PeerInfo, UsbipServer, type UsbipServerOptions } from "../../mod.ts";
import type { AttachRequest } from "../../protocol.ts";
import { captureLogs, type LogCapture, render } from "./_logs.ts";

/** An attach of this machine's own device 1-2. */
export const local: AttachRequest = { kind: "local", busid: "1-2" };
/** An attach of device 3-1 of the gateway at 192.0.2.9:3240. */
export const remote: AttachRequest = {
  kind: "remote",
  host: "192.0.2.9",
  port: 3240,
  busid: "3-1",
};
/** An attach of device 1-1 over a socket the requester hands over. */
export const stream: AttachRequest = { kind: "stream", busid: "1-1" };

/** A peer over TCP. */
export const tcp: PeerInfo = { transport: "tcp", address: "192.0.2.7:4000" };

/** A peer over the unix socket with the credentials of user `uid` (group `uid`, pid 4242). */
export const unix = (uid: number): PeerInfo => ({
  transport: "unix",
  address: "/run/usbipgw.sock",
  uid,
  gid: uid,
  pid: 4242,
});

/**
 * Runs `fn` with a server built with `options` and the log records captured; closes the server
 * once `fn` has passed, and ends the capture.
 */
export async function withServer(
  options: UsbipServerOptions,
  fn: (server: UsbipServer, logs: LogCapture) => Promise<void>,
): Promise<void> {
  const logs = captureLogs();
  try {
    const server = new UsbipServer(options);
    await fn(server, logs);
    await server.close();
  } finally {
    logs.stop();
  }
}

/**
 * Serves `end` as a session of `server` while `request` runs on the requester's side; once the
 * session is over, what `request` returned and the session's end reason.
 */
export async function answered<T extends object>(
  server: UsbipServer,
  end: Connection,
  request: () => Promise<T>,
): Promise<T & { endReason: string | undefined }> {
  const done = server.accept(end);
  const session = server.sessions.at(-1)!;
  const reply = await request();
  await done;
  return { ...reply, endReason: session.endReason };
}

/**
 * The audit lines whose rendered text passes `select`, rendered, with their level; the session's
 * number reads `N` (`Session N (...)`).
 */
export function auditLines(
  logs: LogCapture,
  select: (line: string) => boolean,
): [string, string][] {
  return logs.records.filter((r) => r.category.join(".") === "usbipgw.audit" && select(render(r)))
    .map((r) => [r.level, render(r).replace(/^Session \d+/, "Session N")]);
}
