// End-to-end tests of the thumb drive: the real gateway process serves `storage` over TCP;
// our USB/IP client writes through the Bulk-Only Transport, reads back, flushes, and the
// bytes are checked in the image file on disk; a hang-up mid-write leaves whole blocks only;
// a second gateway on the same image is refused; a read-only importer cannot write.
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import {
  connectTcp,
  DiskImage,
  Feature,
  importDevice,
  Request,
  requestDeviceList,
  RequestType,
  type UrbChannel,
  UrbStatus,
} from "../../mod.ts";
import { type CommandStatusWrapper, decodeCsw, encodeCbw } from "../../lib/devices/storage/bot.ts";
import { startGateway, tempDir } from "./_gateway.ts";

const ALLOW_TCP = ["--rule", "allow:transport=tcp"];
const BLOCK = 512;
const MAIN = new URL("../../main.ts", import.meta.url).pathname;

function pattern(length: number, seed: number): Uint8Array {
  return new Uint8Array(length).map((_, i) => (i * 31 + seed + (i >> 9) * 7) & 0xff);
}

function cdb10(op: number, lba: number, count: number): Uint8Array {
  const b = new Uint8Array(10);
  b[0] = op;
  new DataView(b.buffer).setUint32(2, lba);
  new DataView(b.buffer).setUint16(7, count);
  return b;
}

/** A Bulk-Only host over a URB channel: bulk OUT is endpoint 2, bulk IN endpoint 1. */
class Drive {
  tag = 0;
  constructor(readonly ch: UrbChannel) {}

  async configure(): Promise<void> {
    const r = await this.ch.control({
      bmRequestType: 0,
      bRequest: Request.SET_CONFIGURATION,
      wValue: 1,
      wIndex: 0,
      wLength: 0,
    });
    assertEquals(r.status, 0);
  }

  async cbw(cdb: Uint8Array, length: number, dirIn: boolean): Promise<void> {
    this.tag++;
    const data = encodeCbw({ tag: this.tag, dataTransferLength: length, dirIn, cdb });
    const r = await this.ch.submit({ ep: 2, dirIn: false, data }).done;
    assertEquals([r.status, r.actualLength], [0, 31]);
  }

  async out(data: Uint8Array): Promise<void> {
    const r = await this.ch.submit({ ep: 2, dirIn: false, data }).done;
    assertEquals([r.status, r.actualLength], [0, data.length]);
  }

  async in(length: number): Promise<Uint8Array> {
    const r = await this.ch.submit({ ep: 1, dirIn: true, length }).done;
    assertEquals(r.status, 0);
    return r.data;
  }

  async csw(): Promise<CommandStatusWrapper> {
    let r = await this.ch.submit({ ep: 1, dirIn: true, length: 13 }).done;
    if (r.status === UrbStatus.EPIPE) {
      const clear = await this.ch.control({
        bmRequestType: RequestType.RECIPIENT_ENDPOINT,
        bRequest: Request.CLEAR_FEATURE,
        wValue: Feature.ENDPOINT_HALT,
        wIndex: 0x81,
        wLength: 0,
      });
      assertEquals(clear.status, 0);
      r = await this.ch.submit({ ep: 1, dirIn: true, length: 13 }).done;
    }
    assertEquals(r.status, 0);
    const csw = decodeCsw(r.data);
    assertEquals(csw.tag, this.tag);
    return csw;
  }
}

Deno.test("the gateway serves an image as a thumb drive: WRITE, READ, SYNCHRONIZE CACHE reach the file", async () => {
  const dir = await tempDir();
  const image = `${dir.path}/stick.img`;
  const gw = await startGateway([
    "--tcp",
    "127.0.0.1:0",
    "--device",
    `storage:busid=1-1,image=${image},size=1M`,
    ...ALLOW_TCP,
  ]);
  try {
    assertEquals((await Deno.stat(image)).size, 1 << 20);
    const [listed] = await requestDeviceList(await connectTcp("127.0.0.1", gw.port));
    assertEquals([listed?.busid, listed?.idVendor, listed?.idProduct], ["1-1", 0x1209, 0x0004]);
    assertEquals(listed?.interfaces[0]?.bInterfaceClass, 0x08);
    const drive = new Drive(await importDevice(await connectTcp("127.0.0.1", gw.port), "1-1"));
    await drive.configure();
    const maxLun = await drive.ch.control({
      bmRequestType: 0xa1,
      bRequest: 0xfe,
      wValue: 0,
      wIndex: 0,
      wLength: 1,
    });
    assertEquals([maxLun.status, maxLun.data[0]], [0, 0]);
    // WRITE(10) of 8 blocks at LBA 4, its data in two URBs that split a block.
    const data = pattern(8 * BLOCK, 3);
    await drive.cbw(cdb10(0x2a, 4, 8), data.length, false);
    await drive.out(data.subarray(0, 1300));
    await drive.out(data.subarray(1300));
    assertEquals(await drive.csw(), { tag: drive.tag, residue: 0, status: 0 });
    // READ(10) back.
    await drive.cbw(cdb10(0x28, 4, 8), data.length, true);
    assertEquals(await drive.in(data.length), data);
    assertEquals((await drive.csw()).status, 0);
    // SYNCHRONIZE CACHE(10).
    await drive.cbw(cdb10(0x35, 0, 0), 0, false);
    assertEquals((await drive.csw()).status, 0);
    const onDisk = await Deno.readFile(image);
    assertEquals(onDisk.subarray(4 * BLOCK, 12 * BLOCK), data);
    assert(onDisk.subarray(0, 4 * BLOCK).every((b) => b === 0));
    assert(onDisk.subarray(12 * BLOCK).every((b) => b === 0));
    // An unsupported command fails with sense, without stalling the device.
    await drive.cbw(new Uint8Array([0x4d, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 0, false);
    assertEquals((await drive.csw()).status, 1);
    await drive.cbw(new Uint8Array([0x03, 0, 0, 0, 18, 0]), 18, true);
    const sense = await drive.in(18);
    assertEquals([sense[2], sense[12], sense[13]], [0x05, 0x20, 0x00]);
    assertEquals((await drive.csw()).status, 0);
    await drive.ch.close();
    await gw.waitFor(/Session \d+ \(tcp 127\.0\.0\.1:\d+, device 1-1\) ended/);
  } finally {
    assertEquals((await gw.stop()).code, 0);
  }
  try {
    // The gateway has closed the image: its lock is gone.
    await (await DiskImage.open({ path: image })).close();
  } finally {
    await dir.remove();
  }
});

Deno.test("a hang-up in the middle of a WRITE leaves whole blocks only and the drive works again", async () => {
  const dir = await tempDir();
  const image = `${dir.path}/stick.img`;
  const old = new Uint8Array(64 * BLOCK).map((_, i) => 0x80 | ((i >> 9) & 0x7f));
  await Deno.writeFile(image, old);
  const fresh = pattern(16 * BLOCK, 9).map((b) => b & 0x7f);
  const gw = await startGateway([
    "--tcp",
    "127.0.0.1:0",
    "--device",
    `storage:busid=1-1,image=${image}`,
    ...ALLOW_TCP,
  ]);
  try {
    const drive = new Drive(await importDevice(await connectTcp("127.0.0.1", gw.port), "1-1"));
    await drive.configure();
    await drive.cbw(cdb10(0x2a, 20, 16), fresh.length, false);
    // Three URBs of 1.5 blocks: four whole blocks and half of the fifth, then the hang-up.
    for (let i = 0; i < 3; i++) await drive.out(fresh.subarray(i * 768, (i + 1) * 768));
    await drive.ch.close();
    await gw.waitFor(/Session \d+ \(tcp 127\.0\.0\.1:\d+, device 1-1\) ended/);
    const again = new Drive(await importDevice(await connectTcp("127.0.0.1", gw.port), "1-1"));
    await again.configure();
    await again.cbw(cdb10(0x28, 20, 5), 5 * BLOCK, true);
    const back = await again.in(5 * BLOCK);
    assertEquals(back.subarray(0, 4 * BLOCK), fresh.subarray(0, 4 * BLOCK));
    assertEquals(back.subarray(4 * BLOCK), old.subarray(24 * BLOCK, 25 * BLOCK));
    assertEquals((await again.csw()).status, 0);
    await again.ch.close();
  } finally {
    assertEquals((await gw.stop()).code, 0);
  }
  try {
    const after = await Deno.readFile(image);
    assertEquals(after.subarray(0, 20 * BLOCK), old.subarray(0, 20 * BLOCK));
    assertEquals(after.subarray(20 * BLOCK, 24 * BLOCK), fresh.subarray(0, 4 * BLOCK));
    assertEquals(after.subarray(24 * BLOCK), old.subarray(24 * BLOCK));
  } finally {
    await dir.remove();
  }
});

Deno.test("a second gateway on the same image fails at startup; a read-only importer cannot write", async () => {
  const dir = await tempDir();
  const image = `${dir.path}/stick.img`;
  const gw = await startGateway([
    "--tcp",
    "127.0.0.1:0",
    "--device",
    `storage:busid=1-1,image=${image},size=64K`,
    "--rule",
    "read-only:transport=tcp",
  ]);
  try {
    const second = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        MAIN,
        "serve",
        "--tcp",
        "127.0.0.1:0",
        "--device",
        `storage:image=${image}`,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => second.kill("SIGKILL"), 20000);
    const out = await second.output();
    clearTimeout(timer);
    assertEquals(out.code, 1);
    assertStringIncludes(
      new TextDecoder().decode(out.stderr),
      `Cannot open image ${image}: another device or process has it open (it is locked)`,
    );
    const drive = new Drive(await importDevice(await connectTcp("127.0.0.1", gw.port), "1-1"));
    await drive.configure();
    await drive.cbw(cdb10(0x2a, 0, 1), BLOCK, false);
    const r = await drive.ch.submit({ ep: 2, dirIn: false, data: pattern(BLOCK, 1) }).done;
    assertEquals(r.status, UrbStatus.EPIPE);
    await drive.ch.control({
      bmRequestType: RequestType.RECIPIENT_ENDPOINT,
      bRequest: Request.CLEAR_FEATURE,
      wValue: Feature.ENDPOINT_HALT,
      wIndex: 0x02,
      wLength: 0,
    });
    assertEquals((await drive.csw()).status, 1);
    await drive.cbw(new Uint8Array([0x03, 0, 0, 0, 18, 0]), 18, true);
    const sense = await drive.in(18);
    assertEquals([sense[2], sense[12], sense[13]], [0x07, 0x27, 0x00]);
    await drive.csw();
    // MODE SENSE shows the write protection.
    await drive.cbw(new Uint8Array([0x1a, 0, 0x3f, 0, 192, 0]), 192, true);
    assertEquals((await drive.in(192))[2]! & 0x80, 0x80);
    await drive.csw();
    await drive.ch.close();
    assert((await Deno.readFile(image)).every((b) => b === 0));
  } finally {
    assertEquals((await gw.stop()).code, 0);
    await dir.remove();
  }
});
