// The capture against the real Wireshark dissector: the gateway process (main.ts serve) with
// --capture, and `usbipgw capture` live, read back by tshark (Debian package `tshark`). Every
// submit has its completion, a halted endpoint shows -32, an unlink -104, the devices' VIDs
// appear, storage decodes as USB mass storage with SCSI, keyboard reports decode as HID usages,
// nothing is malformed; a file cut by kill -9 opens; a TCP peer and another unix user are
// refused. Without tshark every test here is ignored, and says so.
import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import {
  connectTcp,
  Feature,
  importDevice,
  OpStatus,
  Request,
  RequestType,
  type UrbChannel,
} from "../../mod.ts";
import { encodeCbw } from "../../lib/devices/storage/bot.ts";
import { requestCapture } from "../../lib/client/usbip_client.ts";
import { GatewayRefusal } from "../../lib/client/gateway_requests.ts";
import { decodeOpRepCapture, encodeOpReqCapture } from "../../lib/protocol/op_messages.ts";
import { type GatewayProcess, spawnMain, startGateway, tempDir } from "../e2e/_gateway.ts";
import { readBlocks, readCapture } from "./_pcapng.ts";
import { asUser, USER_TOOLS } from "../e2e/_fake_vhci.ts";
import { directUnavailable } from "./_direct.ts";
import { BlockType } from "../../lib/capture/pcapng.ts";

const TSHARK = await new Deno.Command("tshark", { args: ["--version"], stdout: "null" })
  .output().then((o) => o.success, () => false);
if (!TSHARK) {
  console.log(
    "tshark_test: ignored: tshark is not installed (Debian package tshark, listed in tests/interop/packages.txt)",
  );
}

/** Runs tshark on `file` (or on `stdin` with "-"); its stdout lines and stderr. */
async function tshark(
  file: string,
  args: string[],
  stdin?: Uint8Array,
): Promise<{ lines: string[]; stderr: string }> {
  const child = new Deno.Command("tshark", {
    args: ["-r", file, ...args],
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin) {
    const w = child.stdin.getWriter();
    await w.write(stdin);
    await w.close();
  }
  const out = await child.output();
  const stderr = new TextDecoder().decode(out.stderr).replace(/^Running as user.*\n?/m, "");
  assertEquals(out.code, 0, `tshark -r ${file} ${args.join(" ")}: ${stderr}`);
  const lines = new TextDecoder().decode(out.stdout).split("\n").filter((l) => l !== "");
  return { lines, stderr };
}

/** The usbmon frames' id, type and status, and that every 'S' has a 'C' after it. */
async function assertPaired(file: string, stdin?: Uint8Array): Promise<number> {
  const { lines } = await tshark(file, [
    "-Y",
    "usb.urb_type",
    "-T",
    "fields",
    "-e",
    "usb.urb_id",
    "-e",
    "usb.urb_type",
  ], stdin);
  const open = new Set<string>();
  let pairs = 0;
  for (const line of lines) {
    const [id, type] = line.split("\t");
    if (type === "'S'") open.add(id!);
    else if (open.delete(id!)) pairs++;
  }
  assertEquals([...open], [], "every submit has its completion");
  return pairs;
}

async function assertNotMalformed(file: string, stdin?: Uint8Array): Promise<void> {
  const { lines, stderr } = await tshark(file, ["-Y", "_ws.malformed"], stdin);
  assertEquals(lines, [], "no malformed frame");
  assertEquals(stderr.trim(), "", "tshark read the whole file");
}

const ALLOW = "allow:transport=tcp,source=127.0.0.0/8,busid=1-1|1-2|1-3";

/** SET_CONFIGURATION(value). */
async function configure(ch: UrbChannel, value: number): Promise<void> {
  const r = await ch.control({
    bmRequestType: 0,
    bRequest: Request.SET_CONFIGURATION,
    wValue: value,
    wIndex: 0,
    wLength: 0,
  });
  assertEquals(r.status, 0);
}

/** A gateway serving Gadget Zero as 1-1 over TCP, capturing into `file`. */
function gadgetZeroCapturedTo(file: string): Promise<GatewayProcess> {
  return startGateway([
    "--tcp",
    "127.0.0.1:0",
    "--device",
    "gadget-zero:busid=1-1",
    "--rule",
    ALLOW,
    "--capture",
    file,
  ]);
}

/** Gadget Zero of `gw` imported, in its configuration 3 (bulk and isochronous endpoints). */
async function bulkGadgetZero(gw: GatewayProcess): Promise<UrbChannel> {
  const ch = await importDevice(await connectTcp("127.0.0.1", gw.port), "1-1");
  await configure(ch, 3);
  return ch;
}

/** Gadget Zero: bulk IN and OUT, isochronous IN and OUT, then a halted IN endpoint (-32). */
async function gadgetZeroTraffic(gw: GatewayProcess): Promise<void> {
  const ch = await importDevice(await connectTcp("127.0.0.1", gw.port), "1-1");
  await configure(ch, 3);
  assertEquals((await ch.submit({ ep: 1, dirIn: true, length: 4096 }).done).actualLength, 4096);
  assertEquals(
    (await ch.submit({ ep: 1, dirIn: false, data: new Uint8Array(4096) }).done).status,
    0,
  );
  const alt1 = {
    bmRequestType: 0x01,
    bRequest: Request.SET_INTERFACE,
    wValue: 1,
    wIndex: 0,
    wLength: 0,
  };
  assertEquals((await ch.control(alt1)).status, 0);
  const isoPackets = [0, 1024, 2048].map((offset) => ({ offset, length: 1024 }));
  const isoIn = await ch.submit({ ep: 2, dirIn: true, length: 3072, isoPackets, interval: 4 }).done;
  assertEquals([isoIn.status, isoIn.isoPackets.length], [0, 3]);
  const isoOut = await ch.submit({ ep: 2, dirIn: false, data: new Uint8Array(3072), isoPackets })
    .done;
  assertEquals(isoOut.status, 0);
  const halt = await ch.control({
    bmRequestType: RequestType.RECIPIENT_ENDPOINT,
    bRequest: Request.SET_FEATURE,
    wValue: Feature.ENDPOINT_HALT,
    wIndex: 0x81,
    wLength: 0,
  });
  assertEquals(halt.status, 0);
  assertEquals((await ch.submit({ ep: 1, dirIn: true, length: 512 }).done).status, -32);
  await ch.close();
}

/** The thumb drive over Bulk-Only: INQUIRY, then READ(10) of one block. */
async function storageTraffic(gw: GatewayProcess): Promise<void> {
  const ch = await importDevice(await connectTcp("127.0.0.1", gw.port), "1-2");
  await configure(ch, 1);
  let tag = 0;
  const command = async (cdb: number[], length: number) => {
    const cbw = encodeCbw({
      tag: ++tag,
      dataTransferLength: length,
      dirIn: true,
      cdb: new Uint8Array(cdb),
    });
    assertEquals((await ch.submit({ ep: 2, dirIn: false, data: cbw }).done).status, 0);
    assertEquals((await ch.submit({ ep: 1, dirIn: true, length }).done).actualLength, length);
    const csw = await ch.submit({ ep: 1, dirIn: true, length: 13 }).done;
    assertEquals([csw.status, csw.data[12]], [0, 0]);
  };
  await command([0x12, 0, 0, 0, 36, 0], 36); // INQUIRY
  await command([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], 512); // READ(10), LBA 0, 1 block
  await ch.close();
}

/** The keyboard types its text= ("hi"); the interrupt IN that waits after it is unlinked. */
async function keyboardTraffic(gw: GatewayProcess): Promise<void> {
  const ch = await importDevice(await connectTcp("127.0.0.1", gw.port), "1-3");
  await configure(ch, 1);
  for (let n = 0; n < 20; n++) {
    const urb = ch.submit({ ep: 1, dirIn: true, length: 8, interval: 10 });
    const waited = await Promise.race([
      urb.done.then(() => false, () => false),
      new Promise<boolean>((r) => setTimeout(() => r(true), 300)),
    ]);
    if (!waited) continue;
    // The text is typed: this one waits for a key that never comes.
    assertEquals((await ch.unlink(urb.seqnum)).status, -104);
    break;
  }
  await ch.close();
}

Deno.test({
  name: "tshark decodes serve --capture: pairs, -32, -104, VIDs, mass storage as SCSI, HID usages",
  ignore: !TSHARK,
  fn: async () => {
    const dir = await tempDir();
    const file = `${dir.path}/gw.pcapng`;
    const gw = await startGateway([
      "--tcp",
      "127.0.0.1:0",
      "--device",
      "gadget-zero:busid=1-1",
      "--device",
      `storage:busid=1-2,image=${dir.path}/stick.img,size=1M`,
      "--device",
      "keyboard:busid=1-3,text=hi",
      "--rule",
      ALLOW,
      "--capture",
      file,
    ]);
    try {
      await gadgetZeroTraffic(gw);
      await storageTraffic(gw);
      await keyboardTraffic(gw);
      await gw.waitFor(/device 1-3\) ended/);
      assertEquals((await gw.stop()).code, 0);
      assertEquals((await Deno.stat(file)).mode! & 0o777, 0o600);
      assert((await assertPaired(file)) > 20);
      await assertNotMalformed(file);
      const stalls = await tshark(file, [
        "-Y",
        "usb.urb_status == -32",
        "-T",
        "fields",
        "-e",
        "usb.endpoint_address",
      ]);
      assertEquals(stalls.lines, ["0x81"]);
      const unlinked = await tshark(file, [
        "-Y",
        "usb.urb_status == -104",
        "-T",
        "fields",
        "-e",
        "frame.comment",
      ]);
      assertEquals(unlinked.lines.length, 1);
      assertStringIncludes(unlinked.lines[0]!, "unlinked by CMD_UNLINK seqnum");
      const vids = await tshark(file, ["-Y", "usb.idVendor", "-T", "fields", "-e", "usb.idVendor"]);
      assert(vids.lines.includes("0x0525"), `Gadget Zero's VID in ${vids.lines}`);
      assert(vids.lines.includes("0x1209"), `usbipgw's VID in ${vids.lines}`);
      const storage = await tshark(file, [
        "-Y",
        "usbms",
        "-T",
        "fields",
        "-e",
        "scsi.spc.opcode",
        "-e",
        "scsi_sbc.opcode",
      ]);
      assert(storage.lines.some((l) => l.includes("0x12")), `INQUIRY in ${storage.lines}`);
      assert(storage.lines.some((l) => l.includes("0x28")), `READ(10) in ${storage.lines}`);
      // HID: the typed "hi" as keyboard usages (HID Usage Tables §10: 0x0b h, 0x0c i).
      const keys = (await tshark(file, ["-Y", "usbhid.data.array", "-V"])).lines.join("\n");
      assertStringIncludes(keys, "Usage: Keyboard h and H (0x0007, 0x000b)");
      assertStringIncludes(keys, "Usage: Keyboard i and I (0x0007, 0x000c)");
    } finally {
      await gw.stop();
      await dir.remove();
    }
  },
});

Deno.test({
  name: "tshark reads a capture of 16 MiB of bulk IN, full chunks written with O_DIRECT, whole",
  ignore: !TSHARK,
  fn: async () => {
    const unavailable = await directUnavailable();
    const dir = await tempDir();
    const file = `${dir.path}/gw.pcapng`;
    const gw = await gadgetZeroCapturedTo(file);
    try {
      const ch = await bulkGadgetZero(gw);
      for (let i = 0; i < 64; i++) {
        const urbs = Array.from(
          { length: 4 },
          () => ch.submit({ ep: 1, dirIn: true, length: 65536 }).done,
        );
        for (const r of await Promise.all(urbs)) assertEquals(r.actualLength, 65536);
      }
      await ch.close();
      assertEquals((await gw.stop()).code, 0);
      const blocks = readBlocks(await Deno.readFile(file));
      const padding = blocks.filter((b) => b.type === BlockType.PADDING).length;
      if (unavailable === undefined) assert(padding > 0, "full chunks went with O_DIRECT");
      else console.log(`tshark_test: no direct writes to check: ${unavailable}`);
      // The bulk URBs and the control transfers before them, each with its completion.
      assert((await assertPaired(file)) >= 256 + 1);
      await assertNotMalformed(file);
      const bulk = await tshark(file, [
        "-Y",
        "usb.urb_type == 'C' && usb.endpoint_address == 0x81 && usb.urb_len == 65536",
        "-T",
        "fields",
        "-e",
        "usb.urb_id",
      ]);
      assertEquals(bulk.lines.length, 256, "every 64 KiB completion");
    } finally {
      await gw.stop();
      await dir.remove();
    }
  },
});

Deno.test({
  name: "a capture file cut by kill -9 of the gateway opens in tshark",
  ignore: !TSHARK,
  fn: async () => {
    const dir = await tempDir();
    const file = `${dir.path}/gw.pcapng`;
    const gw = await gadgetZeroCapturedTo(file);
    try {
      const ch = await bulkGadgetZero(gw);
      // Traffic in flight when the gateway dies.
      let running = true;
      const traffic = (async () => {
        try {
          while (running) {
            const urbs = Array.from(
              { length: 8 },
              () => ch.submit({ ep: 1, dirIn: true, length: 65536 }).done,
            );
            await Promise.all(urbs);
          }
        } catch {
          // The gateway is gone: submit throws, or the URBs in flight fail.
        }
      })();
      await new Promise((r) => setTimeout(r, 400));
      const status = await gw.stop("SIGKILL");
      assertEquals(status.signal, "SIGKILL");
      running = false;
      await traffic;
      await ch.close().catch(() => {});
      assert((await Deno.stat(file)).size > 65536, "traffic reached the file");
      // Blocks are written whole, but the kernel may end a write to a file part way when a fatal
      // signal arrives (mm/filemap.c, generic_perform_write): the last block can be cut. tshark
      // then reads every block before it and says so, and nothing it read is malformed.
      const out = await new Deno.Command("tshark", {
        args: ["-r", file, "-T", "fields", "-e", "usb.urb_type", "-e", "_ws.malformed"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr).replace(/^Running as user.*\n?/m, "")
        .trim();
      if (out.code !== 0 || stderr !== "") {
        assertMatch(stderr, /appears to have been cut short in the middle of a packet\.$/);
      }
      const rows = new TextDecoder().decode(out.stdout).split("\n").filter((l) => l !== "");
      assert(rows.some((r) => r.startsWith("'C'") || r.startsWith("C")), "completions read");
      assertEquals(
        rows.filter((r) => r.split("\t")[1] !== undefined && r.split("\t")[1] !== ""),
        [],
      );
    } finally {
      await gw.stop();
      await dir.remove();
    }
  },
});

/** Runs `main.ts capture` with `args`; its stdout as a stream, and its stderr lines. */
function captureProcess(args: string[]) {
  return spawnMain(["capture", ...args]);
}

Deno.test({
  name: "usbipgw capture streams live pcapng that tshark reads from a pipe; a TCP peer is refused",
  ignore: !TSHARK,
  fn: async () => {
    const dir = await tempDir();
    const sock = `${dir.path}/gw.sock`;
    const file = `${dir.path}/live.pcapng`;
    const gw = await startGateway([
      "--tcp",
      "127.0.0.1:0",
      "--unix",
      sock,
      "--device",
      "gadget-zero:busid=1-1",
      "--rule",
      ALLOW,
    ]);
    // One to a file, stopped by SIGINT; one to tshark through a pipe, ended by the gateway.
    const toFile = captureProcess(["-b", "1-1", "-w", file, "--unix", sock]);
    const piped = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../../main.ts", import.meta.url).pathname,
        "capture",
        "--unix",
        sock,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const tsharkReader = new Deno.Command("tshark", {
      args: ["-r", "-", "-T", "fields", "-e", "usb.urb_status", "-e", "usb.idVendor"],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const pumped = piped.stdout.pipeTo(tsharkReader.stdin);
    try {
      await toFile.waitFor(/capturing 1-1/);
      await gw.waitFor(/capture of every device granted/);
      // Not over TCP: a capture shows everything.
      const conn = await connectTcp("127.0.0.1", gw.port);
      try {
        await requestCapture(conn, "");
        throw new Error("a TCP peer was let capture");
      } catch (e) {
        assert(e instanceof GatewayRefusal && e.status === OpStatus.ST_NA, String(e));
      }
      await gadgetZeroTraffic(gw);
      await gw.waitFor(/device 1-1\) ended/);
      await new Promise((r) => setTimeout(r, 200));
      const stopped = await toFile.stop("SIGINT");
      assertEquals(stopped.code, 0, toFile.lines.join("\n"));
      await assertNotMalformed(file);
      assert((await assertPaired(file)) >= 5);
      const stalls = await tshark(file, ["-Y", "usb.urb_status == -32"]);
      assertEquals(stalls.lines.length, 1);
      // The gateway goes away: the piped capture ends by itself, exit 0, and tshark has it all.
      assertEquals((await gw.stop()).code, 0);
      const [status] = await Promise.all([piped.status, pumped]);
      assertEquals(status.code, 0);
      const fields = new TextDecoder().decode((await tsharkReader.output()).stdout);
      assert(fields.includes("-32"), "the stall, through the pipe");
      assert(fields.includes("0x0525"), "the VID, through the pipe");
    } finally {
      await toFile.stop();
      try {
        piped.kill();
      } catch {
        // Ended already.
      }
      await pumped.catch(() => {});
      await tsharkReader.status;
      await gw.stop();
      await dir.remove();
    }
  },
});

const AS_OTHER = Deno.uid() === 0 && USER_TOOLS;
if (!AS_OTHER) {
  console.log(
    "tshark_test: the other-user refusal is ignored: needs root (to act as another uid), setpriv and socat",
  );
}

Deno.test({
  name: "a unix peer that is neither root, the console user nor the gateway's user may not capture",
  ignore: !AS_OTHER,
  fn: async () => {
    const dir = await tempDir();
    await Deno.chmod(dir.path, 0o755);
    const sock = `${dir.path}/gw.sock`;
    const gw = await startGateway([
      "--tcp",
      "127.0.0.1:0",
      "--unix",
      sock,
      "--unix-mode",
      "0666",
      "--console-uid",
      "65534",
      "--seat-dir",
      `${dir.path}/no-seats`,
      "--device",
      "gadget-zero:busid=1-1",
    ]);
    try {
      const reply = decodeOpRepCapture(await asUser(65533, sock, encodeOpReqCapture("")));
      assertEquals(reply.status, OpStatus.ST_NA, reply.message);
      assertStringIncludes(await gw.waitFor(/capture of every device refused/), "uid=65533");
    } finally {
      await gw.stop();
      await dir.remove();
    }
  },
});

Deno.test({
  name:
    "SIGHUP starts, changes and stops the capture; a kept file goes on in a section tshark reads; a bad file leaves it running",
  ignore: !TSHARK,
  fn: async () => {
    const dir = await tempDir();
    const config = `${dir.path}/gw.toml`;
    const file = `${dir.path}/gw.pcapng`;
    const write = (capture: string) =>
      Deno.writeTextFile(
        config,
        `tcp = ["127.0.0.1:0"]\n${capture}\n[[device]]\ntype = "gadget-zero"\nbusid = "1-1"\n` +
          `[[rule]]\naction = "allow"\ntransport = "tcp"\n`,
      );
    const reload = async (gw: GatewayProcess, done: RegExp) => {
      const before = gw.lines.length;
      gw.process.kill("SIGHUP");
      await gw.waitFor(/Reloaded:/);
      // The capture's own line, from this reload.
      for (let i = 0; i < 100 && !gw.lines.slice(before).some((l) => done.test(l)); i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assert(gw.lines.slice(before).some((l) => done.test(l)), gw.lines.slice(before).join("\n"));
    };
    await write("");
    const gw = await startGateway(["--config", config]);
    try {
      // One session through it all: the capture starts with its device already imported.
      const ch = await importDevice(await connectTcp("127.0.0.1", gw.port), "1-1");
      const getStatus = async (wIndex: number) => {
        const r = await ch.control({
          bmRequestType: RequestType.DIR_IN,
          bRequest: Request.GET_STATUS,
          wValue: 0,
          wIndex,
          wLength: 2,
        });
        assertEquals(r.status, 0);
      };
      await getStatus(0); // before any capture: in no file
      await write(`capture = "${file}"`);
      await reload(gw, /Capturing the traffic of all devices into .*gw\.pcapng$/);
      await getStatus(0);
      await write(`capture = "${file}"\ncapture_snaplen = 16`);
      await reload(gw, /a new section after what it holds/);
      await getStatus(0);
      // A file that cannot be created: logged, and the running capture goes on.
      await write(`capture = "${dir.path}/no-such-folder/gw.pcapng"`);
      await reload(gw, /Reload: could not apply capture: Cannot create the capture file/);
      await getStatus(0);
      await write("");
      await reload(gw, /Capture to .*gw\.pcapng ended/);
      await getStatus(0); // after the capture: in no file
      await ch.close();
      assertEquals((await gw.stop()).code, 0);

      const sections = readBlocks(await Deno.readFile(file)).filter((b) => b.type === 0x0a0d0d0a);
      assertEquals(sections.length, 2, "the first section, then the one the reload began");
      const { events, usb } = readCapture(await Deno.readFile(file));
      // Each section starts as a file does: its first line, then the device imported already.
      assertEquals(events.filter((e) => e === "usbipgw capture of all devices started").length, 2);
      assertEquals(
        events.filter((e) => /imported 1-1 .* before this file began/.test(e)).length,
        2,
        events.join("\n"),
      );
      // The real URBs (not the synthetic GET_DESCRIPTORs): one GET_STATUS in the first section,
      // two in the second (the failed reload left it running).
      const statuses = usb.filter((r) => r.type === "C" && (r.id >> 63n) === 0n);
      assertEquals(statuses.length, 3);
      assertEquals(await assertPaired(file), 3 + 2 * 2, "3 GET_STATUS, 2 synthetic per section");
      await assertNotMalformed(file);
    } finally {
      await gw.stop();
      await dir.remove();
    }
  },
});
