/**
 * A real host USB device served through Linux usbfs (drivers/usb/core/devio.c): URBs go to the
 * device with USBDEVFS_SUBMITURB and come back through one reaper per device (a nonblocking
 * poll(2), then synchronous USBDEVFS_REAPURBNDELAY). The requests the kernel's usbip-host stub
 * handles itself (drivers/usb/usbip/stub_rx.c: SET_CONFIGURATION, SET_INTERFACE,
 * CLEAR_FEATURE(ENDPOINT_HALT), SET_FEATURE(PORT_RESET)) map to their usbfs ioctls.
 *
 * @module
 */

import { errorMessage } from "../../util/error_message.ts";
import { getLogger } from "../../logtape.ts";
import type { SpeedValue } from "../../protocol/constants.ts";
import { deviceInPool } from "../../protocol/buffer_pool.ts";
import { Feature, Request, RequestType, type SetupPacket } from "../../protocol/setup_packet.ts";
import {
  CANCELLED,
  type IsoPacketResult,
  NODEV,
  type TransferResult,
  UsbDevice,
  type UsbTransfer,
} from "../usb_device.ts";
import { parseDescriptors } from "./descriptor_parser.ts";
import { hex4, type HostDevice } from "./host_devices.ts";
import {
  addressOf,
  decodeReapedUrb,
  DisconnectClaimFlags,
  encodeDisconnectClaim,
  encodePollFds,
  encodeSetInterface,
  encodeUint,
  encodeUrb,
  encodeUsbdevfsIoctl,
  Errno,
  errnoName,
  errnoStatus,
  Ioctl,
  isGone,
  LIBC_OPS,
  PollEvents,
  pollRevents,
  type ReapedUrb,
  UrbFlags,
  urbStatus,
  UrbType,
  UsbfsError,
  type UsbfsOps,
} from "./_usbfs.ts";

export type { UsbfsOps } from "./_usbfs.ts";

const log = getLogger(["usbipgw", "passthrough"]);

const HUB_SET_PORT_FEATURE = 0x23;
const PORT_RESET = 4;
/** How long the poll(2) of the reaper waits before looking again (it is woken earlier). */
const POLL_TIMEOUT_MS = 1000;
/** How long a configuration change, reset or release waits for discarded URBs to come back. */
const DRAIN_TIMEOUT_MS = 2000;

/** Options of {@linkcode UsbfsDevice.open}. */
export interface UsbfsDeviceOptions {
  /** The speed; asked with USBDEVFS_GET_SPEED when absent. */
  speed?: SpeedValue;
  /** The active `bConfigurationValue` (sysfs); the first configuration's when absent. */
  configurationValue?: number;
  /** Current alternate settings by interface number (sysfs); 0 when absent. */
  alternates?: ReadonlyMap<number, number>;
  /** A name for messages; the device node by default. */
  name?: string;
  /** The system calls; a fake kernel in tests. Default: libc. */
  ops?: UsbfsOps;
}

interface PendingUrb {
  readonly id: bigint;
  /** The `struct usbdevfs_urb`; its address is what the kernel knows the URB by. */
  readonly urb: Uint8Array;
  /** The data buffer the kernel reads from and writes to at reap. */
  readonly buffer: Uint8Array;
  readonly transfer: UsbTransfer;
  /** Turns what the kernel wrote back into the transfer's result. */
  readonly finish: (r: ReapedUrb) => TransferResult;
  readonly resolve: (r: TransferResult) => void;
  /** Resolved already (with "nodev"); kept only so that the buffers stay referenced. */
  settled: boolean;
  onAbort?: () => void;
}

/**
 * A host USB device opened through its usbfs node. Every transfer goes to the real device;
 * the descriptor tree parsed from the node serves only `transferType()` and `summary()`.
 * {@linkcode UsbfsDevice.imported} takes the interfaces from their kernel drivers,
 * {@linkcode UsbfsDevice.released} hands them back. When the device is unplugged its pending
 * transfers complete with "nodev", {@linkcode UsbDevice.disconnect} fires and the node is
 * closed. Needs `--allow-ffi` and read-write access to the node (root, or a udev rule).
 */
export class UsbfsDevice extends UsbDevice {
  /** The host controller completes each endpoint's URBs in order: many may be in flight. */
  override readonly pipelined = true;
  /** The device node, e.g. `/dev/bus/usb/002/003`. */
  readonly devnode: string;
  /** A name for messages. */
  readonly name: string;
  #ops: UsbfsOps;
  #fd: number;
  #wake: number;
  #nextId = 1n;
  #pending = new Map<bigint, PendingUrb>();
  /** IN buffers back from the server; the kernel copies into them at reap (devio.c). */
  #inBuffers = deviceInPool();
  #claimed = new Set<number>();
  #stopping = false;
  #reaper: Promise<void>;
  #drained: (() => void) | undefined;
  #releasing: Promise<void> | undefined;

  /**
   * Opens `devnode`: reads and parses its descriptors, opens it read-write and starts the
   * reaper. Throws {@linkcode UsbfsError} when the node cannot be opened or is not a usbfs
   * node, `SyntaxError` when its descriptors are malformed.
   */
  static async open(devnode: string, options: UsbfsDeviceOptions = {}): Promise<UsbfsDevice> {
    const raw = await Deno.readFile(devnode);
    const tree = parseDescriptors(raw);
    const ops = options.ops ?? LIBC_OPS;
    const fd = ops.open(devnode);
    const caps = new Uint8Array(4);
    const r = ops.ioctl(fd, Ioctl.USBDEVFS_GET_CAPABILITIES, caps);
    if (r < 0 && -r === Errno.ENOTTY) {
      ops.close(fd);
      throw new UsbfsError(`use ${devnode}: it is not a usbfs device node`, Errno.ENOTTY);
    }
    let speed = options.speed;
    if (speed === undefined) {
      const s = ops.ioctl(fd, Ioctl.USBDEVFS_GET_SPEED, null);
      speed = (s >= 0 && s <= 6 ? s : 0) as SpeedValue;
    }
    const wake = ops.eventfd();
    if (wake < 0) {
      ops.close(fd);
      throw new UsbfsError("create an eventfd", -wake);
    }
    return new UsbfsDevice(devnode, fd, wake, tree, speed, options, ops);
  }

  /** Opens a device found by {@linkcode listHostDevices}, with its state from sysfs. */
  static fromHost(host: HostDevice): Promise<UsbfsDevice> {
    return UsbfsDevice.open(host.devnode, {
      speed: host.speed,
      configurationValue: host.bConfigurationValue,
      alternates: new Map(host.interfaces.map((i) => [i.bInterfaceNumber, i.bAlternateSetting])),
      name: `${host.busid} (${hex4(host.idVendor)}:${hex4(host.idProduct)})`,
    });
  }

  private constructor(
    devnode: string,
    fd: number,
    wake: number,
    tree: ReturnType<typeof parseDescriptors>,
    speed: SpeedValue,
    options: UsbfsDeviceOptions,
    ops: UsbfsOps,
  ) {
    super(tree, speed);
    this.#ops = ops;
    this.devnode = devnode;
    this.name = options.name ?? devnode;
    this.#fd = fd;
    this.#wake = wake;
    const config = options.configurationValue ?? tree.configurations[0]?.bConfigurationValue ?? 0;
    this.applyConfiguration(config);
    for (const [ifnum, alt] of options.alternates ?? []) {
      if (alt !== 0) this.applyInterface(ifnum, alt);
    }
    this.#reaper = this.#reap();
  }

  /** Whether the node is still open. */
  get isOpen(): boolean {
    return this.#fd >= 0;
  }

  /** The interfaces this device holds claimed, for diagnostics. */
  get claimedInterfaces(): number[] {
    return [...this.#claimed].sort((a, b) => a - b);
  }

  /** URBs handed to the kernel and not reaped yet, for diagnostics. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /**
   * Takes every interface of the active configuration from its kernel driver and claims it
   * (USBDEVFS_DISCONNECT_CLAIM, or DISCONNECT + CLAIMINTERFACE on old kernels). Throws an
   * `Error` naming the interface and errno when one cannot be taken (another program holds it
   * through usbfs, or permissions); the ones already taken are handed back first.
   */
  override async imported(): Promise<void> {
    // The server lets a new session in while the last one's release still drains.
    await this.#releasing;
    if (this.#fd < 0 || this.disconnected.aborted) {
      throw new Error(`Cannot import ${this.name}: the device is gone`);
    }
    try {
      for (const ifnum of this.#interfaceNumbers()) this.#claim(ifnum);
    } catch (e) {
      this.#releaseInterfaces(true);
      throw new Error(
        `Cannot import ${this.name}: ${errorMessage(e)}`,
        { cause: e },
      );
    }
    log.info("{name}: claimed interfaces {interfaces}", {
      name: this.name,
      interfaces: this.claimedInterfaces.join(", ") || "none",
    });
  }

  /**
   * Discards every URB still in flight, waits (bounded) for them to be reaped, releases the
   * interfaces and lets the kernel drivers bind again (USBDEVFS_CONNECT per interface).
   */
  override released(): Promise<void> {
    const done = (async () => {
      await this.#discardAll();
      this.#releaseInterfaces(true);
    })();
    this.#releasing = done;
    return done.finally(() => {
      if (this.#releasing === done) this.#releasing = undefined;
    });
  }

  /**
   * Hands the interfaces back, stops the reaper and closes the node. Pending transfers
   * complete with "nodev"; the device counts as disconnected afterwards.
   */
  async close(): Promise<void> {
    if (this.#fd >= 0 && !this.disconnected.aborted) {
      await this.#discardAll();
      this.#releaseInterfaces(true);
    }
    this.#settleAll(NODEV);
    this.#stop();
    await this.#reaper;
    if (!this.disconnected.aborted) this.disconnect(`${this.name} was closed`);
  }

  /** Sends one transfer to the device; never throws for a USB-level failure. */
  override submit(t: UsbTransfer): Promise<TransferResult> | TransferResult {
    if (this.#fd < 0 || this.disconnected.aborted) return NODEV;
    if (t.signal.aborted) return CANCELLED;
    if (t.endpoint === 0) {
      const s = t.setup;
      if (s === undefined) return { status: "stall" };
      const special = this.#stubRequest(s);
      if (special !== undefined) return special;
      return this.#control(t, s);
    }
    if (t.type === "isochronous") return this.#iso(t);
    return this.#data(t);
  }

  // ---- requests the kernel stub handles itself ----

  #stubRequest(s: SetupPacket): Promise<TransferResult> | TransferResult | undefined {
    const standard = (s.bmRequestType & RequestType.TYPE_MASK) === RequestType.TYPE_STANDARD;
    const recipient = s.bmRequestType & RequestType.RECIPIENT_MASK;
    const out = (s.bmRequestType & RequestType.DIR_IN) === 0;
    if (
      standard && out && s.bRequest === Request.SET_CONFIGURATION &&
      recipient === RequestType.RECIPIENT_DEVICE
    ) return this.#setConfiguration(s.wValue & 0xff);
    if (
      standard && out && s.bRequest === Request.SET_INTERFACE &&
      recipient === RequestType.RECIPIENT_INTERFACE
    ) return this.#setInterface(s.wIndex & 0xff, s.wValue & 0xff);
    if (
      s.bmRequestType === RequestType.RECIPIENT_ENDPOINT && s.bRequest === Request.CLEAR_FEATURE &&
      s.wValue === Feature.ENDPOINT_HALT
    ) return this.#clearHalt(s.wIndex & 0x8f);
    if (
      s.bmRequestType === HUB_SET_PORT_FEATURE && s.bRequest === Request.SET_FEATURE &&
      s.wValue === PORT_RESET
    ) return this.#resetDevice();
    return undefined;
  }

  async #setConfiguration(value: number): Promise<TransferResult> {
    // usbfs refuses SETCONFIGURATION while any interface is claimed, ours included.
    await this.#discardAll();
    this.#releaseInterfaces(false);
    const r = this.#ioctl(Ioctl.USBDEVFS_SETCONFIGURATION, encodeUint(value));
    if (r < 0) {
      log.warn("{name}: SET_CONFIGURATION {value} failed: {error}", {
        name: this.name,
        value,
        error: errnoName(r),
      });
      this.#reclaim();
      return { status: errnoStatus(r) };
    }
    if (!this.applyConfiguration(value)) {
      log.warn("{name}: configuration {value} is not in the descriptors", {
        name: this.name,
        value,
      });
    }
    this.#reclaim();
    return { status: "ok" };
  }

  #setInterface(ifnum: number, alt: number): TransferResult {
    const r = this.#ioctl(Ioctl.USBDEVFS_SETINTERFACE, encodeSetInterface(ifnum, alt));
    if (r < 0) return { status: errnoStatus(r) };
    this.applyInterface(ifnum, alt);
    return { status: "ok" };
  }

  #clearHalt(address: number): TransferResult {
    const r = this.#ioctl(Ioctl.USBDEVFS_CLEAR_HALT, encodeUint(address));
    return { status: r < 0 ? errnoStatus(r) : "ok" };
  }

  async #resetDevice(): Promise<TransferResult> {
    await this.#discardAll();
    const r = this.#ioctl(Ioctl.USBDEVFS_RESET, null);
    // A reset unbinds usbfs from the interfaces (it has no reset hooks) and may let kernel
    // drivers bind: take them again.
    this.#reclaim();
    return { status: r < 0 ? errnoStatus(r) : "ok" };
  }

  // ---- URBs ----

  #control(t: UsbTransfer, s: SetupPacket): Promise<TransferResult> | TransferResult {
    const dirIn = (s.bmRequestType & RequestType.DIR_IN) !== 0;
    const buffer = new Uint8Array(8 + s.wLength);
    const v = new DataView(buffer.buffer);
    buffer[0] = s.bmRequestType;
    buffer[1] = s.bRequest;
    v.setUint16(2, s.wValue, true);
    v.setUint16(4, s.wIndex, true);
    v.setUint16(6, s.wLength, true);
    if (!dirIn) buffer.set(t.data.subarray(0, s.wLength), 8);
    return this.#submitUrb(t, UrbType.CONTROL, 0, 0, buffer, [], (reaped) => {
      const actual = Math.max(0, Math.min(reaped.actualLength, s.wLength));
      const status = urbStatus(reaped.status);
      return dirIn
        ? { status, data: buffer.subarray(8, 8 + actual) }
        : { status, actualLength: actual };
    });
  }

  #data(t: UsbTransfer): Promise<TransferResult> | TransferResult {
    const address = t.endpoint | (t.dirIn ? 0x80 : 0);
    const type = t.type === "interrupt" ? UrbType.INTERRUPT : UrbType.BULK;
    let flags = 0;
    if (t.dirIn && t.shortNotOk) flags |= UrbFlags.SHORT_NOT_OK;
    if (!t.dirIn && t.zeroPacket && type === UrbType.BULK) flags |= UrbFlags.ZERO_PACKET;
    const lent = t.dirIn ? this.#inBuffers.lend(t.length) : undefined;
    const buffer = t.dirIn ? lent ?? new Uint8Array(t.length) : t.data.subarray(0, t.length);
    return this.#submitUrb(t, type, address, flags, buffer, [], (reaped) => {
      const actual = Math.max(0, Math.min(reaped.actualLength, buffer.length));
      const status = urbStatus(reaped.status);
      if (!t.dirIn) return { status, actualLength: actual };
      const data = buffer.subarray(0, actual);
      return { status, ...this.#inBuffers.handOver(lent, data) };
    });
  }

  /** usbfs lays the packets out back to back; USB/IP gives each an offset: copy between. */
  #iso(t: UsbTransfer): Promise<TransferResult> | TransferResult {
    const address = t.endpoint | (t.dirIn ? 0x80 : 0);
    const lengths = t.isoPackets.map((p) => p.length);
    const total = lengths.reduce((a, b) => a + b, 0);
    const buffer = new Uint8Array(total);
    let o = 0;
    for (const p of t.isoPackets) {
      if (!t.dirIn) buffer.set(t.data.subarray(p.offset, p.offset + p.length), o);
      o += p.length;
    }
    return this.#submitUrb(t, UrbType.ISO, address, UrbFlags.ISO_ASAP, buffer, lengths, (r) => {
      const out = t.dirIn ? new Uint8Array(t.length) : undefined;
      const isoPackets: IsoPacketResult[] = [];
      let at = 0;
      t.isoPackets.forEach((p, i) => {
        const rp = r.isoPackets[i];
        const actual = Math.min(rp?.actualLength ?? 0, p.length);
        if (out !== undefined && p.offset + actual <= out.length) {
          out.set(buffer.subarray(at, at + actual), p.offset);
        }
        at += p.length;
        isoPackets.push({ actualLength: actual, status: urbStatus(rp?.status ?? r.status) });
      });
      // -EXDEV says some packets failed; their own statuses carry that.
      const status = -r.status === Errno.EXDEV ? "ok" : urbStatus(r.status);
      return out === undefined ? { status, isoPackets } : { status, data: out, isoPackets };
    });
  }

  #submitUrb(
    t: UsbTransfer,
    type: number,
    endpoint: number,
    flags: number,
    buffer: Uint8Array,
    isoLengths: number[],
    finish: (r: ReapedUrb) => TransferResult,
  ): Promise<TransferResult> | TransferResult {
    const id = this.#nextId++;
    const urb = encodeUrb({
      type,
      endpoint,
      flags,
      buffer: addressOf(buffer),
      bufferLength: buffer.length,
      numberOfPackets: isoLengths.length,
      usercontext: id,
      isoPacketLengths: isoLengths,
    });
    const r = this.#ioctl(Ioctl.USBDEVFS_SUBMITURB, urb);
    if (r < 0) {
      log.debug("{name}: SUBMITURB on ep {ep} failed: {error}", {
        name: this.name,
        ep: endpoint,
        error: errnoName(r),
      });
      return { status: errnoStatus(r) };
    }
    return new Promise<TransferResult>((resolve) => {
      const pending: PendingUrb = {
        id,
        urb,
        buffer,
        transfer: t,
        finish,
        settled: false,
        resolve: (result) => {
          if (pending.settled) return;
          pending.settled = true;
          if (pending.onAbort) t.signal.removeEventListener("abort", pending.onAbort);
          resolve(result);
        },
      };
      // The reaper resolves with finish(); abort only asks the kernel to give the URB back.
      pending.onAbort = () => this.#discard(pending);
      t.signal.addEventListener("abort", pending.onAbort, { once: true });
      this.#pending.set(id, pending);
    });
  }

  #discard(p: PendingUrb): void {
    if (this.#fd < 0 || !this.#pending.has(p.id)) return;
    // EINVAL: it completed already and waits to be reaped.
    this.#ioctl(Ioctl.USBDEVFS_DISCARDURB, p.urb);
  }

  /** Discards every URB in flight and waits until they are reaped, or DRAIN_TIMEOUT_MS. */
  async #discardAll(): Promise<void> {
    if (this.#fd < 0) return;
    for (const p of this.#pending.values()) this.#discard(p);
    if (this.#pending.size === 0) return;
    const drained = new Promise<void>((resolve) => this.#drained = resolve);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((resolve) => timer = setTimeout(resolve, DRAIN_TIMEOUT_MS));
    await Promise.race([drained, timeout]);
    clearTimeout(timer);
    this.#drained = undefined;
    if (this.#pending.size > 0) {
      log.warn("{name}: {count} discarded URB(s) did not come back", {
        name: this.name,
        count: this.#pending.size,
      });
    }
  }

  // ---- the reaper ----

  async #reap(): Promise<void> {
    const fds = encodePollFds([
      { fd: this.#fd, events: PollEvents.POLLOUT | PollEvents.POLLWRNORM },
      { fd: this.#wake, events: PollEvents.POLLIN },
    ]);
    let failures = 0;
    try {
      while (!this.#stopping) {
        const n = await this.#ops.poll(fds, 2, POLL_TIMEOUT_MS);
        if (this.#stopping) break;
        if (n < 0) {
          // errno belongs to the worker thread; EINTR is the likely cause. Do not spin.
          if (++failures > 100) throw new Error("poll(2) keeps failing");
          await new Promise((r) => setTimeout(r, 10));
          continue;
        }
        failures = 0;
        if (n === 0) continue;
        const usb = pollRevents(fds, 0);
        if (pollRevents(fds, 1) & PollEvents.POLLIN) this.#ops.drain(this.#wake);
        if (usb & (PollEvents.POLLERR | PollEvents.POLLHUP | PollEvents.POLLNVAL)) {
          // Gone first, so that every pending transfer completes with "nodev"; then reap what
          // the kernel still holds so that nothing is left when the node closes.
          this.#gone("the device was unplugged");
          this.#reapCompleted();
        } else if (usb & (PollEvents.POLLOUT | PollEvents.POLLWRNORM)) {
          this.#reapCompleted();
        }
      }
    } catch (e) {
      log.error("{name}: the reaper failed: {error}", {
        name: this.name,
        error: errorMessage(e),
      });
      this.#gone("the reaper failed");
    } finally {
      this.#settleAll(NODEV);
      this.#closeFds();
    }
  }

  /** Reaps every completed URB (REAPURBNDELAY until EAGAIN) and resolves its transfer. */
  #reapCompleted(): void {
    const out = new Uint8Array(8);
    const outView = new DataView(out.buffer);
    while (this.#fd >= 0) {
      const r = this.#ops.ioctl(this.#fd, Ioctl.USBDEVFS_REAPURBNDELAY, out);
      if (r < 0) {
        const e = -r;
        if (e === Errno.EAGAIN) break;
        if (e === Errno.EINTR) continue;
        if (!isGone(e)) {
          log.error("{name}: REAPURBNDELAY failed: {error}", {
            name: this.name,
            error: errnoName(e),
          });
        }
        this.#gone(isGone(e) ? "the device was unplugged" : `reaping failed: ${errnoName(e)}`);
        break;
      }
      const address = outView.getBigUint64(0, true);
      const pointer = Deno.UnsafePointer.create(address);
      if (pointer === null) continue;
      const id = new Deno.UnsafePointerView(pointer).getBigUint64(48);
      const p = this.#pending.get(id);
      if (p === undefined) continue;
      this.#pending.delete(id);
      p.resolve(p.finish(decodeReapedUrb(p.urb)));
      if (this.#pending.size === 0) this.#drained?.();
    }
  }

  /** The device is gone: every pending transfer completes with "nodev", the node closes. */
  #gone(reason: string): void {
    if (this.#stopping) return;
    log.info("{name}: {reason}", { name: this.name, reason });
    this.#settleAll(NODEV);
    this.#stop();
    this.#claimed.clear();
    this.disconnect(`${this.name}: ${reason}`);
  }

  #settleAll(result: TransferResult): void {
    for (const p of this.#pending.values()) p.resolve(result);
  }

  #stop(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    if (this.#wake >= 0) this.#ops.wake(this.#wake);
  }

  /** Closes the node once the reaper's poll has returned; the kernel frees unreaped URBs. */
  #closeFds(): void {
    if (this.#fd >= 0) this.#ops.close(this.#fd);
    if (this.#wake >= 0) this.#ops.close(this.#wake);
    this.#fd = -1;
    this.#wake = -1;
    // Only now may the buffers go: the kernel no longer knows these URBs.
    this.#pending.clear();
    this.#drained?.();
  }

  // ---- interfaces ----

  #interfaceNumbers(): number[] {
    const config = this.descriptors.configuration(this.configurationValue);
    return [...new Set((config?.interfaces ?? []).map((i) => i.bInterfaceNumber))];
  }

  /** A synchronous usbfs ioctl; `-errno` on failure, and ENODEV marks the device gone. */
  #ioctl(request: number, arg: Uint8Array | null): number {
    if (this.#fd < 0) return -Errno.ENODEV;
    const r = this.#ops.ioctl(this.#fd, request, arg);
    if (r < 0 && isGone(-r)) this.#gone("the device was unplugged");
    return r;
  }

  /** Claims `ifnum`, taking it from a kernel driver but not from another usbfs program. */
  #claim(ifnum: number): void {
    let r = this.#ioctl(
      Ioctl.USBDEVFS_DISCONNECT_CLAIM,
      encodeDisconnectClaim(ifnum, DisconnectClaimFlags.EXCEPT_DRIVER, "usbfs"),
    );
    if (r < 0 && (-r === Errno.ENOTTY || -r === Errno.EINVAL)) {
      // A kernel without DISCONNECT_CLAIM: DISCONNECT (ENODATA: no driver bound), then claim.
      this.#ioctl(
        Ioctl.USBDEVFS_IOCTL,
        encodeUsbdevfsIoctl(ifnum, Ioctl.USBDEVFS_DISCONNECT),
      );
      r = this.#ioctl(Ioctl.USBDEVFS_CLAIMINTERFACE, encodeUint(ifnum));
    } else if (r < 0 && -r === Errno.EBUSY) {
      // Bound to usbfs: ours already (claiming again succeeds), or another program's.
      r = this.#ioctl(Ioctl.USBDEVFS_CLAIMINTERFACE, encodeUint(ifnum));
      if (r < 0 && -r === Errno.EBUSY) {
        throw new UsbfsError(
          `claim interface ${ifnum}: another program holds it through usbfs`,
          Errno.EBUSY,
        );
      }
    }
    if (r < 0) throw new UsbfsError(`claim interface ${ifnum}`, -r);
    this.#claimed.add(ifnum);
  }

  /** Claims again every interface of the active configuration; failures are logged. */
  #reclaim(): void {
    for (const ifnum of this.#interfaceNumbers()) {
      try {
        this.#claim(ifnum);
      } catch (e) {
        log.warn("{name}: {error}", { name: this.name, error: (e as Error).message });
      }
    }
  }

  /**
   * Releases the claimed interfaces; with `reconnect`, then lets kernel drivers bind again.
   * All are released before the first is connected: a driver may claim the other interfaces
   * from one interface's probe (snd-usb-audio takes the streaming interfaces when it binds the
   * control interface, sound/usb/card.c), and skips those usbfs still holds.
   */
  #releaseInterfaces(reconnect: boolean): void {
    const claimed = [...this.#claimed];
    this.#claimed.clear();
    for (const ifnum of claimed) {
      if (this.#fd < 0) return;
      this.#ioctl(Ioctl.USBDEVFS_RELEASEINTERFACE, encodeUint(ifnum));
    }
    for (const ifnum of reconnect ? claimed : []) {
      if (this.#fd < 0) return;
      // EBUSY: a driver is bound already. EHOSTUNREACH: the device is unconfigured.
      this.#ioctl(Ioctl.USBDEVFS_IOCTL, encodeUsbdevfsIoctl(ifnum, Ioctl.USBDEVFS_CONNECT));
    }
  }
}
