// A device for session tests: bulk IN/OUT on ep 1 and interrupt IN on ep 2, whose data
// transfers stay pending until the test completes them, and which records every abort.
import {
  type ControlTransfer,
  type EndpointDescriptor,
  type MaybePromise,
  OK,
  type TransferResult,
  UsbDevice,
  type UsbTransfer,
} from "../../mod.ts";

/** A transfer the probe holds until the test answers it. */
export interface HeldTransfer {
  transfer: UsbTransfer;
  complete(result: TransferResult): void;
}

/** The probe device. */
export class ProbeDevice extends UsbDevice {
  held: HeldTransfer[] = [];
  aborted: UsbTransfer[] = [];
  controls: number[] = [];
  #waiters: (() => void)[] = [];

  constructor(idProduct = 0x0001) {
    super({
      device: {
        bcdUSB: 0x0200,
        bDeviceClass: 0,
        bDeviceSubClass: 0,
        bDeviceProtocol: 0,
        bMaxPacketSize0: 64,
        idVendor: 0x1209,
        idProduct,
        bcdDevice: 0x0100,
        iProduct: "probe",
      },
      configurations: [{
        bConfigurationValue: 1,
        bmAttributes: 0x80,
        bMaxPower: 50,
        interfaces: [{
          bInterfaceNumber: 0,
          bAlternateSetting: 0,
          bInterfaceClass: 0xff,
          bInterfaceSubClass: 0,
          bInterfaceProtocol: 0,
          endpoints: [
            { bEndpointAddress: 0x81, bmAttributes: 2, wMaxPacketSize: 512, bInterval: 0 },
            { bEndpointAddress: 0x01, bmAttributes: 2, wMaxPacketSize: 512, bInterval: 0 },
            { bEndpointAddress: 0x82, bmAttributes: 3, wMaxPacketSize: 8, bInterval: 1 },
          ],
        }],
      }],
    }, 3);
  }

  /** Resolves once `n` transfers are held. */
  async waitHeld(n: number): Promise<void> {
    while (this.held.length < n) await new Promise<void>((r) => this.#waiters.push(r));
  }

  /** Vendor request 0x01 with wValue N: answers after N ms; 0x02 throws. */
  protected override handleControl(c: ControlTransfer): MaybePromise<TransferResult> {
    this.controls.push(c.setup.wValue);
    if (c.setup.bRequest === 0x02) throw new Error("the probe was told to fail");
    if (c.setup.bRequest !== 0x01) return OK;
    return new Promise((resolve) =>
      setTimeout(
        () => resolve({ status: "ok", data: new Uint8Array([c.setup.wValue]) }),
        c.setup.wValue,
      )
    );
  }

  protected override handleData(t: UsbTransfer, _ep: EndpointDescriptor): Promise<TransferResult> {
    return new Promise((resolve) => {
      t.signal.addEventListener("abort", () => {
        this.aborted.push(t);
        resolve({ status: "cancelled" });
      }, { once: true });
      this.held.push({ transfer: t, complete: resolve });
      for (const w of this.#waiters.splice(0)) w();
    });
  }
}
