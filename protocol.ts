/**
 * The USB/IP wire protocol, for clients, servers and tools of their own: the constants, a
 * decoder and an encoder for every message (OP_REQ/OP_REP, CMD_SUBMIT, RET_SUBMIT, CMD_UNLINK,
 * RET_UNLINK, as the Linux kernel's drivers/usb/usbip/usbip_common.h lays them out), and a frame
 * reader that checks every length against limits before it allocates. Pure functions: no I/O
 * beyond reading the stream a {@linkcode FrameReader} is given.
 *
 * @example Encoding a request and decoding it back
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { decodeOpRequest, encodeOpReqImport } from "./protocol.ts";
 * assertEquals(decodeOpRequest(encodeOpReqImport("1-1")), { kind: "op_req_import", busid: "1-1" });
 * ```
 *
 * @module
 */

export {
  AttachKind,
  DEFAULT_LIMITS,
  Direction,
  MAX_BIND_MESSAGE_BYTES,
  MAX_STATUS_BYTES,
  OpCode,
  OpStatus,
  Speed,
  type SpeedValue,
  TransferFlags,
  UrbCommandCode,
  UrbStatus,
  USBIP_PORT,
  USBIP_VERSION,
  type UsbipLimits,
  VHCI_PORT_NONE,
  VHCI_PORT_SEND_SOCKET,
  WireSize,
} from "./lib/protocol/constants.ts";

export { UsbipProtocolError } from "./lib/protocol/protocol_error.ts";

export {
  type AttachRequest,
  checkDeviceCount,
  checkInterfaceCount,
  decodeBindReplyHead,
  decodeDeviceRecord,
  decodeInterfaceRecords,
  decodeOpHeader,
  decodeOpRepAttach,
  decodeOpRepAttachHead,
  decodeOpRepBind,
  decodeOpRepDetach,
  decodeOpRepDevlist,
  decodeOpRepImport,
  decodeOpRepUnbind,
  decodeOpRequest,
  encodeOpRepAttach,
  encodeOpRepBind,
  encodeOpRepDetach,
  encodeOpRepDevlist,
  encodeOpRepImport,
  encodeOpRepStatus,
  encodeOpRepUnbind,
  encodeOpReqAttach,
  encodeOpReqBind,
  encodeOpReqDetach,
  encodeOpReqDevlist,
  encodeOpReqImport,
  encodeOpReqStatus,
  encodeOpReqUnbind,
  type OpHeader,
  type OpRepAttach,
  type OpRepBind,
  type OpRepCapture,
  type OpRepDetach,
  type OpRepDevlist,
  type OpRepImport,
  type OpRepUnbind,
  type OpReqAttach,
  type OpReqBind,
  type OpReqCapture,
  type OpReqDetach,
  type OpReqDevlist,
  type OpReqImport,
  type OpReqStatus,
  type OpRequest,
  opRequestBodyLength,
  type OpReqUnbind,
  type UsbipDeviceRecord,
  type UsbipExportedDevice,
  type UsbipInterfaceRecord,
} from "./lib/protocol/op_messages.ts";

export {
  type CmdSubmit,
  cmdSubmitBodyLength,
  type CmdSubmitHeader,
  type CmdUnlink,
  decodeCmdSubmit,
  decodeCmdSubmitBody,
  decodeCmdSubmitHeader,
  decodeCmdUnlink,
  decodeRetSubmit,
  decodeRetSubmitBody,
  decodeRetSubmitHeader,
  decodeRetUnlink,
  encodeCmdSubmit,
  encodeCmdUnlink,
  encodeRetSubmit,
  encodeRetUnlink,
  isoPacketCount,
  type IsoPacketDescriptor,
  packIsoData,
  peekUrbCommand,
  type RetSubmit,
  retSubmitBodyLength,
  type RetSubmitHeader,
  type RetUnlink,
  type SubmittedUrb,
  type UrbCommand,
  type UrbHeaderBasic,
  type UrbReturn,
} from "./lib/protocol/urb_messages.ts";

export {
  type ByteSource,
  FrameReader,
  type IsochronousPredicate,
} from "./lib/protocol/frame_reader.ts";

export { BufferPool } from "./lib/protocol/buffer_pool.ts";

export { BUSID_PATTERN, busidProblem, busnumOf } from "./lib/protocol/busid.ts";
