/**
 * Access policy: plain data in, a decision out. The server asks it which devices a peer may
 * see and import; a device a peer may not import is not listed to it either.
 *
 * @module
 */

import type { PeerInfo } from "../transport/connection.ts";

/** One interface of a device, as a policy sees it. */
export interface InterfaceFacts {
  /** The interface descriptor's class code: 0x03 HID, 0x08 mass storage, ... */
  bInterfaceClass: number;
  /** The interface descriptor's subclass code (HID: 1 for a boot interface). */
  bInterfaceSubClass: number;
  /** The interface descriptor's protocol code (HID boot: 1 keyboard, 2 mouse). */
  bInterfaceProtocol: number;
}

/** What a policy may know about a device. */
export interface DeviceFacts {
  /** The bus id the device is (or is to be) exported under, e.g. `1-1`. */
  busid: string;
  /** The device descriptor's vendor ID. */
  idVendor: number;
  /** The device descriptor's product ID. */
  idProduct: number;
  /** The device descriptor's class code; 0 when the interfaces name theirs. */
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
  /** `allow` import, `deny` (not even listed), or `read-only`: import, stored data unchanged. */
  effect: PolicyEffect;
  /** The 1-based number of the rule that decided; absent when a default decided. */
  rule?: number;
  /** For logs: "rule 2 (...)" or "no rule matched: ...". */
  reason: string;
}

/** Decides what a peer may do with a device. */
export interface Policy {
  /** Decides what `peer` may do with `device`; asked for every device list and import. */
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
