// Tests of the thumb drive as a USB device: descriptors at each speed, flushing at the end of
// a session, a hang-up in the middle of a write, and the `storage` device spec.
import { assert, assertEquals, assertRejects, assertStringIncludes } from "@std/assert";
import { checkConfigText } from "../../../lib/cli/config.ts";
import { readSpecFlag } from "../../../lib/cli/spec_flag.ts";
import type { CreatedDevice } from "../../../lib/devices/device_type.ts";
import {
  createDevice,
  type DeviceParseResult,
  type ParsedDevice,
  parseDevice,
  PATHS_AS_GIVEN,
} from "../../../lib/devices/registry.ts";
import { DiskImage, MassStorage, Speed } from "../../../mod.ts";
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
  const device = (await getDescriptor(drive, 1, 0)).data!;
  assertEquals([device[2], device[3], device[4], device[7]], [0x00, 0x02, 0, 64]);
  const serialIndex = device[16]!;
  assert(serialIndex > 0);
  const serial = (await getDescriptor(drive, 3, serialIndex)).data!;
  assertEquals(
    String.fromCharCode(...new Uint16Array(serial.slice(2).buffer)),
    "00112233AABB",
  );
  const config = (await getDescriptor(drive, 2, 0)).data!;
  assertEquals(endpoints(config), [{ address: 0x81, maxPacket: 512 }, {
    address: 0x02,
    maxPacket: 512,
  }]);
  // High speed comes with a qualifier and the full-speed configuration.
  assertEquals((await getDescriptor(drive, 6, 0)).status, "ok");
  assertEquals(endpoints((await getDescriptor(drive, 7, 0)).data!)[0]?.maxPacket, 64);
});

Deno.test("speed=full has 64-byte bulk packets; speed=super 1024 with companions and a BOS", async () => {
  const full = new MassStorage({ units: [new MemoryBacking(4096)], speed: "full" });
  assertEquals(full.speed, Speed.FULL);
  assertEquals(endpoints((await getDescriptor(full, 2, 0)).data!)[1]?.maxPacket, 64);
  const ss = new MassStorage({ units: [new MemoryBacking(4096)], speed: "super" });
  assertEquals(ss.speed, Speed.SUPER);
  const device = (await getDescriptor(ss, 1, 0)).data!;
  assertEquals([device[2], device[3], device[7]], [0x00, 0x03, 9]);
  assertEquals(endpoints((await getDescriptor(ss, 2, 0)).data!), [
    { address: 0x81, maxPacket: 1024, burst: 15 },
    { address: 0x02, maxPacket: 1024, burst: 15 },
  ]);
  const bos = (await getDescriptor(ss, 15, 0)).data!;
  assertEquals([bos[1], bos[4]], [15, 2]);
  // A SuperSpeed device has no qualifier.
  assertEquals((await getDescriptor(ss, 6, 0)).status, "stall");
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

/** Reads `text` as a `--device` flag and checks it through the registry. */
function parseFlag(text: string): DeviceParseResult {
  const t = readSpecFlag("--device", text, "type");
  const { type, ...options } = t.fields as Record<string, string>;
  return parseDevice(type!, options, t.alone ?? [], PATHS_AS_GIVEN);
}

type CreatedDrive = CreatedDevice & { device: MassStorage };

/** Creates the drive of a parsed storage spec. */
async function createDrive(device: ParsedDevice): Promise<CreatedDrive> {
  assertEquals(device.name, "storage");
  const made = await createDevice(device, { label: "storage test" });
  assert(made.device instanceof MassStorage);
  return made as CreatedDrive;
}

/** Creates the drive of `--device TEXT`, which must be a valid spec. */
function create(text: string): Promise<CreatedDrive> {
  const r = parseFlag(text);
  assert(r.ok, r.ok ? "" : `${text}: ${r.key}: ${r.message}`);
  return createDrive(r);
}

Deno.test("storage:image=...,size=... creates the image sparse and serves it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const made = await create(`storage:image=${dir}/a.img,size=1M,vendor=ACME,serial=XYZ123456789`);
    assertEquals(made.device.units[0]!.blocks, 2048);
    assertEquals((await Deno.stat(`${dir}/a.img`)).size, 1 << 20);
    assertEquals(made.device.speed, Speed.HIGH);
    assertEquals(made.device.units[0]!.removable, true);
    // A second drive on the same image is refused: the image is locked.
    await assertRejects(
      () => create(`storage:image=${dir}/a.img`),
      Error,
      `Cannot open image ${dir}/a.img: another device or process has it open (it is locked)`,
    );
    await made.close!();
    const again = await create(`storage:image=${dir}/a.img,ro,removable=0,block=4096,speed=super`);
    assertEquals(again.device.units[0]!.backing.readOnly, true);
    assertEquals(again.device.units[0]!.removable, false);
    assertEquals(again.device.units[0]!.blocks, 256);
    assertEquals(again.device.speed, Speed.SUPER);
    await again.close!();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("storage:image=a;b serves one LUN per image and closes what it opened on failure", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const made = await create(`storage:image=${dir}/a.img;${dir}/b.img,size=64K`);
    assertEquals(made.device.units.length, 2);
    await made.close!();
    // The same image twice: the second open fails and the first is closed again.
    await assertRejects(() => create(`storage:image=${dir}/a.img;${dir}/a.img`), Error, "locked");
    await (await DiskImage.open({ path: `${dir}/a.img` })).close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("storage specs with bad values are refused, naming the key and what is valid", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const x = `${dir}/x.img`;
    /** [the --device text, the key named, a part of the message]. */
    const bad: [string, string, string][] = [
      ["storage:size=1M", "image", "Missing image for storage: image=PATH is required"],
      [
        `storage:image=${x};,size=1M`,
        "image",
        `Invalid image="${x};" for storage: an empty path; image=PATH is required`,
      ],
      [
        `storage:image=${x},size=1000`,
        "size",
        'Invalid size="1000" for storage: not a whole number of 512-byte blocks; expected a multiple of 512',
      ],
      [
        `storage:image=${x},size=6K,block=4096`,
        "size",
        "not a whole number of 4096-byte blocks; expected a multiple of 4096",
      ],
      [
        `storage:image=${x},size=lots`,
        "size",
        'Invalid size for storage: Cannot parse size "lots": expected bytes or a number with K, M, G or T',
      ],
      [
        `storage:image=${x},size=1M,ro=maybe`,
        "ro",
        'Invalid ro="maybe" for storage: expected ro alone, ro=1 or ro=0',
      ],
      [
        `storage:image=${x},size=1M,block=1024`,
        "block",
        'Invalid block="1024" for storage: expected 512 or 4096',
      ],
      [
        `storage:image=${x},size=1M,speed=ludicrous`,
        "speed",
        'Invalid speed="ludicrous" for storage: expected high or super or full',
      ],
      [
        `storage:image=${x},size=1M,vendor=TOOLONGVENDOR`,
        "vendor",
        'Invalid vendor for storage: vendor "TOOLONGVENDOR" must be 1..8 printable ASCII characters',
      ],
    ];
    for (const [text, key, message] of bad) {
      const r = parseFlag(text);
      assert(!r.ok, `${text} was accepted`);
      assertEquals(r.key, key, text);
      assertStringIncludes(r.message, message, text);
    }
    // None of them created or locked anything.
    await (await DiskImage.open({ path: x, size: 4096 })).close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a storage device in the TOML config takes ro = true and the same keys", async () => {
  const t = await tempImage(new Uint8Array(65536));
  try {
    const config = await checkConfigText(
      `[[device]]\ntype = "storage"\nimage = "${t.path}"\nro = true\nremovable = false\n`,
      "gw.toml",
    );
    const made = await createDrive(config.devices[0]!.device);
    assertEquals(made.device.units[0]!.backing.readOnly, true);
    assertEquals(made.device.units[0]!.removable, false);
    await made.close!();
  } finally {
    await t.remove();
  }
});
