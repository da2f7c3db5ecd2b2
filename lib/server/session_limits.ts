/**
 * Limits on what one USB/IP peer may make the server hold: connections, time before an import,
 * pending URBs and buffered bytes. They complement {@linkcode UsbipLimits}, which bounds each
 * untrusted length in a frame; these bound the sum over a connection and over a peer.
 *
 * @module
 */

import type { PeerInfo } from "../transport/connection.ts";

/**
 * Per-connection and per-peer limits of a {@linkcode UsbipServer}. A count or size may be
 * `Infinity` to switch that limit off. Exceeding a connection limit refuses the new connection;
 * exceeding any other limit closes that one connection with an audit line naming the limit.
 */
export interface SessionLimits {
  /** Connections open at once, over every listener; more are closed as they are accepted. */
  maxConnections: number;
  /**
   * Connections open at once from one peer: one uid for unix peers with credentials, one
   * certificate (its fingerprint) for TLS peers, else one IP address (the port does not count)
   * for TCP, else one socket path or label.
   */
  maxConnectionsPerPeer: number;
  /**
   * Milliseconds from accept until a successful OP_REQ_IMPORT. A connection that only lists
   * devices, or sends nothing, is closed when it runs out. The URB phase has no idle timeout:
   * an idle IN transfer may legitimately stay pending for ever.
   */
  opPhaseTimeoutMs: number;
  /** URBs submitted and not yet completed or unlinked, per connection. */
  maxPendingUrbs: number;
  /**
   * Bytes one connection makes the server hold: OUT data of its pending URBs plus the replies
   * queued for a peer that does not read them fast enough.
   */
  maxBufferedBytes: number;
}

/**
 * The default {@linkcode SessionLimits}, far above what a Linux client needs and far below
 * what would exhaust the gateway:
 * - 256 connections leave room under the usual 1024 open files of a service;
 * - 32 per peer: a client holds one connection per imported device, and one vhci_hcd has 16
 *   ports (8 high-speed, 8 SuperSpeed), plus room for lists and imports under way;
 * - 10 s to import: `usbip list` and `usbip attach` finish their op phase in milliseconds;
 * - 1024 pending URBs: vhci keeps at most a few hundred in flight per device;
 * - 64 MiB buffered: four transfers of the largest size {@linkcode UsbipLimits} accepts.
 */
export const DEFAULT_SESSION_LIMITS: Readonly<SessionLimits> = Object.freeze({
  maxConnections: 256,
  maxConnectionsPerPeer: 32,
  opPhaseTimeoutMs: 10_000,
  maxPendingUrbs: 1024,
  maxBufferedBytes: 64 * 1024 * 1024,
});

/** The longest delay `setTimeout` honours (2^31 - 1 ms, about 24.8 days). */
const MAX_TIMER_MS = 0x7fffffff;

/**
 * Fills in {@linkcode DEFAULT_SESSION_LIMITS} for the limits `overrides` leaves out and checks
 * every value. Throws `RangeError` for a value that is not a positive integer or `Infinity`.
 *
 * @example Overriding one limit
 * ```ts
 * import { resolveSessionLimits } from "./session_limits.ts";
 * const limits = resolveSessionLimits({ maxPendingUrbs: 64 });
 * console.assert(limits.maxPendingUrbs === 64 && limits.maxConnections === 256);
 * ```
 */
export function resolveSessionLimits(overrides: Partial<SessionLimits> = {}): SessionLimits {
  const limits: SessionLimits = { ...DEFAULT_SESSION_LIMITS };
  for (const name of Object.keys(DEFAULT_SESSION_LIMITS) as (keyof SessionLimits)[]) {
    const value = overrides[name];
    if (value === undefined) continue;
    if (
      typeof value !== "number" || !(value === Infinity || Number.isSafeInteger(value)) || value < 1
    ) {
      throw new RangeError(
        `Cannot set session limit ${name}: ${String(value)} is not a positive integer or Infinity`,
      );
    }
    if (name === "opPhaseTimeoutMs" && value !== Infinity && value > MAX_TIMER_MS) {
      throw new RangeError(
        `Cannot set session limit ${name}: ${value} is above ${MAX_TIMER_MS} (use Infinity for no limit)`,
      );
    }
    limits[name] = value;
  }
  for (const name of Object.keys(overrides)) {
    if (!(name in DEFAULT_SESSION_LIMITS)) {
      throw new RangeError(`Cannot set session limit ${name}: there is no such limit`);
    }
  }
  return limits;
}

/**
 * The key under which {@linkcode SessionLimits.maxConnectionsPerPeer} counts a peer: `uid:N`
 * for a unix peer with credentials, `tls:FINGERPRINT` (64 lowercase hex digits) for a TLS peer
 * with a verified certificate, `tcp:ADDRESS` for TCP and for a TLS peer without one (without
 * the port, IPv6 without brackets), else the transport and address. A certificate counts
 * wherever it connects from, so one client cannot take every slot by coming from many
 * addresses, and two clients behind one NAT address do not share a limit.
 *
 * @example
 * ```ts
 * import { peerKey } from "./session_limits.ts";
 * console.assert(peerKey({ transport: "tcp", address: "[::1]:5000" }) === "tcp:::1");
 * console.assert(peerKey({ transport: "unix", address: "/run/u.sock", uid: 1000 }) === "uid:1000");
 * ```
 *
 * @example A TLS peer counts per certificate
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { peerKey } from "./session_limits.ts";
 * const certificate = { cn: "bench-3", ou: [], sans: [], fingerprint: "ab".repeat(32),
 *   pubkey: "cd".repeat(32) };
 * assertEquals(peerKey({ transport: "tls", address: "192.0.2.7:40000", certificate }),
 *   `tls:${"ab".repeat(32)}`);
 * ```
 */
export function peerKey(peer: PeerInfo): string {
  if (peer.transport === "unix" && peer.uid !== undefined) return `uid:${peer.uid}`;
  if (peer.transport === "tls" && peer.certificate !== undefined) {
    return `tls:${peer.certificate.fingerprint.replaceAll(":", "").toLowerCase()}`;
  }
  if (peer.transport === "tcp" || peer.transport === "tls") {
    const a = peer.address;
    if (a.startsWith("[")) {
      const close = a.indexOf("]");
      const host = a.slice(1, close < 0 ? a.length : close).toLowerCase();
      // An IPv4 peer of a dual-stack listener counts as that IPv4 address.
      const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(host);
      return `tcp:${mapped ? mapped[1] : host}`;
    }
    const colon = a.lastIndexOf(":");
    const host = colon < 0 ? a : a.slice(0, colon);
    return `tcp:${host}`;
  }
  return `${peer.transport}:${peer.address}`;
}

/** The reason a connection is closed for exceeding `limit`: it names the limit and its value. */
export function limitReason(
  limit: keyof SessionLimits,
  value: number,
  detail: string,
): string {
  return `limit ${limit}=${value} exceeded: ${detail}`;
}
