// Tests of the Bulk-Only Transport (USB MSC BOT 1.0): CBW/CSW codecs, CBW validity and
// meaningfulness, the thirteen host/device cases, stalls, residues, phase errors, Reset
// Recovery, Get Max LUN, multi-URB data phases and transfers that arrive early.
import { assert, assertEquals, assertThrows } from "@std/assert";
import {
  CBW_SIGNATURE,
  cbwProblem,
  CswStatus,
  decodeCbw,
  decodeCsw,
  encodeCbw,
  encodeCsw,
} from "../../../lib/devices/storage/bot.ts";
import { control, setConfiguration } from "../_transfers.ts";
import { cdb10, IN, MemoryBacking, OUT, pattern, ramDrive } from "./_host.ts";

const TUR = new Uint8Array(6);
const INQUIRY = new Uint8Array([0x12, 0, 0, 0, 36, 0]);
const READ_10 = 0x28;
const WRITE_10 = 0x2a;

Deno.test("encodeCbw() and decodeCbw() round-trip every field", () => {
  const cdb = new Uint8Array([0x28, 0, 0, 0, 0, 9, 0, 0, 2, 0]);
  const bytes = encodeCbw({ tag: 0xdeadbeef, dataTransferLength: 1024, dirIn: true, lun: 3, cdb });
  assertEquals(bytes.length, 31);
  assertEquals(new DataView(bytes.buffer).getUint32(0, true), CBW_SIGNATURE);
  const cbw = decodeCbw(bytes);
  assertEquals([cbw.tag, cbw.dataTransferLength, cbw.flags, cbw.lun, cbw.length], [
    0xdeadbeef,
    1024,
    0x80,
    3,
    10,
  ]);
  assertEquals(cbw.cdb.subarray(0, 10), cdb);
  assertEquals(cbw.cdb.length, 16);
  assertThrows(
    () => encodeCbw({ tag: 1, dataTransferLength: 0, dirIn: false, cdb: new Uint8Array(17) }),
    RangeError,
  );
});

Deno.test("decodeCbw() rejects a CBW that is not 31 bytes or has another signature", () => {
  const good = encodeCbw({ tag: 1, dataTransferLength: 0, dirIn: false, cdb: TUR });
  assertThrows(() => decodeCbw(good.subarray(0, 30)), RangeError, "30 bytes, expected 31");
  const padded = new Uint8Array(32);
  padded.set(good);
  assertThrows(() => decodeCbw(padded), RangeError, "32 bytes");
  const bad = good.slice();
  bad[0] = 0x00;
  assertThrows(() => decodeCbw(bad), RangeError, "signature");
});

Deno.test("cbwProblem() finds reserved bits, a missing LUN and a bad CDB length", () => {
  const cbw = decodeCbw(
    encodeCbw({ tag: 1, dataTransferLength: 0, dirIn: false, lun: 1, cdb: TUR }),
  );
  assertEquals(cbwProblem(cbw, 2), undefined);
  assertEquals(cbwProblem(cbw, 1), "bCBWLUN 1 is not one of the 1 LUNs");
  assertEquals(
    cbwProblem({ ...cbw, lun: 0, flags: 0x81 }, 1),
    "bmCBWFlags 0x81 has reserved bits set",
  );
  assertEquals(cbwProblem({ ...cbw, lun: 0, length: 0 }, 1), "bCBWCBLength 0 is not 1..16");
  assertEquals(cbwProblem({ ...cbw, lun: 0, length: 17 }, 1), "bCBWCBLength 17 is not 1..16");
  assertEquals(cbwProblem({ ...cbw, lun: 0x10 }, 16), "bCBWLUN 16 is not one of the 16 LUNs");
});

Deno.test("encodeCsw() and decodeCsw() round-trip; decodeCsw() checks length and signature", () => {
  const bytes = encodeCsw({ tag: 9, residue: 0x12345, status: CswStatus.PHASE_ERROR });
  assertEquals(bytes.length, 13);
  assertEquals(decodeCsw(bytes), { tag: 9, residue: 0x12345, status: 2 });
  assertThrows(() => decodeCsw(bytes.subarray(0, 12)), RangeError, "12 bytes");
  const bad = bytes.slice();
  bad[3] = 0;
  assertThrows(() => decodeCsw(bad), RangeError, "signature");
});

Deno.test("case 1 (Hn = Dn): TEST UNIT READY ends with a GOOD CSW and no residue", async () => {
  const { host, drive } = await ramDrive();
  const r = await host.command(TUR);
  assertEquals([r.csw.status, r.csw.residue, r.csw.stalledFirst], [0, 0, false]);
  assertEquals(drive.transportState, "cbw");
});

Deno.test("case 6 (Hi = Di): INQUIRY returns 36 bytes and a CSW without residue or stall", async () => {
  const { host } = await ramDrive();
  const r = await host.command(INQUIRY, { in: 36 });
  assertEquals([r.dataStatus, r.data.length, r.csw.status, r.csw.residue], ["ok", 36, 0, 0]);
  assertEquals(r.csw.stalledFirst, false);
  assertEquals(await host.endpointHalted(IN), false);
});

Deno.test("case 5 (Hi > Di): short data, then the bulk IN endpoint halts; the residue tells", async () => {
  const { host } = await ramDrive();
  // MODE SENSE(6), all pages, 192 bytes as Linux asks: the device has fewer.
  const r = await host.command(new Uint8Array([0x1a, 0, 0x3f, 0, 192, 0]), { in: 192 });
  assertEquals(r.dataStatus, "ok");
  assert(r.data.length < 192 && r.data.length > 4);
  assertEquals(r.data[0], r.data.length - 1);
  assertEquals([r.csw.status, r.csw.residue, r.csw.stalledFirst], [0, 192 - r.data.length, true]);
});

Deno.test("case 5 over several URBs: the URB after the data stalls, the CSW follows", async () => {
  const { host, ram } = await ramDrive();
  ram[0]!.bytes.set(pattern(1024), 0);
  // READ(10) of 2 blocks, but the host expects 3 blocks in two URBs of 1024 and 512.
  assertEquals((await host.cbw(cdb10(READ_10, 0, 2), 1536, true)).status, "ok");
  const first = await host.in(1024);
  assertEquals([first.status, first.data], ["ok", pattern(1024)]);
  assertEquals(await host.endpointHalted(IN), true);
  assertEquals((await host.in(512)).status, "stall");
  await host.clearHalt(IN);
  const csw = await host.csw();
  assertEquals([csw.status, csw.residue], [0, 512]);
});

Deno.test("case 4 (Hi > Dn): TEST UNIT READY with an IN data phase stalls it, residue is all", async () => {
  const { host } = await ramDrive();
  const r = await host.command(TUR, { hostLength: 512, hostDirIn: true });
  assertEquals(r.dataStatus, "stall");
  assertEquals([r.csw.status, r.csw.residue], [0, 512]);
});

Deno.test("case 4 with a failed READ: the data stalls, the CSW fails, REQUEST SENSE says why", async () => {
  const { host } = await ramDrive({ blocks: 64 });
  const r = await host.command(cdb10(READ_10, 64, 1), { in: 512 });
  assertEquals(r.dataStatus, "stall");
  assertEquals([r.csw.status, r.csw.residue], [CswStatus.FAILED, 512]);
  assertEquals(await host.sense(), [0x05, 0x21, 0x00]);
});

Deno.test("cases 2 and 3 (Hn < Di, Hn < Do): a phase error, nothing read or written", async () => {
  const { host, ram } = await ramDrive();
  const read = await host.command(cdb10(READ_10, 0, 1));
  assertEquals([read.csw.status, read.csw.stalledFirst], [CswStatus.PHASE_ERROR, false]);
  const write = await host.command(cdb10(WRITE_10, 0, 1));
  assertEquals(write.csw.status, CswStatus.PHASE_ERROR);
  assertEquals(ram[0]!.writes, []);
});

Deno.test("case 7 (Hi < Di): the bulk IN endpoint stalls and the CSW is a phase error", async () => {
  const { host } = await ramDrive();
  const r = await host.command(cdb10(READ_10, 0, 2), { in: 512 });
  assertEquals(r.dataStatus, "stall");
  assertEquals(r.csw.status, CswStatus.PHASE_ERROR);
});

Deno.test("case 8 (Hi <> Do): a WRITE the host reads stalls IN, phase error, nothing written", async () => {
  const { host, ram } = await ramDrive();
  const r = await host.command(cdb10(WRITE_10, 0, 1), { in: 512 });
  assertEquals([r.dataStatus, r.csw.status], ["stall", CswStatus.PHASE_ERROR]);
  assertEquals(ram[0]!.writes, []);
});

Deno.test("case 9 (Ho > Dn): the bulk OUT endpoint stalls, the CSW passes with all as residue", async () => {
  const { host } = await ramDrive();
  const r = await host.command(TUR, { out: new Uint8Array(512) });
  assertEquals(r.dataStatus, "stall");
  assertEquals([r.csw.status, r.csw.residue], [0, 512]);
});

Deno.test("case 10 (Ho <> Di): a READ the host writes stalls OUT and is a phase error", async () => {
  const { host } = await ramDrive();
  const r = await host.command(cdb10(READ_10, 0, 1), { out: new Uint8Array(512) });
  assertEquals([r.dataStatus, r.csw.status], ["stall", CswStatus.PHASE_ERROR]);
});

Deno.test("case 11 (Ho > Do): the device takes its blocks, stalls the rest, reports the residue", async () => {
  const { host, ram } = await ramDrive();
  const payload = pattern(1024);
  assertEquals((await host.cbw(cdb10(WRITE_10, 3, 1), 1024, false)).status, "ok");
  const r = await host.out(payload);
  assertEquals([r.status, r.actualLength], ["stall", 512]);
  await host.clearHalt(OUT);
  const csw = await host.csw();
  assertEquals([csw.status, csw.residue], [0, 512]);
  assertEquals(ram[0]!.bytes.subarray(3 * 512, 4 * 512), payload.subarray(0, 512));
  assertEquals(ram[0]!.bytes[4 * 512], 0);
});

Deno.test("case 12 (Ho = Do): WRITE(10) data reaches the backing before the CSW", async () => {
  const { host, ram } = await ramDrive();
  const payload = pattern(2048, 5);
  assertEquals((await host.cbw(cdb10(WRITE_10, 10, 4), 2048, false)).status, "ok");
  assertEquals((await host.out(payload)).status, "ok");
  // The data is in the backing before the host reads the CSW.
  assertEquals(ram[0]!.bytes.subarray(10 * 512, 14 * 512), payload);
  const csw = await host.csw();
  assertEquals([csw.status, csw.residue], [0, 0]);
});

Deno.test("case 13 (Ho < Do): the bulk OUT endpoint stalls, phase error, nothing written", async () => {
  const { host, ram } = await ramDrive();
  const r = await host.command(cdb10(WRITE_10, 0, 2), { out: new Uint8Array(512) });
  assertEquals([r.dataStatus, r.csw.status], ["stall", CswStatus.PHASE_ERROR]);
  assertEquals(ram[0]!.writes, []);
});

for (
  const [what, bytes] of [
    [
      "30 bytes",
      encodeCbw({ tag: 1, dataTransferLength: 0, dirIn: false, cdb: TUR }).subarray(0, 30),
    ],
    [
      "a wrong signature",
      (() => {
        const b = encodeCbw({ tag: 1, dataTransferLength: 0, dirIn: false, cdb: TUR });
        b[1] = 0;
        return b;
      })(),
    ],
    [
      "a LUN the drive lacks",
      encodeCbw({ tag: 1, dataTransferLength: 0, dirIn: false, lun: 1, cdb: TUR }),
    ],
    [
      "reserved flag bits",
      (() => {
        const b = encodeCbw({ tag: 1, dataTransferLength: 0, dirIn: false, cdb: TUR });
        b[12] = 0x01;
        return b;
      })(),
    ],
  ] as const
) {
  Deno.test(`an invalid CBW (${what}) stalls both endpoints until Reset Recovery`, async () => {
    const { host, drive } = await ramDrive();
    assertEquals((await host.out(bytes)).status, "ok");
    assertEquals(drive.transportState, "needs_reset");
    assertEquals(await host.endpointHalted(IN), true);
    assertEquals(await host.endpointHalted(OUT), true);
    assertEquals((await host.in(13)).status, "stall");
    assertEquals((await host.out(new Uint8Array(31))).status, "stall");
    // CLEAR_FEATURE(ENDPOINT_HALT) alone does not lift it (BOT 6.6.1).
    assertEquals((await host.clearHalt(IN)).status, "ok");
    assertEquals((await host.clearHalt(OUT)).status, "ok");
    assertEquals(await host.endpointHalted(IN), true);
    assertEquals(await host.endpointHalted(OUT), true);
    assertEquals((await host.in(13)).status, "stall");
    await host.resetRecovery();
    assertEquals(await host.endpointHalted(IN), false);
    assertEquals(await host.endpointHalted(OUT), false);
    assertEquals(drive.transportState, "cbw");
    const r = await host.command(INQUIRY, { in: 36 });
    assertEquals([r.csw.status, r.data.length], [0, 36]);
  });
}

Deno.test("the Bulk-Only Mass Storage Reset keeps halts until CLEAR_FEATURE (BOT 3.1)", async () => {
  const { host } = await ramDrive();
  await host.out(new Uint8Array(5));
  const reset = await control(host.drive, {
    bmRequestType: 0x21,
    bRequest: 0xff,
    wValue: 0,
    wIndex: 0,
    wLength: 0,
  });
  assertEquals(reset.status, "ok");
  assertEquals(await host.endpointHalted(IN), true);
  assertEquals(await host.endpointHalted(OUT), true);
  await host.clearHalt(OUT);
  assertEquals(await host.endpointHalted(OUT), false);
  assertEquals(await host.endpointHalted(IN), true);
});

Deno.test("Reset Recovery in the middle of a data phase drops the command", async () => {
  const { host, ram, drive } = await ramDrive();
  assertEquals((await host.cbw(cdb10(WRITE_10, 0, 4), 2048, false)).status, "ok");
  assertEquals((await host.out(pattern(700))).status, "ok");
  assertEquals(drive.transportState, "data_out");
  await host.resetRecovery();
  assertEquals(drive.transportState, "cbw");
  // Only the one whole block of the 700 bytes was written; the partial one was dropped.
  assertEquals(ram[0]!.writes, [{ offset: 0, length: 512 }]);
  const r = await host.command(TUR);
  assertEquals(r.csw.status, 0);
});

Deno.test("the class requests are checked: bad fields, unconfigured device, other interface", async () => {
  const { drive } = await ramDrive();
  const bad = [
    { bmRequestType: 0x21, bRequest: 0xff, wValue: 1, wIndex: 0, wLength: 0 },
    { bmRequestType: 0x21, bRequest: 0xff, wValue: 0, wIndex: 1, wLength: 0 },
    { bmRequestType: 0xa1, bRequest: 0xff, wValue: 0, wIndex: 0, wLength: 0 },
    { bmRequestType: 0x21, bRequest: 0xfe, wValue: 0, wIndex: 0, wLength: 1 },
    { bmRequestType: 0xa1, bRequest: 0xfe, wValue: 0, wIndex: 0, wLength: 0 },
    { bmRequestType: 0xa1, bRequest: 0xfd, wValue: 0, wIndex: 0, wLength: 1 },
  ];
  for (const setup of bad) assertEquals((await control(drive, setup)).status, "stall");
  await setConfiguration(drive, 0);
  const maxLun = { bmRequestType: 0xa1, bRequest: 0xfe, wValue: 0, wIndex: 0, wLength: 1 };
  assertEquals((await control(drive, maxLun)).status, "stall");
});

Deno.test("Get Max LUN answers the number of LUNs minus one", async () => {
  const maxLun = { bmRequestType: 0xa1, bRequest: 0xfe, wValue: 0, wIndex: 0, wLength: 1 };
  const one = await ramDrive();
  const r1 = await control(one.drive, maxLun);
  assertEquals([r1.status, r1.data], ["ok", new Uint8Array([0])]);
  const three = await ramDrive({
    units: [new MemoryBacking(32768), new MemoryBacking(65536), new MemoryBacking(4096)],
  });
  const r3 = await control(three.drive, maxLun);
  assertEquals(r3.data, new Uint8Array([2]));
});

Deno.test("a READ split over URBs that do not end on block boundaries gets every byte", async () => {
  const { host, ram } = await ramDrive();
  const content = pattern(8 * 512, 9);
  ram[0]!.bytes.set(content, 512);
  assertEquals((await host.cbw(cdb10(READ_10, 1, 8), 4096, true)).status, "ok");
  const parts: Uint8Array[] = [];
  for (const n of [1000, 1000, 1000, 1096]) {
    const r = await host.in(n);
    assertEquals([r.status, r.data?.length], ["ok", n]);
    parts.push(r.data!);
  }
  assertEquals(new Uint8Array(parts.flatMap((p) => [...p])), content);
  const csw = await host.csw();
  assertEquals([csw.status, csw.residue, csw.stalledFirst], [0, 0, false]);
});

Deno.test("a WRITE split over URBs that do not end on block boundaries writes whole blocks only", async () => {
  const { host, ram } = await ramDrive();
  const content = pattern(6 * 512, 4);
  assertEquals((await host.cbw(cdb10(WRITE_10, 2, 6), 3072, false)).status, "ok");
  let offset = 0;
  for (const n of [100, 700, 1, 1500, 771]) {
    const r = await host.out(content.subarray(offset, offset + n));
    assertEquals([r.status, r.actualLength], ["ok", n]);
    offset += n;
    for (const w of ram[0]!.writes) assertEquals(w.length % 512, 0);
  }
  assertEquals(ram[0]!.bytes.subarray(1024, 1024 + 3072), content);
  assertEquals((await host.csw()).status, 0);
});

Deno.test("an IN transfer that comes before its CBW waits for it (the device NAKs)", async () => {
  const { host } = await ramDrive();
  const early = host.in(36);
  let settled = false;
  early.then(() => settled = true);
  await new Promise((r) => setTimeout(r, 10));
  assertEquals(settled, false);
  assertEquals((await host.cbw(INQUIRY, 36, true)).status, "ok");
  const r = await early;
  assertEquals([r.status, r.data?.length], ["ok", 36]);
  assertEquals((await host.csw()).status, 0);
});

Deno.test("a waiting transfer that is cancelled ends as cancelled and changes nothing", async () => {
  const { host, drive } = await ramDrive();
  const abort = new AbortController();
  const early = host.in(13, abort.signal);
  abort.abort();
  assertEquals((await early).status, "cancelled");
  assertEquals(drive.transportState, "cbw");
  assertEquals((await host.command(TUR)).csw.status, 0);
});

Deno.test("SET_CONFIGURATION in the middle of a command returns the transport to the CBW phase", async () => {
  const { host, drive } = await ramDrive();
  assertEquals((await host.cbw(cdb10(READ_10, 0, 4), 2048, true)).status, "ok");
  assertEquals(drive.transportState, "data_in");
  await setConfiguration(drive, 1);
  assertEquals(drive.transportState, "cbw");
  assertEquals((await host.command(TUR)).csw.status, 0);
});

Deno.test("a CSW read into a buffer shorter than 13 bytes still ends the command", async () => {
  const { host, drive } = await ramDrive();
  assertEquals((await host.cbw(TUR, 0, false)).status, "ok");
  // The session turns the 13 bytes into -EOVERFLOW for a smaller buffer.
  const r = await host.in(8);
  assertEquals(r.data?.length, 13);
  assertEquals(drive.transportState, "cbw");
});
