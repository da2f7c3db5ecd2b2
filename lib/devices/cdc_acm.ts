/**
 * An emulated USB CDC-ACM serial port (USB CDC 1.2 §5.2.3 functional descriptors, PSTN 1.2
 * §5.3 ACM descriptor, §6.3 requests and SERIAL_STATE notification, IAD ECN) that Linux's
 * cdc_acm driver binds as /dev/ttyACM*, with its data carried by a character back-end.
 *
 * @module
 */

import { Speed } from "../protocol/constants.ts";
import { Notifier } from "../util/wait.ts";
import { type CharBackend, PARITY_NAMES, STOP_BITS } from "../backends/char/mod.ts";
import { type ConfigurationDescriptor, TransferType, type UsbDescriptors } from "./descriptors.ts";
import { RequestType } from "../protocol/setup_packet.ts";
import {
  CANCELLED,
  type ControlTransfer,
  dataResult,
  type MaybePromise,
  OK,
  STALL,
  type TransferResult,
  UsbDevice,
  type UsbTransfer,
} from "./usb_device.ts";

/** PSTN 1.2 class request codes a CDC-ACM device answers (PSTN 1.2 table 13). */
export const CdcRequest = {
  SEND_ENCAPSULATED_COMMAND: 0x00,
  GET_ENCAPSULATED_RESPONSE: 0x01,
  SET_LINE_CODING: 0x20,
  GET_LINE_CODING: 0x21,
  SET_CONTROL_LINE_STATE: 0x22,
  SEND_BREAK: 0x23,
} as const;

/** Notification codes (PSTN 1.2 table 30). */
export const CdcNotification = { NETWORK_CONNECTION: 0x00, SERIAL_STATE: 0x20 } as const;

/** Bits of the SERIAL_STATE notification's UART state bitmap (PSTN 1.2 table 31). */
export const SerialState = {
  /** bRxCarrier: DCD. */
  DCD: 0x01,
  /** bTxCarrier: DSR. */
  DSR: 0x02,
  /** bBreak: a break was detected (sent once). */
  BREAK: 0x04,
  /** bRingSignal: a ring was detected (sent once). */
  RING: 0x08,
  /** bFraming: a framing error (sent once). */
  FRAMING: 0x10,
  /** bParity: a parity error (sent once). */
  PARITY: 0x20,
  /** bOverRun: received data was lost (sent once). */
  OVERRUN: 0x40,
} as const;

/** The one-shot bits of the UART state: reported once, then cleared (PSTN 1.2 §6.5.4). */
const IRREGULAR = SerialState.BREAK | SerialState.RING | SerialState.FRAMING |
  SerialState.PARITY | SerialState.OVERRUN;

/** The 7-byte line coding structure (PSTN 1.2 table 17). */
export interface LineCoding {
  /** Data terminal rate in bits per second. */
  dwDTERate: number;
  /** Stop bits: 0 one, 1 one and a half, 2 two. */
  bCharFormat: number;
  /** Parity: 0 none, 1 odd, 2 even, 3 mark, 4 space. */
  bParityType: number;
  /** Data bits: 5, 6, 7, 8 or 16. */
  bDataBits: number;
}

/** The host's control signals (SET_CONTROL_LINE_STATE, PSTN 1.2 table 18). */
export interface ControlLines {
  /** Data terminal ready (bit 0). */
  dtr: boolean;
  /** Request to send (bit 1). */
  rts: boolean;
}

/**
 * Encodes a line coding as its 7 bytes.
 *
 * @example 115200 8N1
 * ```ts
 * import { encodeLineCoding } from "./cdc_acm.ts";
 * const b = encodeLineCoding({ dwDTERate: 115200, bCharFormat: 0, bParityType: 0, bDataBits: 8 });
 * console.assert(b.join() === "0,194,1,0,0,0,8");
 * ```
 */
export function encodeLineCoding(c: LineCoding): Uint8Array {
  const b = new Uint8Array(7);
  const v = new DataView(b.buffer);
  v.setUint32(0, c.dwDTERate, true);
  b[4] = c.bCharFormat;
  b[5] = c.bParityType;
  b[6] = c.bDataBits;
  return b;
}

/**
 * Decodes the 7 bytes of a line coding.
 *
 * @throws {RangeError} If `b` is not 7 bytes long.
 */
export function decodeLineCoding(b: Uint8Array): LineCoding {
  if (b.length !== 7) {
    throw new RangeError(`Cannot decode line coding: ${b.length} bytes, expected 7`);
  }
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    dwDTERate: v.getUint32(0, true),
    bCharFormat: b[4]!,
    bParityType: b[5]!,
    bDataBits: b[6]!,
  };
}

/**
 * The 10-byte SERIAL_STATE notification for interface `ifnum` (PSTN 1.2 §6.5.4): the
 * 8-byte header with bmRequestType 0xA1 and wLength 2, then the UART state bitmap.
 *
 * @example DCD and DSR on interface 0
 * ```ts
 * import { serialStateNotification } from "./cdc_acm.ts";
 * console.assert(serialStateNotification(0, 3).join() === "161,32,0,0,0,0,2,0,3,0");
 * ```
 */
export function serialStateNotification(ifnum: number, state: number): Uint8Array {
  const b = new Uint8Array(10);
  const v = new DataView(b.buffer);
  b[0] = RequestType.DIR_IN | RequestType.TYPE_CLASS | RequestType.RECIPIENT_INTERFACE;
  b[1] = CdcNotification.SERIAL_STATE;
  v.setUint16(2, 0, true);
  v.setUint16(4, ifnum, true);
  v.setUint16(6, 2, true);
  v.setUint16(8, state, true);
  return b;
}

/** CDC functional descriptor type and subtypes (CDC 1.2 tables 12 and 13). */
export const CdcDescriptor = {
  CS_INTERFACE: 0x24,
  HEADER: 0x00,
  CALL_MANAGEMENT: 0x01,
  ACM: 0x02,
  UNION: 0x06,
} as const;

/**
 * The functional descriptors of an ACM communication interface: header (bcdCDC 1.20),
 * call management (no call management of its own; data interface `dataIf`), ACM
 * (bmCapabilities 0x06: line coding, control line state and SERIAL_STATE, plus SEND_BREAK)
 * and union (`commIf` controls `dataIf`).
 */
export function acmFunctionalDescriptors(commIf: number, dataIf: number): Uint8Array[] {
  const cs = CdcDescriptor.CS_INTERFACE;
  return [
    new Uint8Array([5, cs, CdcDescriptor.HEADER, 0x20, 0x01]),
    new Uint8Array([5, cs, CdcDescriptor.CALL_MANAGEMENT, 0x00, dataIf]),
    new Uint8Array([4, cs, CdcDescriptor.ACM, 0x06]),
    new Uint8Array([5, cs, CdcDescriptor.UNION, commIf, dataIf]),
  ];
}

/** pid.codes' vendor ID and the test product ID the CDC-ACM device uses by default. */
export const CDC_ACM_IDS = { idVendor: 0x1209, idProduct: 0x0006 } as const;

/** Options of {@linkcode CdcAcm}. */
export interface CdcAcmOptions {
  /** Where the serial data goes and comes from. The device does not close it. */
  backend: CharBackend;
  /** Default 0x1209 (pid.codes). */
  vendorId?: number;
  /** Default 0x0006 (a pid.codes test PID). */
  productId?: number;
  /** The serial number string; none by default. */
  serial?: string;
  /** "high" (the default: 512-byte bulk packets) or "full" (64-byte). */
  speed?: "high" | "full";
  /** Called when the host sets a line coding (each SET_LINE_CODING, also unchanged ones). */
  onLineCoding?: (coding: LineCoding) => void;
  /** Called when the host changes DTR or RTS. */
  onControlLines?: (lines: ControlLines) => void;
  /**
   * Called for SEND_BREAK: `on` with the duration in ms (0xFFFF: until the next SEND_BREAK),
   * or off (a duration of 0).
   */
  onBreak?: (on: boolean, durationMs: number) => void;
}

const COMM_IF = 0;
const DATA_IF = 1;
const EP_NOTIFY = 0x83;
const EP_IN = 0x81;
const EP_OUT = 0x02;
const CLASS_OUT = RequestType.TYPE_CLASS | RequestType.RECIPIENT_INTERFACE;
const CLASS_IN = RequestType.DIR_IN | CLASS_OUT;
const DEFAULT_LINE_CODING: LineCoding = {
  dwDTERate: 9600,
  bCharFormat: 0,
  bParityType: 0,
  bDataBits: 8,
};

function _configuration(speed: "high" | "full"): ConfigurationDescriptor {
  const high = speed === "high";
  return {
    bConfigurationValue: 1,
    bmAttributes: 0x80,
    bMaxPower: 50,
    associations: [{
      bFirstInterface: COMM_IF,
      bInterfaceCount: 2,
      bFunctionClass: 2,
      bFunctionSubClass: 2,
      bFunctionProtocol: 1,
    }],
    interfaces: [{
      bInterfaceNumber: COMM_IF,
      bAlternateSetting: 0,
      bInterfaceClass: 2,
      bInterfaceSubClass: 2,
      bInterfaceProtocol: 1,
      extra: acmFunctionalDescriptors(COMM_IF, DATA_IF),
      endpoints: [{
        bEndpointAddress: EP_NOTIFY,
        bmAttributes: TransferType.INTERRUPT,
        wMaxPacketSize: 16,
        // 32 ms, as Linux's f_acm: 2^(9-1) microframes at high speed.
        bInterval: high ? 9 : 32,
      }],
    }, {
      bInterfaceNumber: DATA_IF,
      bAlternateSetting: 0,
      bInterfaceClass: 0x0a,
      bInterfaceSubClass: 0,
      bInterfaceProtocol: 0,
      endpoints: [
        {
          bEndpointAddress: EP_IN,
          bmAttributes: TransferType.BULK,
          wMaxPacketSize: high ? 512 : 64,
          bInterval: 0,
        },
        {
          bEndpointAddress: EP_OUT,
          bmAttributes: TransferType.BULK,
          wMaxPacketSize: high ? 512 : 64,
          bInterval: 0,
        },
      ],
    }],
  };
}

/** The CDC-ACM device's descriptor tree (see {@linkcode CdcAcm}). */
export function cdcAcmDescriptors(
  options: Omit<CdcAcmOptions, "backend"> = {},
): UsbDescriptors {
  const speed = options.speed ?? "high";
  const device: UsbDescriptors["device"] = {
    bcdUSB: 0x0200,
    // Miscellaneous / common class / IAD: the function is described by the IAD.
    bDeviceClass: 0xef,
    bDeviceSubClass: 0x02,
    bDeviceProtocol: 0x01,
    bMaxPacketSize0: 64,
    idVendor: options.vendorId ?? CDC_ACM_IDS.idVendor,
    idProduct: options.productId ?? CDC_ACM_IDS.idProduct,
    bcdDevice: 0x0100,
    iManufacturer: "usbipgw",
    iProduct: "CDC-ACM serial",
  };
  if (options.serial !== undefined) device.iSerialNumber = options.serial;
  const tree: UsbDescriptors = { device, configurations: [_configuration(speed)] };
  if (speed === "high") tree.otherSpeedConfigurations = [_configuration("full")];
  return tree;
}

/**
 * A CDC-ACM serial port: an IAD over a communication interface (class 2, subclass 2 ACM,
 * protocol 1 V.250) with header, call management, ACM and union functional descriptors and
 * an interrupt IN notification endpoint 0x83, and a data interface (class 0x0a) with bulk IN
 * 0x81 and bulk OUT 0x02.
 *
 * Each SET_LINE_CODING is also reported to the back-end ({@linkcode CharBackend.setLineSettings}).
 * Bulk OUT data goes to the back-end (the transfer completes once the back-end took or
 * dropped it; see {@linkcode CharBackend.write}); a bulk IN transfer stays pending until the
 * back-end has input and then completes with what is there, up to its length. The
 * notification endpoint sends SERIAL_STATE when the UART state changes: DCD and DSR follow
 * whether the back-end has a peer (a host tty without CLOCAL hangs up when DCD drops, as
 * with a modem); an idle notification IN stays pending. Class requests need the configured
 * state and go to interface 0. A bus reset or SET_CONFIGURATION makes the next notification
 * IN report the current state again; the line coding and control lines are kept until a
 * bus reset.
 *
 * @example Setting the line coding
 * ```ts
 * import { CdcAcm } from "./cdc_acm.ts";
 * import { openCharBackend } from "../backends/char/mod.ts";
 * import { Request } from "../protocol/setup_packet.ts";
 * const backend = await openCharBackend("loopback");
 * const acm = new CdcAcm({ backend });
 * const signal = new AbortController().signal;
 * const base = { shortNotOk: false, zeroPacket: false, isoPackets: [], signal };
 * await acm.submit({ ...base, endpoint: 0, dirIn: false, type: "control", length: 0,
 *   data: new Uint8Array(0),
 *   setup: {
 *     bmRequestType: 0, bRequest: Request.SET_CONFIGURATION, wValue: 1, wIndex: 0, wLength: 0,
 *   } });
 * await acm.submit({ ...base, endpoint: 0, dirIn: false, type: "control", length: 7,
 *   data: new Uint8Array([0, 194, 1, 0, 0, 0, 8]),
 *   setup: { bmRequestType: 0x21, bRequest: 0x20, wValue: 0, wIndex: 0, wLength: 7 } });
 * console.assert(acm.lineCoding.dwDTERate === 115200);
 * await backend.close();
 * ```
 */
export class CdcAcm extends UsbDevice {
  /** The back-end carrying the data. */
  readonly backend: CharBackend;
  #lineCoding: LineCoding = { ...DEFAULT_LINE_CODING };
  #lines: ControlLines = { dtr: false, rts: false };
  #state = 0;
  /** The state the host was last told; `undefined` until the first notification. */
  #sent: number | undefined;
  #stateChanged = new Notifier();
  #onLineCoding: CdcAcmOptions["onLineCoding"];
  #onControlLines: CdcAcmOptions["onControlLines"];
  #onBreak: CdcAcmOptions["onBreak"];

  /** Creates the device over `options.backend`. */
  constructor(options: CdcAcmOptions) {
    super(cdcAcmDescriptors(options), options.speed === "full" ? Speed.FULL : Speed.HIGH);
    this.backend = options.backend;
    this.#onLineCoding = options.onLineCoding;
    this.#onControlLines = options.onControlLines;
    this.#onBreak = options.onBreak;
    this.#carrier(this.backend.connected);
    const unsubscribe = this.backend.onStateChange((c) => this.#carrier(c));
    this.disconnected.addEventListener("abort", unsubscribe, { once: true });
  }

  /** The line coding the host last set (9600 8N1 until then). */
  get lineCoding(): LineCoding {
    return { ...this.#lineCoding };
  }

  /** The DTR and RTS state the host last set. */
  get controlLines(): ControlLines {
    return { ...this.#lines };
  }

  /** The current UART state bitmap (bits of {@linkcode SerialState}). */
  get serialState(): number {
    return this.#state;
  }

  /**
   * Raises one-shot UART state bits (break, ring, framing, parity, overrun) for the next
   * SERIAL_STATE notification; other bits are ignored (DCD and DSR follow the back-end).
   */
  signalEvent(bits: number): void {
    this.#setState(this.#state | (bits & IRREGULAR));
  }

  #carrier(connected: boolean): void {
    const lines = SerialState.DCD | SerialState.DSR;
    this.#setState(connected ? this.#state | lines : this.#state & ~lines);
  }

  #setState(state: number): void {
    this.#state = state;
    this.#stateChanged.notify();
  }

  /** Answers the PSTN requests of the ACM subclass on interface 0 while configured. */
  protected override handleControl(c: ControlTransfer): TransferResult {
    const s = c.setup;
    const isClass = s.bmRequestType === CLASS_IN || s.bmRequestType === CLASS_OUT;
    if (!isClass || s.wIndex !== COMM_IF || this.configurationValue === 0) return STALL;
    const dirIn = s.bmRequestType === CLASS_IN;
    switch (s.bRequest) {
      case CdcRequest.SET_LINE_CODING:
        return dirIn ? STALL : this.#setLineCoding(c.data);
      case CdcRequest.GET_LINE_CODING:
        return dirIn ? dataResult(encodeLineCoding(this.#lineCoding)) : STALL;
      case CdcRequest.SET_CONTROL_LINE_STATE: {
        if (dirIn) return STALL;
        const lines = { dtr: (s.wValue & 1) !== 0, rts: (s.wValue & 2) !== 0 };
        if (lines.dtr !== this.#lines.dtr || lines.rts !== this.#lines.rts) {
          this.#lines = lines;
          this.#onControlLines?.({ ...lines });
        }
        return OK;
      }
      case CdcRequest.SEND_BREAK:
        if (dirIn) return STALL;
        this.#onBreak?.(s.wValue !== 0, s.wValue);
        return OK;
      default:
        return STALL;
    }
  }

  #setLineCoding(data: Uint8Array): TransferResult {
    if (data.length !== 7) return STALL;
    const c = decodeLineCoding(data);
    const valid = c.bCharFormat <= 2 && c.bParityType <= 4 &&
      [5, 6, 7, 8, 16].includes(c.bDataBits);
    if (!valid) return STALL;
    this.#lineCoding = c;
    this.backend.setLineSettings({
      baudRate: c.dwDTERate,
      dataBits: c.bDataBits,
      parity: PARITY_NAMES[c.bParityType]!,
      stopBits: STOP_BITS[c.bCharFormat]!,
    });
    this.#onLineCoding?.({ ...c });
    return OK;
  }

  /** Bulk OUT to the back-end, bulk IN from it, SERIAL_STATE on the interrupt endpoint. */
  protected override handleData(t: UsbTransfer): MaybePromise<TransferResult> {
    if (t.signal.aborted) return CANCELLED;
    if (t.endpoint === (EP_NOTIFY & 0x0f) && t.dirIn) return this.#notification(t);
    if (t.endpoint === (EP_IN & 0x0f) && t.dirIn) return this.#bulkIn(t);
    if (t.endpoint === EP_OUT && !t.dirIn) return this.#bulkOut(t);
    return STALL;
  }

  async #bulkIn(t: UsbTransfer): Promise<TransferResult> {
    const bytes = await this.backend.read(t.length, t.signal);
    return bytes === null ? CANCELLED : dataResult(bytes);
  }

  async #bulkOut(t: UsbTransfer): Promise<TransferResult> {
    const n = await this.backend.write(t.data, t.signal);
    return n < t.data.length ? CANCELLED : OK;
  }

  async #notification(t: UsbTransfer): Promise<TransferResult> {
    while (this.#sent === this.#state) {
      if (await this.#stateChanged.wait(t.signal) === "aborted") return CANCELLED;
    }
    const state = this.#state;
    this.#sent = state & ~IRREGULAR;
    this.#state &= ~IRREGULAR;
    return dataResult(serialStateNotification(COMM_IF, state).subarray(0, t.length));
  }

  /** The host's driver starts over: it is told the UART state again. */
  protected override onConfigurationChanged(): void {
    this.#sent = undefined;
    this.#setState(this.#state & ~IRREGULAR);
  }

  /** A bus reset: as SET_CONFIGURATION, and the line settings go back to 9600 8N1, DTR/RTS off. */
  protected override onReset(): void {
    this.#lineCoding = { ...DEFAULT_LINE_CODING };
    this.#lines = { dtr: false, rts: false };
    this.onConfigurationChanged();
  }
}
