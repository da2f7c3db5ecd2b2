/**
 * The device model: a device is descriptor data plus a few handlers, in the manner of QEMU's
 * hw/usb. One routine answers the standard requests (USB 2.0 §9.4) from the descriptor tables
 * and keeps configuration, alternate-setting and endpoint-halt state; a device class handles
 * only its class and vendor requests and its endpoints. USB failures are status values.
 *
 * @module
 */

import type { SpeedValue } from "../protocol/constants.ts";
import { waitFor } from "../util/wait.ts";
import {
  DescriptorSet,
  type EndpointDescriptor,
  endpointType,
  type InterfaceClass,
  interfaceClasses,
  type InterfaceDescriptor,
  type TransferTypeName,
  type UsbDescriptors,
} from "./descriptors.ts";
import {
  DescriptorType,
  Feature,
  Request,
  RequestType,
  type SetupPacket,
} from "../protocol/setup_packet.ts";

/** How a transfer ended, as a device reports it. */
export type TransferStatus =
  | "ok"
  | "stall"
  | "cancelled"
  | "nodev"
  | "overflow"
  | "error"
  | "shutdown";

/** A packet of an isochronous transfer: where it lies in the transfer buffer. */
export interface IsoPacketRequest {
  /** Where the packet starts in the transfer buffer, in bytes (the descriptor's `offset`). */
  offset: number;
  /** The bytes the host expects for the packet (the descriptor's `length`). */
  length: number;
}

/** The outcome of one isochronous packet. */
export interface IsoPacketResult {
  /** The bytes the packet moved; more than its `length` is cut (IN: -EOVERFLOW, babble). */
  actualLength: number;
  /** How the packet ended; anything but "ok" counts in RET_SUBMIT's `error_count`. */
  status: TransferStatus;
}

/** One transfer submitted to a device. */
export interface UsbTransfer {
  /** Endpoint number, 0..15. */
  endpoint: number;
  /** Data direction; for control transfers the SETUP's bit 7 decides. */
  dirIn: boolean;
  /** The endpoint's transfer type. */
  type: TransferTypeName;
  /** The SETUP packet of a control transfer. */
  setup?: SetupPacket;
  /** Bytes the host's buffer holds (`transfer_buffer_length`). */
  length: number;
  /** OUT data; empty for IN. Lent until the transfer completes ("Buffers" at `UsbDevice`). */
  data: Uint8Array;
  /** The host wants a short IN transfer to be an error. */
  shortNotOk: boolean;
  /** The host wants an OUT transfer that fills its last packet to end with a zero-length one. */
  zeroPacket: boolean;
  /** Packets of an isochronous transfer; empty otherwise. */
  isoPackets: IsoPacketRequest[];
  /**
   * The importer may only read (a read-only policy decision): a device that stores data must
   * refuse to change it. Absent means false.
   */
  readOnly?: boolean;
  /** Aborted when the host unlinks the transfer or the session ends. */
  signal: AbortSignal;
}

/**
 * How a device completes a transfer. The session turns it into RET_SUBMIT by one rule
 * (lib/server/ret_submit.ts): IN data beyond the host's buffer (`UsbTransfer.length`) are
 * cut off and the transfer fails with -EOVERFLOW, as a host controller reports babble.
 */
export interface TransferResult {
  /** How the transfer ended; RET_SUBMIT carries it as an errno (0 for "ok", -EPIPE for "stall"). */
  status: TransferStatus;
  /**
   * IN data. For isochronous IN, a buffer with each packet's data at its offset. The device
   * hands it over and never writes it again: see {@linkcode UsbDevice}, "Buffers".
   */
  data?: Uint8Array;
  /** OUT: the bytes the device took; all of them when absent. */
  actualLength?: number;
  /** Per-packet results of an isochronous transfer. */
  isoPackets?: IsoPacketResult[];
  /**
   * Called once the server is done with `data` (see {@linkcode UsbDevice}, "Buffers"), so that
   * the device may fill that buffer again; never for a result the server drops.
   */
  release?: (() => void) | undefined;
  /**
   * With `release`: this many bytes right in front of `data`, in the same buffer, are the
   * server's to write until it calls `release`. It puts the RET_SUBMIT header there and sends
   * header and data as one write, without copying the data (see {@linkcode UsbDevice},
   * "Buffers"). `BufferPool.handOver` (lib/protocol/buffer_pool.ts) sets it.
   */
  headroom?: number;
}

/** A value or a promise of it: handlers that finish at once need not allocate a promise. */
export type MaybePromise<T> = T | Promise<T>;

/** A control transfer handed to {@linkcode UsbDevice.handleControl}. */
export interface ControlTransfer {
  /** The SETUP packet: the request and the length of its data stage. */
  setup: SetupPacket;
  /** The OUT data stage (empty for IN requests); lent as `UsbTransfer.data` is. */
  data: Uint8Array;
  /** Aborted when the host unlinks the transfer or the session ends. */
  signal: AbortSignal;
}

/**
 * What the device list shows of a device ({@linkcode UsbDevice.summary}): the fields of its
 * OP_REP_DEVLIST and OP_REP_IMPORT record that come from the device.
 */
export interface DeviceSummary {
  /** The speed the device runs at. */
  speed: SpeedValue;
  /** `idVendor` of the device descriptor. */
  idVendor: number;
  /** `idProduct` of the device descriptor. */
  idProduct: number;
  /** `bcdDevice` of the device descriptor: the release number in BCD. */
  bcdDevice: number;
  /** `bDeviceClass` of the device descriptor. */
  bDeviceClass: number;
  /** `bDeviceSubClass` of the device descriptor. */
  bDeviceSubClass: number;
  /** `bDeviceProtocol` of the device descriptor. */
  bDeviceProtocol: number;
  /** The current configuration; the first one while unconfigured, 0 when there is none. */
  bConfigurationValue: number;
  /** How many configurations the descriptors list. */
  bNumConfigurations: number;
  /** Alternate setting 0 of each interface of that configuration. */
  interfaces: InterfaceClass[];
}

/** A stalled transfer. */
export const STALL: Readonly<TransferResult> = Object.freeze({ status: "stall" });
/** A completed transfer with no data. */
export const OK: Readonly<TransferResult> = Object.freeze({ status: "ok" });
/** A transfer cancelled by its signal. */
export const CANCELLED: Readonly<TransferResult> = Object.freeze({ status: "cancelled" });
/** A transfer to a device that is gone. */
export const NODEV: Readonly<TransferResult> = Object.freeze({ status: "nodev" });

/** Completes an IN transfer with `data`. */
export function dataResult(data: Uint8Array): TransferResult {
  return { status: "ok", data };
}

function then<T, U>(v: MaybePromise<T>, f: (x: T) => U): MaybePromise<U> {
  return v instanceof Promise ? v.then(f) : f(v);
}

/**
 * Waits until `signal` aborts and then resolves with {@linkcode CANCELLED}; for transfers
 * that stay pending until the host cancels them.
 */
export function untilAborted(signal: AbortSignal): Promise<TransferResult> {
  return waitFor(() => {}, signal).then(() => CANCELLED);
}

const HUB_SET_PORT_FEATURE = 0x23;
const PORT_RESET = 4;

/**
 * A USB device. Subclasses give their descriptors and override the `handle*` and `on*` hooks.
 * The session calls {@linkcode UsbDevice.submit} for every transfer.
 *
 * Buffers. OUT data (`UsbTransfer.data`, `ControlTransfer.data`) are lent: valid only until
 * the transfer completes (the handler returns, or its promise settles). The server then reads
 * the next request of that size, of this session or another, into the same buffer, so a
 * device that keeps OUT data longer (a queue, a loopback) copies them; an unlinked transfer's
 * buffer is never reused. IN data (`TransferResult.data`) are handed over: the server may send
 * them as they are, without a copy (a buffer with `headroom` goes to the socket as it is, the
 * RET_SUBMIT header written in front, and so does IN data beyond 64 KiB, after the handler has
 * returned, while other transfers run), so a device never writes to a buffer it returned: it
 * returns a fresh one, or one it does not touch again until the server calls the result's
 * `release` (after the reply is written and every observer has seen it). A result the server
 * drops (an unlinked transfer, a session that ended) is never released: its buffer is left to
 * the garbage collector.
 *
 * @example A device with only descriptors stalls everything but standard requests
 * ```ts
 * import { UsbDevice } from "./usb_device.ts";
 * import { Request, RequestType } from "../protocol/setup_packet.ts";
 * class Blank extends UsbDevice {}
 * const dev = new Blank({
 *   device: { bcdUSB: 0x200, bDeviceClass: 0, bDeviceSubClass: 0, bDeviceProtocol: 0,
 *     bMaxPacketSize0: 64, idVendor: 0x1234, idProduct: 0x5678, bcdDevice: 0x100 },
 *   configurations: [{ bConfigurationValue: 1, bmAttributes: 0x80, bMaxPower: 50, interfaces: [] }],
 * }, 2);
 * const r = await dev.submit({ endpoint: 0, dirIn: true, type: "control", length: 1,
 *   setup: { bmRequestType: RequestType.DIR_IN, bRequest: Request.GET_CONFIGURATION, wValue: 0,
 *     wIndex: 0, wLength: 1 },
 *   data: new Uint8Array(0), shortNotOk: false, zeroPacket: false, isoPackets: [],
 *   signal: new AbortController().signal });
 * console.assert(r.status === "ok" && r.data?.[0] === 0);
 * ```
 */
export abstract class UsbDevice {
  /**
   * Whether the device takes many transfers per endpoint at once and completes each
   * endpoint's transfers in order itself, as a host controller does (passthrough). Otherwise
   * the session hands it one transfer per endpoint at a time (ep0 always in FIFO order).
   */
  readonly pipelined: boolean = false;
  /** The encoded descriptors. */
  readonly descriptors: DescriptorSet;
  /** The speed the device runs at. */
  readonly speed: SpeedValue;
  #configuration = 0;
  #alternates = new Map<number, number>();
  #endpoints = new Map<number, EndpointDescriptor>();
  #halted = new Set<number>();
  #remoteWakeup = false;
  #gone = new AbortController();

  /** Builds the device from its descriptor tree and speed. */
  constructor(descriptors: UsbDescriptors, speed: SpeedValue) {
    this.descriptors = new DescriptorSet(descriptors);
    this.speed = speed;
  }

  /** The current `bConfigurationValue`; 0 while unconfigured. */
  get configurationValue(): number {
    return this.#configuration;
  }

  /** The current alternate setting of interface `ifnum`, if the interface exists. */
  alternateSetting(ifnum: number): number | undefined {
    return this.#alternates.get(ifnum);
  }

  /** The active endpoint with this address (bit 7 set for IN), if any. */
  activeEndpoint(address: number): EndpointDescriptor | undefined {
    return this.#endpoints.get(address);
  }

  /** The transfer type of endpoint `ep` in this direction in the current setting. */
  transferType(ep: number, dirIn: boolean): TransferTypeName | undefined {
    if (ep === 0) return "control";
    const d = this.#endpoints.get(ep | (dirIn ? 0x80 : 0));
    return d && endpointType(d);
  }

  /** Whether the endpoint with this address is halted. */
  isHalted(address: number): boolean {
    return this.#halted.has(address);
  }

  /** Aborted when the device goes away (unplugged, removed from the server). */
  get disconnected(): AbortSignal {
    return this.#gone.signal;
  }

  /** Marks the device as gone: pending and later transfers complete with "nodev". */
  disconnect(reason = "The device was disconnected"): void {
    this.#gone.abort(new Deno.errors.NotConnected(reason));
  }

  /**
   * Called when a session imports the device, before the import is answered. A device that
   * must take hold of something first (passthrough claims the host's interfaces) does it
   * here; throwing refuses the import (the client gets ST_DEV_ERR). The default resets.
   */
  imported(): void | Promise<void> {
    this.reset();
  }

  /**
   * Called when the importing session has ended and every transfer was aborted. The default
   * resets the device for the next import; passthrough hands the interfaces back.
   */
  released(): void | Promise<void> {
    this.reset();
  }

  /** A USB bus reset: back to the unconfigured state, halts cleared. */
  reset(): void {
    this.#applyConfiguration(0);
    this.#remoteWakeup = false;
    this.onReset();
  }

  /** What the device list shows: the active configuration, or the first while unconfigured. */
  summary(): DeviceSummary {
    const d = this.descriptors.tree.device;
    const configs = this.descriptors.tree.configurations;
    const config = this.descriptors.configuration(this.#configuration) ?? configs[0];
    const interfaces = interfaceClasses(config);
    return {
      speed: this.speed,
      idVendor: d.idVendor,
      idProduct: d.idProduct,
      bcdDevice: d.bcdDevice,
      bDeviceClass: d.bDeviceClass,
      bDeviceSubClass: d.bDeviceSubClass,
      bDeviceProtocol: d.bDeviceProtocol,
      bConfigurationValue: config?.bConfigurationValue ?? 0,
      bNumConfigurations: configs.length,
      interfaces,
    };
  }

  /**
   * Runs one transfer. Control transfers go through the standard-request handler first; data
   * transfers must target an active, non-halted endpoint. A stall on a data endpoint halts it
   * until CLEAR_FEATURE(ENDPOINT_HALT).
   */
  submit(t: UsbTransfer): MaybePromise<TransferResult> {
    if (this.#gone.signal.aborted) return NODEV;
    if (t.endpoint === 0) return this.#control(t);
    const address = t.endpoint | (t.dirIn ? 0x80 : 0);
    const ep = this.#endpoints.get(address);
    if (ep === undefined || this.#halted.has(address)) return STALL;
    return then(this.handleData(t, ep), (r) => {
      if (r.status === "stall") this.setHalt(address, true);
      return r;
    });
  }

  /**
   * Records a configuration the device itself switched to (passthrough forwards the request
   * and then records it), so that the active endpoints stay known. False if it is unknown.
   */
  protected applyConfiguration(value: number): boolean {
    return this.#applyConfiguration(value);
  }

  /** Records an alternate setting the device itself switched to. False if it is unknown. */
  protected applyInterface(ifnum: number, alt: number): boolean {
    return this.#setInterface(ifnum, alt);
  }

  /** Sets or clears the halt of an active endpoint, as SET/CLEAR_FEATURE(ENDPOINT_HALT) do. */
  protected setHalt(address: number, halted: boolean): void {
    if (halted) this.#halted.add(address);
    else this.#halted.delete(address);
    this.onHaltChanged(address, halted);
  }

  /** Handles a class or vendor control request, or a standard one the tables do not answer. */
  protected handleControl(_c: ControlTransfer): MaybePromise<TransferResult> {
    return STALL;
  }

  /** Handles a bulk, interrupt or isochronous transfer on an active endpoint. */
  protected handleData(_t: UsbTransfer, _ep: EndpointDescriptor): MaybePromise<TransferResult> {
    return STALL;
  }

  /** Called after SET_CONFIGURATION (and after a reset, with 0). */
  protected onConfigurationChanged(_value: number): void {}

  /** Called after SET_INTERFACE. */
  protected onInterfaceChanged(_ifnum: number, _alt: number): void {}

  /** Called when an endpoint's halt is set or cleared (clearing also resets its data toggle). */
  protected onHaltChanged(_address: number, _halted: boolean): void {}

  /** Called after a bus reset. */
  protected onReset(): void {}

  #control(t: UsbTransfer): MaybePromise<TransferResult> {
    const s = t.setup;
    if (s === undefined) return STALL;
    const standard = (s.bmRequestType & RequestType.TYPE_MASK) === RequestType.TYPE_STANDARD;
    const answer = standard ? this.#standard(s) : this.#portReset(s);
    // A device never returns more than wLength bytes (USB 2.0 §9.3.5; a longer descriptor is
    // cut to its first wLength bytes, §9.4.3). More than the host's buffer holds is babble,
    // the session's rule (lib/server/ret_submit.ts), not cut silently here.
    const limit = s.wLength;
    const clamp = (r: TransferResult): TransferResult =>
      r.data !== undefined && r.data.length > limit ? { ...r, data: r.data.subarray(0, limit) } : r;
    if (answer !== undefined) return clamp(answer);
    return then(this.handleControl({ setup: s, data: t.data, signal: t.signal }), clamp);
  }

  #portReset(s: SetupPacket): TransferResult | undefined {
    if (
      s.bmRequestType === HUB_SET_PORT_FEATURE && s.bRequest === Request.SET_FEATURE &&
      s.wValue === PORT_RESET
    ) {
      this.reset();
      return OK;
    }
    return undefined;
  }

  #interface(ifnum: number): InterfaceDescriptor | undefined {
    const alt = this.#alternates.get(ifnum);
    if (alt === undefined) return undefined;
    return this.descriptors.configuration(this.#configuration)?.interfaces.find((i) =>
      i.bInterfaceNumber === ifnum && i.bAlternateSetting === alt
    );
  }

  /** Answers a standard request, or returns `undefined` to pass it to the device class. */
  #standard(s: SetupPacket): TransferResult | undefined {
    const recipient = s.bmRequestType & RequestType.RECIPIENT_MASK;
    const dirIn = (s.bmRequestType & RequestType.DIR_IN) !== 0;
    switch (s.bRequest) {
      case Request.GET_STATUS:
        return dirIn ? this.#getStatus(recipient, s.wIndex) : STALL;
      case Request.CLEAR_FEATURE:
      case Request.SET_FEATURE:
        return dirIn ? STALL : this.#feature(recipient, s, s.bRequest === Request.SET_FEATURE);
      case Request.SET_ADDRESS:
        return OK;
      case Request.GET_DESCRIPTOR:
        if (!dirIn) return STALL;
        return recipient === RequestType.RECIPIENT_DEVICE
          ? this.#getDescriptor(s.wValue)
          : undefined;
      case Request.GET_CONFIGURATION:
        return dirIn ? dataResult(new Uint8Array([this.#configuration])) : STALL;
      case Request.SET_CONFIGURATION:
        if (dirIn || recipient !== RequestType.RECIPIENT_DEVICE) return STALL;
        return this.#applyConfiguration(s.wValue & 0xff) ? OK : STALL;
      case Request.GET_INTERFACE: {
        if (!dirIn || recipient !== RequestType.RECIPIENT_INTERFACE) return STALL;
        const alt = this.#alternates.get(s.wIndex & 0xff);
        return alt === undefined ? STALL : dataResult(new Uint8Array([alt]));
      }
      case Request.SET_INTERFACE:
        if (dirIn || recipient !== RequestType.RECIPIENT_INTERFACE) return STALL;
        return this.#setInterface(s.wIndex & 0xff, s.wValue) ? OK : STALL;
      default:
        return undefined;
    }
  }

  #getStatus(recipient: number, wIndex: number): TransferResult {
    let value = 0;
    if (recipient === RequestType.RECIPIENT_DEVICE) {
      const config = this.descriptors.configuration(this.#configuration) ??
        this.descriptors.tree.configurations[0];
      const selfPowered = ((config?.bmAttributes ?? 0) & 0x40) !== 0;
      value = (selfPowered ? 1 : 0) | (this.#remoteWakeup ? 2 : 0);
    } else if (recipient === RequestType.RECIPIENT_INTERFACE) {
      if (this.#interface(wIndex & 0xff) === undefined) return STALL;
    } else if (recipient === RequestType.RECIPIENT_ENDPOINT) {
      const address = wIndex & 0x8f;
      if ((address & 0x0f) !== 0) {
        if (!this.#endpoints.has(address)) return STALL;
        value = this.#halted.has(address) ? 1 : 0;
      }
    } else {
      return STALL;
    }
    return dataResult(new Uint8Array([value, 0]));
  }

  #feature(recipient: number, s: SetupPacket, set: boolean): TransferResult {
    if (recipient === RequestType.RECIPIENT_DEVICE) {
      if (s.wValue === Feature.DEVICE_REMOTE_WAKEUP) {
        this.#remoteWakeup = set;
        return OK;
      }
      return set && s.wValue === Feature.TEST_MODE ? OK : STALL;
    }
    if (recipient === RequestType.RECIPIENT_INTERFACE) {
      return this.#interface(s.wIndex & 0xff) !== undefined && s.wValue === 0 ? OK : STALL;
    }
    if (recipient === RequestType.RECIPIENT_ENDPOINT && s.wValue === Feature.ENDPOINT_HALT) {
      const address = s.wIndex & 0x8f;
      if ((address & 0x0f) === 0) return OK;
      if (!this.#endpoints.has(address)) return STALL;
      this.setHalt(address, set);
      return OK;
    }
    return STALL;
  }

  #getDescriptor(wValue: number): TransferResult {
    const type = wValue >> 8;
    const index = wValue & 0xff;
    const d = this.descriptors;
    let bytes: Uint8Array | undefined;
    switch (type) {
      case DescriptorType.DEVICE:
        bytes = d.device;
        break;
      case DescriptorType.CONFIGURATION:
        bytes = d.configurations[index];
        break;
      case DescriptorType.STRING:
        bytes = d.string(index);
        break;
      case DescriptorType.DEVICE_QUALIFIER:
        bytes = d.qualifier;
        break;
      case DescriptorType.OTHER_SPEED_CONFIGURATION:
        bytes = d.otherSpeedConfigurations[index];
        break;
      case DescriptorType.BOS:
        bytes = d.bos;
        break;
    }
    return bytes === undefined ? STALL : dataResult(bytes);
  }

  #applyConfiguration(value: number): boolean {
    const config = value === 0 ? undefined : this.descriptors.configuration(value);
    if (value !== 0 && config === undefined) return false;
    this.#configuration = value;
    this.#alternates.clear();
    for (const i of config?.interfaces ?? []) {
      if (!this.#alternates.has(i.bInterfaceNumber)) this.#alternates.set(i.bInterfaceNumber, 0);
    }
    this.#halted.clear();
    this.#rebuildEndpoints();
    this.onConfigurationChanged(value);
    return true;
  }

  #setInterface(ifnum: number, alt: number): boolean {
    if (!this.#alternates.has(ifnum)) return false;
    const exists = this.descriptors.configuration(this.#configuration)?.interfaces.some((i) =>
      i.bInterfaceNumber === ifnum && i.bAlternateSetting === alt
    );
    if (!exists) return false;
    for (const e of this.#interface(ifnum)?.endpoints ?? []) {
      this.#halted.delete(e.bEndpointAddress);
    }
    this.#alternates.set(ifnum, alt);
    this.#rebuildEndpoints();
    this.onInterfaceChanged(ifnum, alt);
    return true;
  }

  /** Recomputes the active endpoints; halts stay only on endpoints that remain active. */
  #rebuildEndpoints(): void {
    this.#endpoints.clear();
    for (const ifnum of this.#alternates.keys()) {
      for (const e of this.#interface(ifnum)?.endpoints ?? []) {
        this.#endpoints.set(e.bEndpointAddress, e);
      }
    }
    for (const address of this.#halted) {
      if (!this.#endpoints.has(address)) this.#halted.delete(address);
    }
  }
}
