/**
 * An emulated FTDI FT232R USB serial converter (0403:6001) as Linux's ftdi_sio driver
 * (drivers/usb/serial/ftdi_sio.c, ftdi_sio.h) and QEMU's hw/usb/dev-serial.c know it: the
 * FTDI vendor requests, the divisor encoding of the baud rate, and the 2 modem/line status
 * bytes that start every bulk IN packet; its data is carried by a character back-end.
 *
 * @module
 */

import { Speed } from "../protocol/constants.ts";
import { type CharBackend, PARITY_NAMES, STOP_BITS } from "../backends/char/mod.ts";
import { TransferType, type UsbDescriptors } from "./descriptors.ts";
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

/** FTDI vendor request codes (ftdi_sio.h `FTDI_SIO_*_REQUEST`). */
export const FtdiRequest = {
  RESET: 0x00,
  MODEM_CTRL: 0x01,
  SET_FLOW_CTRL: 0x02,
  SET_BAUD_RATE: 0x03,
  SET_DATA: 0x04,
  GET_MODEM_STATUS: 0x05,
  SET_EVENT_CHAR: 0x06,
  SET_ERROR_CHAR: 0x07,
  SET_LATENCY_TIMER: 0x09,
  GET_LATENCY_TIMER: 0x0a,
  READ_EEPROM: 0x90,
} as const;

/** Bits of the first status byte, the modem status (ftdi_sio.h `FTDI_RS0_*`). */
export const FtdiModemStatus = {
  /** Bit 0 is reserved and always 1. */
  RESERVED: 0x01,
  CTS: 0x10,
  DSR: 0x20,
  RI: 0x40,
  /** Receive line signal detect: DCD. */
  RLSD: 0x80,
} as const;

/** Bits of the second status byte, the line status (ftdi_sio.h `FTDI_RS_*`). */
export const FtdiLineStatus = {
  DR: 0x01,
  OE: 0x02,
  PE: 0x04,
  FE: 0x08,
  BI: 0x10,
  /** Transmitter holding register empty: room for output. */
  THRE: 0x20,
  /** Transmitter empty: all output sent. */
  TEMT: 0x40,
  FIFO_ERROR: 0x80,
} as const;

/** The FT232R's IDs and its bcdDevice, which ftdi_sio uses to tell the chip type. */
export const FTDI_FT232R_IDS = { idVendor: 0x0403, idProduct: 0x6001, bcdDevice: 0x0600 } as const;

/** Sub-integer eighths of the divisor for each 3-bit code (inverse of ftdi_sio's `divfrac`). */
const EIGHTHS_OF_CODE = [0, 4, 2, 1, 3, 5, 6, 7] as const;

/**
 * Decodes the FT232BM/FT232R baud-rate divisor of SET_BAUD_RATE (AN232B-05; ftdi_sio's
 * `ftdi_232bm_baud_base_to_divisor`, reversed): bits 13..0 of `wValue` are the integer part,
 * bits 15..14 of `wValue` and bit 0 of `wIndex` a 3-bit code of the eighths; the 3 MHz base
 * is divided by the result. Integer 0 means 1 (3 MBaud) and integer 1 with no fraction
 * means 1.5 (2 MBaud). The result is rounded to the nearest integer.
 *
 * @example 115200 baud (divisor 26, ftdi_sio sends wValue 0x001a)
 * ```ts
 * import { decodeFtdiBaudRate } from "./ftdi.ts";
 * console.assert(decodeFtdiBaudRate(0x001a, 0) === 115385);
 * ```
 */
export function decodeFtdiBaudRate(wValue: number, wIndex: number): number {
  return Math.round(24_000_000 / _divisorEighths(wValue, wIndex));
}

/** The divisor of SET_BAUD_RATE in eighths (see {@linkcode decodeFtdiBaudRate}). */
function _divisorEighths(wValue: number, wIndex: number): number {
  const integer = wValue & 0x3fff;
  const code = ((wValue >> 14) & 0x3) | ((wIndex & 0x1) << 2);
  if (integer === 0 && code === 0) return 8;
  if (integer === 1 && code === 0) return 12;
  return integer * 8 + EIGHTHS_OF_CODE[code]!;
}

/**
 * The termios rates (Linux `B300` .. `B3000000`) an FT232R can be set to: what a host tty
 * asks for by name (`stty 115200`).
 */
export const FTDI_TERMIOS_RATES: readonly number[] = [
  300,
  600,
  1200,
  1800,
  2400,
  4800,
  9600,
  19200,
  38400,
  57600,
  115200,
  230400,
  460800,
  500000,
  576000,
  921600,
  1000000,
  1152000,
  1500000,
  2000000,
  2500000,
  3000000,
];

/**
 * The rate the host asked for with SET_BAUD_RATE: the termios rate of
 * {@linkcode FTDI_TERMIOS_RATES} whose divisor this is (the host's driver rounds 3 MHz / rate
 * to the nearest eighth, as ftdi_sio does), else the chip's own rate
 * ({@linkcode decodeFtdiBaudRate}). The chip cannot run at most rates exactly: 115200 baud
 * becomes divisor 26, which runs at 115385 baud.
 *
 * @example 115200 baud (divisor 26)
 * ```ts
 * import { requestedFtdiBaudRate } from "./ftdi.ts";
 * console.assert(requestedFtdiBaudRate(0x001a, 0) === 115200);
 * ```
 */
export function requestedFtdiBaudRate(wValue: number, wIndex: number): number {
  const eighths = _divisorEighths(wValue, wIndex);
  return FTDI_TERMIOS_RATES.find((rate) => Math.round(24_000_000 / rate) === eighths) ??
    Math.round(24_000_000 / eighths);
}

/** The data characteristics of SET_DATA (ftdi_sio.h `FTDI_SIO_SET_DATA_*`). */
export interface FtdiDataCharacteristics {
  /** Data bits (7 or 8 on the FT232R; 5 and 6 are accepted). */
  dataBits: number;
  /** 0 none, 1 odd, 2 even, 3 mark, 4 space. */
  parity: number;
  /** 0 one stop bit, 1 one and a half, 2 two. */
  stopBits: number;
  /** Whether the line is held in break. */
  break: boolean;
}

/** The flow control of SET_FLOW_CTRL. */
export interface FtdiFlowControl {
  /** The handshake: bits 8..10 of wIndex (1 RTS/CTS, 2 DTR/DSR, 4 XON/XOFF), none if 0. */
  mode: "none" | "rts-cts" | "dtr-dsr" | "xon-xoff";
  /** XON character (XON/XOFF mode). */
  xon: number;
  /** XOFF character (XON/XOFF mode). */
  xoff: number;
}

/** The host's modem control lines. */
export interface FtdiModemControl {
  /** Data terminal ready. */
  dtr: boolean;
  /** Request to send. */
  rts: boolean;
}

/** Options of {@linkcode FtdiSerial}. */
export interface FtdiSerialOptions {
  /** Where the serial data goes and comes from. The device does not close it. */
  backend: CharBackend;
  /** The serial number string (ftdi_sio shows it in sysfs); default "USBIPGW1". */
  serial?: string;
  /** Called with the decoded rate after each SET_BAUD_RATE. */
  onBaudRate?: (baud: number) => void;
  /** Called after each SET_DATA. */
  onDataCharacteristics?: (c: FtdiDataCharacteristics) => void;
  /** Called when the host changes DTR or RTS. */
  onModemControl?: (lines: FtdiModemControl) => void;
  /** Called after each SET_FLOW_CTRL. */
  onFlowControl?: (flow: FtdiFlowControl) => void;
}

const EP_IN = 0x81;
const EP_OUT = 0x02;
const MAX_PACKET = 64;
const STATUS_BYTES = 2;
const DATA_PER_PACKET = MAX_PACKET - STATUS_BYTES;
const DEFAULT_LATENCY_MS = 16;
const VENDOR_OUT = RequestType.TYPE_VENDOR | RequestType.RECIPIENT_DEVICE;
const VENDOR_IN = RequestType.DIR_IN | VENDOR_OUT;
const SET_DATA_BREAK = 1 << 14;
const DEFAULT_DATA: FtdiDataCharacteristics = {
  dataBits: 8,
  parity: 0,
  stopBits: 0,
  break: false,
};

/** The FT232R's descriptor tree (see {@linkcode FtdiSerial}). */
export function ftdiDescriptors(options: { serial?: string } = {}): UsbDescriptors {
  return {
    device: {
      bcdUSB: 0x0200,
      bDeviceClass: 0,
      bDeviceSubClass: 0,
      bDeviceProtocol: 0,
      bMaxPacketSize0: 8,
      idVendor: FTDI_FT232R_IDS.idVendor,
      idProduct: FTDI_FT232R_IDS.idProduct,
      bcdDevice: FTDI_FT232R_IDS.bcdDevice,
      iManufacturer: "FTDI",
      iProduct: "FT232R USB UART",
      iSerialNumber: options.serial ?? "USBIPGW1",
    },
    configurations: [{
      bConfigurationValue: 1,
      bmAttributes: 0xa0,
      bMaxPower: 45,
      interfaces: [{
        bInterfaceNumber: 0,
        bAlternateSetting: 0,
        bInterfaceClass: 0xff,
        bInterfaceSubClass: 0xff,
        bInterfaceProtocol: 0xff,
        iInterface: "FT232R USB UART",
        endpoints: [
          {
            bEndpointAddress: EP_IN,
            bmAttributes: TransferType.BULK,
            wMaxPacketSize: MAX_PACKET,
            bInterval: 0,
          },
          {
            bEndpointAddress: EP_OUT,
            bmAttributes: TransferType.BULK,
            wMaxPacketSize: MAX_PACKET,
            bInterval: 0,
          },
        ],
      }],
    }],
  };
}

/**
 * Packs `data` into FTDI bulk IN packets for a transfer of `length` bytes: every 64-byte
 * packet starts with the two `status` bytes and carries up to 62 data bytes; only the last
 * packet may be short. With no data the result is the two status bytes alone.
 *
 * @throws {RangeError} If `data` does not fit in `length` bytes of packets.
 */
export function packFtdiPackets(status: Uint8Array, data: Uint8Array, length: number): Uint8Array {
  const packets = Math.max(1, Math.ceil(data.length / DATA_PER_PACKET));
  const size = (packets - 1) * MAX_PACKET + STATUS_BYTES +
    (data.length - (packets - 1) * DATA_PER_PACKET);
  if (size > length) {
    throw new RangeError(`Cannot pack ${data.length} bytes into an IN transfer of ${length}`);
  }
  const out = new Uint8Array(size);
  for (let p = 0; p < packets; p++) {
    const chunk = data.subarray(p * DATA_PER_PACKET, (p + 1) * DATA_PER_PACKET);
    out.set(status.subarray(0, STATUS_BYTES), p * MAX_PACKET);
    out.set(chunk, p * MAX_PACKET + STATUS_BYTES);
  }
  return out;
}

/** How many data bytes an IN transfer of `length` bytes can carry after the status bytes. */
export function ftdiDataCapacity(length: number): number {
  const full = Math.floor(length / MAX_PACKET);
  return full * DATA_PER_PACKET + Math.max(0, (length % MAX_PACKET) - STATUS_BYTES);
}

/**
 * An FT232R: one vendor-class interface (0xff/0xff/0xff) with bulk IN 0x81 and bulk OUT 0x02,
 * 64-byte packets, full speed, bcdDevice 0x0600 (which ftdi_sio reads as an FT232R).
 *
 * SET_BAUD_RATE and SET_DATA are also reported to the back-end
 * ({@linkcode CharBackend.setLineSettings}), with the rate the host asked for
 * ({@linkcode FtdiSerial.requestedBaudRate}: 115200, not the chip's 115385). Bulk OUT data
 * goes to the back-end (see
 * {@linkcode CharBackend.write}). A bulk IN transfer
 * completes as soon as the back-end has input, with 62 data bytes per 64-byte packet after
 * the status bytes; when there is none, it completes after the latency timer (16 ms unless
 * the host sets it) with the two status bytes alone, as the chip does and ftdi_sio expects.
 * The modem status reports CTS, DSR and DCD while the back-end has a peer; the line status
 * reports THRE while the back-end's output queue has room and TEMT while it is empty.
 *
 * RESET clears the latency timer, the event and error characters and the flow control,
 * and leaves the back-end's queued bytes alone: they stand for the line and its peer, not
 * for the chip's FIFOs. READ_EEPROM answers zeros (no CBUS pin is a GPIO, so ftdi_sio sets
 * up no GPIO chip). Unknown requests stall.
 *
 * @example Reading the status bytes of an idle port
 * ```ts
 * import { FtdiSerial } from "./ftdi.ts";
 * import { openCharBackend } from "../backends/char/mod.ts";
 * import { Request } from "../protocol/setup_packet.ts";
 * const backend = await openCharBackend("loopback");
 * const ftdi = new FtdiSerial({ backend });
 * const signal = new AbortController().signal;
 * const base = { data: new Uint8Array(0), shortNotOk: false, zeroPacket: false,
 *   isoPackets: [], signal };
 * await ftdi.submit({ ...base, endpoint: 0, dirIn: false, type: "control", length: 0,
 *   setup: {
 *     bmRequestType: 0, bRequest: Request.SET_CONFIGURATION, wValue: 1, wIndex: 0, wLength: 0,
 *   } });
 * const r = await ftdi.submit({ ...base, endpoint: 1, dirIn: true, type: "bulk", length: 64 });
 * console.assert(r.data?.join() === "177,96");
 * await backend.close();
 * ```
 */
export class FtdiSerial extends UsbDevice {
  /** The back-end carrying the data. */
  readonly backend: CharBackend;
  #latency = DEFAULT_LATENCY_MS;
  #baudRate = 9600;
  #requestedBaudRate = 9600;
  #data: FtdiDataCharacteristics = { ...DEFAULT_DATA };
  #modem: FtdiModemControl = { dtr: false, rts: false };
  #flow: FtdiFlowControl = { mode: "none", xon: 0x11, xoff: 0x13 };
  #eventChar = { char: 0, enabled: false };
  #errorChar = { char: 0, enabled: false };
  #options: FtdiSerialOptions;

  /** Creates the device over `options.backend`. */
  constructor(options: FtdiSerialOptions) {
    super(ftdiDescriptors(options), Speed.FULL);
    this.backend = options.backend;
    this.#options = options;
  }

  /** The baud rate the chip runs at as the host last set it (9600 until then). */
  get baudRate(): number {
    return this.#baudRate;
  }

  /**
   * The baud rate the host asked for when it last set one (9600 until then): the termios
   * rate whose divisor it sent ({@linkcode requestedFtdiBaudRate}), e.g. 115200 where the
   * chip runs at 115385. The back-end is told this one.
   */
  get requestedBaudRate(): number {
    return this.#requestedBaudRate;
  }

  /** The data characteristics the host last set (8N1 until then). */
  get dataCharacteristics(): FtdiDataCharacteristics {
    return { ...this.#data };
  }

  /** DTR and RTS as the host last set them. */
  get modemControl(): FtdiModemControl {
    return { ...this.#modem };
  }

  /** The flow control the host last set. */
  get flowControl(): FtdiFlowControl {
    return { ...this.#flow };
  }

  /** The latency timer in ms. */
  get latencyTimer(): number {
    return this.#latency;
  }

  /** The event character and whether it is enabled. */
  get eventChar(): { char: number; enabled: boolean } {
    return { ...this.#eventChar };
  }

  /** The error character and whether it is enabled. */
  get errorChar(): { char: number; enabled: boolean } {
    return { ...this.#errorChar };
  }

  /** The two status bytes as they are now. */
  statusBytes(): Uint8Array {
    const peer = this.backend.connected;
    const modem = FtdiModemStatus.RESERVED |
      (peer ? FtdiModemStatus.CTS | FtdiModemStatus.DSR | FtdiModemStatus.RLSD : 0);
    const line = (this.backend.outputFull ? 0 : FtdiLineStatus.THRE) |
      (this.backend.outputPending === 0 ? FtdiLineStatus.TEMT : 0);
    return new Uint8Array([modem, line]);
  }

  /** Answers the FTDI vendor requests to the device (wIndex low byte: port 0 or 1). */
  protected override handleControl(c: ControlTransfer): TransferResult {
    const s = c.setup;
    if (s.bmRequestType === VENDOR_IN) return this.#vendorIn(s.bRequest, s.wIndex);
    if (s.bmRequestType !== VENDOR_OUT) return STALL;
    switch (s.bRequest) {
      case FtdiRequest.RESET:
        if (s.wValue === 0) this.#resetChip();
        return s.wValue <= 2 ? OK : STALL;
      case FtdiRequest.MODEM_CTRL:
        return this.#modemCtrl(s.wValue);
      case FtdiRequest.SET_FLOW_CTRL:
        return this.#setFlow(s.wValue, s.wIndex);
      case FtdiRequest.SET_BAUD_RATE:
        this.#baudRate = decodeFtdiBaudRate(s.wValue, s.wIndex);
        this.#requestedBaudRate = requestedFtdiBaudRate(s.wValue, s.wIndex);
        this.#reportLine();
        this.#options.onBaudRate?.(this.#baudRate);
        return OK;
      case FtdiRequest.SET_DATA:
        this.#data = {
          dataBits: s.wValue & 0xff,
          parity: (s.wValue >> 8) & 0x7,
          stopBits: (s.wValue >> 11) & 0x3,
          break: (s.wValue & SET_DATA_BREAK) !== 0,
        };
        this.#reportLine();
        this.#options.onDataCharacteristics?.({ ...this.#data });
        return OK;
      case FtdiRequest.SET_EVENT_CHAR:
        this.#eventChar = { char: s.wValue & 0xff, enabled: (s.wValue & 0x100) !== 0 };
        return OK;
      case FtdiRequest.SET_ERROR_CHAR:
        this.#errorChar = { char: s.wValue & 0xff, enabled: (s.wValue & 0x100) !== 0 };
        return OK;
      case FtdiRequest.SET_LATENCY_TIMER:
        this.#latency = s.wValue & 0xff;
        return OK;
      default:
        return STALL;
    }
  }

  /** Tells the back-end the line settings (codes out of range are reported as the default). */
  #reportLine(): void {
    this.backend.setLineSettings({
      baudRate: this.#requestedBaudRate,
      dataBits: this.#data.dataBits,
      parity: PARITY_NAMES[this.#data.parity] ?? "none",
      stopBits: STOP_BITS[this.#data.stopBits] ?? 1,
    });
  }

  #vendorIn(request: number, wIndex: number): TransferResult {
    switch (request) {
      case FtdiRequest.GET_MODEM_STATUS:
        return dataResult(this.statusBytes());
      case FtdiRequest.GET_LATENCY_TIMER:
        return dataResult(new Uint8Array([this.#latency]));
      case FtdiRequest.READ_EEPROM:
        return wIndex < 0x40 ? dataResult(new Uint8Array(2)) : STALL;
      default:
        return STALL;
    }
  }

  #modemCtrl(wValue: number): TransferResult {
    const next = { ...this.#modem };
    if ((wValue & 0x100) !== 0) next.dtr = (wValue & 0x1) !== 0;
    if ((wValue & 0x200) !== 0) next.rts = (wValue & 0x2) !== 0;
    if (next.dtr !== this.#modem.dtr || next.rts !== this.#modem.rts) {
      this.#modem = next;
      this.#options.onModemControl?.({ ...next });
    }
    return OK;
  }

  #setFlow(wValue: number, wIndex: number): TransferResult {
    const bits = wIndex >> 8;
    const mode = bits === 0
      ? "none"
      : bits === 1
      ? "rts-cts"
      : bits === 2
      ? "dtr-dsr"
      : bits === 4
      ? "xon-xoff"
      : undefined;
    if (mode === undefined) return STALL;
    this.#flow = { mode, xon: wValue & 0xff, xoff: wValue >> 8 };
    this.#options.onFlowControl?.({ ...this.#flow });
    return OK;
  }

  #resetChip(): void {
    this.#latency = DEFAULT_LATENCY_MS;
    this.#eventChar = { char: 0, enabled: false };
    this.#errorChar = { char: 0, enabled: false };
    this.#flow = { mode: "none", xon: 0x11, xoff: 0x13 };
  }

  /** Bulk OUT to the back-end; bulk IN with status bytes, after the latency timer if idle. */
  protected override handleData(t: UsbTransfer): MaybePromise<TransferResult> {
    if (t.signal.aborted) return CANCELLED;
    if (t.endpoint === (EP_IN & 0x0f) && t.dirIn) return this.#bulkIn(t);
    if (t.endpoint === EP_OUT && !t.dirIn) return this.#bulkOut(t);
    return STALL;
  }

  async #bulkIn(t: UsbTransfer): Promise<TransferResult> {
    if (t.length < STATUS_BYTES) return dataResult(this.statusBytes().subarray(0, t.length));
    const latency = Math.max(1, this.#latency);
    const bytes = await this.backend.read(ftdiDataCapacity(t.length), t.signal, latency);
    if (bytes === null) return CANCELLED;
    return dataResult(packFtdiPackets(this.statusBytes(), bytes, t.length));
  }

  async #bulkOut(t: UsbTransfer): Promise<TransferResult> {
    const n = await this.backend.write(t.data, t.signal);
    return n < t.data.length ? CANCELLED : OK;
  }

  /** A bus reset: the chip's settings go back to their defaults. */
  protected override onReset(): void {
    this.#resetChip();
    this.#baudRate = 9600;
    this.#requestedBaudRate = 9600;
    this.#data = { ...DEFAULT_DATA };
    this.#modem = { dtr: false, rts: false };
  }
}
