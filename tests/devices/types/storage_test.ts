// Tests of the storage device type: its keys, image paths, describe against create, and the
// drives its specs create (from a --device flag and from the TOML configuration).
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
  pathsRelativeTo,
} from "../../../lib/devices/registry.ts";
import { DiskImage, MassStorage, Speed } from "../../../mod.ts";
import { tempImage } from "../storage/_host.ts";
import { assertDescribedAsCreated, listFolder, parsed } from "./_describe.ts";

const DEFAULTS = {
  readOnly: false,
  blockSize: 512,
  removable: true,
  vendor: "usbipgw",
  product: "Thumb Drive",
  revision: "1.00",
  speed: "high",
  uas: false,
  io: "auto",
} as const;

Deno.test("storage parses images, flags, size, block, speed, uas, io and the SCSI strings", () => {
  assertEquals(parsed("storage", { image: "/srv/a.img" }).options, {
    images: ["/srv/a.img"],
    ...DEFAULTS,
  });
  assertEquals(
    parsed(
      "storage",
      {
        image: "/srv/a.img; /srv/b.img",
        ro: "",
        removable: "0",
        size: "64M",
        block: "4096",
        speed: "super",
        uas: "1",
        io: "sync",
        vendor: "ACME",
        product: "Stick",
        revision: "2",
        serial: "XYZ123456789",
      },
      undefined,
      ["ro"],
    ).options,
    {
      images: ["/srv/a.img", "/srv/b.img"],
      readOnly: true,
      size: 64 << 20,
      blockSize: 4096,
      removable: false,
      vendor: "ACME",
      product: "Stick",
      revision: "2",
      serial: "XYZ123456789",
      speed: "super",
      uas: true,
      io: "sync",
    },
  );
  // TOML booleans arrive as "true" and "false".
  const toml = parsed("storage", { image: "/a", ro: "true", removable: "false" }).options;
  assertEquals([toml.readOnly, toml.removable], [true, false]);
});

Deno.test("storage resolves each relative image of a;b against the context's folder", () => {
  const options =
    parsed("storage", { image: "a.img;/srv/b.img;sub/c.img" }, pathsRelativeTo("/etc/gw"))
      .options;
  assertEquals(options.images, ["/etc/gw/a.img", "/srv/b.img", "/etc/gw/sub/c.img"]);
});

Deno.test("storage describes what it creates, the default serial from the image's real path", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/real`);
    await Deno.symlink(`${dir}/real`, `${dir}/link`);
    // Described before the image exists, then created (which creates it).
    const device = parsed("storage", { image: "link/a.img", size: "1M" }, pathsRelativeTo(dir));
    await assertDescribedAsCreated(device);
    assertEquals(await listFolder(`${dir}/real`), ["a.img"]);
    // Described and created again now that it exists, at each speed, with two LUNs.
    for (const speed of ["high", "super", "full"]) {
      await assertDescribedAsCreated(
        parsed("storage", { image: "link/a.img;b.img", size: "1M", speed }, pathsRelativeTo(dir)),
      );
    }
    await assertDescribedAsCreated(
      parsed("storage", { image: `${dir}/real/a.img`, serial: "S1", vendor: "V" }),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
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
        `storage:image=${x},size=1M,io=mmap`,
        "io",
        'Invalid io="mmap" for storage: expected auto or sync or async',
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
