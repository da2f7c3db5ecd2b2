/**
 * usbipgw as a library: write a virtual USB device by subclassing {@linkcode UsbDevice},
 * export it with {@linkcode UsbipServer}, and serve it over TCP or a unix socket to the Linux
 * kernel's USB/IP client (or drive it yourself with {@linkcode importDevice}).
 *
 * @example A vendor device that echoes bulk data back
 * ```ts
 * import { OK, parseRule, RulePolicy, Speed, TcpListener, TransferType, UsbDevice,
 *   UsbipServer, type TransferResult, type UsbTransfer } from "./mod.ts";
 *
 * class Echo extends UsbDevice {
 *   #last = new Uint8Array(0);
 *   constructor() {
 *     super({
 *       device: { bcdUSB: 0x200, bDeviceClass: 0xff, bDeviceSubClass: 0, bDeviceProtocol: 0,
 *         bMaxPacketSize0: 64, idVendor: 0x1209, idProduct: 0x000f, bcdDevice: 0x100,
 *         iProduct: "Echo" },
 *       configurations: [{ bConfigurationValue: 1, bmAttributes: 0x80, bMaxPower: 50,
 *         interfaces: [{ bInterfaceNumber: 0, bAlternateSetting: 0, bInterfaceClass: 0xff,
 *           bInterfaceSubClass: 0, bInterfaceProtocol: 0, endpoints: [
 *             { bEndpointAddress: 0x81, bmAttributes: TransferType.BULK, wMaxPacketSize: 512,
 *               bInterval: 0 },
 *             { bEndpointAddress: 0x01, bmAttributes: TransferType.BULK, wMaxPacketSize: 512,
 *               bInterval: 0 },
 *           ] }] }],
 *     }, Speed.HIGH);
 *   }
 *   protected override handleData(t: UsbTransfer): TransferResult {
 *     if (!t.dirIn) {
 *       this.#last = t.data.slice(); // OUT data is lent: keep a copy
 *       return OK;
 *     }
 *     return { status: "ok", data: this.#last.subarray(0, t.length) };
 *   }
 * }
 *
 * // Peers no rule allows are denied; this one lets loopback TCP clients in.
 * const policy = new RulePolicy({ rules: [parseRule({ action: "allow", source: "127.0.0.0/8" })] });
 * const server = new UsbipServer({ policy });
 * server.addDevice(new Echo(), { busid: "1-1", name: "echo" });
 * const listener = new TcpListener({ hostname: "127.0.0.1", port: 0 });
 * server.listen(listener);
 * // ... `usbip attach -r 127.0.0.1 -b 1-1` on the client (with --tcp-port for a non-default port)
 * await server.close();
 * ```
 *
 * The entry points: this module for device authors and embedders, `./testing.ts` to drive a
 * device in tests, `./protocol.ts` for the wire codecs. Logs go through LogTape (categories
 * under `usbipgw`): they appear once the application calls LogTape's `configure()`.
 *
 * @module
 */

// The device model: a device is descriptor data plus handlers (USB 2.0 chapter 9).
export {
  CANCELLED,
  type ControlTransfer,
  dataResult,
  type DeviceSummary,
  type IsoPacketRequest,
  type IsoPacketResult,
  type MaybePromise,
  NODEV,
  OK,
  STALL,
  type TransferResult,
  type TransferStatus,
  untilAborted,
  UsbDevice,
  type UsbTransfer,
} from "./lib/devices/usb_device.ts";
export {
  type ConfigurationDescriptor,
  DescriptorSet,
  type DeviceDescriptor,
  type EndpointDescriptor,
  endpointType,
  type InterfaceAssociation,
  type InterfaceClass,
  type InterfaceDescriptor,
  superSpeedCapability,
  type SuperSpeedCompanion,
  TransferType,
  type TransferTypeName,
  usb2ExtensionCapability,
  type UsbDescriptors,
} from "./lib/devices/descriptors.ts";
export {
  decodeSetupPacket,
  DescriptorType,
  encodeSetupPacket,
  Feature,
  Request,
  RequestType,
  type SetupPacket,
} from "./lib/protocol/setup_packet.ts";
export {
  OpStatus,
  Speed,
  type SpeedValue,
  TransferFlags,
  UrbStatus,
  USBIP_PORT,
} from "./lib/protocol/constants.ts";

// The emulated devices, their options and what those options take.
export { GADGET_ZERO, GadgetZero, type GadgetZeroOptions } from "./lib/devices/gadget_zero.ts";
export {
  hidClassDescriptor,
  hidDescriptor,
  HidDescriptorType,
  hidDeviceDescriptors,
  type HidDeviceShape,
  HidInputDevice,
  type HidInputOptions,
  HidProtocol,
  HidReportType,
  HidRequest,
} from "./lib/devices/hid.ts";
export {
  encodeKeyboardReport,
  keyFor,
  type KeyStroke,
  KeyUsage,
  Modifier,
  reportsFor,
  type ReportsForOptions,
  type TextReports,
} from "./lib/devices/hid_keymap.ts";
export {
  HidKeyboard,
  type HidKeyboardOptions,
  type KeyboardLeds,
  Led,
  type TypeResult,
} from "./lib/devices/keyboard.ts";
export {
  HidMouse,
  type HidMouseOptions,
  HidPointer,
  type MouseState,
  parsePointerCommand,
  PointerButton,
  type PointerCommand,
} from "./lib/devices/mouse.ts";
export {
  HidTablet,
  type HidTabletOptions,
  TABLET_MAX,
  type TabletState,
} from "./lib/devices/tablet.ts";
export {
  CdcAcm,
  type CdcAcmOptions,
  type ControlLines,
  type LineCoding,
} from "./lib/devices/cdc_acm.ts";
export {
  type FtdiDataCharacteristics,
  type FtdiFlowControl,
  type FtdiModemControl,
  FtdiSerial,
  type FtdiSerialOptions,
} from "./lib/devices/ftdi.ts";
export { celsiusToRaw, GoTemp, type GoTempOptions } from "./lib/devices/gotemp.ts";
export {
  MassStorage,
  type MassStorageOptions,
  type MassStorageSpeed,
} from "./lib/devices/storage/storage.ts";
export { type BotState } from "./lib/devices/storage/bot.ts";
export {
  type CheckCondition,
  type CommandContext,
  type LogicalUnitOptions,
  type ScsiCommand,
  ScsiLogicalUnit,
  type ScsiStatus,
  type Sense,
} from "./lib/devices/storage/scsi.ts";
export {
  DiskImage,
  type DiskImageOptions,
  type ImageIo,
  type StorageBacking,
} from "./lib/devices/storage/image.ts";
export {
  UsbfsDevice,
  type UsbfsDeviceOptions,
  type UsbfsOps,
} from "./lib/devices/passthrough/usbfs_device.ts";
export {
  findHostDevice,
  type HostDevice,
  type HostDeviceOptions,
  type HostDeviceSelector,
  type HostInterface,
  listHostDevices,
} from "./lib/devices/passthrough/host_devices.ts";
export {
  BACKEND_KINDS,
  type BackendKind,
  type BackendSpec,
  type BackendStateListener,
  CharBackend,
  type CharBackendOptions,
  type CharBackendStats,
  type LineSettings,
  openCharBackend,
} from "./lib/backends/char/mod.ts";
export { ByteQueue } from "./lib/backends/char/byte_queue.ts";
export { type BackendLogger, type LogFn } from "./lib/backends/_backend_log.ts";
export { type Cancellation, Notifier, type WaitOutcome } from "./lib/util/wait.ts";
export {
  constantSource,
  openTemperatureSource,
  sequenceSource,
  sineSource,
  type TemperatureSource,
  type TemperatureSourceOptions,
  type TemperatureSourceSpec,
} from "./lib/backends/temperature_source.ts";

// The server, its limits and policy.
export {
  type AddDeviceOptions,
  type DeviceStatus,
  type HostDeviceHandler,
  type HostDeviceOutcome,
  type LiveCaptureHandler,
  type LocalAttachService,
  type ServerStatus,
  type SessionStatus,
  UsbipServer,
  type UsbipServerOptions,
} from "./lib/server/server.ts";
export { Session, type SessionStats, type SessionUsage } from "./lib/server/session.ts";
export {
  type AttachAnswer,
  type CaptureAnswer,
  type CaptureRequest,
  type ClaimResult,
  type DetachAnswer,
  type DeviceListing,
  type HiddenDevice,
  type HostDeviceAction,
  type HostDeviceAnswer,
  type LiveCaptureOutput,
  type SessionHost,
  type SocketRequest,
} from "./lib/server/session_host.ts";
export { type ExportedDevice } from "./lib/server/exported_device.ts";
export { DEFAULT_SESSION_LIMITS, type SessionLimits } from "./lib/server/session_limits.ts";
export { type UrbCompletion } from "./lib/server/ret_submit.ts";
export {
  type ImportRefusal,
  type ObservedImport,
  type ServerEvent,
  type UrbObserver,
  UrbObservers,
  urbTransferType,
} from "./lib/server/urb_observer.ts";
// Traffic captures as pcapng (Linux usbmon records) for Wireshark: into a file, or live
// (OP_REQ_CAPTURE, given to a server as its `liveCapture` option).
export { type CaptureOutput, type CaptureSource, serverSource } from "./lib/capture/capture.ts";
export { FileCapture, type FileCaptureOptions } from "./lib/capture/file_capture.ts";
export { liveCapture } from "./lib/capture/live_capture.ts";
// Prometheus metrics of a server (`serve --metrics`): the counts, and an HTTP listener for them.
export { LATENCY_BUCKETS_SECONDS, ServerMetrics } from "./lib/metrics/server_metrics.ts";
export { serveMetrics, type ServingMetrics } from "./lib/metrics/serve_metrics.ts";
export {
  allowAll,
  type DeviceFacts,
  type InterfaceFacts,
  type Policy,
  type PolicyDecision,
  type PolicyEffect,
} from "./lib/policy/policy.ts";
export {
  type DeviceMatch,
  parseRule,
  type PeerMatch,
  type Rule,
  RulePolicy,
  type RulePolicyOptions,
} from "./lib/policy/rules.ts";
export { type Cidr } from "./lib/policy/cidr.ts";

// Listeners and connections.
export {
  type Connection,
  describePeer,
  type DirectIo,
  type Listener,
  type PeerCertificate,
  type PeerInfo,
} from "./lib/transport/connection.ts";
export {
  connectTcp,
  type KeepaliveOptions,
  TcpListener,
  type TcpListenOptions,
} from "./lib/transport/tcp.ts";
export { connectUnix, UnixListener, type UnixListenOptions } from "./lib/transport/unix.ts";
export {
  type TlsCredentialFiles,
  TlsCredentialsError,
  type TlsCredentialsFailure,
  TlsListener,
  type TlsListenOptions,
  type TlsRefusalHandler,
} from "./lib/transport/tls.ts";
export { memoryConnectionPair } from "./lib/transport/memory.ts";
export { ErrnoFailure } from "./lib/transport/_errno.ts";
export { ListenError, type ListenFailure, type PathFailure } from "./lib/transport/listen_error.ts";
export { ConnectError, type ConnectFailure } from "./lib/transport/connect_error.ts";

// Clients: USB/IP over a connection, the kernel's vhci_hcd, and the local gateway.
export {
  importDevice,
  ImportRefusedError,
  requestDeviceList,
  type SubmitOptions,
  type SubmittedHandle,
  UrbChannel,
} from "./lib/client/usbip_client.ts";
export { type RetSubmit } from "./lib/protocol/urb_messages.ts";
export {
  type OpRepCapture,
  type OpReqCapture,
  type UsbipDeviceRecord,
  type UsbipExportedDevice,
} from "./lib/protocol/op_messages.ts";
export {
  attachDevice,
  type AttachedPort,
  type AttachOptions,
  type AttachResult,
  type AttachTls,
  ClientError,
  type ClientErrorReason,
  detachPort,
  listAttached,
  type VhciOptions,
} from "./lib/client/attach.ts";
export { type RemoteAddress } from "./lib/client/fd_socket.ts";
export { type TlsRelayControl } from "./lib/client/tls_client.ts";
export {
  type AttributeWriter,
  type PortRecord,
  type VhciHub,
  type VhciPort,
} from "./lib/client/vhci.ts";
export {
  type AttachedOwnDevice,
  attachOwnDevice,
  type OwnDeviceOptions,
} from "./lib/client/own_device.ts";
export {
  type AttachReply,
  type DetachReply,
  GatewayRefusal,
  requestAttach,
  requestDetach,
} from "./lib/client/gateway_requests.ts";
