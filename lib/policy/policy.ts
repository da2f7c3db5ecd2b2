/**
 * Access policy: plain data in, a decision out. The server asks it which devices a peer may
 * see and import; a device a peer may not import is not listed to it either.
 *
 * @module
 */

import type { PeerInfo } from "../transport/connection.ts";

/** One interface of a device, as a policy sees it. */
export interface InterfaceFacts {
  bInterfaceClass: number;
  bInterfaceSubClass: number;
  bInterfaceProtocol: number;
}

/** What a policy may know about a device. */
export interface DeviceFacts {
  busid: string;
  idVendor: number;
  idProduct: number;
  bDeviceClass: number;
  /** The interfaces of the active (or first) configuration, alternate setting 0. */
  interfaces: InterfaceFacts[];
  /** The serial number string, if the device has one. */
  serial?: string;
  /** "emulated" for devices written here, "passthrough" for real host devices. */
  origin: "emulated" | "passthrough";
}

/** What a policy lets a peer do with a device. */
export type PolicyEffect = "allow" | "deny" | "read-only";

/** A policy's answer: the effect, the rule behind it (if a rule decided), and why. */
export interface PolicyDecision {
  effect: PolicyEffect;
  /** The 1-based number of the rule that decided; absent when a default decided. */
  rule?: number;
  /** For logs: "rule 2 (...)" or "no rule matched: ...". */
  reason: string;
}

/** Decides what a peer may do with a device. */
export interface Policy {
  decide(peer: PeerInfo, device: DeviceFacts): PolicyDecision;
}

/**
 * The policy that allows everything, for library users who put the server only where its
 * clients are trusted. The gateway's CLI uses the rule policy instead.
 *
 * @example
 * ```ts
 * import { allowAll } from "./policy.ts";
 * const d = allowAll.decide({ transport: "tcp", address: "127.0.0.1:1" }, {
 *   busid: "1-1", idVendor: 1, idProduct: 2, bDeviceClass: 0, interfaces: [],
 *   origin: "emulated" });
 * console.assert(d.effect === "allow");
 * ```
 */
export const allowAll: Policy = Object.freeze({
  decide: (): PolicyDecision => ({ effect: "allow", reason: "no policy configured" }),
});
