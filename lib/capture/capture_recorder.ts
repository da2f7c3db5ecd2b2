/**
 * Turns what sessions report ({@linkcode UrbObserver}) into pcapng blocks that Wireshark reads
 * as a Linux usbmon capture (link type 220, `usbmon.ts`), so that its USB dissector
 * (epan/dissectors/packet-usb.c) and the class dissectors behind it (USB mass storage and
 * SCSI, HID) decode the traffic:
 *
 * - an 'S' record per CMD_SUBMIT and a 'C' per RET_SUBMIT, with id = session << 32 | seqnum,
 *   so that each 'S' pairs with its 'C' even when several sessions' seqnums overlap;
 * - an URB cancelled by CMD_UNLINK gets the 'C' usbmon shows for an unlinked URB: status
 *   -ECONNRESET (-104), with the comment "unlinked by CMD_UNLINK seqnum N";
 * - URBs a hang-up left unanswered get a 'C' with -ESHUTDOWN (-108), as URBs of a host
 *   controller that went away, so that every 'S' has its 'C';
 * - at an import (and for devices already imported when a capture starts or a file is
 *   rotated), synthetic GET_DESCRIPTOR transfers carry the device, configuration and HID
 *   report descriptors that Wireshark needs to know each endpoint's class. Their ids have bit
 *   63 set, which no real id has;
 * - imports, releases and other events are text lines on a second interface (link type 252,
 *   Wireshark's exported PDU, shown by its "data-text-lines" dissector), each also a comment.
 *
 * Every block is written whole into the space `reserve` gives for it (reused memory, so that a
 * large record costs one copy of its data and no allocation; `undefined` drops the block); the
 * recorder keeps only the URBs pending per session (to answer an unlink with the URB's own
 * endpoint).
 *
 * @module
 */

import { UrbStatus } from "../protocol/constants.ts";
import { DescriptorType, encodeSetupPacket, Request } from "../protocol/setup_packet.ts";
import type { CmdSubmit, IsoPacketDescriptor } from "../protocol/urb_messages.ts";
import type { TransferTypeName } from "../devices/descriptors.ts";
import type { TransferResult } from "../devices/usb_device.ts";
import type { ExportedDevice } from "../server/exported_device.ts";
import type { UrbCompletion } from "../server/ret_submit.ts";
import { type ObservedImport, type UrbObserver, urbTransferType } from "../server/urb_observer.ts";
import {
  encodeInterfaceDescription,
  encodeSectionHeader,
  type EnhancedPacket,
  enhancedPacketLength,
  type EnhancedPacketWriter,
  LinkType,
  writeEnhancedPacket,
} from "./pcapng.ts";
import {
  STATUS_IN_PROGRESS,
  USBMON_HEADER,
  type UsbmonEvent,
  usbmonHeaderLength,
  type UsbmonIsoDesc,
  writeUsbmonHeader,
} from "./usbmon.ts";

/** The interface of the USB records. */
const USB_INTERFACE = 0;
/** The interface of the event lines. */
const EVENT_INTERFACE = 1;

/** Bit 31 of an id's high word: a synthetic transfer of the capture's own. */
const SYNTHETIC = 0x8000_0000;

/** Exported PDU tags (Wireshark's epan/exported_pdu.h): dissector name, protocol column. */
const EXP_PDU_TAG_END_OF_OPT = 0;
const EXP_PDU_TAG_DISSECTOR_NAME = 12;
const EXP_PDU_TAG_COL_PROT_TEXT = 33;

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);

/** The head of every event packet: "show the rest as text lines, protocol usbipgw". */
const EVENT_HEAD = (() => {
  const tag = (code: number, text: string): number[] => {
    const bytes = [...encoder.encode(text)];
    const padded = (bytes.length + 4) & ~3; // NUL-terminated, padded to 32 bits
    const zeros = Array<number>(padded - bytes.length).fill(0);
    return [code >> 8, code & 0xff, padded >> 8, padded & 0xff, ...bytes, ...zeros];
  };
  return new Uint8Array([
    ...tag(EXP_PDU_TAG_DISSECTOR_NAME, "data-text-lines"),
    ...tag(EXP_PDU_TAG_COL_PROT_TEXT, "usbipgw"),
    EXP_PDU_TAG_END_OF_OPT,
    0,
    0,
    0,
  ]);
})();

/** Options of a {@linkcode CaptureRecorder}. */
export interface CaptureRecorderOptions {
  /** Most bytes of data kept per record (the header and ISO descriptors always are); all by default. */
  snaplen?: number;
  /** Which devices' traffic to record; every device's when absent. */
  includes?: (exported: ExportedDevice) => boolean;
  /** The time in microseconds since the epoch; the system clock by default (tests). */
  now?: () => number;
}

/** What the recorder keeps of a session: its URBs pending, by seqnum, with their types. */
interface SessionState {
  pending: Map<number, { cmd: CmdSubmit; type: TransferTypeName }>;
}

/** The microseconds since the epoch, from the monotonic clock's origin. */
function systemMicros(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/**
 * The data of an isochronous IN completion laid out as in the transfer buffer, each packet at
 * its offset, up to the end of the last packet with data (mon_bin.c, mon_bin_collate_isodesc);
 * RET_SUBMIT carries them packed.
 */
function isoInBuffer(packed: Uint8Array, packets: readonly IsoPacketDescriptor[]): Uint8Array {
  let end = 0;
  for (const p of packets) if (p.actualLength > 0) end = Math.max(end, p.offset + p.actualLength);
  const out = new Uint8Array(end);
  let o = 0;
  for (const p of packets) {
    out.set(packed.subarray(o, o + p.actualLength), p.offset);
    o += p.actualLength;
  }
  return out;
}

/**
 * Records the traffic of a server's sessions as pcapng blocks. Add it to the server's
 * observers after writing {@linkcode CaptureRecorder.header}, and call
 * {@linkcode CaptureRecorder.describe} for the devices imported already.
 *
 * @example Recording one URB
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { CaptureRecorder } from "./capture_recorder.ts";
 * import { UsbipServer } from "../server/server.ts";
 * import { GadgetZero } from "../devices/gadget_zero.ts";
 * import { importDevice } from "../client/usbip_client.ts";
 * import { memoryConnectionPair } from "../transport/memory.ts";
 * const server = new UsbipServer();
 * server.addDevice(new GadgetZero(), { busid: "1-1" });
 * const blocks: Uint8Array[] = [];
 * const recorder = new CaptureRecorder((size) => {
 *   blocks.push(new Uint8Array(size));
 *   return blocks.at(-1);
 * });
 * blocks.push(recorder.header());
 * server.observers.add(recorder);
 * const [client, end] = memoryConnectionPair();
 * const done = server.accept(end);
 * const channel = await importDevice(client, "1-1");
 * await channel.control({ bmRequestType: 0x80, bRequest: 8, wValue: 0, wIndex: 0, wLength: 1 });
 * await channel.close();
 * await done;
 * // header, import line, GET_DESCRIPTOR device and configuration (S and C each), S, C,
 * // release line
 * assertEquals(blocks.length, 1 + 1 + 4 + 2 + 1);
 * await server.close();
 * ```
 */
export class CaptureRecorder implements UrbObserver {
  #reserve: (size: number) => Uint8Array | undefined;
  #snaplen: number;
  #includes: (exported: ExportedDevice) => boolean;
  #now: () => number;
  /** Per session: its state, or null when its device is not recorded. */
  #sessions = new Map<number, SessionState | null>();
  #synthetic = 0;

  /**
   * Records into the space `reserve` gives for each block (to be filled at once), or drops the
   * block when it gives none.
   */
  constructor(
    reserve: (size: number) => Uint8Array | undefined,
    options: CaptureRecorderOptions = {},
  ) {
    this.#reserve = reserve;
    this.#snaplen = options.snaplen ?? Infinity;
    this.#includes = options.includes ?? (() => true);
    this.#now = options.now ?? systemMicros;
  }

  /**
   * The blocks a capture starts with: the section header and the two interfaces (the USB
   * records, and the event lines), microsecond timestamps.
   */
  header(): Uint8Array {
    const blocks = [
      encodeSectionHeader("usbipgw"),
      encodeInterfaceDescription({
        linkType: LinkType.LINKTYPE_USB_LINUX_MMAPPED,
        snapLen: Number.isFinite(this.#snaplen)
          ? Math.min(USBMON_HEADER + this.#snaplen, 0xffffffff)
          : 0,
        name: "usbipgw",
        description: "USB/IP traffic of usbipgw's sessions, as Linux usbmon records it",
        tsresol: 6,
      }),
      encodeInterfaceDescription({
        linkType: LinkType.LINKTYPE_WIRESHARK_UPPER_PDU,
        snapLen: 0,
        name: "usbipgw events",
        description: "imports, releases and other events, as text lines",
        tsresol: 6,
      }),
    ];
    const out = new Uint8Array(blocks.reduce((n, b) => n + b.length, 0));
    let o = 0;
    for (const b of blocks) {
      out.set(b, o);
      o += b.length;
    }
    return out;
  }

  /** Writes an event line (interface 1), also as the packet's comment. */
  note(text: string): void {
    this.#packet({
      interfaceId: EVENT_INTERFACE,
      timestamp: this.#now(),
      parts: [EVENT_HEAD, encoder.encode(`${text}\n`)],
      comment: text,
    });
  }

  /**
   * Records a device that was imported before this capture started: an event line and the
   * synthetic descriptor transfers.
   */
  describe(i: ObservedImport, why: string): void {
    if (this.#state(i) === null) return;
    this.note(`${describeImport(i)} ${why}`);
    // The host read the report descriptors before this capture began: a real device is asked.
    this.#descriptors(i, true);
  }

  // UrbObserver

  /** An import: an event line, then the descriptors as synthetic GET_DESCRIPTOR transfers. */
  imported(i: ObservedImport): void {
    this.#sessions.delete(i.session);
    if (this.#state(i) === null) return;
    this.note(describeImport(i));
    // A real device is not asked: the host reads its report descriptors itself, next.
    this.#descriptors(i, false);
  }

  /** An 'S' record: the setup packet of a control transfer, OUT data, ISO descriptors. */
  submitted(i: ObservedImport, cmd: CmdSubmit): void {
    const state = this.#state(i);
    if (state === null) return;
    const type = urbTransferType(i, cmd);
    state.pending.set(cmd.seqnum, { cmd, type });
    const dirIn = cmd.direction === 1;
    const iso = type === "isochronous"
      ? {
        errorCount: 0,
        descs: cmd.isoPackets.map((p): UsbmonIsoDesc => ({
          status: p.status,
          offset: p.offset,
          length: p.length,
        })),
      }
      : undefined;
    this.#urb(i, cmd, type, "S", {
      status: STATUS_IN_PROGRESS,
      length: cmd.transferBufferLength,
      data: dirIn ? undefined : cmd.data,
      ...(type === "control" ? { setup: cmd.setup } : {}),
      ...(iso !== undefined ? { iso } : {}),
    });
  }

  /** A 'C' record with the RET_SUBMIT's status and length, and IN data. */
  completed(i: ObservedImport, cmd: CmdSubmit, c: UrbCompletion): void {
    const state = this.#state(i);
    if (state === null) return;
    const type = state.pending.get(cmd.seqnum)?.type ?? urbTransferType(i, cmd);
    state.pending.delete(cmd.seqnum);
    const dirIn = cmd.direction === 1;
    if (type === "isochronous") {
      this.#urb(i, cmd, type, "C", {
        status: c.status,
        length: c.actualLength,
        data: dirIn ? isoInBuffer(c.data, c.isoPackets) : undefined,
        iso: {
          errorCount: c.errorCount,
          descs: c.isoPackets.map((p) => ({
            status: p.status,
            offset: p.offset,
            length: p.actualLength,
          })),
        },
      });
      return;
    }
    this.#urb(i, cmd, type, "C", {
      status: c.status,
      length: c.actualLength,
      data: dirIn ? c.data : undefined,
    });
  }

  /** A cancelled URB's 'C', -ECONNRESET, as usbmon shows an unlinked URB. */
  unlinked(i: ObservedImport, seqnum: number, unlinkSeqnum: number, status: number): void {
    const state = this.#state(i);
    if (state === null || status !== UrbStatus.ECONNRESET) return;
    const urb = state.pending.get(unlinkSeqnum);
    if (urb === undefined) return;
    state.pending.delete(unlinkSeqnum);
    this.#cancelled(i, urb.cmd, urb.type, status, `unlinked by CMD_UNLINK seqnum ${seqnum}`);
  }

  /** The end of a session: a 'C' with -ESHUTDOWN for each URB left, then an event line. */
  released(i: ObservedImport, aborted: readonly CmdSubmit[]): void {
    const state = this.#state(i);
    this.#sessions.delete(i.session);
    if (state === null) return;
    for (const cmd of aborted) {
      const type = state.pending.get(cmd.seqnum)?.type ?? urbTransferType(i, cmd);
      this.#cancelled(
        i,
        cmd,
        type,
        UrbStatus.ESHUTDOWN,
        "not answered: the session ended (shown as -ESHUTDOWN)",
      );
    }
    const left = aborted.length === 0
      ? ""
      : `; ${aborted.length} URB(s) were left unanswered (completed here with -ESHUTDOWN)`;
    this.note(`session ${i.session} released ${i.exported.busid}${left}`);
  }

  /** The session's state, made at its first report; null when its device is not recorded. */
  #state(i: ObservedImport): SessionState | null {
    let state = this.#sessions.get(i.session);
    if (state === undefined) {
      state = this.#includes(i.exported) ? { pending: new Map() } : null;
      this.#sessions.set(i.session, state);
    }
    return state;
  }

  #cancelled(
    i: ObservedImport,
    cmd: CmdSubmit,
    type: TransferTypeName,
    status: number,
    comment: string,
  ): void {
    const iso = type === "isochronous"
      ? {
        errorCount: cmd.isoPackets.length,
        descs: cmd.isoPackets.map((p) => ({ status, offset: p.offset, length: 0 })),
      }
      : undefined;
    this.#urb(i, cmd, type, "C", {
      status,
      length: 0,
      data: cmd.direction === 1 ? EMPTY : undefined,
      ...(iso !== undefined ? { iso } : {}),
    }, comment);
  }

  /** Writes one record of a real URB. */
  #urb(
    i: ObservedImport,
    cmd: CmdSubmit,
    transferType: TransferTypeName,
    type: "S" | "C",
    fields: Pick<UsbmonEvent, "status" | "length" | "data" | "setup" | "iso">,
    comment?: string,
  ): void {
    this.#record({
      idHigh: i.session >>> 0,
      idLow: cmd.seqnum,
      type,
      transferType,
      endpoint: cmd.ep | (cmd.direction === 1 ? 0x80 : 0),
      devnum: i.exported.devnum,
      busnum: i.exported.busnum,
      timestampUs: this.#now(),
      interval: cmd.interval,
      startFrame: cmd.startFrame,
      transferFlags: cmd.transferFlags,
      ...fields,
    }, comment);
  }

  /** Writes one packet block into reserved space (nothing when the space is refused). */
  #packet(p: EnhancedPacket | EnhancedPacketWriter): void {
    const out = this.#reserve(enhancedPacketLength(p));
    if (out !== undefined) writeEnhancedPacket(out, p);
  }

  #record(e: UsbmonEvent, comment?: string): void {
    const data = e.data;
    const kept = data === undefined ? 0 : Math.min(data.length, this.#snaplen);
    const header = usbmonHeaderLength(e);
    // Written straight into the block: the data are copied once, from the URB into the capture.
    this.#packet({
      interfaceId: USB_INTERFACE,
      timestamp: e.timestampUs,
      captured: header + kept,
      fill(out) {
        writeUsbmonHeader(out, e, kept);
        if (kept > 0) out.set(data!.subarray(0, kept), header);
      },
      // As libpcap's reader sets `len`: what the record would hold with all of its data.
      originalLength: header + (data?.length ?? 0),
      ...(comment !== undefined ? { comment } : {}),
    });
  }

  /**
   * The device descriptor, the active configuration (the first while unconfigured) and its HID
   * report descriptors, as synthetic GET_DESCRIPTOR transfers. The report descriptors are not
   * among the descriptors the gateway holds: an emulated device is asked for them, a real one
   * (passthrough) only when `askRealDevice` (a standard request on its control endpoint, given
   * REPORT_TIMEOUT_MS to answer).
   */
  #descriptors(i: ObservedImport, askRealDevice: boolean): void {
    const device = i.exported.device;
    const set = device.descriptors;
    this.#syntheticIn(i, 0x80, DescriptorType.DEVICE << 8, 0, set.device);
    const configs = set.tree.configurations;
    let index = configs.findIndex((c) => c.bConfigurationValue === device.configurationValue);
    if (index < 0) index = 0;
    const config = set.configurations[index];
    if (config === undefined) return;
    this.#syntheticIn(i, 0x80, (DescriptorType.CONFIGURATION << 8) | index, 0, config);
    if (i.exported.origin !== "emulated" && !askRealDevice) return;
    for (const intf of configs[index]!.interfaces) {
      if (intf.bInterfaceClass !== HID_CLASS || intf.bAlternateSetting !== 0) continue;
      // The HID descriptor names the report descriptor's length (HID 1.11 §6.2.1).
      const hid = intf.extra?.find((x) => x[1] === HID_DESCRIPTOR && x.length >= 9);
      if (hid === undefined || hid[6] !== HID_REPORT) continue;
      const length = hid[7]! | (hid[8]! << 8);
      const setup = {
        bmRequestType: 0x81,
        bRequest: Request.GET_DESCRIPTOR,
        wValue: HID_REPORT << 8,
        wIndex: intf.bInterfaceNumber,
        wLength: length,
      };
      const answer = (r: TransferResult) => {
        if (r.status === "ok" && r.data !== undefined) {
          this.#syntheticIn(i, 0x81, setup.wValue, setup.wIndex, r.data.subarray(0, length));
        }
      };
      try {
        const r = device.submit({
          endpoint: 0,
          dirIn: true,
          type: "control",
          setup,
          length,
          data: EMPTY,
          shortNotOk: false,
          zeroPacket: false,
          isoPackets: [],
          // An emulated device answers at once; a real one gets a time limit.
          signal: i.exported.origin === "emulated"
            ? new AbortController().signal
            : AbortSignal.timeout(REPORT_TIMEOUT_MS),
        });
        if (r instanceof Promise) r.then(answer, () => {});
        else answer(r);
      } catch {
        // A device that cannot say: the capture goes without its report descriptor.
      }
    }
  }

  /** A synthetic control IN transfer (GET_DESCRIPTOR): an 'S' and its 'C'. */
  #syntheticIn(
    i: ObservedImport,
    bmRequestType: number,
    wValue: number,
    wIndex: number,
    data: Uint8Array,
  ): void {
    const setup = encodeSetupPacket({
      bmRequestType,
      bRequest: Request.GET_DESCRIPTOR,
      wValue,
      wIndex,
      wLength: data.length,
    });
    const base = {
      idHigh: (SYNTHETIC | i.session) >>> 0,
      idLow: ++this.#synthetic >>> 0,
      transferType: "control" as const,
      endpoint: 0x80,
      devnum: i.exported.devnum,
      busnum: i.exported.busnum,
      interval: 0,
      startFrame: 0,
      transferFlags: 0x200, // URB_DIR_IN
    };
    this.#record({
      ...base,
      type: "S",
      timestampUs: this.#now(),
      status: STATUS_IN_PROGRESS,
      length: data.length,
      setup,
      data: undefined,
    }, "synthetic: written by usbipgw so that Wireshark knows the device's descriptors");
    this.#record({
      ...base,
      type: "C",
      timestampUs: this.#now(),
      status: 0,
      length: data.length,
      data,
    });
  }
}

/** How long a device is given to answer the capture's GET_DESCRIPTOR(report). */
const REPORT_TIMEOUT_MS = 1000;

const HID_CLASS = 0x03;
const HID_DESCRIPTOR = 0x21;
const HID_REPORT = 0x22;

/** "session 3 (tcp) imported 1-1 (gadget-zero, 0525:a4a0)". */
function describeImport(i: ObservedImport): string {
  const d = i.exported.device.descriptors.tree.device;
  const id = `${hex4(d.idVendor)}:${hex4(d.idProduct)}`;
  return `session ${i.session} (${i.transport}) imported ${i.exported.busid} (${i.exported.name}, ${id})`;
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, "0");
}
