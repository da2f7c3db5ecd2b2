// Tests of UsbfsDevice that need no USB hardware: opening what is not a usbfs node, and the URB
// machinery against a fake kernel (tests/devices/passthrough/_fake_usbfs.ts).
import { assert, assertEquals, assertRejects } from "@std/assert";
import { UsbfsDevice } from "../../../lib/devices/passthrough/usbfs_device.ts";
import { Errno, UrbFlags, UrbType, UsbfsError } from "../../../lib/devices/passthrough/_usbfs.ts";
import type { UsbTransfer } from "../../../lib/devices/usb_device.ts";
import { AUDIO_FS, KEYBOARD_FS, STORAGE_HS } from "./_descriptors.ts";
import { FakeUsbfs } from "./_fake_usbfs.ts";

Deno.test("UsbfsDevice.open() rejects a missing node", async () => {
  await assertRejects(() => UsbfsDevice.open("/nonexistent/bus/usb/001/001"), Deno.errors.NotFound);
});

Deno.test("UsbfsDevice.open() rejects a file that is not a usbfs node with ENOTTY", async () => {
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeFile(path, KEYBOARD_FS);
    const e = await assertRejects(
      () => UsbfsDevice.open(path),
      UsbfsError,
      "not a usbfs device node",
    );
    if (e.code !== "ENOTTY") throw new Error(`Expected ENOTTY, got ${e.code}`);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("UsbfsDevice.open() rejects malformed descriptors before opening anything", async () => {
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeFile(path, KEYBOARD_FS.subarray(0, 30));
    await assertRejects(() => UsbfsDevice.open(path), SyntaxError, "Cannot parse configuration 0");
  } finally {
    await Deno.remove(path);
  }
});

// ---- with a fake kernel behind the UsbfsOps seam ----

const transfer = (t: Partial<UsbTransfer> & Pick<UsbTransfer, "endpoint" | "dirIn">) => ({
  type: "bulk" as const,
  length: 0,
  data: new Uint8Array(0),
  shortNotOk: false,
  zeroPacket: false,
  isoPackets: [],
  signal: new AbortController().signal,
  ...t,
});

async function withDevice(
  raw: Uint8Array,
  fn: (dev: UsbfsDevice, kernel: FakeUsbfs) => Promise<void>,
): Promise<void> {
  const path = await Deno.makeTempFile();
  await Deno.writeFile(path, raw);
  const kernel = new FakeUsbfs();
  const dev = await UsbfsDevice.open(path, { ops: kernel, configurationValue: 1 });
  try {
    await fn(dev, kernel);
  } finally {
    await dev.close();
    await Deno.remove(path);
  }
}

function field(urb: Uint8Array, offset: number, size: 1 | 4 | 8): number {
  const v = new DataView(urb.buffer, urb.byteOffset, urb.byteLength);
  return size === 1 ? v.getUint8(offset) : size === 4 ? v.getInt32(offset, true) : Number(
    v.getBigUint64(offset, true),
  );
}

Deno.test("UsbfsDevice submits a bulk IN URB and completes it when reaped", async () => {
  await withDevice(STORAGE_HS, async (dev, kernel) => {
    assertEquals(dev.speed, 3);
    const pending = dev.submit(
      transfer({ endpoint: 1, dirIn: true, length: 512, shortNotOk: true }),
    );
    const [urb] = await kernel.waitInFlight(1);
    assertEquals([field(urb!, 0, 1), field(urb!, 1, 1), field(urb!, 8, 4), field(urb!, 24, 4)], [
      UrbType.BULK,
      0x81,
      UrbFlags.SHORT_NOT_OK,
      512,
    ]);
    assertEquals(dev.inFlight, 1);
    kernel.complete(urb!, { data: new TextEncoder().encode("USBS") });
    const { status, data } = await pending;
    assertEquals({ status, data }, { status: "ok", data: new TextEncoder().encode("USBS") });
    assertEquals(dev.inFlight, 0);
  });
});

Deno.test("UsbfsDevice fills an IN buffer again only after the server released it", async () => {
  await withDevice(STORAGE_HS, async (dev, kernel) => {
    const read = async (fill: number) => {
      const pending = dev.submit(transfer({ endpoint: 1, dirIn: true, length: 65536 }));
      const [urb] = await kernel.waitInFlight(1);
      kernel.complete(urb!, { data: new Uint8Array(65536).fill(fill) });
      return { address: field(urb!, 16, 8), result: await pending };
    };
    const first = await read(1);
    const second = await read(2);
    assert(second.address !== first.address, "a buffer not released yet was filled again");
    assertEquals(first.result.data, new Uint8Array(65536).fill(1));
    first.result.release!();
    const third = await read(3);
    assertEquals(third.address, first.address, "the released buffer was not reused");
    assertEquals(third.result.data, new Uint8Array(65536).fill(3));
    assertEquals(second.result.data, new Uint8Array(65536).fill(2));
  });
});

Deno.test("UsbfsDevice sends bulk OUT data with ZERO_PACKET and reports what was taken", async () => {
  await withDevice(STORAGE_HS, async (dev, kernel) => {
    const data = new Uint8Array(31).fill(7);
    const pending = dev.submit(
      transfer({ endpoint: 2, dirIn: false, length: 31, data, zeroPacket: true }),
    );
    const [urb] = await kernel.waitInFlight(1);
    assertEquals([field(urb!, 1, 1), field(urb!, 8, 4), field(urb!, 24, 4)], [
      0x02,
      UrbFlags.ZERO_PACKET,
      31,
    ]);
    kernel.complete(urb!, { actualLength: 31 });
    assertEquals(await pending, { status: "ok", actualLength: 31 });
  });
});

Deno.test("UsbfsDevice sends other ep0 requests as control URBs with the SETUP packet", async () => {
  await withDevice(STORAGE_HS, async (dev, kernel) => {
    const setup = { bmRequestType: 0xa1, bRequest: 0xfe, wValue: 0, wIndex: 0, wLength: 1 };
    const pending = dev.submit(
      transfer({ endpoint: 0, dirIn: true, type: "control", setup, length: 1 }),
    );
    const [urb] = await kernel.waitInFlight(1);
    assertEquals([field(urb!, 0, 1), field(urb!, 1, 1), field(urb!, 24, 4)], [2, 0, 9]);
    const buffer = new Uint8Array(
      Deno.UnsafePointerView.getArrayBuffer(
        Deno.UnsafePointer.create(BigInt(field(urb!, 16, 8)))!,
        9,
      ),
    );
    assertEquals([...buffer.subarray(0, 8)], [0xa1, 0xfe, 0, 0, 0, 0, 1, 0]);
    kernel.complete(urb!, { data: new Uint8Array([0]) });
    assertEquals(await pending, { status: "ok", data: new Uint8Array([0]) });
    // A stall comes back as a status.
    const stalled = dev.submit(
      transfer({ endpoint: 0, dirIn: true, type: "control", setup, length: 1 }),
    );
    const [second] = await kernel.waitInFlight(1);
    kernel.complete(second!, { status: -Errno.EPIPE });
    assertEquals((await stalled).status, "stall");
  });
});

Deno.test("an aborted transfer is discarded and completes as cancelled", async () => {
  await withDevice(KEYBOARD_FS, async (dev, kernel) => {
    const ac = new AbortController();
    const pending = dev.submit(
      transfer({ endpoint: 1, dirIn: true, type: "interrupt", length: 8, signal: ac.signal }),
    );
    const [urb] = await kernel.waitInFlight(1);
    assertEquals(field(urb!, 0, 1), UrbType.INTERRUPT);
    ac.abort();
    assertEquals((await pending).status, "cancelled");
    assertEquals(kernel.names.includes("USBDEVFS_DISCARDURB"), true);
    assertEquals(dev.inFlight, 0);
  });
});

Deno.test("isochronous packets are laid out back to back and returned at their offsets", async () => {
  await withDevice(STORAGE_HS, async (dev, kernel) => {
    const pending = dev.submit(transfer({
      endpoint: 3,
      dirIn: true,
      type: "isochronous",
      length: 20,
      isoPackets: [{ offset: 0, length: 4 }, { offset: 10, length: 4 }],
    }));
    const [urb] = await kernel.waitInFlight(1);
    assertEquals([field(urb!, 0, 1), field(urb!, 8, 4), field(urb!, 24, 4), field(urb!, 36, 4)], [
      UrbType.ISO,
      UrbFlags.ISO_ASAP,
      8,
      2,
    ]);
    kernel.complete(urb!, {
      status: -Errno.EXDEV,
      data: new Uint8Array([1, 2, 3, 4, 5, 6, 0, 0]),
      iso: [{ actualLength: 4 }, { actualLength: 2, status: -Errno.EPROTO }],
    });
    const r = await pending;
    assertEquals(r.status, "ok");
    assertEquals(r.isoPackets, [
      { actualLength: 4, status: "ok" },
      { actualLength: 2, status: "error" },
    ]);
    assertEquals([...r.data!], [1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 5, 6, 0, 0, 0, 0, 0, 0, 0, 0]);
  });
});

Deno.test("isochronous OUT packets go to the kernel back to back; each reports what was sent", async () => {
  await withDevice(AUDIO_FS, async (dev, kernel) => {
    // As snd-usb-audio submits to QEMU's usb-audio: packets of 192 bytes at their offsets.
    const data = new Uint8Array(400).map((_, i) => i & 0xff);
    const pending = dev.submit(transfer({
      endpoint: 1,
      dirIn: false,
      type: "isochronous",
      length: 400,
      data,
      isoPackets: [{ offset: 0, length: 192 }, { offset: 200, length: 192 }],
    }));
    const [urb] = await kernel.waitInFlight(1);
    assertEquals(
      [field(urb!, 0, 1), field(urb!, 1, 1), field(urb!, 8, 4), field(urb!, 24, 4)],
      [UrbType.ISO, 0x01, UrbFlags.ISO_ASAP, 384],
    );
    assertEquals([field(urb!, 36, 4), field(urb!, 56, 4), field(urb!, 68, 4)], [2, 192, 192]);
    const sent = new Uint8Array(
      Deno.UnsafePointerView.getArrayBuffer(
        Deno.UnsafePointer.create(BigInt(field(urb!, 16, 8)))!,
        384,
      ),
    );
    assertEquals([...sent], [...data.subarray(0, 192), ...data.subarray(200, 392)]);
    kernel.complete(urb!, { actualLength: 192, iso: [{ actualLength: 192 }, { actualLength: 0 }] });
    assertEquals(await pending, {
      status: "ok",
      isoPackets: [{ actualLength: 192, status: "ok" }, { actualLength: 0, status: "ok" }],
    });
  });
});

Deno.test("released() frees every interface before kernel drivers may bind any", async () => {
  await withDevice(AUDIO_FS, async (dev, kernel) => {
    await dev.imported();
    assertEquals(dev.claimedInterfaces, [0, 1]);
    kernel.calls.length = 0;
    await dev.released();
    // snd-usb-audio claims the streaming interface 1 from interface 0's probe: connecting 0
    // while usbfs still held 1 left the card without its PCM.
    assertEquals(kernel.names, [
      "USBDEVFS_RELEASEINTERFACE",
      "USBDEVFS_RELEASEINTERFACE",
      "USBDEVFS_IOCTL",
      "USBDEVFS_IOCTL",
    ]);
    assertEquals(kernel.calls.map((c) => c.arg![0]), [0, 1, 0, 1]);
    assertEquals(dev.claimedInterfaces, []);
  });
});

Deno.test("imported() takes the interfaces; released() gives them back to kernel drivers", async () => {
  await withDevice(STORAGE_HS, async (dev, kernel) => {
    await dev.imported();
    assertEquals(dev.claimedInterfaces, [0]);
    const claim = kernel.calls.find((c) => c.name === "USBDEVFS_DISCONNECT_CLAIM")!;
    assertEquals([...claim.arg!.subarray(0, 13)], [
      0,
      0,
      0,
      0,
      2,
      0,
      0,
      0,
      0x75,
      0x73,
      0x62,
      0x66,
      0x73,
    ]);
    kernel.calls.length = 0;
    await dev.released();
    assertEquals(kernel.names, ["USBDEVFS_RELEASEINTERFACE", "USBDEVFS_IOCTL"]);
    assertEquals([...kernel.calls[1]!.arg!.subarray(0, 8)], [0, 0, 0, 0, 0x17, 0x55, 0, 0]);
    assertEquals(dev.claimedInterfaces, []);
  });
});

Deno.test("imported() refuses with a clear error when another program holds an interface", async () => {
  await withDevice(STORAGE_HS, async (dev, kernel) => {
    kernel.errors.set("USBDEVFS_DISCONNECT_CLAIM", Errno.EBUSY);
    kernel.errors.set("USBDEVFS_CLAIMINTERFACE", Errno.EBUSY);
    await assertRejects(
      () => dev.imported(),
      Error,
      "Cannot import " + dev.name +
        ": Cannot claim interface 0: another program holds it through usbfs: EBUSY",
    );
    assertEquals(dev.claimedInterfaces, []);
  });
});

Deno.test("imported() falls back to DISCONNECT + CLAIMINTERFACE on an old kernel", async () => {
  await withDevice(STORAGE_HS, async (dev, kernel) => {
    kernel.errors.set("USBDEVFS_DISCONNECT_CLAIM", Errno.ENOTTY);
    await dev.imported();
    assertEquals(kernel.names.slice(-3), [
      "USBDEVFS_DISCONNECT_CLAIM",
      "USBDEVFS_IOCTL",
      "USBDEVFS_CLAIMINTERFACE",
    ]);
    assertEquals(dev.claimedInterfaces, [0]);
  });
});

Deno.test("the stub's own requests map to their usbfs ioctls", async () => {
  await withDevice(STORAGE_HS, async (dev, kernel) => {
    await dev.imported();
    const ep0 = (bmRequestType: number, bRequest: number, wValue: number, wIndex: number) =>
      dev.submit(transfer({
        endpoint: 0,
        dirIn: false,
        type: "control",
        setup: { bmRequestType, bRequest, wValue, wIndex, wLength: 0 },
      }));
    kernel.calls.length = 0;
    assertEquals(await ep0(0x00, 9, 1, 0), { status: "ok" }); // SET_CONFIGURATION 1
    assertEquals(kernel.names, [
      "USBDEVFS_RELEASEINTERFACE",
      "USBDEVFS_SETCONFIGURATION",
      "USBDEVFS_DISCONNECT_CLAIM",
    ]);
    assertEquals(dev.configurationValue, 1);
    kernel.calls.length = 0;
    assertEquals(await ep0(0x01, 11, 0, 0), { status: "ok" }); // SET_INTERFACE 0/0
    assertEquals(await ep0(0x02, 1, 0, 0x81), { status: "ok" }); // CLEAR_FEATURE(HALT) 0x81
    assertEquals(await ep0(0x23, 3, 4, 1), { status: "ok" }); // SET_FEATURE(PORT_RESET)
    assertEquals(kernel.names, [
      "USBDEVFS_SETINTERFACE",
      "USBDEVFS_CLEAR_HALT",
      "USBDEVFS_RESET",
      "USBDEVFS_DISCONNECT_CLAIM",
    ]);
    assertEquals([...kernel.calls[0]!.arg!], [0, 0, 0, 0, 0, 0, 0, 0]);
    assertEquals([...kernel.calls[1]!.arg!], [0x81, 0, 0, 0]);
    kernel.errors.set("USBDEVFS_CLEAR_HALT", Errno.EINVAL);
    assertEquals(await ep0(0x02, 1, 0, 0x05), { status: "stall" });
  });
});

Deno.test("an unplugged device completes its URBs with nodev, disconnects and closes", async () => {
  await withDevice(KEYBOARD_FS, async (dev, kernel) => {
    await dev.imported();
    const pending = dev.submit(
      transfer({ endpoint: 1, dirIn: true, type: "interrupt", length: 8 }),
    );
    await kernel.waitInFlight(1);
    kernel.unplug();
    assertEquals((await pending).status, "nodev");
    assertEquals(dev.disconnected.aborted, true);
    for (let i = 0; i < 100 && dev.isOpen; i++) await new Promise((r) => setTimeout(r, 1));
    assertEquals(dev.isOpen, false);
    assertEquals(kernel.closed.sort(), [100, 101]);
    assertEquals(
      (await dev.submit(transfer({ endpoint: 1, dirIn: true, length: 8 }))).status,
      "nodev",
    );
    await dev.released(); // no ioctls on a closed node
    assertEquals(dev.inFlight, 0);
  });
});

Deno.test("a submit that fails with ENODEV marks the device gone", async () => {
  await withDevice(STORAGE_HS, async (dev, kernel) => {
    kernel.errors.set("USBDEVFS_SUBMITURB", Errno.ENODEV);
    const r = await dev.submit(transfer({ endpoint: 1, dirIn: true, length: 8 }));
    assertEquals(r.status, "nodev");
    assertEquals(dev.disconnected.aborted, true);
  });
});

Deno.test("close() hands the interfaces back and closes both descriptors", async () => {
  const path = await Deno.makeTempFile();
  await Deno.writeFile(path, STORAGE_HS);
  const kernel = new FakeUsbfs();
  const dev = await UsbfsDevice.open(path, { ops: kernel });
  await dev.imported();
  const pending = dev.submit(transfer({ endpoint: 1, dirIn: true, length: 8 }));
  await kernel.waitInFlight(1);
  await dev.close();
  assertEquals((await pending).status, "cancelled");
  assertEquals(kernel.names.slice(-3), [
    "USBDEVFS_DISCARDURB",
    "USBDEVFS_RELEASEINTERFACE",
    "USBDEVFS_IOCTL",
  ]);
  assertEquals(kernel.closed.sort(), [100, 101]);
  assertEquals(dev.disconnected.aborted, true);
  await Deno.remove(path);
});
