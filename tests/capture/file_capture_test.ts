// A capture into a file: created with mode 0600, every block written whole and in order;
// rotated to FILE.1 at the size limit, the new file starting with the header and the
// descriptors of the devices imported; a write error (a full disk: /dev/full) stops the
// capture with one error line while the session goes on; appending starts a new section.
import { assert, assertEquals } from "@std/assert";
import { GadgetZero, UsbipServer } from "../../mod.ts";
import { serverSource } from "../../lib/capture/capture.ts";
import { FileCapture, type FileCaptureOptions } from "../../lib/capture/file_capture.ts";
import { captureLogs } from "../server/_logs.ts";
import { eventually, importOver, setConfiguration } from "../server/_session_helpers.ts";
import { readBlocks, readCapture } from "./_pcapng.ts";
import { tempDir } from "../e2e/_gateway.ts";
import { directUnavailable } from "./_direct.ts";
import { BlockType } from "../../lib/capture/pcapng.ts";

/** A server with Gadget Zero as 1-1 and a temporary folder, for one test; `close()` ends both. */
async function gadgetZeroServer() {
  const dir = await tempDir();
  const server = new UsbipServer({});
  server.addDevice(new GadgetZero(), { busid: "1-1" });
  const close = async () => {
    await server.close();
    await dir.remove();
  };
  return { server, dir, close };
}

/**
 * A capture of Gadget Zero (1-1, configured) into `gw.pcapng` of a temporary folder, opened with
 * `options`; `finish()` closes the capture and the session, `close()` the server and folder.
 */
async function capturedGadgetZero(options: Omit<FileCaptureOptions, "path">) {
  const { server, dir, close } = await gadgetZeroServer();
  const path = `${dir.path}/gw.pcapng`;
  try {
    const file = await FileCapture.open(serverSource(server), { path, ...options });
    const gz = await importOver(server, "1-1");
    assertEquals((await setConfiguration(gz.channel, 3)).status, 0);
    const finish = async () => {
      await file.close();
      await gz.channel.close();
      await gz.done;
    };
    return { path, file, gz, finish, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** The completions of 64 KiB transfers in these capture files. */
function completions64k(...files: Uint8Array[]) {
  return files.flatMap((f) => readCapture(f).usb)
    .filter((r) => r.type === "C" && r.length === 65536);
}

/** Six bulk IN transfers of 16 KiB from Gadget Zero (1-1) in a session, then `file` closed. */
async function readSixBlocks(server: UsbipServer, file: FileCapture): Promise<void> {
  const gz = await importOver(server, "1-1");
  assertEquals((await setConfiguration(gz.channel, 3)).status, 0);
  for (let i = 0; i < 6; i++) await gz.channel.submit({ ep: 1, dirIn: true, length: 16384 }).done;
  await file.close();
  await gz.channel.close();
  await gz.done;
}

Deno.test("a capture file is created 0600 and rotated to FILE.1 at its size, each file whole", async () => {
  const { server, dir, close } = await gadgetZeroServer();
  const path = `${dir.path}/gw.pcapng`;
  try {
    const file = await FileCapture.open(serverSource(server), { path, maxBytes: 40 * 1024 });
    assertEquals((await Deno.stat(path)).mode! & 0o777, 0o600);
    await readSixBlocks(server, file);
    const older = readCapture(await Deno.readFile(`${path}.1`));
    const newer = readCapture(await Deno.readFile(path));
    assert((await Deno.stat(path)).size <= 40 * 1024, "at most the limit");
    assertEquals(newer.events[0], `usbipgw capture continued from ${path}.1`);
    assert(
      newer.events[1]!.includes("imported 1-1 (GadgetZero, 0525:a4a0) before this file began"),
    );
    // The new file has the descriptors again, so that Wireshark knows the device.
    assertEquals(newer.usb.filter((r) => r.id >> 63n === 1n).length, 4);
    assert(older.usb.length > 0);
    assertEquals(file.counts.dropped, 0);
  } finally {
    await close();
  }
});

const devFull = await Deno.stat("/dev/full").then(() => true, () => false);
if (!devFull) console.log("file_capture_test: the write error test is ignored: no /dev/full here");

Deno.test({
  name: "a write error stops the capture with an error line; the session goes on",
  ignore: !devFull,
  fn: async () => {
    const logs = captureLogs();
    const server = new UsbipServer({});
    server.addDevice(new GadgetZero(), { busid: "1-1" });
    try {
      const file = await FileCapture.open(serverSource(server), { path: "/dev/full" });
      const gz = await importOver(server, "1-1");
      assertEquals((await setConfiguration(gz.channel, 3)).status, 0);
      for (let i = 0; i < 5; i++) {
        const r = await gz.channel.submit({ ep: 1, dirIn: true, length: 4096 }).done;
        assertEquals(r.actualLength, 4096);
      }
      // A chunk that is not full goes to the disk within 0.1 s.
      await eventually(() => file.failed !== undefined);
      assertEquals(server.observers.active, false, "and stopped");
      const errors = logs.lines("capture").filter(([level]) => level === "error");
      assertEquals(errors.length, 1, errors.join("\n"));
      assert(errors[0]![1].includes("Capture to /dev/full stopped"), errors[0]![1]);
      assertEquals((await gz.channel.submit({ ep: 1, dirIn: true, length: 64 }).done).status, 0);
      await file.close();
      await gz.channel.close();
      await gz.done;
    } finally {
      await server.close();
      logs.stop();
    }
  },
});

Deno.test("append continues a capture file with a new section and leaves what it held", async () => {
  const dir = await tempDir();
  const server = new UsbipServer({});
  const path = `${dir.path}/gw.pcapng`;
  try {
    await (await FileCapture.open(serverSource(server), { path })).close();
    const first = await Deno.readFile(path);
    const again = await FileCapture.open(serverSource(server), { path, append: true });
    await again.close();
    const both = await Deno.readFile(path);
    assertEquals(both.subarray(0, first.length), first, "the first section as it was");
    const sections = readBlocks(both).filter((b) => b.type === 0x0a0d0d0a);
    assertEquals(sections.length, 2);
    assertEquals(readCapture(both).events, [
      "usbipgw capture of all devices started",
      "usbipgw capture of all devices started",
    ]);
    // Without append the file starts over.
    await (await FileCapture.open(serverSource(server), { path })).close();
    assertEquals(
      readBlocks(await Deno.readFile(path)).filter((b) => b.type === 0x0a0d0d0a).length,
      1,
    );
  } finally {
    await server.close();
    await dir.remove();
  }
});

const unavailable = await directUnavailable();
if (unavailable !== undefined) {
  console.log(`file_capture_test: the O_DIRECT rotation test is ignored: ${unavailable}`);
}

Deno.test({
  name: "with O_DIRECT, padding counts toward the size limit: no file grows past it",
  ignore: unavailable !== undefined,
  fn: async () => {
    const maxBytes = 16 * 1024 * 1024; // the smallest limit that writes directly
    const { path, file, gz, finish, close } = await capturedGadgetZero({ maxBytes });
    try {
      // 24 MiB of data: FILE.1 fills to the limit and FILE holds the rest.
      for (let i = 0; i < 96; i++) {
        const urbs = Array.from(
          { length: 4 },
          () => gz.channel.submit({ ep: 1, dirIn: true, length: 65536 }).done,
        );
        await Promise.all(urbs);
      }
      await finish();
      assertEquals(file.counts.dropped, 0);
      const older = await Deno.readFile(`${path}.1`);
      const newer = await Deno.readFile(path);
      assert(older.length <= maxBytes, `${older.length} bytes in FILE.1`);
      assert(older.length > maxBytes - 2 * 1024 * 1024, "FILE.1 was filled up to the limit");
      const padding = readBlocks(older).filter((b) => b.type === BlockType.PADDING);
      assert(padding.length > 0, "full chunks were written directly");
      const completions = completions64k(older, newer);
      assertEquals(completions.length, 96 * 4, "every 64 KiB completion in one of the files");
    } finally {
      await close();
    }
  },
});

Deno.test({
  name: "with O_DIRECT, a chunk is written before it is full only once its oldest record waited",
  ignore: unavailable !== undefined,
  fn: async () => {
    const flushMs = 1000;
    const { path, file, gz, finish, close } = await capturedGadgetZero({ flushMs });
    try {
      const read = async (urbs: number) => {
        for (let i = 0; i < urbs; i++) {
          await gz.channel.submit({ ep: 1, dirIn: true, length: 65536 }).done;
        }
      };
      // About 2.5 MiB into the first 4 MiB chunk, whose first record starts the clock.
      await read(40);
      await new Promise((r) => setTimeout(r, flushMs * 0.6));
      // The first chunk fills and is written whole; the second begins, about 1 MiB of it.
      await read(40);
      // The clock of the first record runs out here, while the second chunk's is young: no
      // record waited `flushMs`, so nothing is taken out of the second chunk.
      await new Promise((r) => setTimeout(r, flushMs * 0.6));
      // The second chunk fills, and goes out whole; the third holds the rest at the close.
      await read(60);
      await finish();
      const size = (await Deno.stat(path)).size;
      // Through the page cache: the header and the third chunk's 1 MiB or so at the close. A
      // second chunk flushed at the first record's clock would add its 4 MiB.
      assert(
        size - file.directBytes < 2 * 1024 * 1024,
        `${size - file.directBytes} of ${size} bytes written through the page cache`,
      );
      assertEquals(completions64k(await Deno.readFile(path)).length, 140, "every completion");
    } finally {
      await close();
    }
  },
});

Deno.test("a capture into a pipe is never rotated: the pipe is not renamed past the size", async () => {
  const { server, dir, close } = await gadgetZeroServer();
  const fifo = `${dir.path}/live.pcapng`;
  try {
    const made = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assert(made.success, "mkfifo");
    // Opening a pipe waits for its other end: the reader's open and the capture's go together.
    const reading = Deno.open(fifo, { read: true });
    const file = await FileCapture.open(serverSource(server), { path: fifo, maxBytes: 40 * 1024 });
    const read = new Response((await reading).readable).bytes();
    await readSixBlocks(server, file);
    const bytes = await read;
    assert(bytes.length > 96 * 1024, `${bytes.length} bytes through the pipe, past the limit`);
    assert((await Deno.lstat(fifo)).isFifo, "still the pipe");
    assertEquals(await Deno.lstat(`${fifo}.1`).then(() => true, () => false), false, "no FILE.1");
    const completions = readCapture(bytes).usb.filter((r) => r.type === "C" && r.length === 16384);
    assertEquals(completions.length, 6);
  } finally {
    await close();
  }
});
