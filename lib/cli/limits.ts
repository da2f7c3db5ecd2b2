/**
 * The `[limits]` table of the configuration and the matching `serve` flags, turned into the
 * server's session limits and protocol limits. `unlimited` switches a limit off.
 *
 * @module
 */

import type { SessionLimits } from "../server/session_limits.ts";

/** Config keys and flags, with the session limit or protocol limit each one sets. */
export const LIMIT_KEYS = {
  max_connections: {
    flag: "max-connections",
    field: "maxConnections",
    unit: "count",
    help: "connections open at once, in all (default 256)",
  },
  max_connections_per_peer: {
    flag: "max-connections-per-peer",
    field: "maxConnectionsPerPeer",
    unit: "count",
    help: "connections open at once from one peer (default 32)",
  },
  op_phase_timeout_ms: {
    flag: "op-timeout-ms",
    field: "opPhaseTimeoutMs",
    unit: "count",
    help: "milliseconds a connection may take to import a device (default 10000)",
  },
  max_pending_urbs: {
    flag: "max-pending-urbs",
    field: "maxPendingUrbs",
    unit: "count",
    help: "URBs a session may have pending (default 1024)",
  },
  max_buffered_bytes: {
    flag: "max-buffered",
    field: "maxBufferedBytes",
    unit: "bytes",
    help: "bytes a session may hold in pending URBs and unread replies (default 64MiB)",
  },
  max_transfer_length: {
    flag: "max-transfer-length",
    field: "maxTransferBufferLength",
    unit: "bytes",
    help: `the largest transfer_buffer_length accepted (default 16MiB); every limit takes
"unlimited", and exceeding one closes that connection alone`,
  },
} as const;

/** A limit's config key. */
export type LimitKey = keyof typeof LIMIT_KEYS;

/** Limits as given: session limits, and the largest transfer_buffer_length accepted. */
export interface LimitsConfig {
  session: Partial<SessionLimits>;
  maxTransferBufferLength?: number;
}

const SUFFIX: Record<string, number> = {
  "": 1,
  k: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
};

/**
 * Parses a limit value: a positive integer (bytes may carry KiB/MiB/GiB), or `unlimited`.
 * Returns `undefined` for anything else.
 */
export function parseLimitValue(value: unknown, unit: "count" | "bytes"): number | undefined {
  if (value === "unlimited") return Infinity;
  if (typeof value === "number") return Number.isInteger(value) && value > 0 ? value : undefined;
  if (typeof value !== "string") return undefined;
  const m = /^(\d+)\s*([a-zA-Z]*)$/.exec(value.trim());
  if (!m) return undefined;
  const factor = SUFFIX[m[2]!.toLowerCase()];
  if (factor === undefined || (unit === "count" && factor !== 1)) return undefined;
  const n = Number(m[1]) * factor;
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/** Sets `key` in `limits` from `value`; returns an error message, or undefined. */
export function setLimit(limits: LimitsConfig, key: LimitKey, value: unknown): string | undefined {
  const { field, unit } = LIMIT_KEYS[key];
  const n = parseLimitValue(value, unit);
  if (n === undefined) {
    return `expected a positive whole number${
      unit === "bytes" ? " (KiB, MiB or GiB allowed)" : ""
    } or "unlimited"`;
  }
  if (field === "maxTransferBufferLength") {
    if (n === Infinity || n > 0x7fffffff) return "expected at most 2147483647 bytes";
    limits.maxTransferBufferLength = n;
  } else {
    limits.session[field] = n;
  }
  return undefined;
}
