// Tests of the thumb drive as a USB device: descriptors at each speed, flushing at the end of
// a session, a hang-up in the middle of a write. The `storage` device spec is tested in
// tests/devices/types/storage_test.ts.
import { assert, assertEquals, assertRejects } from "@std/assert";
import { DescriptorType, DiskImage, MassStorage, Speed } from "../../../mod.ts";
import { defaultSerial, massStorageDescriptors } from "../../../lib/devices/storage/storage.ts";
import { getDescriptor, setConfiguration } from "../_transfers.ts";
import { BotHost, cdb10, MemoryBacking, pattern, ramDrive, tempImage } from "./_host.ts";

const BLOCK = 512;

/** The endpoint descriptors (and SS companions) in a configuration descriptor. */
function endpoints(config: Uint8Array): { address: number; maxPacket: number; burst?: number }[] {
  const out: { address: number; maxPacket: number; burst?: number }[] = [];
  for (let o = 0; o < config.length; o += config[o]!) {
    if (config[o + 1] === 5) {
      out.push({ address: config[o + 2]!, maxPacket: config[o + 4]! | (config[o + 5]! << 8) });
    }
    if (config[o + 1] === 0x30) out[out.length - 1]!.burst = config[o + 2]!;
  }
  return out;
}

Deno.test("the drive is a mass-storage interface 08/06/50 with a serial number, high speed by default", async () => {
  const drive = new MassStorage({ units: [new MemoryBacking(65536)], serial: "00112233AABB" });
  assertEquals(drive.speed, Speed.HIGH);
  const summary = drive.summary();
  assertEquals(summary.interfaces, [{
    bInterfaceClass: 0x08,
    bInterfaceSubClass: 0x06,
    bInterfaceProtocol: 0x50,
  }]);
  const device = (await getDescriptor(drive, DescriptorType.DEVICE, 0)).data!;
  assertEquals([device[2], device[3], device[4], device[7]], [0x00, 0x02, 0, 64]);
  const serialIndex = device[16]!;
  assert(serialIndex > 0);
  const serial = (await getDescriptor(drive, DescriptorType.STRING, serialIndex)).data!;
  assertEquals(
    String.fromCharCode(...new Uint16Array(serial.slice(2).buffer)),
    "00112233AABB",
  );
  const config = (await getDescriptor(drive, DescriptorType.CONFIGURATION, 0)).data!;
  assertEquals(endpoints(config), [{ address: 0x81, maxPacket: 512 }, {
    address: 0x02,
    maxPacket: 512,
  }]);
  // High speed comes with a qualifier and the full-speed configuration.
  assertEquals((await getDescriptor(drive, DescriptorType.DEVICE_QUALIFIER, 0)).status, "ok");
  const other = (await getDescriptor(drive, DescriptorType.OTHER_SPEED_CONFIGURATION, 0)).data!;
  assertEquals(endpoints(other)[0]?.maxPacket, 64);
});

Deno.test("speed=full has 64-byte bulk packets; speed=super 1024 with companions and a BOS", async () => {
  const full = new MassStorage({ units: [new MemoryBacking(4096)], speed: "full" });
  assertEquals(full.speed, Speed.FULL);
  const fullConfig = (await getDescriptor(full, DescriptorType.CONFIGURATION, 0)).data!;
  assertEquals(endpoints(fullConfig)[1]?.maxPacket, 64);
  const ss = new MassStorage({ units: [new MemoryBacking(4096)], speed: "super" });
  assertEquals(ss.speed, Speed.SUPER);
  const device = (await getDescriptor(ss, DescriptorType.DEVICE, 0)).data!;
  assertEquals([device[2], device[3], device[7]], [0x00, 0x03, 9]);
  assertEquals(endpoints((await getDescriptor(ss, DescriptorType.CONFIGURATION, 0)).data!), [
    { address: 0x81, maxPacket: 1024, burst: 15 },
    { address: 0x02, maxPacket: 1024, burst: 15 },
  ]);
  const bos = (await getDescriptor(ss, DescriptorType.BOS, 0)).data!;
  assertEquals([bos[1], bos[4]], [15, 2]);
  // A SuperSpeed device has no qualifier.
  assertEquals((await getDescriptor(ss, DescriptorType.DEVICE_QUALIFIER, 0)).status, "stall");
  const d = massStorageDescriptors("super", { vendor: "v", product: "p", serial: "s" });
  assertEquals(d.otherSpeedConfigurations, undefined);
});

Deno.test("the constructor checks LUN count, block size and the strings", () => {
  const ram = () => new MemoryBacking(4096);
  const bad: [() => unknown, string][] = [
    [() => new MassStorage({ units: [] }), "0 logical units"],
    [() => new MassStorage({ units: Array.from({ length: 17 }, ram) }), "17 logical units"],
    [() => new MassStorage({ units: [ram()], blockSize: 1024 as 512 }), "block size 1024"],
    [() => new MassStorage({ units: [ram()], vendor: "NINECHARS" }), "vendor"],
    [() => new MassStorage({ units: [ram()], product: "x".repeat(17) }), "product"],
    [() => new MassStorage({ units: [ram()], revision: "12345" }), "revision"],
    [() => new MassStorage({ units: [ram()], serial: "" }), "serial"],
    [() => new MassStorage({ units: [ram()], serial: "caf\u00e9" }), "serial"],
    [() => new MassStorage({ units: [new MemoryBacking(100)] }), "less than one 512-byte block"],
  ];
  for (const [f, text] of bad) {
    let error: unknown;
    try {
      f();
    } catch (e) {
      error = e;
    }
    assert(error instanceof RangeError, `no RangeError for ${text}`);
    assert(error.message.includes(text), error.message);
  }
});

Deno.test("defaultSerial() is 24 hex digits, stable per path", () => {
  const a = defaultSerial(["/srv/a.img"]);
  assertEquals(a, defaultSerial(["/srv/a.img"]));
  assert(/^[0-9A-F]{24}$/.test(a), a);
  assert(a !== defaultSerial(["/srv/b.img"]));
  const drive = new MassStorage({ units: [new MemoryBacking(4096, { name: "/srv/a.img" })] });
  assertEquals(drive.descriptors.string(drive.descriptors.device[16]!)?.length, 2 + 24 * 2);
});

Deno.test("an image that is not whole blocks is served up to its last whole block", () => {
  const drive = new MassStorage({ units: [new MemoryBacking(4096 + 100)] });
  assertEquals(drive.units[0]!.blocks, 8);
});

Deno.test("the end of a session flushes every image, after the work under way", async () => {
  const slow = new (class extends MemoryBacking {
    release = Promise.withResolvers<void>();
    override async write(offset: number, data: Uint8Array): Promise<void> {
      await this.release.promise;
      return super.write(offset, data);
    }
  })(65536);
  const other = new MemoryBacking(65536);
  const { drive, host } = await ramDrive({ units: [slow, other] });
  await host.cbw(cdb10(0x2a, 0, 1), 512, false);
  const writing = host.out(pattern(512));
  let released = false;
  const release = drive.released().then(() => released = true);
  await new Promise((r) => setTimeout(r, 10));
  assertEquals([released, slow.syncs], [false, 0]);
  slow.release.resolve();
  await writing;
  await release;
  assertEquals([slow.syncs, other.syncs], [1, 1]);
  assertEquals(slow.bytes.subarray(0, 512), pattern(512));
  assertEquals(drive.transportState, "cbw");
});

Deno.test("a hang-up in the middle of a multi-URB WRITE leaves only whole blocks, and nothing outside", async () => {
  const blocks = 64;
  const old = new Uint8Array(blocks * BLOCK).map((_, i) => 0x80 | (i >> 9));
  const t = await tempImage(old);
  try {
    const image = await DiskImage.open({ path: t.path });
    const drive = new MassStorage({ units: [image] });
    drive.imported();
    const host = new BotHost(drive);
    await setConfiguration(host.drive, 1);
    const fresh = pattern(16 * BLOCK, 77).map((b) => b & 0x7f);
    assertEquals((await host.cbw(cdb10(0x2a, 8, 16), 16 * BLOCK, false)).status, "ok");
    // Five URBs of 1.5 blocks each: 7.5 blocks; the half block waits for the rest.
    const urb = 768;
    for (let i = 0; i < 5; i++) {
      const r = await host.out(fresh.subarray(i * urb, (i + 1) * urb));
      assertEquals(r.status, "ok");
    }
    // The sixth URB is cut off as the session ends: its signal aborts while it is handled.
    const session = new AbortController();
    const sixth = host.out(fresh.subarray(5 * urb, 6 * urb), session.signal);
    session.abort();
    await sixth;
    const seventh = session.signal;
    assertEquals((await host.out(fresh.subarray(6 * urb, 7 * urb), seventh)).status, "cancelled");
    await drive.released();
    await drive.close();
    const after = await Deno.readFile(t.path);
    assertEquals(after.length, old.length);
    // Nothing outside blocks 8..23 changed.
    assertEquals(after.subarray(0, 8 * BLOCK), old.subarray(0, 8 * BLOCK));
    assertEquals(after.subarray(24 * BLOCK), old.subarray(24 * BLOCK));
    for (let b = 8; b < 24; b++) {
      const got = after.subarray(b * BLOCK, (b + 1) * BLOCK);
      const isOld = got.every((x, i) => x === old[b * BLOCK + i]);
      const isNew = got.every((x, i) => x === fresh[(b - 8) * BLOCK + i]);
      assert(isOld || isNew, `block ${b} is partly written`);
      // The seven whole blocks of the completed URBs are on disk.
      if (b < 15) assert(isNew, `block ${b} of a completed URB is missing`);
      // The seventh URB never ran: blocks from 17 on are old.
      if (b >= 17) assert(isOld, `block ${b} was written after the hang-up`);
    }
  } finally {
    await t.remove();
  }
});

Deno.test("close() flushes, unlocks and closes the images; the device is gone", async () => {
  const t = await tempImage(new Uint8Array(8192));
  try {
    const drive = new MassStorage({ units: [await DiskImage.open({ path: t.path })] });
    await assertRejects(() => DiskImage.open({ path: t.path }), Error, "locked");
    await drive.close();
    assertEquals(drive.disconnected.aborted, true);
    await (await DiskImage.open({ path: t.path })).close();
    await drive.close();
  } finally {
    await t.remove();
  }
});

Deno.test("an image's READ data go out in a buffer the drive fills again only once it is released", async () => {
  const blocks = 64;
  const t = await tempImage(pattern(blocks * BLOCK, 5));
  const expected = await Deno.readFile(t.path);
  try {
    const drive = new MassStorage({ units: [await DiskImage.open({ path: t.path })] });
    drive.imported();
    const host = new BotHost(drive);
    await setConfiguration(host.drive, 1);
    const read = async (lba: number) => {
      assertEquals((await host.cbw(cdb10(0x28, lba, 16), 16 * BLOCK, true)).status, "ok");
      const r = await host.in(16 * BLOCK);
      assertEquals(r.status, "ok");
      assertEquals((await host.csw()).status, 0);
      assertEquals(r.data, expected.subarray(lba * BLOCK, (lba + 16) * BLOCK));
      return r;
    };
    const first = await read(0);
    assert(first.release !== undefined, "an image read comes in a lent buffer");
    const second = await read(16);
    assert(second.data!.buffer !== first.data!.buffer, "a buffer not released was filled again");
    first.release!();
    const third = await read(32);
    assertEquals(third.data!.buffer, first.data!.buffer, "the released buffer was not reused");
    assertEquals(second.data, expected.subarray(16 * BLOCK, 32 * BLOCK), "second read intact");
    await drive.close();
  } finally {
    await t.remove();
  }
});
