/**
 * The one rule by which a device's {@linkcode TransferResult} becomes the RET_SUBMIT of its URB:
 * what a host controller reports when it gives an URB back (`urb->status`,
 * `urb->actual_length`, `iso_frame_desc[]`) and what Linux stub_tx.c
 * (stub_send_ret_submit) then sends of it.
 *
 * - `status` is the device's status as an errno (see `ERRNO`).
 * - OUT: no data go back; `actual_length` is what the device says it took (all when it does not
 *   say and succeeded, nothing when it failed), at most `transfer_buffer_length`.
 * - IN: the device's data, at most `transfer_buffer_length` bytes, as `urb->actual_length`
 *   never exceeds the buffer. More is cut off and turns a status of 0 into -EOVERFLOW, "babble"
 *   (Documentation/driver-api/usb/error-codes.rst); a device's own error status stays. A short
 *   transfer with URB_SHORT_NOT_OK and status 0 is -EREMOTEIO (same document).
 * - Isochronous: each packet by the same rule within its own length (an IN packet's babble is
 *   -EOVERFLOW in its own status; the URB's status stays, error-codes.rst); a packet without a
 *   result gets the URB's status and no data; `actual_length` is the packets' sum and
 *   `error_count` the packets with a non-zero status. IN data are the packets' bytes back to
 *   back without the gaps between offsets, as stub_tx.c sends them; IN data too short to hold
 *   a packet at its offset fail the URB with -EPROTO and no data.
 *
 * Devices apply no second rule: a control IN is cut to wLength by the device itself (USB 2.0
 * §9.3.5), never to the buffer. A kernel client's wLength is the buffer's length (usb_submit_urb
 * in drivers/usb/core/urb.c refuses others with -EBADR); for a raw peer's larger wLength, more
 * data than the buffer holds is babble here as on any other endpoint.
 *
 * IN data up to the buffer's size are passed on as the device returned them, or as a view of
 * them when cut, never copied here: see "Buffers" at `UsbDevice` (lib/devices/usb_device.ts).
 *
 * @example An IN transfer answered with more than the buffer holds
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { type SubmittedTransfer, urbCompletion } from "./ret_submit.ts";
 * const t: SubmittedTransfer = {
 *   dirIn: true, type: "bulk", length: 4, shortNotOk: false, isoPackets: [],
 * };
 * const c = urbCompletion(t, { status: "ok", data: new Uint8Array(6) });
 * assertEquals([c.status, c.actualLength, c.data.length], [-75, 4, 4]); // -EOVERFLOW
 * ```
 *
 * @module
 */

import { Direction, UrbStatus } from "../protocol/constants.ts";
import { type IsoPacketDescriptor, packIsoData, type RetSubmit } from "../protocol/urb_messages.ts";
import type { TransferResult, TransferStatus, UsbTransfer } from "../devices/usb_device.ts";

/** The facts of a submitted URB its RET_SUBMIT depends on (`length` is transfer_buffer_length). */
export type SubmittedTransfer = Pick<
  UsbTransfer,
  "dirIn" | "type" | "length" | "shortNotOk" | "isoPackets"
>;

/** A completed URB as a host controller gives it back: the variable fields of RET_SUBMIT. */
export type UrbCompletion = Pick<
  RetSubmit,
  "status" | "actualLength" | "errorCount" | "data" | "isoPackets"
>;

/** How a device status becomes a URB status (error-codes.rst). */
const ERRNO: Readonly<Record<TransferStatus, number>> = {
  ok: UrbStatus.OK,
  stall: UrbStatus.EPIPE,
  cancelled: UrbStatus.ECONNRESET,
  nodev: UrbStatus.ENODEV,
  overflow: UrbStatus.EOVERFLOW,
  error: UrbStatus.EPROTO,
  shutdown: UrbStatus.ESHUTDOWN,
};

const EMPTY = new Uint8Array(0);

/** Completes the URB `t` with the device's result `r` by the rule of this module. */
export function urbCompletion(t: SubmittedTransfer, r: TransferResult): UrbCompletion {
  const status = ERRNO[r.status];
  if (t.type === "isochronous" && t.isoPackets.length > 0) return isoCompletion(t, r, status);
  if (!t.dirIn) {
    const taken = r.actualLength ?? (status === UrbStatus.OK ? t.length : 0);
    return complete(status, Math.min(taken, t.length), EMPTY);
  }
  const data = r.data ?? EMPTY;
  if (data.length > t.length) {
    return complete(babble(status), t.length, data.subarray(0, t.length));
  }
  const short = status === UrbStatus.OK && t.shortNotOk && data.length < t.length;
  return complete(short ? UrbStatus.EREMOTEIO : status, data.length, data);
}

/**
 * The `devid`, `direction` and `ep` of a RET_SUBMIT or RET_UNLINK: all 0, as Linux stub_tx.c
 * (setup_base_pdu) sends them; vhci matches a reply on its seqnum alone.
 */
export const RET_HEADER_BASIC = { devid: 0, direction: Direction.USBIP_DIR_OUT, ep: 0 } as const;

/** The RET_SUBMIT that answers URB `seqnum` with `c`. */
export function retSubmitOf(seqnum: number, c: UrbCompletion): RetSubmit {
  return {
    kind: "ret_submit",
    seqnum,
    devid: RET_HEADER_BASIC.devid,
    direction: RET_HEADER_BASIC.direction,
    ep: RET_HEADER_BASIC.ep,
    status: c.status,
    actualLength: c.actualLength,
    startFrame: 0,
    numberOfPackets: c.isoPackets.length,
    errorCount: c.errorCount,
    data: c.data,
    isoPackets: c.isoPackets,
  };
}

/** A status of 0 becomes -EOVERFLOW when the device sent more than there is room for. */
function babble(status: number): number {
  return status === UrbStatus.OK ? UrbStatus.EOVERFLOW : status;
}

function complete(status: number, actualLength: number, data: Uint8Array): UrbCompletion {
  return { status, actualLength, errorCount: 0, data, isoPackets: [] };
}

function isoCompletion(t: SubmittedTransfer, r: TransferResult, status: number): UrbCompletion {
  let actualLength = 0;
  let errorCount = 0;
  const isoPackets: IsoPacketDescriptor[] = t.isoPackets.map((p, i) => {
    const pr = r.isoPackets?.[i];
    let packetStatus = pr ? ERRNO[pr.status] : status;
    let actual = pr?.actualLength ?? 0;
    if (actual > p.length) {
      actual = p.length;
      if (t.dirIn) packetStatus = babble(packetStatus);
    }
    if (packetStatus !== UrbStatus.OK) errorCount++;
    actualLength += actual;
    return { offset: p.offset, length: p.length, actualLength: actual, status: packetStatus };
  });
  let data: Uint8Array = EMPTY;
  if (t.dirIn) {
    const buffer = r.data ?? EMPTY;
    // A packet of 0 bytes needs none of the buffer (a cancelled URB may come without data).
    if (
      isoPackets.every((p) => p.actualLength === 0 || p.offset + p.actualLength <= buffer.length)
    ) {
      data = packIsoData(buffer, isoPackets);
    } else {
      for (const p of isoPackets) p.actualLength = 0;
      return { status: UrbStatus.EPROTO, actualLength: 0, errorCount, data, isoPackets };
    }
  }
  return { status, actualLength, errorCount, data, isoPackets };
}
