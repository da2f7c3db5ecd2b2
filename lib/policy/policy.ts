/**
 * Access policy: plain data in, a decision out. The server asks it before listing a device to
 * a peer and before letting a peer import one. This is the seam the console-user (uaccess)
 * and per-device rules plug into.
 *
 * @module
 */

import type { PeerInfo } from "../transport/connection.ts";

/** What a policy may know about a device. */
export interface DeviceFacts {
  busid: string;
  idVendor: number;
  idProduct: number;
  bDeviceClass: number;
  /** The `bInterfaceClass` of each interface. */
  interfaceClasses: number[];
  /** "emulated" for devices written here, "passthrough" for real host devices. */
  origin: "emulated" | "passthrough";
}

/** What a peer wants to do with a device. */
export type PolicyAction = "list" | "import";

/** A policy's answer, with the reason given in logs. */
export interface PolicyDecision {
  allow: boolean;
  reason: string;
}

/** Decides who may see and import which device. */
export interface Policy {
  decide(peer: PeerInfo, device: DeviceFacts, action: PolicyAction): PolicyDecision;
}

/**
 * The policy that allows everything; the default for a gateway that listens only where its
 * operator put it (loopback and a unix socket whose mode restricts who can connect).
 *
 * @example
 * ```ts
 * import { allowAll } from "./policy.ts";
 * const d = allowAll.decide({ transport: "tcp", address: "127.0.0.1:1" }, {
 *   busid: "1-1", idVendor: 1, idProduct: 2, bDeviceClass: 0, interfaceClasses: [],
 *   origin: "emulated" }, "import");
 * console.assert(d.allow);
 * ```
 */
export const allowAll: Policy = Object.freeze({
  decide: (): PolicyDecision => ({ allow: true, reason: "no policy configured" }),
});
