/**
 * The URBs of one session between CMD_SUBMIT and their answer, as Linux stub_rx.c keeps them:
 * many may be pending at once. A device that is not {@linkcode UsbDevice.pipelined} gets one
 * transfer per endpoint at a time, each endpoint in submission order (ep0 one FIFO for both
 * directions), so an idle IN transfer blocks only its own endpoint; a pipelined device gets
 * every transfer at once and orders each endpoint itself, as a host controller does.
 *
 * CMD_UNLINK follows Documentation/usb/usbip_protocol.rst and stub_rx.c (stub_recv_cmd_unlink):
 * a pending URB is cancelled (its signal aborts) and gets RET_UNLINK(-ECONNRESET) and never a
 * RET_SUBMIT; an unknown or completed one gets RET_UNLINK(0).
 *
 * @module
 */

import { Direction, TransferFlags, UrbStatus } from "../protocol/constants.ts";
import type { CmdSubmit } from "../protocol/urb_messages.ts";
import { decodeSetupPacket, RequestType } from "../protocol/setup_packet.ts";
import type {
  MaybePromise,
  TransferResult,
  UsbDevice,
  UsbTransfer,
} from "../devices/usb_device.ts";

/** A submitted URB: the command as read and the transfer handed to the device. */
export interface PendingUrb {
  readonly cmd: CmdSubmit;
  readonly transfer: UsbTransfer;
}

/** What the queues tell their session. */
export interface UrbQueueHooks {
  /**
   * A URB completed while still pending (not unlinked, not aborted): answer it with RET_SUBMIT.
   * Its OUT data are the device's no longer.
   */
  completed(urb: PendingUrb, result: TransferResult): void;
  /** A device handler threw; the URB completes with status "error". */
  threw(urb: PendingUrb, error: unknown): void;
}

interface QueuedUrb extends PendingUrb {
  readonly controller: AbortController;
  readonly queue: EndpointQueue;
  running: boolean;
}

interface EndpointQueue {
  readonly items: QueuedUrb[];
  busy: boolean;
}

const ERROR: Readonly<TransferResult> = Object.freeze({ status: "error" });

/** The pending URBs of one session on one device, queued per endpoint. */
export class UrbQueues {
  #device: UsbDevice;
  #hooks: UrbQueueHooks;
  #readOnly: boolean;
  #pending = new Map<number, QueuedUrb>();
  #queues = new Map<number, EndpointQueue>();
  #heldOut = 0;

  /** Queues for `device`; `readOnly` is handed on with every transfer. */
  constructor(device: UsbDevice, hooks: UrbQueueHooks, readOnly: boolean) {
    this.#device = device;
    this.#hooks = hooks;
    this.#readOnly = readOnly;
  }

  /** URBs submitted and neither completed nor unlinked. */
  get size(): number {
    return this.#pending.size;
  }

  /** OUT data held by pending URBs, in bytes. */
  get heldOut(): number {
    return this.#heldOut;
  }

  /** Whether URB `seqnum` is pending. */
  has(seqnum: number): boolean {
    return this.#pending.has(seqnum);
  }

  /** Turns `cmd` into a transfer and queues it on its endpoint (or runs it, if pipelined). */
  submit(cmd: CmdSubmit): void {
    const dev = this.#device;
    const setup = cmd.ep === 0 ? decodeSetupPacket(cmd.setup) : undefined;
    const dirIn = setup
      ? (setup.bmRequestType & RequestType.DIR_IN) !== 0
      : cmd.direction === Direction.USBIP_DIR_IN;
    const controller = new AbortController();
    const transfer: UsbTransfer = {
      endpoint: cmd.ep,
      dirIn,
      type: dev.transferType(cmd.ep, dirIn) ?? "bulk",
      length: cmd.transferBufferLength,
      data: cmd.data,
      shortNotOk: (cmd.transferFlags & TransferFlags.URB_SHORT_NOT_OK) !== 0,
      zeroPacket: (cmd.transferFlags & TransferFlags.URB_ZERO_PACKET) !== 0,
      isoPackets: cmd.isoPackets.map(({ offset, length }) => ({ offset, length })),
      readOnly: this.#readOnly,
      signal: controller.signal,
    };
    if (setup) transfer.setup = setup;
    const key = cmd.ep === 0 ? 0 : (cmd.direction << 4) | cmd.ep;
    let queue = this.#queues.get(key);
    if (queue === undefined) {
      queue = { items: [], busy: false };
      this.#queues.set(key, queue);
    }
    const urb: QueuedUrb = { cmd, transfer, controller, queue, running: false };
    this.#pending.set(cmd.seqnum, urb);
    this.#heldOut += cmd.data.length;
    if (dev.pipelined && cmd.ep !== 0) {
      Promise.resolve(this.#start(urb)).then((result) => this.#finish(urb, result));
      return;
    }
    queue.items.push(urb);
    if (!queue.busy) this.#pump(queue);
  }

  /**
   * Cancels URB `seqnum` for CMD_UNLINK: the RET_UNLINK status, -ECONNRESET when it was pending
   * (it gets no RET_SUBMIT then), else 0.
   */
  unlink(seqnum: number): number {
    const urb = this.#pending.get(seqnum);
    if (urb === undefined) return UrbStatus.OK;
    this.#forget(urb);
    if (!urb.running) {
      const i = urb.queue.items.indexOf(urb);
      if (i >= 0) urb.queue.items.splice(i, 1);
    }
    urb.controller.abort(new DOMException("The URB was unlinked", "AbortError"));
    return UrbStatus.ECONNRESET;
  }

  /** Aborts every pending URB with `reason`; none of them completes. Returns them. */
  abortAll(reason: Error): PendingUrb[] {
    const urbs = [...this.#pending.values()];
    this.#pending.clear();
    this.#heldOut = 0;
    for (const q of this.#queues.values()) q.items.length = 0;
    for (const urb of urbs) urb.controller.abort(reason);
    return urbs;
  }

  /** Runs an endpoint's transfers one after another; synchronous handlers finish in-line. */
  async #pump(queue: EndpointQueue): Promise<void> {
    queue.busy = true;
    try {
      while (queue.items.length > 0) {
        const urb = queue.items[0]!;
        const r = this.#start(urb);
        const result = r instanceof Promise ? await r : r;
        if (queue.items[0] === urb) queue.items.shift();
        this.#finish(urb, result);
      }
    } finally {
      queue.busy = false;
    }
  }

  /** Hands one transfer to the device; a handler that throws fails only that URB. */
  #start(urb: QueuedUrb): MaybePromise<TransferResult> {
    urb.running = true;
    const failed = (e: unknown) => {
      this.#hooks.threw(urb, e);
      return ERROR;
    };
    try {
      const r = this.#device.submit(urb.transfer);
      return r instanceof Promise ? r.catch(failed) : r;
    } catch (e) {
      return failed(e);
    }
  }

  #finish(urb: QueuedUrb, result: TransferResult): void {
    if (this.#pending.get(urb.cmd.seqnum) !== urb) return;
    this.#forget(urb);
    this.#hooks.completed(urb, result);
  }

  #forget(urb: QueuedUrb): void {
    this.#pending.delete(urb.cmd.seqnum);
    this.#heldOut -= urb.cmd.data.length;
  }
}
