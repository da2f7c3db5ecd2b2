/**
 * Linux usbmon's binary event record, as `LINKTYPE_USB_LINUX_MMAPPED` (220) packets carry it:
 * `struct mon_bin_hdr` of drivers/usb/mon/mon_bin.c padded to 64 bytes, then the ISO
 * descriptors (`struct mon_bin_isodesc`, 16 bytes each), then the data. Fields are in the
 * capture's byte order (little-endian here, as the section header says); Wireshark's
 * packet-usb.c reads them as libpcap's `pcap/usb.h` names them. What goes into a record follows
 * mon_bin_event(): an 'S' carries the setup packet of a control transfer and OUT data, a 'C'
 * carries IN data; `length` is the requested length on 'S' and the actual length on 'C';
 * `len_cap` counts the bytes after the header. Pure encoder: no I/O.
 *
 * @module
 */

import type { TransferTypeName } from "../devices/descriptors.ts";

/** The size of the header (`struct mon_bin_hdr` with the mmapped API's padding). */
export const USBMON_HEADER = 64;

/** The size of one ISO descriptor (`struct mon_bin_isodesc`). */
export const USBMON_ISO_DESC = 16;

/** `xfer_type` values: mon_bin.c's `xfer_to_pipe` (PIPE_ISOCHRONOUS 0 ... PIPE_BULK 3). */
export const UsbmonXferType: Readonly<Record<TransferTypeName, number>> = {
  isochronous: 0,
  interrupt: 1,
  control: 2,
  bulk: 3,
};

/** `status` of an 'S' record: -EINPROGRESS, as usbmon writes it. */
export const STATUS_IN_PROGRESS = -115;

/** One ISO packet as usbmon records it: `length` is the requested on 'S', the actual on 'C'. */
export interface UsbmonIsoDesc {
  /** The packet's status (s32). */
  status: number;
  /** Where the packet lies in the transfer buffer. */
  offset: number;
  /** Its length (see above). */
  length: number;
}

/** The fields of one usbmon event. */
export interface UsbmonEvent {
  /**
   * `id` (u64) as two words: the high and low 32 bits. usbmon puts the URB's address here; what
   * matters to readers is that an 'S' and its 'C' share it.
   */
  idHigh: number;
  /** The low 32 bits of `id`. */
  idLow: number;
  /** 'S' submit, 'C' complete. */
  type: "S" | "C";
  /** The transfer type. */
  transferType: TransferTypeName;
  /** Endpoint number with 0x80 set for IN (`epnum`). */
  endpoint: number;
  /** `devnum`: the device address. */
  devnum: number;
  /** `busnum`. */
  busnum: number;
  /** Microseconds since the epoch (`ts_sec`, `ts_usec`). */
  timestampUs: number;
  /** `status`: -EINPROGRESS on 'S', the URB's status on 'C'. */
  status: number;
  /** `length`: requested bytes on 'S', transferred bytes on 'C'. */
  length: number;
  /** The setup packet of a control 'S' (`flag_setup` 0); absent elsewhere (`flag_setup` '-'). */
  setup?: Uint8Array;
  /** ISO only: `error_count` and the descriptors (their count is `numdesc` and `ndesc`). */
  iso?: { errorCount: number; descs: readonly UsbmonIsoDesc[] };
  /** `interval`. */
  interval: number;
  /** `start_frame`. */
  startFrame: number;
  /** `xfer_flags`: the URB's transfer flags. */
  transferFlags: number;
  /**
   * The data this event carries (OUT on 'S', IN on 'C'), or `undefined` when it carries none
   * (`flag_data` '<' for an IN 'S', '>' for an OUT 'C').
   */
  data: Uint8Array | undefined;
}

const FLAG_NONE = 0x2d; // '-'
const DATA_IN = 0x3c; // '<'
const DATA_OUT = 0x3e; // '>'

/**
 * The header and ISO descriptors of `e` (the data go after them), `len_cap` counting `dataKept`
 * bytes of data: a snap length cuts the data, never the descriptors.
 *
 * @example A control submit: GET_DESCRIPTOR(DEVICE)
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { encodeUsbmonHeader } from "./usbmon.ts";
 * const h = encodeUsbmonHeader({
 *   idHigh: 0, idLow: 7, type: "S", transferType: "control", endpoint: 0x80, devnum: 2,
 *   busnum: 1, timestampUs: 1_500_000, status: -115, length: 18,
 *   setup: new Uint8Array([0x80, 6, 0, 1, 0, 0, 18, 0]), interval: 0, startFrame: 0,
 *   transferFlags: 0x200, data: undefined,
 * }, 0);
 * const v = new DataView(h.buffer);
 * assertEquals([h.length, h[8], h[9], h[14], h[15]], [64, 0x53, 2, 0, 0x3c]);
 * assertEquals([v.getInt32(24, true), v.getInt32(28, true)], [500000, -115]);
 * ```
 */
export function encodeUsbmonHeader(e: UsbmonEvent, dataKept: number): Uint8Array {
  const out = new Uint8Array(usbmonHeaderLength(e));
  writeUsbmonHeader(out, e, dataKept);
  return out;
}

/** The size of the header and ISO descriptors of `e`. */
export function usbmonHeaderLength(e: UsbmonEvent): number {
  return USBMON_HEADER + (e.iso?.descs.length ?? 0) * USBMON_ISO_DESC;
}

/**
 * Writes the header and ISO descriptors of `e` at the start of `out` (which may be reused
 * memory: every byte of them is written), `len_cap` counting `dataKept` bytes of data.
 */
export function writeUsbmonHeader(out: Uint8Array, e: UsbmonEvent, dataKept: number): void {
  const descs = e.iso?.descs ?? [];
  const length = USBMON_HEADER + descs.length * USBMON_ISO_DESC;
  out.fill(0, 0, length);
  const v = new DataView(out.buffer, out.byteOffset, length);
  v.setUint32(0, e.idLow, true);
  v.setUint32(4, e.idHigh, true);
  out[8] = e.type.charCodeAt(0);
  out[9] = UsbmonXferType[e.transferType];
  out[10] = e.endpoint;
  out[11] = e.devnum;
  v.setUint16(12, e.busnum, true);
  out[14] = e.setup !== undefined ? 0 : FLAG_NONE;
  out[15] = e.data !== undefined ? 0 : e.type === "S" ? DATA_IN : DATA_OUT;
  const seconds = Math.floor(e.timestampUs / 1e6);
  // s64 as two words: a BigInt per record would cost more than the rest of the header.
  v.setUint32(16, seconds >>> 0, true);
  v.setInt32(20, Math.floor(seconds / 0x1_0000_0000), true);
  v.setInt32(24, e.timestampUs - seconds * 1e6, true);
  v.setInt32(28, e.status, true);
  v.setUint32(32, e.length, true);
  v.setUint32(36, descs.length * USBMON_ISO_DESC + dataKept, true);
  if (e.setup !== undefined) out.set(e.setup.subarray(0, 8), 40);
  else if (e.iso !== undefined) {
    v.setInt32(40, e.iso.errorCount, true);
    v.setInt32(44, descs.length, true);
  }
  v.setInt32(48, e.interval, true);
  v.setInt32(52, e.startFrame, true);
  v.setUint32(56, e.transferFlags, true);
  v.setUint32(60, descs.length, true);
  descs.forEach((d, i) => {
    const o = USBMON_HEADER + i * USBMON_ISO_DESC;
    v.setInt32(o, d.status, true);
    v.setUint32(o + 4, d.offset, true);
    v.setUint32(o + 8, d.length, true);
  });
}
