/**
 * The 8-byte SETUP packet of a control transfer (USB 2.0 §9.3), little-endian as on the bus,
 * and the standard request, descriptor and feature codes (USB 2.0 tables 9-4 to 9-6).
 *
 * @module
 */

/** A decoded SETUP packet. */
export interface SetupPacket {
  /** Bit 7 direction (1 IN), bits 6..5 type, bits 4..0 recipient (USB 2.0 table 9-2). */
  bmRequestType: number;
  /** The request code, a {@linkcode Request} value for standard requests (USB 2.0 table 9-2). */
  bRequest: number;
  /** Request-specific: GET_DESCRIPTOR's type << 8 | index, a feature selector, ... (table 9-2). */
  wValue: number;
  /** Request-specific, often an interface or endpoint number, or a language ID (table 9-2). */
  wIndex: number;
  /** Bytes in the data stage: the most an IN request takes, what an OUT request sends. */
  wLength: number;
}

/** Standard request codes (USB 2.0 table 9-4). */
export const Request = {
  GET_STATUS: 0,
  CLEAR_FEATURE: 1,
  SET_FEATURE: 3,
  SET_ADDRESS: 5,
  GET_DESCRIPTOR: 6,
  SET_DESCRIPTOR: 7,
  GET_CONFIGURATION: 8,
  SET_CONFIGURATION: 9,
  GET_INTERFACE: 10,
  SET_INTERFACE: 11,
  SYNCH_FRAME: 12,
} as const;

/** Descriptor types (USB 2.0 table 9-5, USB 3.2 table 9-6). */
export const DescriptorType = {
  DEVICE: 1,
  CONFIGURATION: 2,
  STRING: 3,
  INTERFACE: 4,
  ENDPOINT: 5,
  DEVICE_QUALIFIER: 6,
  OTHER_SPEED_CONFIGURATION: 7,
  INTERFACE_ASSOCIATION: 11,
  BOS: 15,
  DEVICE_CAPABILITY: 16,
  SS_ENDPOINT_COMPANION: 48,
} as const;

/** Standard feature selectors (USB 2.0 table 9-6). */
export const Feature = {
  ENDPOINT_HALT: 0,
  DEVICE_REMOTE_WAKEUP: 1,
  TEST_MODE: 2,
} as const;

/** `bmRequestType` fields. */
export const RequestType = {
  DIR_IN: 0x80,
  TYPE_MASK: 0x60,
  TYPE_STANDARD: 0x00,
  TYPE_CLASS: 0x20,
  TYPE_VENDOR: 0x40,
  RECIPIENT_MASK: 0x1f,
  RECIPIENT_DEVICE: 0,
  RECIPIENT_INTERFACE: 1,
  RECIPIENT_ENDPOINT: 2,
  RECIPIENT_OTHER: 3,
} as const;

/**
 * Decodes a SETUP packet.
 *
 * @example GET_DESCRIPTOR(DEVICE)
 * ```ts
 * import { decodeSetupPacket } from "./setup_packet.ts";
 * const s = decodeSetupPacket(new Uint8Array([0x80, 6, 0, 1, 0, 0, 18, 0]));
 * console.assert(s.wValue === 0x0100 && s.wLength === 18);
 * ```
 */
export function decodeSetupPacket(b: Uint8Array): SetupPacket {
  if (b.length < 8) throw new RangeError(`Cannot decode SETUP: ${b.length} bytes, expected 8`);
  const v = new DataView(b.buffer, b.byteOffset, 8);
  return {
    bmRequestType: v.getUint8(0),
    bRequest: v.getUint8(1),
    wValue: v.getUint16(2, true),
    wIndex: v.getUint16(4, true),
    wLength: v.getUint16(6, true),
  };
}

/** Encodes a SETUP packet (for clients and tests). */
export function encodeSetupPacket(s: SetupPacket): Uint8Array {
  const b = new Uint8Array(8);
  const v = new DataView(b.buffer);
  v.setUint8(0, s.bmRequestType);
  v.setUint8(1, s.bRequest);
  v.setUint16(2, s.wValue, true);
  v.setUint16(4, s.wIndex, true);
  v.setUint16(6, s.wLength, true);
  return b;
}
