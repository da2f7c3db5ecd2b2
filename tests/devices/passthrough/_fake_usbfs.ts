// A fake usbfs kernel behind the UsbfsOps seam: records ioctls, keeps submitted URBs, and lets a
// test complete them, discard them or unplug the device, the way drivers/usb/core/devio.c does.
import {
  Errno,
  Ioctl,
  PollEvents,
  type UsbfsOps,
} from "../../../lib/devices/passthrough/_usbfs.ts";

const NAMES = new Map<number, string>(Object.entries(Ioctl).map(([k, v]) => [v, k]));

/** One recorded ioctl. */
export interface IoctlCall {
  name: string;
  /** A copy of the argument (for SUBMITURB, the URB as submitted). */
  arg: Uint8Array | null;
}

/** How a test completes a URB. */
export interface Completion {
  status?: number;
  actualLength?: number;
  /** Bytes written at the start of the data buffer (after the SETUP packet for control). */
  data?: Uint8Array;
  /** Per ISO packet: actual length and status. */
  iso?: { actualLength: number; status?: number }[];
}

function addressOf(b: Uint8Array): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));
}

/** The fake kernel. fd 100 is the device node, 101 the eventfd. */
export class FakeUsbfs implements UsbfsOps {
  readonly calls: IoctlCall[] = [];
  readonly closed: number[] = [];
  /** Errors to return, by ioctl name (persistent until deleted). */
  readonly errors = new Map<string, number>();
  #inFlight = new Map<bigint, Uint8Array>();
  #completed: Uint8Array[] = [];
  #gone = false;
  #wake = false;
  #waiter: (() => void) | undefined;

  /** The URBs submitted and not yet completed, oldest first. */
  get inFlight(): Uint8Array[] {
    return [...this.#inFlight.values()];
  }

  /** The names of the ioctls made, without the reaper's. */
  get names(): string[] {
    return this.calls.map((c) => c.name).filter((n) => n !== "USBDEVFS_REAPURBNDELAY");
  }

  open(_path: string): number {
    return 100;
  }

  eventfd(): number {
    return 101;
  }

  wake(_fd: number): void {
    this.#wake = true;
    this.#waiter?.();
  }

  drain(_fd: number): void {
    this.#wake = false;
  }

  close(fd: number): void {
    this.closed.push(fd);
  }

  poll(fds: Uint8Array, _nfds: number, _timeoutMs: number): Promise<number> {
    const v = new DataView(fds.buffer, fds.byteOffset, fds.byteLength);
    return new Promise((resolve) => {
      const check = () => {
        const usb = (this.#completed.length > 0 ? PollEvents.POLLOUT : 0) |
          (this.#gone ? PollEvents.POLLHUP | PollEvents.POLLERR : 0);
        const wake = this.#wake ? PollEvents.POLLIN : 0;
        if (usb === 0 && wake === 0) return false;
        v.setUint16(6, usb, true);
        v.setUint16(14, wake, true);
        this.#waiter = undefined;
        resolve((usb ? 1 : 0) + (wake ? 1 : 0));
        return true;
      };
      if (!check()) this.#waiter = check;
    });
  }

  ioctl(_fd: number, request: number, arg: Uint8Array | null): number {
    const name = NAMES.get(request) ?? `0x${request.toString(16)}`;
    this.calls.push({ name, arg: arg?.slice() ?? null });
    if (name === "USBDEVFS_REAPURBNDELAY") {
      const urb = this.#completed.shift();
      if (urb === undefined) return -(this.#gone ? Errno.ENODEV : Errno.EAGAIN);
      new DataView(arg!.buffer, arg!.byteOffset, 8).setBigUint64(0, addressOf(urb), true);
      return 0;
    }
    if (this.#gone) return -Errno.ENODEV;
    const err = this.errors.get(name);
    if (err !== undefined) return -err;
    switch (name) {
      case "USBDEVFS_SUBMITURB":
        this.#inFlight.set(addressOf(arg!), arg!);
        return 0;
      case "USBDEVFS_DISCARDURB": {
        const urb = this.#inFlight.get(addressOf(arg!));
        if (urb === undefined) return -Errno.EINVAL;
        this.complete(urb, { status: -Errno.ENOENT });
        return 0;
      }
      case "USBDEVFS_GET_SPEED":
        return 3;
      default:
        return 0;
    }
  }

  /** Completes a submitted URB as the kernel would, and makes it reapable. */
  complete(urb: Uint8Array, c: Completion): void {
    if (!this.#inFlight.delete(addressOf(urb))) throw new Error("The URB is not in flight");
    const v = new DataView(urb.buffer, urb.byteOffset, urb.byteLength);
    v.setInt32(4, c.status ?? 0, true);
    v.setInt32(28, c.actualLength ?? c.data?.length ?? 0, true);
    c.iso?.forEach((p, i) => {
      v.setUint32(56 + i * 12 + 4, p.actualLength, true);
      v.setInt32(56 + i * 12 + 8, p.status ?? 0, true);
    });
    if (c.data !== undefined && c.data.length > 0) {
      const skip = urb[0] === 2 ? 8 : 0; // control: data after the SETUP packet
      const pointer = Deno.UnsafePointer.create(v.getBigUint64(16, true))!;
      const length = v.getInt32(24, true);
      new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(pointer, length)).set(c.data, skip);
    }
    this.#completed.push(urb);
    this.#waiter?.();
  }

  /** Unplugs the device: URBs in flight die with -ESHUTDOWN, poll reports POLLHUP. */
  unplug(): void {
    for (const urb of this.inFlight) this.complete(urb, { status: -Errno.ESHUTDOWN });
    this.#gone = true;
    this.#waiter?.();
  }

  /** Waits until `n` URBs are in flight. */
  async waitInFlight(n: number): Promise<Uint8Array[]> {
    for (let i = 0; i < 200 && this.#inFlight.size < n; i++) {
      await new Promise((r) => setTimeout(r, 1));
    }
    return this.inFlight;
  }
}
