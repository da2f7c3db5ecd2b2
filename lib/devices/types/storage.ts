/**
 * The `storage` device type: the USB thumb drive (see `../storage/storage.ts`), one logical
 * unit per image file. Parsing checks every value (`massStorageProblem`, the size against the
 * block size) before an image is opened, let alone created.
 *
 * @module
 */

import { Speed, type SpeedValue } from "../../protocol/constants.ts";
import type { DeviceType, KeySpec } from "../device_type.ts";
import { MAX_LUNS } from "../storage/bot.ts";
import { DiskImage, type ImageIo, parseSize } from "../storage/image.ts";
import {
  checkMassStorageOptions,
  defaultSerial,
  MassStorage,
  massStorageDescriptors,
  massStorageProblem,
  type MassStorageSpeed,
} from "../storage/storage.ts";
import { emulatedType } from "./_emulated.ts";
import { definedOnly } from "./_keys.ts";

/** The typed options of a `storage` spec. */
export interface StorageTypeOptions {
  /** One image per logical unit, LUN 0 first, resolved; 1 to 16 of them. */
  readonly images: readonly string[];
  readonly readOnly: boolean;
  /** Bytes, a whole number of blocks: a missing or empty image is created with this size. */
  readonly size?: number;
  readonly blockSize: 512 | 4096;
  readonly removable: boolean;
  readonly vendor: string;
  readonly product: string;
  readonly revision: string;
  /** Absent: derived from the images' paths. */
  readonly serial?: string;
  readonly speed: MassStorageSpeed;
  /** USB Attached SCSI as alternate setting 1 beside Bulk-Only. */
  readonly uas: boolean;
  /** How the images are read and written. */
  readonly io: ImageIo;
}

const NAME = "storage";
const BLOCKS = ["512", "4096"] as const;
const SPEEDS = ["high", "super", "full"] as const;
const IO_MODES = ["auto", "sync", "async"] as const satisfies readonly ImageIo[];
const SPEED_VALUES: Readonly<Record<MassStorageSpeed, SpeedValue>> = {
  full: Speed.FULL,
  high: Speed.HIGH,
  super: Speed.SUPER,
};
const IMAGE_FORMS = "image=PATH is required (image=a.img;b.img serves one LUN per image)";
const KEYS: Readonly<Record<string, KeySpec>> = {
  image: {
    kind: "path",
    required: true,
    help: "image file; a;b serves one LUN per file, with the other keys for each",
  },
  ro: {
    kind: "flag",
    default: "0",
    help: "read-only: the image is opened O_RDONLY and writes fail (ro, ro=1 or ro=0)",
  },
  size: {
    kind: "size",
    help:
      "create a missing (or empty) image sparse with this size: bytes or K/M/G/T (powers of 1024), whole blocks; an existing image of another size is refused, never resized",
  },
  removable: {
    kind: "flag",
    default: "1",
    help: "1: a thumb drive that can be ejected, or 0: a fixed disk",
  },
  vendor: {
    kind: "text",
    default: "usbipgw",
    help: "SCSI vendor and USB manufacturer, up to 8 ASCII characters",
  },
  product: {
    kind: "text",
    default: "Thumb Drive",
    help: "SCSI product and USB product, up to 16 ASCII characters",
  },
  revision: { kind: "text", default: "1.00", help: "SCSI revision, up to 4 characters" },
  serial: {
    kind: "text",
    help: "USB and SCSI serial number (default: 24 hex digits derived from the image path)",
  },
  block: {
    kind: "choice",
    choices: BLOCKS,
    default: "512",
    help: "logical block size: 512 or 4096",
  },
  speed: {
    kind: "choice",
    choices: SPEEDS,
    default: "high",
    help: "USB speed: high (512-byte bulk packets), super (SuperSpeed, 1024) or full (64)",
  },
  uas: {
    kind: "flag",
    default: "0",
    help:
      "1: also offer USB Attached SCSI (many commands in flight) as alternate setting 1; without streams, so a SuperSpeed host uses Bulk-Only",
  },
  io: {
    kind: "choice",
    choices: IO_MODES,
    default: "auto",
    help:
      "sync: read and write the image on the event loop (fast for an image in memory, stalls every session on a slow disk); async: on a thread pool; auto: sync on tmpfs or ramfs",
  },
};

/**
 * The name a {@linkcode DiskImage} gives `path` once opened (its real path), which the default
 * serial number is derived from; for an image not created yet, its folder's real path and its
 * file name. Nothing is opened.
 */
async function _imageName(path: string): Promise<string> {
  try {
    return await Deno.realPath(path);
  } catch {
    const slash = path.lastIndexOf("/");
    const folder = slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
    try {
      const real = await Deno.realPath(folder);
      return `${real === "/" ? "" : real}/${path.slice(slash + 1)}`;
    } catch {
      return path;
    }
  }
}

/**
 * The `storage` device type.
 *
 * @example Every value is checked before any image is touched
 * ```ts
 * import { STORAGE_TYPE } from "./storage.ts";
 * const ctx = { resolvePath: (p: string) => `/srv/${p}` };
 * const r = STORAGE_TYPE.parse({ image: "a.img;b.img", size: "64M", ro: "" }, ctx);
 * console.assert(r.ok && r.options.images.join() === "/srv/a.img,/srv/b.img");
 * console.assert(r.ok && r.options.readOnly && r.options.size === 64 << 20);
 * const bad = STORAGE_TYPE.parse({ image: "a.img", size: "1000" }, ctx);
 * console.assert(!bad.ok && bad.key === "size");
 * ```
 */
export const STORAGE_TYPE: DeviceType<StorageTypeOptions> = emulatedType<StorageTypeOptions>({
  name: NAME,
  summary: "USB thumb drive (mass storage, SCSI over bulk-only transport) backed by image files",
  keys: KEYS,
  read(r, context) {
    const imageText = r.text("image");
    if (imageText === undefined) {
      return r.fail("image", `Missing image for ${NAME}: ${IMAGE_FORMS}`);
    }
    const paths = imageText.split(";").map((p) => p.trim());
    if (paths.some((p) => p === "")) {
      return r.fail(
        "image",
        `Invalid image="${imageText}" for ${NAME}: an empty path; ${IMAGE_FORMS}`,
      );
    }
    if (paths.length > MAX_LUNS) {
      return r.fail(
        "image",
        `Invalid image for ${NAME}: ${paths.length} images; a drive has at most ${MAX_LUNS} LUNs`,
      );
    }
    const readOnly = r.yesNo("ro");
    const removable = r.yesNo("removable");
    const blockSize = r.choice("block", BLOCKS) === "4096" ? 4096 : 512;
    const speed = r.choice("speed", SPEEDS);
    const uas = r.yesNo("uas");
    const io = r.choice("io", IO_MODES);
    const sizeText = r.text("size");
    let size: number | undefined;
    if (sizeText !== undefined) {
      try {
        size = parseSize(sizeText);
      } catch (e) {
        return r.fail("size", `Invalid size for ${NAME}: ${(e as Error).message}`);
      }
      if (size % blockSize !== 0) {
        return r.fail(
          "size",
          `Invalid size="${sizeText}" for ${NAME}: not a whole number of ${blockSize}-byte blocks; expected a multiple of ${blockSize}`,
        );
      }
    }
    const texts = definedOnly({
      vendor: r.text("vendor"),
      product: r.text("product"),
      revision: r.text("revision"),
      serial: r.text("serial"),
    });
    // Only the texts can be out of range: the block size and the speed are choices.
    const problem = massStorageProblem(texts);
    if (problem !== undefined) {
      return r.fail(problem.key, `Invalid ${problem.key} for ${NAME}: ${problem.message}`);
    }
    const { serial, ...drive } = checkMassStorageOptions({
      blockSize,
      removable,
      speed,
      uas,
      ...texts,
    });
    return {
      images: paths.map((p) => context.resolvePath(p)),
      readOnly,
      io,
      ...definedOnly({ size, serial }),
      ...drive,
    };
  },
  descriptors: async ({ vendor, product, speed, serial, images, uas }) =>
    massStorageDescriptors(speed, {
      vendor,
      product,
      serial: serial ?? defaultSerial(await Promise.all(images.map(_imageName))),
    }, uas),
  speed: (options) => SPEED_VALUES[options.speed],
  async create(options) {
    const { images: paths, readOnly, size, io, ...drive } = options;
    const images: DiskImage[] = [];
    try {
      for (const path of paths) {
        images.push(await DiskImage.open({ path, readOnly, io, ...definedOnly({ size }) }));
      }
      const device = new MassStorage({ ...drive, units: images });
      return { device, close: () => device.close() };
    } catch (e) {
      await Promise.allSettled(images.map((i) => i.close()));
      throw e;
    }
  },
});
