/**
 * Keep-alive tuning of a listening TCP socket, inherited by every connection it accepts (Linux
 * copies a listener's socket options into each accepted socket). Without it, a client whose
 * host vanished without a FIN (cable pulled, VM killed, network gone) holds its session, and
 * its device, for the kernel's default of over two hours; with it, the kernel gives up on the
 * connection within about `idle + interval * count` seconds of silence, or `userTimeoutMs` of
 * unacknowledged data, the session's read fails and the device is free again.
 *
 * `Deno.listen` hides its file descriptor, so the listener's is found through /proc: the
 * socket inode listening on the port (`/proc/self/net/tcp{,6}`) and the descriptor that
 * links to it (`/proc/self/fd`).
 *
 * @module
 */

import { errorMessage } from "../util/error_message.ts";
import { getLogger } from "../logtape.ts";
import { getIntOption, type KeepaliveOptions, setKeepalive, SockOpt } from "../ffi/sockopt.ts";

export type { KeepaliveOptions } from "../ffi/sockopt.ts";

const TCP_LISTEN = "0A";

/**
 * The gateway's default: a vanished client is noticed within about 25 s of silence, or 30 s of
 * unacknowledged replies (the Linux client always reads, so only a dead host lets data sit).
 */
export const DEFAULT_KEEPALIVE: Readonly<KeepaliveOptions> = Object.freeze({
  idleSeconds: 10,
  intervalSeconds: 5,
  count: 3,
  userTimeoutMs: 30_000,
});

/** The inodes of TCP sockets in `state` on local `port` (and remote `remotePort`, if given). */
export function socketInodes(port: number, state: string, remotePort?: number): Set<string> {
  const inodes = new Set<string>();
  for (const file of ["/proc/self/net/tcp", "/proc/self/net/tcp6"]) {
    let text: string;
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== state) continue;
      if (parseInt(f[1]!.split(":")[1]!, 16) !== port) continue;
      if (remotePort !== undefined && parseInt(f[2]!.split(":")[1]!, 16) !== remotePort) continue;
      inodes.add(f[9]!);
    }
  }
  return inodes;
}

/** The first of this process's descriptors that is one of these socket inodes. */
export function fdOfSocket(inodes: Set<string>): number | undefined {
  if (inodes.size === 0) return undefined;
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    let target: string;
    try {
      target = Deno.readLinkSync(`/proc/self/fd/${entry.name}`);
    } catch {
      continue; // closed meanwhile
    }
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m && inodes.has(m[1]!)) return Number(entry.name);
  }
  return undefined;
}

/** Reads the keep-alive settings of a TCP socket descriptor (for tests and diagnostics). */
export function readKeepalive(fd: number): Partial<KeepaliveOptions> & { enabled?: boolean } {
  const { SOL_SOCKET, SO_KEEPALIVE, IPPROTO_TCP } = SockOpt;
  const opt = (level: number, name: number) => getIntOption(fd, level, name);
  const enabled = opt(SOL_SOCKET, SO_KEEPALIVE);
  const out: Partial<KeepaliveOptions> & { enabled?: boolean } = {};
  if (enabled !== undefined) out.enabled = enabled !== 0;
  const idle = opt(IPPROTO_TCP, SockOpt.TCP_KEEPIDLE);
  if (idle !== undefined) out.idleSeconds = idle;
  const interval = opt(IPPROTO_TCP, SockOpt.TCP_KEEPINTVL);
  if (interval !== undefined) out.intervalSeconds = interval;
  const count = opt(IPPROTO_TCP, SockOpt.TCP_KEEPCNT);
  if (count !== undefined) out.count = count;
  const user = opt(IPPROTO_TCP, SockOpt.TCP_USER_TIMEOUT);
  if (user !== undefined) out.userTimeoutMs = user;
  return out;
}

/**
 * Applies `options` to the socket listening on `port`; the connections it accepts inherit
 * them. Returns why it could not (no /proc, no FFI permission, socket not found), or
 * `undefined` when done.
 */
export function tuneListenerKeepalive(port: number, options: KeepaliveOptions): string | undefined {
  let fd: number | undefined;
  try {
    fd = fdOfSocket(socketInodes(port, TCP_LISTEN));
  } catch (e) {
    return `cannot read /proc: ${errorMessage(e)}`;
  }
  if (fd === undefined) return `no listening socket on port ${port} in /proc/self/fd`;
  return tuneKeepaliveFd(fd, options);
}

/**
 * A listener's keep-alive, as the TCP and TLS listeners set it: `keepalive` (default
 * {@linkcode DEFAULT_KEEPALIVE}; `false`: the kernel's) applied to the socket on `port`, with a
 * warning naming `listener` when that fails. Returns the problem, or `undefined`.
 */
export function keepListenerAlive(
  port: number,
  keepalive: KeepaliveOptions | false | undefined,
  listener: string,
): string | undefined {
  if (keepalive === false) return undefined;
  const problem = tuneListenerKeepalive(port, keepalive ?? DEFAULT_KEEPALIVE);
  if (problem !== undefined) {
    getLogger(["usbipgw", "transport"]).warn(
      "{listener}: keep-alive not tuned ({problem}); a vanished client is noticed late",
      { listener, problem },
    );
  }
  return problem;
}

/**
 * Applies `options` to TCP socket `fd` (a listener, whose accepted sockets inherit them, or one
 * connection). Returns why it could not, or `undefined` when done.
 */
export function tuneKeepaliveFd(fd: number, options: KeepaliveOptions): string | undefined {
  try {
    const ok = setKeepalive(fd, options);
    return ok ? undefined : `setsockopt failed on fd ${fd}`;
  } catch (e) {
    return `cannot call setsockopt: ${errorMessage(e)}`;
  }
}
