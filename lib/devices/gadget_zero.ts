/**
 * Gadget Zero (0525:a4a0), the conformance device of Linux's usbtest suite, behaving like the
 * kernel's drivers/usb/gadget/legacy/zero.c with f_sourcesink and f_loopback: configuration 3
 * is source/sink (alt 0 bulk IN/OUT, alt 1 adds isochronous IN/OUT), configuration 2 is
 * loopback; vendor requests 0x5b/0x5c store and return a control buffer; data pattern 0 is
 * zeros and pattern 1 is `(i % maxpacket) % 63`. OUT data that breaks the pattern halts the
 * endpoint, as f_sourcesink's check does. At full, high (the default) or SuperSpeed; at
 * SuperSpeed every endpoint has a companion and the device a BOS (USB 3.2 §9.6.2, §9.6.7).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { Speed, type SpeedValue } from "../protocol/constants.ts";
import { Notifier } from "../util/wait.ts";
import {
  type ConfigurationDescriptor,
  type EndpointDescriptor,
  superSpeedCapability,
  TransferType,
  usb2ExtensionCapability,
  type UsbDescriptors,
} from "./descriptors.ts";
import { RequestType } from "../protocol/setup_packet.ts";
import {
  CANCELLED,
  type ControlTransfer,
  dataResult,
  type IsoPacketResult,
  type MaybePromise,
  OK,
  STALL,
  type TransferResult,
  UsbDevice,
  type UsbTransfer,
} from "./usb_device.ts";

/** Options of {@linkcode GadgetZero}. */
export interface GadgetZeroOptions {
  /** 0: zeros (the default, as in f_sourcesink); 1: `(i % maxpacket) % 63`. */
  pattern?: 0 | 1;
  /** "high" (the default), "full" or "super" (SuperSpeed: 1024-byte bulk packets, a BOS). */
  speed?: "high" | "full" | "super";
  /** The control buffer size for requests 0x5b/0x5c (USB_COMP_EP0_BUFSIZ is 4096). */
  controlBufferLength?: number;
  /** Number of OUT transfers the loopback configuration holds before OUT waits (qlen). */
  loopbackQueueLength?: number;
  /** Isochronous wMaxPacketSize at high and SuperSpeed (isoc_maxpacket, default 1024). */
  isoMaxPacket?: number;
  /** Isochronous bInterval (isoc_interval, default 4). */
  isoInterval?: number;
  /**
   * SuperSpeed only: bMaxBurst of the source/sink companions, bulk and isochronous, 0..15
   * (f_sourcesink's bulk_maxburst and isoc_maxburst); default 0. Loopback's stay 0, as in
   * f_loopback.
   */
  maxBurst?: number;
  /** SuperSpeed only: Mult of the isochronous companions, 0..2 (isoc_mult); default 0. */
  isoMult?: number;
  /**
   * Whether source/sink has alternate setting 1, with the isochronous endpoints (default
   * true). f_sourcesink leaves it out on a UDC without isochronous endpoints, such as
   * dummy_hcd's (`no_iso` in drivers/usb/gadget/function/f_sourcesink.c).
   */
  iso?: boolean;
}

/**
 * Gadget Zero's vendor, product and configuration values, and the largest SuperSpeed
 * companion values: bMaxBurst 15 and isochronous Mult 2 (USB 3.2 §9.6.7).
 */
export const GADGET_ZERO = {
  idVendor: 0x0525,
  idProduct: 0xa4a0,
  SOURCE_SINK_CONFIG: 3,
  LOOPBACK_CONFIG: 2,
  REQ_CONTROL_WRITE: 0x5b,
  REQ_CONTROL_READ: 0x5c,
  MAX_BURST: 15,
  MAX_ISO_MULT: 2,
} as const;

type SpeedName = NonNullable<GadgetZeroOptions["speed"]>;

/** A companion's bytes per service interval: maxpacket x (Mult+1) x (bMaxBurst+1) (§9.6.7). */
function bytesPerInterval(maxPacket: number, mult: number, maxBurst: number): number {
  return maxPacket * (mult + 1) * (maxBurst + 1);
}

const SPEEDS: Readonly<Record<SpeedName, SpeedValue>> = {
  full: Speed.FULL,
  high: Speed.HIGH,
  super: Speed.SUPER,
};

const VENDOR_OUT = RequestType.TYPE_VENDOR;
const VENDOR_IN = RequestType.DIR_IN | RequestType.TYPE_VENDOR;

/**
 * Bulk IN 0x81 and OUT 0x01, then with `iso` isochronous IN 0x82 and OUT 0x02. With `ss` (the
 * SuperSpeed burst and Mult), each endpoint is followed by its companion, in the order of
 * f_sourcesink's ss_source_sink_descs (USB 3.2 §9.6.7): bulk with bMaxBurst and no streams,
 * isochronous with Mult in bmAttributes and the bytes it moves per service interval.
 */
function endpoints(
  bulkMax: number,
  iso?: { max: number; interval: number },
  ss?: { maxBurst: number; isoMult: number },
): EndpointDescriptor[] {
  const bulkCompanion = ss && {
    superSpeedCompanion: { bMaxBurst: ss.maxBurst, bmAttributes: 0, wBytesPerInterval: 0 },
  };
  const eps: EndpointDescriptor[] = [
    {
      bEndpointAddress: 0x81,
      bmAttributes: TransferType.BULK,
      wMaxPacketSize: bulkMax,
      bInterval: 0,
      ...bulkCompanion,
    },
    {
      bEndpointAddress: 0x01,
      bmAttributes: TransferType.BULK,
      wMaxPacketSize: bulkMax,
      bInterval: 0,
      ...bulkCompanion,
    },
  ];
  if (iso) {
    const isoCompanion = ss && {
      superSpeedCompanion: {
        bMaxBurst: ss.maxBurst,
        bmAttributes: ss.isoMult,
        wBytesPerInterval: bytesPerInterval(iso.max, ss.isoMult, ss.maxBurst),
      },
    };
    eps.push(
      {
        bEndpointAddress: 0x82,
        bmAttributes: TransferType.ISOCHRONOUS,
        wMaxPacketSize: iso.max,
        bInterval: iso.interval,
        ...isoCompanion,
      },
      {
        bEndpointAddress: 0x02,
        bmAttributes: TransferType.ISOCHRONOUS,
        wMaxPacketSize: iso.max,
        bInterval: iso.interval,
        ...isoCompanion,
      },
    );
  }
  return eps;
}

function configurations(
  speed: SpeedName,
  isoMax: number | undefined,
  isoInterval: number,
  burst: { maxBurst: number; isoMult: number } = { maxBurst: 0, isoMult: 0 },
): ConfigurationDescriptor[] {
  const bulkMax = speed === "super" ? 1024 : speed === "high" ? 512 : 64;
  // f_sourcesink caps isoc_maxpacket at 1023 for full speed and 1024 for SuperSpeed, whose
  // wMaxPacketSize has no Mult bits (USB 3.2 §9.6.6).
  const iso = isoMax === undefined ? undefined : {
    max: Math.min(isoMax, { full: 1023, high: isoMax, super: 1024 }[speed]),
    interval: isoInterval,
  };
  const sourceSink = speed === "super" ? burst : undefined;
  // f_loopback's SuperSpeed companions keep bMaxBurst 0; bulk_maxburst is f_sourcesink's.
  const loop = speed === "super" ? { maxBurst: 0, isoMult: 0 } : undefined;
  const vendor = (alt: number, eps: EndpointDescriptor[]) => ({
    bInterfaceNumber: 0,
    bAlternateSetting: alt,
    bInterfaceClass: 0xff,
    bInterfaceSubClass: 0,
    bInterfaceProtocol: 0,
    endpoints: eps,
  });
  const config = (
    value: number,
    name: string,
    interfaces: ConfigurationDescriptor["interfaces"],
  ) => ({
    bConfigurationValue: value,
    iConfiguration: name,
    bmAttributes: 0xc0,
    // composite.c's encode_bMaxPower: 2 mA rounded up to 2 mA units, or 8 mA at SuperSpeed.
    bMaxPower: 1,
    interfaces,
  });
  return [
    config(GADGET_ZERO.SOURCE_SINK_CONFIG, "source and sink data", [
      vendor(0, endpoints(bulkMax, undefined, sourceSink)),
      ...(iso === undefined ? [] : [vendor(1, endpoints(bulkMax, iso, sourceSink))]),
    ]),
    config(GADGET_ZERO.LOOPBACK_CONFIG, "loop input to output", [
      vendor(0, endpoints(bulkMax, undefined, loop)),
    ]),
  ];
}

/**
 * Throws `RangeError` for a burst or Mult out of range (USB 3.2 §9.6.7) or given below
 * SuperSpeed, where no companion carries it.
 */
function checkBurst(options: GadgetZeroOptions): { maxBurst: number; isoMult: number } {
  const { maxBurst = 0, isoMult = 0 } = options;
  const ranges = [
    ["maxBurst", maxBurst, GADGET_ZERO.MAX_BURST],
    ["isoMult", isoMult, GADGET_ZERO.MAX_ISO_MULT],
  ] as const;
  for (const [name, value, max] of ranges) {
    if (!Number.isInteger(value) || value < 0 || value > max) {
      throw new RangeError(`Invalid Gadget Zero ${name} ${value}: expected an integer 0..${max}`);
    }
    if (options[name] !== undefined && options.speed !== "super") {
      throw new RangeError(`Invalid Gadget Zero ${name}: it applies only at speed "super"`);
    }
  }
  return { maxBurst, isoMult };
}

/**
 * Gadget Zero's descriptors at `speed`: below SuperSpeed with the other speed's for the
 * qualifier; at SuperSpeed with a BOS and no qualifier, as composite.c serves them. Throws
 * `RangeError` for a burst or Mult out of range, or given below SuperSpeed.
 */
export function gadgetZeroDescriptors(options: GadgetZeroOptions = {}): UsbDescriptors {
  const speed = options.speed ?? "high";
  // Without alternate setting 1 there are no isochronous endpoints to size.
  const isoMax = options.iso === false ? undefined : options.isoMaxPacket ?? 1024;
  const isoInterval = options.isoInterval ?? 4;
  const burst = checkBurst(options);
  const device = {
    bcdUSB: 0x0200,
    bDeviceClass: 0xff,
    bDeviceSubClass: 0,
    bDeviceProtocol: 0,
    bMaxPacketSize0: 64,
    idVendor: GADGET_ZERO.idVendor,
    idProduct: GADGET_ZERO.idProduct,
    bcdDevice: 0x0601,
    iManufacturer: "usbipgw",
    iProduct: "Gadget Zero",
    iSerialNumber: "0123456789.0123456789.0123456789",
  };
  if (speed === "super") {
    return {
      // USB 3.2 §9.6.1: bcdUSB 0x0300, ep0's packet size as an exponent, 2^9 = 512.
      device: { ...device, bcdUSB: 0x0300, bMaxPacketSize0: 9 },
      configurations: configurations(speed, isoMax, isoInterval, burst),
      // composite.c's bos_desc: a USB 2.0 Extension with LPM (bit 1), and a SuperSpeed
      // capability with low, full, high and 5 Gb/s speeds, full functionality from low speed
      // (bFunctionalitySupport 1) and gadget.h's default exit latencies, U1 1 µs and U2
      // 500 µs (USB 3.2 §9.6.2.1, §9.6.2.2).
      capabilities: [usb2ExtensionCapability(0x02), superSpeedCapability(0x000f, 1, 0x01, 0x01f4)],
    };
  }
  return {
    device,
    configurations: configurations(speed, isoMax, isoInterval),
    otherSpeedConfigurations: configurations(
      speed === "high" ? "full" : "high",
      isoMax,
      isoInterval,
    ),
  };
}

/**
 * Pattern buffers shared by every Gadget Zero, keyed by `maxPacket` for pattern 1 and 0 for
 * pattern 0 (zeros); each grows to the longest transfer seen. Nothing writes to them: IN
 * transfers return views of them, OUT data is compared against them. One copy for all devices
 * keeps a gateway of hundreds of Gadget Zeros from holding (and streaming through the CPU
 * caches) hundreds of identical buffers.
 */
const PATTERNS = new Map<number, Uint8Array>();

/** The first `length` bytes of `pattern` for `maxPacket`, from {@linkcode PATTERNS}. */
function patternBytes(pattern: 0 | 1, length: number, maxPacket: number): Uint8Array {
  const key = pattern === 0 ? 0 : maxPacket;
  let b = PATTERNS.get(key);
  if (b === undefined || b.length < length) {
    const size = Math.max(length, b?.length ?? 0, 4096);
    b = pattern === 0 ? new Uint8Array(size) : pattern1(size, maxPacket);
    PATTERNS.set(key, b);
  }
  return b.subarray(0, length);
}

/** Fills `length` bytes with pattern 1, `(i % maxPacket) % 63`. */
function pattern1(length: number, maxPacket: number): Uint8Array {
  const b = new Uint8Array(length);
  for (let i = 0; i < length; i++) b[i] = (i % maxPacket) % 63;
  return b;
}

/**
 * Whether `a` and `b` hold the same bytes: node:buffer's `equals` is a native memcmp, about
 * eight times faster on 64 KiB than a JavaScript loop of 32-bit words (1.6 against 13 µs here).
 */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length &&
    Buffer.from(a.buffer, a.byteOffset, a.length).equals(
      Buffer.from(b.buffer, b.byteOffset, b.length),
    );
}

/**
 * Gadget Zero. In the source/sink configuration bulk and isochronous IN always have data and
 * OUT always takes it (checking the pattern); in the loopback configuration what goes OUT
 * comes back IN, and an IN transfer with nothing to return stays pending.
 *
 * @example Reading from the source endpoint
 * ```ts
 * import { GadgetZero } from "./gadget_zero.ts";
 * import { Request } from "../protocol/setup_packet.ts";
 * const gz = new GadgetZero({ pattern: 1 });
 * const setConfig = {
 *   bmRequestType: 0, bRequest: Request.SET_CONFIGURATION, wValue: 3, wIndex: 0, wLength: 0,
 * };
 * const signal = new AbortController().signal;
 * const base = { data: new Uint8Array(0), shortNotOk: false, zeroPacket: false, isoPackets: [], signal };
 * await gz.submit({ ...base, endpoint: 0, dirIn: false, type: "control", length: 0, setup: setConfig });
 * const r = await gz.submit({ ...base, endpoint: 1, dirIn: true, type: "bulk", length: 600 });
 * console.assert(r.data?.[513] === 1);
 * ```
 */
export class GadgetZero extends UsbDevice {
  /** The source's data and what the sink expects: 0 zeros, 1 `(i % maxpacket) % 63`. */
  readonly pattern: 0 | 1;
  #control: Uint8Array;
  #loop: Uint8Array[] = [];
  #loopChanged = new Notifier();
  #loopQueueLength: number;

  /** Creates a Gadget Zero. */
  constructor(options: GadgetZeroOptions = {}) {
    super(gadgetZeroDescriptors(options), SPEEDS[options.speed ?? "high"]);
    this.pattern = options.pattern ?? 0;
    this.#control = new Uint8Array(options.controlBufferLength ?? 4096);
    this.#loopQueueLength = options.loopbackQueueLength ?? 32;
  }

  /** Pattern bytes for an IN transfer: a view of a cached buffer, grown as needed. */
  #source(length: number, maxPacket: number): Uint8Array {
    return patternBytes(this.pattern, length, maxPacket);
  }

  /** Whether OUT data matches the pattern (compared four bytes at a time where aligned). */
  #sinkAccepts(data: Uint8Array, maxPacket: number): boolean {
    return sameBytes(data, this.#source(data.length, maxPacket));
  }

  /**
   * Vendor requests 0x5b (write the control buffer) and 0x5c (read it back), with wValue and
   * wIndex 0 and at most the buffer's length; anything else stalls.
   */
  protected override handleControl(c: ControlTransfer): TransferResult {
    const { setup } = c;
    if (setup.bRequest === GADGET_ZERO.REQ_CONTROL_WRITE && setup.bmRequestType === VENDOR_OUT) {
      if (setup.wValue !== 0 || setup.wIndex !== 0 || setup.wLength > this.#control.length) {
        return STALL;
      }
      this.#control.set(c.data.subarray(0, setup.wLength));
      return OK;
    }
    if (setup.bRequest === GADGET_ZERO.REQ_CONTROL_READ && setup.bmRequestType === VENDOR_IN) {
      if (setup.wValue !== 0 || setup.wIndex !== 0 || setup.wLength > this.#control.length) {
        return STALL;
      }
      return dataResult(this.#control.slice(0, setup.wLength));
    }
    return STALL;
  }

  /**
   * Loopback configuration: OUT data are queued and IN reads them back in order. Source/sink:
   * IN returns the pattern, OUT stalls data that differ from it; isochronous packets are cut
   * to the endpoint's limit per interval.
   */
  protected override handleData(
    t: UsbTransfer,
    ep: EndpointDescriptor,
  ): MaybePromise<TransferResult> {
    const maxPacket = ep.wMaxPacketSize & 0x7ff;
    if (this.configurationValue === GADGET_ZERO.LOOPBACK_CONFIG) return this.#loopback(t);
    if (t.type === "isochronous") return this.#iso(t, ep);
    if (t.dirIn) return dataResult(this.#source(t.length, maxPacket));
    return this.#sinkAccepts(t.data, maxPacket) ? OK : STALL;
  }

  #iso(t: UsbTransfer, ep: EndpointDescriptor): TransferResult {
    const maxPacket = ep.wMaxPacketSize & 0x7ff;
    // One packet per service interval: at high speed up to 1 + bits 12..11 transactions (USB
    // 2.0 §5.9.2); at SuperSpeed (Mult+1) x (bMaxBurst+1) packets, wBytesPerInterval (USB 3.2
    // §9.6.7), the request size of f_sourcesink and the ISO packet size of usbtest.c.
    const ss = ep.superSpeedCompanion;
    const packetLimit = ss
      ? bytesPerInterval(maxPacket, ss.bmAttributes & 3, ss.bMaxBurst)
      : maxPacket * (1 + ((ep.wMaxPacketSize >> 11) & 3));
    const packets: IsoPacketResult[] = t.isoPackets.map((p) => ({
      actualLength: Math.min(p.length, packetLimit),
      status: p.length > packetLimit && !t.dirIn ? "overflow" : "ok",
    }));
    if (!t.dirIn) return { status: "ok", isoPackets: packets };
    const buffer = new Uint8Array(t.length);
    t.isoPackets.forEach((p, i) =>
      buffer.set(this.#source(packets[i]!.actualLength, maxPacket), p.offset)
    );
    return { status: "ok", data: buffer, isoPackets: packets };
  }

  #loopback(t: UsbTransfer): MaybePromise<TransferResult> {
    if (!t.dirIn) {
      if (this.#loop.length >= this.#loopQueueLength) {
        return this.#waitLoop(t.signal).then((r) => r ?? this.#loopback(t));
      }
      this.#loop.push(t.data.slice());
      this.#wakeLoop();
      return OK;
    }
    const next = this.#loop[0];
    if (next === undefined) return this.#waitLoop(t.signal).then((r) => r ?? this.#loopback(t));
    if (next.length <= t.length) {
      this.#loop.shift();
      this.#wakeLoop();
      return dataResult(next);
    }
    this.#loop[0] = next.subarray(t.length);
    return dataResult(next.subarray(0, t.length));
  }

  /** Resolves with `undefined` when the loopback queue changes, or CANCELLED on abort. */
  async #waitLoop(signal: AbortSignal): Promise<TransferResult | undefined> {
    return await this.#loopChanged.wait(signal) === "aborted" ? CANCELLED : undefined;
  }

  #wakeLoop(): void {
    this.#loopChanged.notify();
  }

  /** Empties the loopback queue and wakes the OUT transfers waiting for room in it. */
  protected override onConfigurationChanged(): void {
    this.#loop.length = 0;
    this.#wakeLoop();
  }

  /** Zeros the control buffer of requests 0x5b/0x5c. */
  protected override onReset(): void {
    this.#control.fill(0);
  }
}
