// Tests of the image files behind the thumb drive: size parsing, sparse creation, refusing
// to resize, exclusive and shared locks (in this process and against another), O_RDONLY, and
// the flush (fdatasync) that sync() and close() must really issue.
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import { DiskImage } from "../../../mod.ts";
import { filesystemOf, parseSize } from "../../../lib/devices/storage/image.ts";
import { pattern, tempImage } from "./_host.ts";
import { onPath } from "../../_on_path.ts";

/** The open flags (octal) of this process's descriptors for `path`, from /proc. */
async function openFlags(path: string): Promise<number[]> {
  const real = await Deno.realPath(path);
  const flags: number[] = [];
  for await (const e of Deno.readDir("/proc/self/fd")) {
    let target: string;
    try {
      target = await Deno.readLink(`/proc/self/fd/${e.name}`);
    } catch {
      continue;
    }
    if (target !== real) continue;
    const info = await Deno.readTextFile(`/proc/self/fdinfo/${e.name}`);
    flags.push(parseInt(/flags:\s*([0-7]+)/.exec(info)![1]!, 8));
  }
  return flags;
}

Deno.test("parseSize() reads bytes and K/M/G/T suffixes and rejects the rest", () => {
  assertEquals(parseSize("512"), 512);
  assertEquals(parseSize("64M"), 64 * 2 ** 20);
  assertEquals(parseSize("2k"), 2048);
  assertEquals(parseSize("1G"), 2 ** 30);
  assertEquals(parseSize("3T"), 3 * 2 ** 40);
  for (const bad of ["", "M", "1.5M", "-1", "64MB", "0", "0x10", "1P"]) {
    assertThrows(() => parseSize(bad), RangeError, "Cannot parse size");
  }
  assertThrows(() => parseSize("99999999T"), RangeError, "above");
});

Deno.test("DiskImage.open() with size creates a missing image sparse", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/stick.img`;
  try {
    const image = await DiskImage.open({ path, size: 64 * 2 ** 20 });
    const info = await Deno.stat(path);
    assertEquals([image.size, info.size], [64 * 2 ** 20, 64 * 2 ** 20]);
    // Sparse: almost no blocks allocated for 64 MiB.
    assert((info.blocks ?? 0) * 512 < 1024 * 1024, `${info.blocks} blocks allocated`);
    assertEquals(info.mode! & 0o777, 0o600);
    await image.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("DiskImage.open() with size grows an existing empty file (Deno.makeTempFile)", async () => {
  const t = await tempImage();
  try {
    const image = await DiskImage.open({ path: t.path, size: 1 << 20 });
    assertEquals((await Deno.stat(t.path)).size, 1 << 20);
    await image.close();
  } finally {
    await t.remove();
  }
});

Deno.test("DiskImage.open() never resizes an existing image of another size", async () => {
  const t = await tempImage(pattern(4096));
  try {
    await assertRejects(
      () => DiskImage.open({ path: t.path, size: 8192 }),
      Error,
      "it is 4096 bytes but size=8192; an existing image is never resized",
    );
    assertEquals(await Deno.readFile(t.path), pattern(4096));
    // The same size is fine.
    await (await DiskImage.open({ path: t.path, size: 4096 })).close();
  } finally {
    await t.remove();
  }
});

Deno.test("DiskImage.open() refuses a missing image without size, and an empty one", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assertRejects(
      () => DiskImage.open({ path: `${dir}/none.img` }),
      Error,
      `Cannot open image ${dir}/none.img: it does not exist`,
    );
    await assertRejects(
      () => DiskImage.open({ path: `${dir}/none.img`, readOnly: true, size: 4096 }),
      Error,
      "it does not exist",
    );
    await Deno.writeFile(`${dir}/empty.img`, new Uint8Array(0));
    await assertRejects(() => DiskImage.open({ path: `${dir}/empty.img` }), Error, "it is empty");
    await assertRejects(() => DiskImage.open({ path: dir }), Error, `Cannot open image ${dir}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("DiskImage reads and writes at offsets and refuses to go past the end", async () => {
  const t = await tempImage(new Uint8Array(8192));
  try {
    const image = await DiskImage.open({ path: t.path });
    await image.write(1000, pattern(3000));
    assertEquals(await image.read(1000, 3000), pattern(3000));
    assertThrows(() => image.read(8000, 500), RangeError, "outside");
    assertThrows(() => image.write(-1, new Uint8Array(1)), RangeError);
    await image.sync();
    await image.close();
    await image.close();
    await assertRejects(() => image.read(0, 1), Error, "closed");
    const bytes = await Deno.readFile(t.path);
    assertEquals(bytes.subarray(1000, 4000), pattern(3000));
    assertEquals(bytes[999], 0);
  } finally {
    await t.remove();
  }
});

Deno.test("DiskImage io: auto is sync on tmpfs and async on a disk; sync never uses the thread pool", async () => {
  const shm = await Deno.stat("/dev/shm").then((i) => i.isDirectory, () => false);
  const tmpfs = shm && filesystemOf(
        await Deno.realPath("/dev/shm"),
        await Deno.readTextFile("/proc/self/mountinfo"),
      ) === "tmpfs";
  const disk = filesystemOf(
    await Deno.realPath(Deno.env.get("TMPDIR") ?? "/tmp"),
    await Deno.readTextFile("/proc/self/mountinfo"),
  );
  const t = await tempImage(new Uint8Array(8192));
  const dir = tmpfs ? await Deno.makeTempDir({ dir: "/dev/shm" }) : undefined;
  const proto = Deno.FsFile.prototype;
  const original = { read: proto.read, write: proto.write };
  try {
    const auto = await DiskImage.open({ path: t.path });
    assertEquals(auto.io, disk === "tmpfs" || disk === "ramfs" ? "sync" : "async", disk);
    await auto.close();
    if (dir === undefined) {
      console.log("%cskipping io=auto on tmpfs: /dev/shm is not a tmpfs here", "color: yellow");
    } else {
      const inMemory = await DiskImage.open({ path: `${dir}/a.img`, size: 8192 });
      assertEquals(inMemory.io, "sync");
      await inMemory.close();
    }
    // Forced sync: the asynchronous read and write of Deno.FsFile must not be called.
    const image = await DiskImage.open({ path: t.path, io: "sync" });
    assertEquals(image.io, "sync");
    proto.read = () => Promise.reject(new Error("FsFile.read called"));
    proto.write = () => Promise.reject(new Error("FsFile.write called"));
    await image.write(1000, pattern(3000));
    assertEquals(await image.read(1000, 3000), pattern(3000));
    await image.close();
    // The patch does catch the thread-pool path: an async image fails under it.
    const pooled = await DiskImage.open({ path: t.path, io: "async" });
    assertEquals(pooled.io, "async");
    await assertRejects(() => pooled.write(0, pattern(512)), Error, "FsFile.write called");
    Object.assign(proto, original);
    await pooled.close();
    assertEquals((await Deno.readFile(t.path)).subarray(1000, 4000), pattern(3000));
  } finally {
    Object.assign(proto, original);
    await t.remove();
    if (dir !== undefined) await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("filesystemOf() takes the longest mount point, the later of two, and unescapes", () => {
  const mountinfo = [
    "21 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
    "25 21 0:22 / /tmp rw,nosuid - tmpfs tmpfs rw",
    "26 21 0:23 / /mnt/my\\040disk rw - xfs /dev/sdb1 rw",
    "27 25 0:24 / /tmp rw - ramfs none rw",
    "garbage line",
  ].join("\n");
  assertEquals(filesystemOf("/tmp/x.img", mountinfo), "ramfs");
  assertEquals(filesystemOf("/tmp", mountinfo), "ramfs");
  assertEquals(filesystemOf("/tmpfile", mountinfo), "ext4");
  assertEquals(filesystemOf("/mnt/my disk/x.img", mountinfo), "xfs");
  assertEquals(filesystemOf("/srv/x.img", mountinfo), "ext4");
  assertEquals(filesystemOf("/srv/x.img", "garbage"), undefined);
});

/**
 * Runs `body` with Deno.FsFile's flushes (`syncData`, fdatasync(2); `sync`, fsync(2)) observed
 * and optionally failed: each call records the inode of its file and the bytes of `path` the
 * kernel has at that moment. A read-back cannot tell a flush happened (the page cache serves it
 * either way); this sees the system call being asked for. Test modules run in their own
 * isolates, so the patch is visible to this file only, and it is undone after `body`.
 */
async function observingFlushes(
  path: string,
  body: (flushes: { ino: number; bytes: Uint8Array }[], fail: { next: boolean }) => Promise<void>,
): Promise<void> {
  const proto = Deno.FsFile.prototype;
  const original = { syncData: proto.syncData, sync: proto.sync };
  const flushes: { ino: number; bytes: Uint8Array }[] = [];
  const fail = { next: false };
  for (const name of ["syncData", "sync"] as const) {
    proto[name] = function (this: Deno.FsFile): Promise<void> {
      // Synchronously, so that the bytes are those at the moment of the call.
      flushes.push({ ino: this.statSync().ino!, bytes: Deno.readFileSync(path) });
      if (fail.next) {
        fail.next = false;
        return Promise.reject(new Error("Input/output error (os error 5, injected)"));
      }
      return original[name].call(this);
    };
  }
  try {
    await body(flushes, fail);
  } finally {
    Object.assign(proto, original);
  }
}

Deno.test("DiskImage.sync() issues fdatasync on the image after the writes before it, and reports its failure", async () => {
  const t = await tempImage(new Uint8Array(8192));
  try {
    const ino = (await Deno.stat(t.path)).ino!;
    await observingFlushes(t.path, async (flushes, fail) => {
      const image = await DiskImage.open({ path: t.path });
      // Not awaited: sync() still comes after the write, in the image's order.
      const written = image.write(4096, pattern(512));
      await image.sync();
      await written;
      assertEquals(flushes.length, 1, "sync() did not flush the file");
      assertEquals(flushes[0]!.ino, ino, "sync() flushed another file");
      assertEquals(
        flushes[0]!.bytes.subarray(4096, 4608),
        pattern(512),
        "flushed before the write",
      );
      fail.next = true;
      await assertRejects(() => image.sync(), Error, "Input/output error");
      await image.close();
      assertEquals(flushes.length, 3, "close() flushes too");
    });
    // A read-only image has nothing to flush.
    await observingFlushes(t.path, async (flushes) => {
      const ro = await DiskImage.open({ path: t.path, readOnly: true });
      await ro.sync();
      await ro.close();
      assertEquals(flushes, []);
    });
  } finally {
    await t.remove();
  }
});

Deno.test("two writable opens of one image: the second fails at once (exclusive flock)", async () => {
  const t = await tempImage(new Uint8Array(4096));
  try {
    const first = await DiskImage.open({ path: t.path });
    await assertRejects(
      () => DiskImage.open({ path: t.path }),
      Error,
      "another device or process has it open (it is locked)",
    );
    await assertRejects(
      () => DiskImage.open({ path: t.path, readOnly: true }),
      Error,
      "has it open for writing",
    );
    await first.close();
    // Closing releases the lock.
    await (await DiskImage.open({ path: t.path })).close();
  } finally {
    await t.remove();
  }
});

Deno.test("read-only opens share the image; a writer is then refused", async () => {
  const t = await tempImage(new Uint8Array(4096));
  try {
    const a = await DiskImage.open({ path: t.path, readOnly: true });
    const b = await DiskImage.open({ path: t.path, readOnly: true });
    await assertRejects(() => DiskImage.open({ path: t.path }), Error, "locked");
    await a.close();
    await b.close();
  } finally {
    await t.remove();
  }
});

const flock = await onPath("flock");
if (!flock) {
  console.log(
    "%cskipping the flock(1) test: flock is not installed (Debian: util-linux)",
    "color: yellow",
  );
}

Deno.test({
  name: "the image lock is a flock another process sees",
  ignore: !flock,
  fn: async () => {
    const t = await tempImage(new Uint8Array(4096));
    try {
      const image = await DiskImage.open({ path: t.path });
      const out = await new Deno.Command("flock", { args: ["-n", "-s", t.path, "true"] }).output();
      assertEquals(out.code, 1, "flock -n -s got the lock a writable image holds");
      await image.close();
      const after = await new Deno.Command("flock", { args: ["-n", t.path, "true"] }).output();
      assertEquals(after.code, 0);
    } finally {
      await t.remove();
    }
  },
});

Deno.test("a read-only image is opened O_RDONLY, even a file without write permission", async () => {
  const t = await tempImage(pattern(4096));
  try {
    await Deno.chmod(t.path, 0o444);
    const image = await DiskImage.open({ path: t.path, readOnly: true });
    const flags = await openFlags(t.path);
    assertEquals(flags.length, 1);
    assertEquals(flags[0]! & 0o3, 0, `O_ACCMODE of ${flags[0]!.toString(8)} is not O_RDONLY`);
    await assertRejects(() => image.write(0, new Uint8Array(1)), Error, "read-only");
    assertEquals(await image.read(0, 4096), pattern(4096));
    await image.close();
    if (Deno.uid() !== 0) {
      await assertRejects(() => DiskImage.open({ path: t.path }), Error, "use ro");
    }
    const rw = await DiskImage.open({ path: t.path, readOnly: false }).catch(() => undefined);
    if (rw) {
      // Root may open it for writing anyway: then it is O_RDWR.
      assertEquals((await openFlags(t.path))[0]! & 0o3, 2);
      await rw.close();
    }
  } finally {
    await t.remove();
  }
});
