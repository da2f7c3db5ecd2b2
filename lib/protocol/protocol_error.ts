/**
 * The error raised for a USB/IP frame that breaks the protocol (usbip_protocol.rst).
 *
 * @module
 */

/**
 * A USB/IP frame that cannot be accepted. `message` says which message and why; `field` names
 * the offending wire field, using the kernel's name (`transfer_buffer_length`, `version`, ...).
 * A session that catches it closes the connection and logs the message.
 *
 * @example Naming the field
 * ```ts
 * import { UsbipProtocolError } from "./protocol_error.ts";
 * const e = new UsbipProtocolError("CMD_SUBMIT", "number_of_packets", "is 5000, limit is 1024");
 * console.assert(e.field === "number_of_packets");
 * console.assert(e.message === "Cannot decode CMD_SUBMIT: number_of_packets is 5000, limit is 1024");
 * ```
 */
export class UsbipProtocolError extends Error {
  /** The message being decoded, e.g. `CMD_SUBMIT`. */
  readonly frame: string;
  /** The wire field at fault, e.g. `transfer_buffer_length`. */
  readonly field: string;

  /** Builds the error from the message name, the field and the detail. */
  constructor(frame: string, field: string, detail: string) {
    super(`Cannot decode ${frame}: ${field} ${detail}`);
    this.name = "UsbipProtocolError";
    this.frame = frame;
    this.field = field;
  }
}
