// Tests of the thumb drive's SCSI commands (SPC-4, SBC-3, UFI's READ FORMAT CAPACITIES), each
// through the Bulk-Only Transport as a host sends it: data, status and sense.
import { assert, assertEquals } from "@std/assert";
import { CswStatus } from "../../../lib/devices/storage/bot.ts";
import { encodeFixedSense, SENSE } from "../../../lib/devices/storage/scsi.ts";
import { cdb10, cdb16, MemoryBacking, pattern, ramDrive } from "./_host.ts";

const FAILED = CswStatus.FAILED;
const be32 = (b: Uint8Array, o: number) => new DataView(b.buffer, b.byteOffset).getUint32(o);
const be16 = (b: Uint8Array, o: number) => new DataView(b.buffer, b.byteOffset).getUint16(o);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

function inquiry(evpd: boolean, page: number, allocation: number): Uint8Array {
  return new Uint8Array([0x12, evpd ? 1 : 0, page, allocation >> 8, allocation & 0xff, 0]);
}

Deno.test("encodeFixedSense() lays out fixed-format sense data", () => {
  const b = encodeFixedSense(SENSE.MEDIUM_REMOVAL_PREVENTED);
  assertEquals(b.length, 18);
  assertEquals([b[0], b[2], b[7], b[12], b[13]], [0x70, 0x05, 10, 0x53, 0x02]);
});

Deno.test("INQUIRY returns the standard data: disk, RMB, SPC-4, vendor, product, revision", async () => {
  const { host } = await ramDrive({ vendor: "ACME", product: "Stick 2000", revision: "4.2" });
  const r = await host.command(inquiry(false, 0, 36), { in: 36 });
  assertEquals(r.csw.status, 0);
  const d = r.data;
  assertEquals([d[0], d[1], d[2], d[3], d[4]], [0x00, 0x80, 0x06, 0x02, 31]);
  assertEquals(text(d.subarray(8, 16)), "ACME    ");
  assertEquals(text(d.subarray(16, 32)), "Stick 2000      ");
  assertEquals(text(d.subarray(32, 36)), "4.2 ");
  const fixed = await ramDrive({ removable: false });
  assertEquals((await fixed.host.command(inquiry(false, 0, 36), { in: 36 })).data[1], 0x00);
});

Deno.test("INQUIRY honours a short allocation length", async () => {
  const { host } = await ramDrive();
  const r = await host.command(inquiry(false, 0, 5), { in: 5 });
  assertEquals([r.data.length, r.data[4], r.csw.residue], [5, 31, 0]);
});

Deno.test("INQUIRY VPD 0x00 lists 0x00, 0x80 and 0x83", async () => {
  const { host } = await ramDrive();
  const r = await host.command(inquiry(true, 0x00, 255), { in: 255 });
  assertEquals(r.data, new Uint8Array([0, 0x00, 0, 3, 0x00, 0x80, 0x83]));
  assertEquals([r.csw.status, r.csw.residue], [0, 255 - 7]);
});

Deno.test("INQUIRY VPD 0x80 is the unit serial number, with a LUN suffix from LUN 1 on", async () => {
  const { host } = await ramDrive({
    serial: "0123456789AB",
    units: [new MemoryBacking(4096), new MemoryBacking(4096)],
  });
  const r0 = await host.command(inquiry(true, 0x80, 64), { in: 64 });
  assertEquals([r0.data[1], be16(r0.data, 2)], [0x80, 12]);
  assertEquals(text(r0.data.subarray(4)), "0123456789AB");
  const r1 = await host.command(inquiry(true, 0x80, 64), { in: 64, lun: 1 });
  assertEquals(text(r1.data.subarray(4)), "0123456789AB-1");
});

Deno.test("INQUIRY VPD 0x83 has a T10 vendor ID designator for the logical unit", async () => {
  const { host } = await ramDrive({ vendor: "usbipgw", serial: "ABCDEF012345" });
  const r = await host.command(inquiry(true, 0x83, 255), { in: 255 });
  assertEquals([r.data[1], r.csw.status], [0x83, 0]);
  const designator = r.data.subarray(4);
  // ASCII code set, association logical unit, type 1 (T10 vendor ID).
  assertEquals([designator[0], designator[1]], [0x02, 0x01]);
  const id = text(designator.subarray(4, 4 + designator[3]!));
  assert(id.startsWith("usbipgw ") && id.endsWith("ABCDEF012345"), id);
  assertEquals(be16(r.data, 2), designator.length);
});

Deno.test("INQUIRY of an unknown VPD page, or a page without EVPD, is INVALID FIELD IN CDB", async () => {
  const { host } = await ramDrive();
  for (const cdb of [inquiry(true, 0xb0, 64), inquiry(false, 0x80, 64)]) {
    const r = await host.command(cdb, { in: 64 });
    assertEquals([r.dataStatus, r.csw.status], ["stall", FAILED]);
    assertEquals(await host.sense(), [0x05, 0x24, 0x00]);
  }
});

Deno.test("TEST UNIT READY is GOOD with a medium and NOT READY, MEDIUM NOT PRESENT without", async () => {
  const { host } = await ramDrive();
  assertEquals((await host.command(new Uint8Array(6))).csw.status, 0);
  assertEquals((await host.command(new Uint8Array([0x1b, 0, 0, 0, 0x02, 0]))).csw.status, 0);
  assertEquals((await host.command(new Uint8Array(6))).csw.status, FAILED);
  assertEquals(await host.sense(), [0x02, 0x3a, 0x00]);
});

Deno.test("REQUEST SENSE reports the last failure once, then NO SENSE; DESC=1 is refused", async () => {
  const { host } = await ramDrive();
  assertEquals((await host.command(new Uint8Array([0xff, 0, 0, 0, 0, 0]))).csw.status, FAILED);
  const r = await host.command(new Uint8Array([0x03, 0, 0, 0, 96, 0]), { in: 96 });
  assertEquals([r.data.length, r.data[0], r.data[7]], [18, 0x70, 10]);
  assertEquals([r.data[2], r.data[12], r.data[13]], [0x05, 0x20, 0x00]);
  assertEquals(await host.sense(), [0x00, 0x00, 0x00]);
  const desc = await host.command(new Uint8Array([0x03, 1, 0, 0, 18, 0]), { in: 18 });
  assertEquals(desc.csw.status, FAILED);
  assertEquals(await host.sense(), [0x05, 0x24, 0x00]);
});

Deno.test("sense data is kept per logical unit", async () => {
  const { host } = await ramDrive({ units: [new MemoryBacking(4096), new MemoryBacking(4096)] });
  await host.command(cdb10(0x28, 100, 1), { in: 512, lun: 1 });
  assertEquals(await host.sense(0), [0, 0, 0]);
  assertEquals(await host.sense(1), [0x05, 0x21, 0x00]);
});

Deno.test("an unsupported command is CHECK CONDITION, INVALID COMMAND OPERATION CODE, no stall", async () => {
  const { host } = await ramDrive();
  for (const op of [0x4d, 0xa1, 0x85, 0xff]) {
    const r = await host.command(new Uint8Array([op, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    assertEquals([r.csw.status, r.csw.stalledFirst], [FAILED, false]);
    assertEquals(await host.sense(), [0x05, 0x20, 0x00]);
  }
  // With a data phase the host expects, only that data phase stalls (case 4); the CSW follows.
  const logSense = await host.command(new Uint8Array([0x4d, 0, 0, 0, 0, 0, 0, 0, 64, 0]), {
    in: 64,
  });
  assertEquals([logSense.dataStatus, logSense.csw.status, logSense.csw.residue], [
    "stall",
    FAILED,
    64,
  ]);
});

Deno.test("a CDB shorter than its operation code needs is INVALID FIELD IN CDB", async () => {
  const { host } = await ramDrive();
  const r = await host.command(new Uint8Array([0x28, 0, 0, 0, 0, 0]), { in: 512 });
  assertEquals(r.csw.status, FAILED);
  assertEquals(await host.sense(), [0x05, 0x24, 0x00]);
});

Deno.test("READ CAPACITY(10) gives the last LBA and the block size (512 and 4096)", async () => {
  const { host } = await ramDrive({ blocks: 2048 });
  const r = await host.command(new Uint8Array([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]), { in: 8 });
  assertEquals([be32(r.data, 0), be32(r.data, 4), r.csw.status], [2047, 512, 0]);
  const big = await ramDrive({ blockSize: 4096, blocks: 100 });
  const r4k = await big.host.command(new Uint8Array([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]), {
    in: 8,
  });
  assertEquals([be32(r4k.data, 0), be32(r4k.data, 4)], [99, 4096]);
  const pmi = await host.command(new Uint8Array([0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0]), { in: 8 });
  assertEquals(pmi.csw.status, FAILED);
  assertEquals(await host.sense(), [0x05, 0x24, 0x00]);
});

Deno.test("READ CAPACITY(16) through SERVICE ACTION IN(16) 0x10; another service action fails", async () => {
  const { host } = await ramDrive({ blocks: 300 });
  const cdb = new Uint8Array(16);
  cdb[0] = 0x9e;
  cdb[1] = 0x10;
  cdb[13] = 32;
  const r = await host.command(cdb, { in: 32 });
  const v = new DataView(r.data.buffer, r.data.byteOffset);
  assertEquals([v.getBigUint64(0), v.getUint32(8), r.data.length, r.csw.status], [
    299n,
    512,
    32,
    0,
  ]);
  cdb[1] = 0x11;
  assertEquals((await host.command(cdb, { in: 32 })).csw.status, FAILED);
  assertEquals(await host.sense(), [0x05, 0x24, 0x00]);
});

Deno.test("WRITE(10) then READ(10) round-trips; so do WRITE(16)/READ(16), (12) and (6)", async () => {
  const { host, ram } = await ramDrive({ blocks: 128 });
  const a = pattern(1024, 2);
  assertEquals((await host.command(cdb10(0x2a, 5, 2), { out: a })).csw.status, 0);
  assertEquals((await host.command(cdb10(0x28, 5, 2), { in: 1024 })).data, a);
  const b = pattern(1536, 3);
  assertEquals((await host.command(cdb16(0x8a, 100n, 3), { out: b })).csw.status, 0);
  assertEquals((await host.command(cdb16(0x88, 100n, 3), { in: 1536 })).data, b);
  assertEquals(ram[0]!.bytes.subarray(100 * 512, 103 * 512), b);
  const c = pattern(512, 4);
  const w12 = new Uint8Array([0xaa, 0, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0]);
  const r12 = new Uint8Array([0xa8, 0, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0]);
  assertEquals((await host.command(w12, { out: c })).csw.status, 0);
  assertEquals((await host.command(r12, { in: 512 })).data, c);
  const d = pattern(512, 6);
  assertEquals(
    (await host.command(new Uint8Array([0x0a, 0, 0, 9, 1, 0]), { out: d })).csw.status,
    0,
  );
  assertEquals((await host.command(new Uint8Array([0x08, 0, 0, 9, 1, 0]), { in: 512 })).data, d);
});

Deno.test("READ and WRITE past the end are LOGICAL BLOCK ADDRESS OUT OF RANGE", async () => {
  const { host, ram } = await ramDrive({ blocks: 64 });
  assertEquals((await host.command(cdb10(0x28, 63, 2), { in: 1024 })).csw.status, FAILED);
  assertEquals(await host.sense(), [0x05, 0x21, 0x00]);
  assertEquals((await host.command(cdb10(0x2a, 64, 1), { out: pattern(512) })).csw.status, FAILED);
  assertEquals(await host.sense(), [0x05, 0x21, 0x00]);
  assertEquals((await host.command(cdb16(0x88, 1n << 62n, 1), { in: 512 })).csw.status, FAILED);
  assertEquals(await host.sense(), [0x05, 0x21, 0x00]);
  assertEquals(ram[0]!.writes, []);
  // The last block itself is in range.
  assertEquals((await host.command(cdb10(0x28, 63, 1), { in: 512 })).csw.status, 0);
});

Deno.test("a READ with RDPROTECT set is INVALID FIELD IN CDB; a zero-block READ is GOOD", async () => {
  const { host } = await ramDrive();
  assertEquals((await host.command(cdb10(0x28, 0, 1, 0x20), { in: 512 })).csw.status, FAILED);
  assertEquals(await host.sense(), [0x05, 0x24, 0x00]);
  assertEquals((await host.command(cdb10(0x28, 0, 0))).csw.status, 0);
});

Deno.test("a read error is MEDIUM ERROR, UNRECOVERED READ ERROR", async () => {
  const { host, ram } = await ramDrive();
  ram[0]!.failReads = true;
  const r = await host.command(cdb10(0x28, 0, 1), { in: 512 });
  assertEquals([r.dataStatus, r.csw.status, r.csw.residue], ["stall", FAILED, 512]);
  assertEquals(await host.sense(), [0x03, 0x11, 0x00]);
});

Deno.test("a write error (ENOSPC) is MEDIUM ERROR, WRITE ERROR, and the data phase stalls", async () => {
  const { host, ram } = await ramDrive();
  ram[0]!.failWrites = true;
  const r = await host.command(cdb10(0x2a, 0, 2), { out: pattern(1024) });
  assertEquals([r.dataStatus, r.csw.status, r.csw.residue], ["stall", FAILED, 1024]);
  assertEquals(await host.sense(), [0x03, 0x0c, 0x00]);
});

Deno.test("WRITE on a read-only image is DATA PROTECT, WRITE PROTECTED; nothing is written", async () => {
  const ro = new MemoryBacking(32768, { readOnly: true, fill: 0xaa });
  const { host } = await ramDrive({ units: [ro] });
  const r = await host.command(cdb10(0x2a, 0, 1), { out: pattern(512) });
  assertEquals([r.dataStatus, r.csw.status], ["stall", FAILED]);
  assertEquals(await host.sense(), [0x07, 0x27, 0x00]);
  assertEquals(ro.bytes.every((b) => b === 0xaa), true);
  // Reads still work.
  assertEquals((await host.command(cdb10(0x28, 0, 1), { in: 512 })).data[0], 0xaa);
});

Deno.test("WRITE by a read-only importer (policy) is DATA PROTECT on a writable image", async () => {
  const { host, ram } = await ramDrive();
  const r = await host.command(cdb10(0x2a, 0, 1), { out: pattern(512), readOnly: true });
  assertEquals(r.csw.status, FAILED);
  assertEquals(await host.sense(), [0x07, 0x27, 0x00]);
  assertEquals(ram[0]!.writes, []);
  // The same drive takes writes from a read-write importer.
  assertEquals((await host.command(cdb10(0x2a, 0, 1), { out: pattern(512) })).csw.status, 0);
});

function modeSense6(page: number, allocation = 192, pc = 0): Uint8Array {
  return new Uint8Array([0x1a, 0, (pc << 6) | page, 0, allocation, 0]);
}

function modeSense10(page: number, allocation = 192): Uint8Array {
  return new Uint8Array([0x5a, 0, page, 0, 0, 0, 0, allocation >> 8, allocation & 0xff, 0]);
}

/** Finds a mode page in a MODE SENSE answer the way Linux sd_read_cache_type walks it. */
function findPage(data: Uint8Array, header: number, page: number): Uint8Array | undefined {
  const blockDescriptors = header === 4 ? data[3]! : be16(data, 6);
  let o = header + blockDescriptors;
  while (o + 1 < data.length) {
    const length = 2 + data[o + 1]!;
    if ((data[o]! & 0x3f) === page) return data.subarray(o, o + length);
    o += length;
  }
  return undefined;
}

Deno.test("MODE SENSE(6) all pages has the caching page with WCE and no WP for a writable drive", async () => {
  const { host } = await ramDrive();
  const r = await host.command(modeSense6(0x3f), { in: 192 });
  assertEquals(r.csw.status, 0);
  assertEquals(r.data[0], r.data.length - 1);
  assertEquals(r.data[2]! & 0x80, 0);
  assertEquals(r.data[2]! & 0x10, 0x10);
  const caching = findPage(r.data, 4, 0x08);
  assertEquals([caching?.length, caching?.[1], caching![2]! & 0x04], [20, 18, 0x04]);
  assert(findPage(r.data, 4, 0x01) !== undefined);
});

Deno.test("MODE SENSE reports WP for a read-only image and for a read-only importer", async () => {
  const ro = await ramDrive({ units: [new MemoryBacking(4096, { readOnly: true })] });
  assertEquals((await ro.host.command(modeSense6(0x3f), { in: 192 })).data[2]! & 0x80, 0x80);
  assertEquals((await ro.host.command(modeSense10(0x3f), { in: 192 })).data[3]! & 0x80, 0x80);
  const rw = await ramDrive();
  const policy = await rw.host.command(modeSense6(0x3f), { in: 192, readOnly: true });
  assertEquals(policy.data[2]! & 0x80, 0x80);
  assertEquals((await rw.host.command(modeSense6(0x3f), { in: 192 })).data[2]! & 0x80, 0);
});

Deno.test("MODE SENSE(10) answers one page with an 8-byte header", async () => {
  const { host } = await ramDrive();
  const r = await host.command(modeSense10(0x08), { in: 192 });
  assertEquals([r.data.length, be16(r.data, 0), be16(r.data, 6)], [28, 26, 0]);
  assertEquals(findPage(r.data, 8, 0x08)?.[2], 0x04);
});

Deno.test("MODE SENSE: changeable values are zero, saved values and unknown pages fail", async () => {
  const { host } = await ramDrive();
  const changeable = await host.command(modeSense6(0x08, 192, 1), { in: 192 });
  assertEquals(findPage(changeable.data, 4, 0x08)?.[2], 0);
  assertEquals((await host.command(modeSense6(0x08, 192, 3), { in: 192 })).csw.status, FAILED);
  assertEquals(await host.sense(), [0x05, 0x39, 0x00]);
  assertEquals((await host.command(modeSense6(0x1c), { in: 192 })).csw.status, FAILED);
  assertEquals(await host.sense(), [0x05, 0x24, 0x00]);
  const subpage = new Uint8Array([0x1a, 0, 0x08, 0x01, 192, 0]);
  assertEquals((await host.command(subpage, { in: 192 })).csw.status, FAILED);
});

Deno.test("MODE SELECT(6) and (10) take the parameter list and change nothing", async () => {
  const { host } = await ramDrive();
  const list = new Uint8Array(24);
  list[4] = 0x08;
  list[5] = 18;
  const r6 = await host.command(new Uint8Array([0x15, 0x10, 0, 0, 24, 0]), { out: list });
  assertEquals([r6.dataStatus, r6.csw.status, r6.csw.residue], ["ok", 0, 0]);
  const r10 = await host.command(new Uint8Array([0x55, 0x10, 0, 0, 0, 0, 0, 0, 28, 0]), {
    out: new Uint8Array(28),
  });
  assertEquals([r10.csw.status, r10.csw.residue], [0, 0]);
  const after = await host.command(modeSense6(0x08), { in: 192 });
  assertEquals(findPage(after.data, 4, 0x08)?.[2], 0x04);
});

Deno.test("VERIFY(10): BYTCHK 0 checks the range, BYTCHK 1 compares, a mismatch is MISCOMPARE", async () => {
  const { host, ram } = await ramDrive({ blocks: 16 });
  const content = pattern(1024, 8);
  ram[0]!.bytes.set(content, 2 * 512);
  assertEquals((await host.command(cdb10(0x2f, 0, 16))).csw.status, 0);
  assertEquals((await host.command(cdb10(0x2f, 10, 7))).csw.status, FAILED);
  assertEquals(await host.sense(), [0x05, 0x21, 0x00]);
  assertEquals((await host.command(cdb10(0x2f, 2, 2, 0x02), { out: content })).csw.status, 0);
  const other = content.slice();
  other[700] = other[700]! ^ 1;
  const r = await host.command(cdb10(0x2f, 2, 2, 0x02), { out: other });
  assertEquals([r.dataStatus, r.csw.status], ["stall", FAILED]);
  assertEquals(await host.sense(), [0x0e, 0x1d, 0x00]);
  assertEquals(ram[0]!.writes, []);
});

Deno.test("SYNCHRONIZE CACHE(10) and (16) flush the backing before the CSW", async () => {
  const { host, ram } = await ramDrive({ blocks: 64 });
  assertEquals((await host.command(cdb10(0x35, 0, 0))).csw.status, 0);
  assertEquals(ram[0]!.syncs, 1);
  assertEquals((await host.command(cdb16(0x91, 0n, 64))).csw.status, 0);
  assertEquals(ram[0]!.syncs, 2);
  assertEquals((await host.command(cdb10(0x35, 60, 8))).csw.status, FAILED);
  assertEquals(await host.sense(), [0x05, 0x21, 0x00]);
  ram[0]!.failSync = true;
  assertEquals((await host.command(cdb10(0x35, 0, 0))).csw.status, FAILED);
  assertEquals(await host.sense(), [0x03, 0x0c, 0x00]);
});

Deno.test("WRITE(10) with FUA flushes before its CSW; without FUA it does not", async () => {
  const { host, ram } = await ramDrive();
  assertEquals((await host.command(cdb10(0x2a, 0, 1), { out: pattern(512) })).csw.status, 0);
  assertEquals(ram[0]!.syncs, 0);
  assertEquals((await host.command(cdb10(0x2a, 0, 1, 0x08), { out: pattern(512) })).csw.status, 0);
  assertEquals(ram[0]!.syncs, 1);
});

/** A RAM backing whose flush waits for `release` and logs when it starts and ends. */
class HeldFlush extends MemoryBacking {
  readonly events: string[] = [];
  readonly release = Promise.withResolvers<void>();
  override async sync(): Promise<void> {
    this.events.push("flush started");
    await this.release.promise;
    try {
      await super.sync();
      this.events.push("flushed");
    } catch (e) {
      this.events.push("flush failed");
      throw e;
    }
  }
}

/** Runs macrotasks until `condition()` holds (or fails after 5 s); never a timing check. */
async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; !condition(); i++) {
    assert(i < 1000, "the condition never held");
    await new Promise((r) => setTimeout(r, 5));
  }
}

// FUA (SBC-3, the FUA bit of WRITE(10)): GOOD status only once the blocks are on the medium;
// over Bulk-Only the status is the CSW, so it must not come before the flush has ended.
for (const fail of [false, true]) {
  Deno.test(
    `WRITE(10) with FUA: the CSW waits for the flush, which ${
      fail ? "fails it with MEDIUM ERROR, WRITE ERROR" : "succeeds"
    }`,
    async () => {
      const held = new HeldFlush(64 * 512);
      held.failSync = fail;
      const { host } = await ramDrive({ units: [held] });
      const command = host.command(cdb10(0x2a, 3, 1, 0x08), { out: pattern(512) }).then((r) => {
        held.events.push("csw");
        return r;
      });
      await until(() => held.events.includes("flush started"));
      // Macrotasks pass: a CSW not held back by the flush would be here by now.
      for (let i = 0; i < 10; i++) await new Promise((r) => setTimeout(r, 0));
      assertEquals(held.events, ["flush started"], "the CSW came before the flush ended");
      held.release.resolve();
      const r = await command;
      assertEquals(held.events, ["flush started", fail ? "flush failed" : "flushed", "csw"]);
      assertEquals(held.bytes.subarray(3 * 512, 4 * 512), pattern(512));
      if (fail) {
        assertEquals([r.dataStatus, r.csw.status], ["ok", FAILED]);
        assertEquals(await host.sense(), [0x03, 0x0c, 0x00]);
      } else {
        assertEquals([r.dataStatus, r.csw.status, held.syncs], ["ok", 0, 1]);
      }
    },
  );
}

Deno.test("READ FORMAT CAPACITIES: a formatted medium, then none after an eject", async () => {
  const { host } = await ramDrive({ blocks: 1000 });
  const cdb = new Uint8Array([0x23, 0, 0, 0, 0, 0, 0, 0, 252, 0, 0, 0]);
  const r = await host.command(cdb, { in: 252 });
  assertEquals([r.data.length, r.data[3], be32(r.data, 4), r.data[8], be32(r.data, 8) & 0xffffff], [
    12,
    8,
    1000,
    0x02,
    512,
  ]);
  await host.command(new Uint8Array([0x1b, 0, 0, 0, 0x02, 0]));
  assertEquals((await host.command(cdb, { in: 252 })).data[8], 0x03);
});

Deno.test("REPORT LUNS lists every LUN; an allocation length under 16 is refused", async () => {
  const { host } = await ramDrive({ units: [new MemoryBacking(4096), new MemoryBacking(4096)] });
  const cdb = new Uint8Array([0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
  const r = await host.command(cdb, { in: 256 });
  assertEquals(
    r.data,
    new Uint8Array([0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
  );
  const small = new Uint8Array([0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0]);
  assertEquals((await host.command(small, { in: 8 })).csw.status, FAILED);
  assertEquals(await host.sense(), [0x05, 0x24, 0x00]);
});

Deno.test("PREVENT ALLOW MEDIUM REMOVAL blocks an eject with MEDIUM REMOVAL PREVENTED", async () => {
  const { host, drive } = await ramDrive();
  const prevent = new Uint8Array([0x1e, 0, 0, 0, 1, 0]);
  const allow = new Uint8Array([0x1e, 0, 0, 0, 0, 0]);
  const eject = new Uint8Array([0x1b, 0, 0, 0, 0x02, 0]);
  assertEquals((await host.command(prevent)).csw.status, 0);
  assertEquals(drive.units[0]!.preventRemoval, true);
  assertEquals((await host.command(eject)).csw.status, FAILED);
  assertEquals(await host.sense(), [0x05, 0x53, 0x02]);
  assertEquals(drive.units[0]!.mediumPresent, true);
  assertEquals((await host.command(allow)).csw.status, 0);
  assertEquals((await host.command(eject)).csw.status, 0);
  assertEquals(drive.units[0]!.mediumPresent, false);
});

Deno.test("START STOP UNIT: eject flushes, medium commands are NOT READY, load brings it back", async () => {
  const { host, ram } = await ramDrive();
  assertEquals((await host.command(new Uint8Array([0x1b, 0, 0, 0, 0x02, 0]))).csw.status, 0);
  assertEquals(ram[0]!.syncs, 1);
  for (const cdb of [cdb10(0x28, 0, 1), new Uint8Array([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0])]) {
    assertEquals((await host.command(cdb, { in: 512 })).csw.status, FAILED);
    assertEquals(await host.sense(), [0x02, 0x3a, 0x00]);
  }
  // INQUIRY and MODE SENSE still answer.
  assertEquals((await host.command(inquiry(false, 0, 36), { in: 36 })).csw.status, 0);
  assertEquals((await host.command(new Uint8Array([0x1b, 0, 0, 0, 0x03, 0]))).csw.status, 0);
  // The first command after the load reports the unit attention, then all is well.
  assertEquals((await host.command(new Uint8Array(6))).csw.status, FAILED);
  assertEquals(await host.sense(), [0x06, 0x28, 0x00]);
  assertEquals((await host.command(new Uint8Array(6))).csw.status, 0);
});

Deno.test("START STOP UNIT without LOEJ or with a power condition changes nothing", async () => {
  const { host, drive } = await ramDrive();
  assertEquals((await host.command(new Uint8Array([0x1b, 1, 0, 0, 0x00, 0]))).csw.status, 0);
  assertEquals((await host.command(new Uint8Array([0x1b, 0, 0, 0, 0x32, 0]))).csw.status, 0);
  assertEquals(drive.units[0]!.mediumPresent, true);
});

Deno.test("a fixed disk (removable=false) refuses eject and PREVENT", async () => {
  const { host, drive } = await ramDrive({ removable: false });
  assertEquals((await host.command(new Uint8Array([0x1b, 0, 0, 0, 0x02, 0]))).csw.status, FAILED);
  assertEquals(await host.sense(), [0x05, 0x24, 0x00]);
  assertEquals((await host.command(new Uint8Array([0x1e, 0, 0, 0, 1, 0]))).csw.status, FAILED);
  assertEquals((await host.command(new Uint8Array([0x1e, 0, 0, 0, 0, 0]))).csw.status, 0);
  assertEquals(drive.units[0]!.mediumPresent, true);
});

Deno.test("the next import loads an ejected medium and lifts the removal lock", async () => {
  const { host, drive } = await ramDrive();
  await host.command(new Uint8Array([0x1b, 0, 0, 0, 0x02, 0]));
  await host.command(new Uint8Array([0x1e, 0, 0, 0, 1, 0]));
  assertEquals([drive.units[0]!.mediumPresent, drive.units[0]!.preventRemoval], [false, true]);
  await drive.released();
  drive.imported();
  assertEquals([drive.units[0]!.mediumPresent, drive.units[0]!.preventRemoval], [true, false]);
});
