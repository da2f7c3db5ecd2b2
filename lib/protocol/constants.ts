/**
 * USB/IP wire constants, named as in Linux `drivers/usb/usbip/usbip_common.h` and
 * `tools/usb/usbip/src/usbip_network.h` (Documentation/usb/usbip_protocol.rst).
 *
 * @module
 */

/** The protocol version every op header carries; clients reject any other. */
export const USBIP_VERSION = 0x0111;

/** The IANA port of USB/IP. */
export const USBIP_PORT = 3240;

/** Op-phase message codes. */
export const OpCode = {
  OP_REQ_DEVLIST: 0x8005,
  OP_REP_DEVLIST: 0x0005,
  OP_REQ_IMPORT: 0x8003,
  OP_REP_IMPORT: 0x0003,
  /**
   * usbipgw's own extension, never sent by the kernel or the usbip tool: asks a gateway for
   * its status (sessions, devices, counters) as JSON. Answered only to local administrators.
   */
  OP_REQ_STATUS: 0x80f0,
  /** The answer to {@linkcode OpCode.OP_REQ_STATUS}: a 4-byte length, then UTF-8 JSON. */
  OP_REP_STATUS: 0x00f0,
  /**
   * usbipgw's own extension, as `usbip bind` on a Linux host: asks a gateway to export the host
   * device with the bus id that follows (32 bytes, NUL-padded, as in OP_REQ_IMPORT). Answered
   * only to local administrators, like OP_REQ_STATUS.
   */
  OP_REQ_BIND: 0x80f1,
  /** The answer to {@linkcode OpCode.OP_REQ_BIND}: a 4-byte length, then a UTF-8 message. */
  OP_REP_BIND: 0x00f1,
  /** usbipgw's own extension, as `usbip unbind`: withdraws a host device bound before. */
  OP_REQ_UNBIND: 0x80f2,
  /** The answer to {@linkcode OpCode.OP_REQ_UNBIND}: a 4-byte length, then a UTF-8 message. */
  OP_REP_UNBIND: 0x00f2,
  /**
   * usbipgw's own extension, as `usbip attach` run by the gateway: asks a gateway running as
   * root to attach a device into this machine's kernel (vhci_hcd). The body (292 bytes) is
   * `kind` u8 (one of {@linkcode AttachKind}), a reserved u8 (0), `port` u16 (the remote TCP
   * port, 0 for 3240; 0 unless remote), `busid[32]` and `host[256]` (remote only, all zeros
   * otherwise), both NUL-padded. Only a unix peer with credentials is heard, and the gateway's
   * handler decides. One request per connection, closed after the final answer.
   *
   * For {@linkcode AttachKind.ATTACH_STREAM} the socket travels after the request, in this
   * order:
   * 1. the requester sends OP_REQ_ATTACH and reads;
   * 2. once the gateway agrees to take a socket, it answers OP_REP_ATTACH with status ST_OK and
   *    `vhciPort` {@linkcode VHCI_PORT_SEND_SOCKET} ("send the socket now"; an empty message);
   *    a gateway that refuses sends the final OP_REP_ATTACH at once instead;
   * 3. the requester sends one byte (any value) whose ancillary data carries the connected
   *    socket with SCM_RIGHTS, and reads again;
   * 4. the gateway sends the final OP_REP_ATTACH and closes the connection.
   */
  OP_REQ_ATTACH: 0x80f3,
  /**
   * The answer to {@linkcode OpCode.OP_REQ_ATTACH}: `vhciPort` u32 (the vhci port the device
   * was attached to, {@linkcode VHCI_PORT_NONE} when it was not, or
   * {@linkcode VHCI_PORT_SEND_SOCKET} in the intermediate answer), then a 4-byte length and a
   * UTF-8 message of at most {@linkcode MAX_BIND_MESSAGE_BYTES} bytes.
   */
  OP_REP_ATTACH: 0x00f3,
  /**
   * usbipgw's own extension, as `usbip detach`: asks the gateway to detach the device on the
   * vhci port that follows (`vhciPort` u32). Heard from the same peers as OP_REQ_ATTACH.
   */
  OP_REQ_DETACH: 0x80f4,
  /** The answer to {@linkcode OpCode.OP_REQ_DETACH}: a 4-byte length, then a UTF-8 message. */
  OP_REP_DETACH: 0x00f4,
  /**
   * usbipgw's own extension: asks the gateway to stream its traffic as pcapng (Linux usbmon
   * records, link type 220). The body (36 bytes) is `busid[32]` (NUL-padded; empty for every
   * device) and `snaplen` u32 (the most data bytes kept per record; 0 for all). Answered only
   * to the peers OP_REQ_STATUS is; once the answer says ST_OK, the connection carries pcapng
   * blocks from the gateway until either side closes it.
   */
  OP_REQ_CAPTURE: 0x80f5,
  /** The answer to {@linkcode OpCode.OP_REQ_CAPTURE}: a 4-byte length, then a UTF-8 message. */
  OP_REP_CAPTURE: 0x00f5,
} as const;

/** What OP_REQ_ATTACH asks to attach: the `kind` field of its body. */
export const AttachKind = {
  /** A device of this gateway, by its bus id. */
  ATTACH_LOCAL: 0,
  /** A device of another USB/IP server: `host`, `port` and `busid`. */
  ATTACH_REMOTE: 1,
  /** A connected socket the requester hands over with SCM_RIGHTS, whose server exports `busid`. */
  ATTACH_STREAM: 2,
} as const;

/** The `vhciPort` of an OP_REP_ATTACH that attached nothing. */
export const VHCI_PORT_NONE = 0xffffffff;

/**
 * The `vhciPort` of the intermediate OP_REP_ATTACH (status ST_OK) of a stream attach: "send
 * the socket now", see {@linkcode OpCode.OP_REQ_ATTACH}.
 */
export const VHCI_PORT_SEND_SOCKET = 0xfffffffe;

/** Largest OP_REP_STATUS body a client accepts (the JSON is the gateway's own). */
export const MAX_STATUS_BYTES = 4 * 1024 * 1024;

/**
 * Largest message in an OP_REP_BIND, OP_REP_UNBIND, OP_REP_ATTACH or OP_REP_DETACH, in UTF-8
 * bytes: a server cuts a longer one, a client refuses it as a protocol error.
 */
export const MAX_BIND_MESSAGE_BYTES = 1024;

/** Op-phase status values (`ST_*` in usbip_common.h). */
export const OpStatus = {
  ST_OK: 0,
  ST_NA: 1,
  ST_DEV_BUSY: 2,
  ST_DEV_ERR: 3,
  ST_NODEV: 4,
  ST_ERROR: 5,
} as const;

/** URB-phase commands. */
export const UrbCommandCode = {
  USBIP_CMD_SUBMIT: 0x0001,
  USBIP_CMD_UNLINK: 0x0002,
  USBIP_RET_SUBMIT: 0x0003,
  USBIP_RET_UNLINK: 0x0004,
} as const;

/** The `direction` field of a URB header. */
export const Direction = { USBIP_DIR_OUT: 0, USBIP_DIR_IN: 1 } as const;

/** The URB transfer flags that travel over USB/IP. */
export const TransferFlags = {
  URB_SHORT_NOT_OK: 0x0001,
  URB_ISO_ASAP: 0x0002,
  URB_NO_TRANSFER_DMA_MAP: 0x0004,
  URB_ZERO_PACKET: 0x0040,
  URB_NO_INTERRUPT: 0x0080,
  URB_FREE_BUFFER: 0x0100,
  URB_DIR_IN: 0x0200,
} as const;

/** Negative errno values used as URB status (Linux x86_64 numbering). */
export const UrbStatus = {
  OK: 0,
  ENOENT: -2,
  EINPROGRESS: -115,
  EPROTO: -71,
  EILSEQ: -84,
  EPIPE: -32,
  ECOMM: -70,
  ENOSR: -63,
  EOVERFLOW: -75,
  EREMOTEIO: -121,
  ENODEV: -19,
  EXDEV: -18,
  EINVAL: -22,
  ECONNRESET: -104,
  ESHUTDOWN: -108,
  ETIMEDOUT: -110,
} as const;

/** Device speed as USB/IP reports it (`enum usb_device_speed`). */
export const Speed = {
  UNKNOWN: 0,
  LOW: 1,
  FULL: 2,
  HIGH: 3,
  WIRELESS: 4,
  SUPER: 5,
  SUPER_PLUS: 6,
} as const;

/** A device speed value. */
export type SpeedValue = typeof Speed[keyof typeof Speed];

/** Byte sizes of the fixed wire structures. */
export const WireSize = {
  OP_HEADER: 8,
  BUSID: 32,
  PATH: 256,
  /** The `host` field of OP_REQ_ATTACH. */
  HOST: 256,
  DEVICE_RECORD: 312,
  INTERFACE_RECORD: 4,
  URB_HEADER: 48,
  ISO_PACKET_DESCRIPTOR: 16,
  SETUP: 8,
} as const;

/**
 * Limits applied to every untrusted length or count before anything is allocated from it.
 * The defaults follow Linux usbfs (16 MiB per transfer) and a generous ISO packet count.
 */
export interface UsbipLimits {
  /** Largest `transfer_buffer_length` accepted in a CMD_SUBMIT or RET_SUBMIT. */
  maxTransferBufferLength: number;
  /** Largest `number_of_packets` accepted for an isochronous transfer. */
  maxIsoPackets: number;
  /** Largest device count accepted in an OP_REP_DEVLIST (client side). */
  maxDevices: number;
  /** Largest `bNumInterfaces` accepted in a device record (client side). */
  maxInterfaces: number;
}

/** The default {@linkcode UsbipLimits}. */
export const DEFAULT_LIMITS: Readonly<UsbipLimits> = Object.freeze({
  maxTransferBufferLength: 16 * 1024 * 1024,
  maxIsoPackets: 1024,
  maxDevices: 4096,
  maxInterfaces: 32,
});
