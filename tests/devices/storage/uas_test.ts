// Tests of the thumb drive's USB Attached SCSI alternate (storage:uas=1): the descriptors the
// kernel's uas driver looks for, many commands in flight, READ READY / WRITE READY before each
// data phase, a SENSE IU per command with its own sense, task management, malformed IUs, the
// limits, and the Bulk-Only alternate 0 still there for a host without streams.
import { assert, assertEquals, assertFalse } from "@std/assert";
import {
  DescriptorType,
  MassStorage,
  Request,
  RequestType,
  type TransferResult,
  type UsbTransfer,
} from "../../../mod.ts";
import { ScsiOpcode, SenseKey } from "../../../lib/devices/storage/scsi.ts";
import { MassStorageEndpoint, UAS_PROTOCOL } from "../../../lib/devices/storage/storage.ts";
import {
  decodeStatusIu,
  encodeCommandIu,
  encodeTaskManagementIu,
  MAX_TASKS,
  PIPE_USAGE_DESCRIPTOR,
  ResponseCode,
  SamStatus,
  type StatusIu,
  TaskFunction,
  UasIu,
  UasTransport,
} from "../../../lib/devices/storage/uas.ts";
import { control, data, getDescriptor, setConfiguration } from "../_transfers.ts";
import { BotHost, cdb10, MemoryBacking, pattern } from "./_host.ts";

const BLOCK = 512;
const E = MassStorageEndpoint;

/** The device side as Linux's uas drives it without streams: IUs and data as transfers. */
class UasHost {
  readonly drive: MassStorage;
  constructor(drive: MassStorage) {
    this.drive = drive;
  }

  static async open(
    ram: MemoryBacking[] = [new MemoryBacking(64 * BLOCK)],
  ): Promise<{ host: UasHost; ram: MemoryBacking[] }> {
    const drive = new MassStorage({ units: ram, uas: true });
    drive.imported();
    assertEquals((await setConfiguration(drive, 1)).status, "ok");
    const host = new UasHost(drive);
    assertEquals((await host.setInterface(1)).status, "ok");
    assert(drive.usingUas);
    return { host, ram };
  }

  setInterface(alt: number): Promise<TransferResult> {
    return control(this.drive, {
      bmRequestType: RequestType.RECIPIENT_INTERFACE,
      bRequest: Request.SET_INTERFACE,
      wValue: alt,
      wIndex: 0,
      wLength: 0,
    });
  }

  send(iu: Uint8Array, readOnly = false): Promise<TransferResult> {
    return data(this.drive, E.UAS_COMMAND, false, { data: iu, readOnly });
  }

  command(tag: number, cdb: Uint8Array, o: { lun?: number; readOnly?: boolean } = {}) {
    return this.send(encodeCommandIu({ tag, lun: o.lun ?? 0, cdb }), o.readOnly);
  }

  /** The next status IU (a status URB of 112 bytes, as uas.c's sense URB). */
  async status(signal?: AbortSignal): Promise<StatusIu> {
    const r = await data(this.drive, E.UAS_STATUS & 0x0f, true, {
      length: 112,
      ...(signal ? { signal } : {}),
    });
    assertEquals(r.status, "ok");
    return decodeStatusIu(r.data!);
  }

  dataIn(length: number): Promise<TransferResult> {
    return data(this.drive, E.BULK_IN & 0x0f, true, { length });
  }

  dataOut(bytes: Uint8Array): Promise<TransferResult> {
    return data(this.drive, E.BULK_OUT, false, { data: bytes });
  }
}

/** Whether `p` settles within a few event-loop turns. */
async function settlesSoon(p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  p.then(() => settled = true, () => settled = true);
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 0));
  return settled;
}

const read10 = (lba: number, count: number) => cdb10(ScsiOpcode.READ_10, lba, count);
const write10 = (lba: number, count: number, flags = 0) =>
  cdb10(ScsiOpcode.WRITE_10, lba, count, flags);
const TEST_UNIT_READY = new Uint8Array(6);

function assertGood(iu: StatusIu, tag: number): void {
  assertEquals(iu, { type: "sense", tag, status: SamStatus.GOOD, sense: new Uint8Array(0) });
}

function assertSense(iu: StatusIu, tag: number, key: number, asc: number, ascq = 0): void {
  assert(iu.type === "sense", `expected a SENSE IU, got ${JSON.stringify(iu)}`);
  assertEquals([iu.tag, iu.status], [tag, SamStatus.CHECK_CONDITION]);
  assertEquals([iu.sense[0], iu.sense[2]! & 0x0f, iu.sense[12], iu.sense[13]], [
    0x70,
    key,
    asc,
    ascq,
  ]);
}

Deno.test("uas=1: Bulk-Only is alternate 0, UAS (08/06/62) alternate 1 with four pipes and their Pipe Usage descriptors", async () => {
  for (const speed of ["high", "super"] as const) {
    const drive = new MassStorage({ units: [new MemoryBacking(4096)], uas: true, speed });
    const config = (await getDescriptor(drive, DescriptorType.CONFIGURATION, 0)).data!;
    const alts: { alt: number; protocol: number; pipes: [number, number, number?][] }[] = [];
    for (let o = 0; o < config.length; o += config[o]!) {
      const type = config[o + 1];
      if (type === DescriptorType.INTERFACE) {
        alts.push({ alt: config[o + 3]!, protocol: config[o + 7]!, pipes: [] });
      } else if (type === DescriptorType.ENDPOINT) {
        alts.at(-1)!.pipes.push([config[o + 2]!, 0]);
      } else if (type === PIPE_USAGE_DESCRIPTOR) {
        assertEquals(config[o], 4);
        alts.at(-1)!.pipes.at(-1)![1] = config[o + 2]!;
      } else if (type === 0x30) {
        // The SuperSpeed companion: bmAttributes' MaxStreams.
        alts.at(-1)!.pipes.at(-1)![2] = config[o + 3]!;
      }
    }
    const ss = speed === "super";
    const streams = (n: number) => ss ? [n] : [];
    assertEquals(alts, [
      { alt: 0, protocol: 0x50, pipes: [[0x81, 0, ...streams(0)], [0x02, 0, ...streams(0)]] },
      {
        alt: 1,
        protocol: UAS_PROTOCOL,
        pipes: [
          [0x04, 1, ...streams(0)],
          [0x83, 2, ...streams(5)],
          [0x81, 3, ...streams(5)],
          [0x02, 4, ...streams(5)],
        ] as [number, number, number?][],
      },
    ], speed);
    // The device list shows the interface once, by its alternate 0.
    assertEquals(drive.summary().interfaces.length, 1);
  }
});

Deno.test("uas=1 in alternate 0 is a Bulk-Only drive (the SuperSpeed fallback of a host without streams)", async () => {
  const ram = new MemoryBacking(64 * BLOCK);
  const drive = new MassStorage({ units: [ram], uas: true, speed: "super" });
  drive.imported();
  assertEquals((await setConfiguration(drive, 1)).status, "ok");
  assertFalse(drive.usingUas);
  const host = new BotHost(drive);
  const bytes = pattern(2 * BLOCK, 3);
  const w = await host.command(write10(4, 2), { out: bytes });
  assertEquals(w.csw.status, 0);
  const r = await host.command(read10(4, 2), { in: 2 * BLOCK });
  assertEquals(r.data, bytes);
});

Deno.test("UAS: many commands in flight, each data phase announced as its command arrives, one SENSE IU per tag", async () => {
  const { host, ram } = await UasHost.open();
  ram[0]!.bytes.set(pattern(8 * BLOCK, 5), 0);
  // Four commands before any data moves: two reads, a write, a TEST UNIT READY.
  for (
    const [tag, cdb] of [[1, read10(0, 2)], [2, read10(2, 2)], [3, write10(10, 1)], [
      4,
      TEST_UNIT_READY,
    ]] as const
  ) {
    assertEquals(await host.command(tag, cdb), { status: "ok", actualLength: 32 });
  }
  assertEquals(host.drive.usingUas, true);
  const seen: StatusIu[] = [];
  for (let i = 0; i < 4; i++) seen.push(await host.status());
  // Every data phase is announced at once, in the order the commands came (so the host can
  // queue all their data transfers); command 4 has no data and completes at once.
  assertEquals(seen.map((iu) => [iu.type, iu.tag]), [
    ["read_ready", 1],
    ["read_ready", 2],
    ["write_ready", 3],
    ["sense", 4],
  ]);
  const next = host.status();
  assertFalse(await settlesSoon(next), "a status came before any data moved");
  // The data-in pipe serves the announced reads in order.
  assertEquals((await host.dataIn(2 * BLOCK)).data, ram[0]!.bytes.slice(0, 2 * BLOCK));
  assertEquals((await host.dataIn(2 * BLOCK)).data, ram[0]!.bytes.slice(2 * BLOCK, 4 * BLOCK));
  assertGood(await next, 1);
  assertGood(await host.status(), 2);
});

Deno.test("UAS: data phases in order, data in the image before the WRITE's SENSE IU, sense per command", async () => {
  const { host, ram } = await UasHost.open();
  const disk = ram[0]!;
  disk.bytes.set(pattern(4 * BLOCK, 9), 0);
  await host.command(7, read10(0, 2));
  await host.command(8, read10(2, 2));
  await host.command(9, read10(1000, 1)); // beyond the 64-block medium
  await host.command(10, write10(20, 2));
  const ready = [];
  for (let i = 0; i < 4; i++) ready.push(await host.status());
  assertEquals(ready.map((iu) => [iu.type, iu.tag]), [
    ["read_ready", 7],
    ["read_ready", 8],
    ["sense", 9],
    ["write_ready", 10],
  ]);
  assertSense(ready[2]!, 9, SenseKey.ILLEGAL_REQUEST, 0x21);

  // The write's backing completes only when released: its SENSE IU must wait for it.
  let releaseWrite!: () => void;
  const plainWrite = disk.write.bind(disk);
  disk.write = (offset, bytes) =>
    new Promise<void>((resolve) => releaseWrite = resolve).then(() => plainWrite(offset, bytes));
  const out = pattern(2 * BLOCK, 4);
  const written = host.dataOut(out);
  const first = await host.dataIn(2 * BLOCK);
  assertEquals(first.data, disk.bytes.slice(0, 2 * BLOCK));
  assertGood(await host.status(), 7);
  const second = await host.dataIn(2 * BLOCK);
  assertEquals(second.data, disk.bytes.slice(2 * BLOCK, 4 * BLOCK));
  assertGood(await host.status(), 8);
  const writeStatus = host.status();
  assertFalse(await settlesSoon(writeStatus), "the WRITE's status came before its data was stored");
  releaseWrite();
  assertEquals(await written, { status: "ok", actualLength: 2 * BLOCK });
  assertGood(await writeStatus, 10);
  assertEquals(disk.bytes.slice(20 * BLOCK, 22 * BLOCK), out);
  assertEquals(host.drive.usingUas, true);
});

Deno.test("UAS: a read error ends the data phase short without a stall; the SENSE IU says MEDIUM ERROR", async () => {
  const { host, ram } = await UasHost.open();
  ram[0]!.failReads = true;
  await host.command(1, read10(0, 4));
  assertEquals((await host.status()).type, "read_ready");
  const r = await host.dataIn(4 * BLOCK);
  assertEquals([r.status, r.data?.length], ["ok", 0]);
  assertFalse(host.drive.isHalted(E.BULK_IN));
  assertSense(await host.status(), 1, SenseKey.MEDIUM_ERROR, 0x11);
  // The pipe is free for the next command.
  ram[0]!.failReads = false;
  await host.command(2, read10(0, 1));
  assertEquals((await host.status()).tag, 2);
  assertEquals((await host.dataIn(BLOCK)).data?.length, BLOCK);
  assertGood(await host.status(), 2);
});

Deno.test("UAS: a read-only importer's WRITE gets DATA PROTECT and nothing reaches the image", async () => {
  const { host, ram } = await UasHost.open();
  await host.command(5, write10(0, 1), { readOnly: true });
  assertSense(await host.status(), 5, SenseKey.DATA_PROTECT, 0x27);
  assertEquals(ram[0]!.writes, []);
});

Deno.test("UAS: FUA and SYNCHRONIZE CACHE flush before their SENSE IU", async () => {
  const { host, ram } = await UasHost.open();
  await host.command(1, write10(3, 1, 0x08));
  assertEquals((await host.status()).type, "write_ready");
  await host.dataOut(pattern(BLOCK));
  assertGood(await host.status(), 1);
  assertEquals(ram[0]!.syncs, 1);
  await host.command(2, cdb10(ScsiOpcode.SYNCHRONIZE_CACHE_10, 0, 0));
  assertGood(await host.status(), 2);
  assertEquals(ram[0]!.syncs, 2);
  ram[0]!.failSync = true;
  await host.command(3, cdb10(ScsiOpcode.SYNCHRONIZE_CACHE_10, 0, 0));
  assertSense(await host.status(), 3, SenseKey.MEDIUM_ERROR, 0x0c);
});

Deno.test("UAS: a tag in use is OVERLAPPED TAG and the command holding it is aborted", async () => {
  const { host } = await UasHost.open();
  await host.command(4, read10(0, 1));
  assertEquals((await host.status()).type, "read_ready");
  await host.command(4, read10(1, 1));
  assertEquals(await host.status(), {
    type: "response",
    tag: 4,
    code: ResponseCode.OVERLAPPED_TAG,
  });
  assertEquals(host.drive.usingUas, true);
  // Nothing is held under the tag any more: it can be used again.
  await host.command(4, TEST_UNIT_READY);
  assertGood(await host.status(), 4);
});

Deno.test("UAS: ABORT TASK drops an announced command (no SENSE IU, no data for it), QUERY TASK finds the others", async () => {
  const { host, ram } = await UasHost.open();
  await host.command(1, write10(0, 1));
  await host.command(2, write10(1, 1));
  assertEquals([(await host.status()).tag, (await host.status()).tag], [1, 2]); // WRITE READY
  const tmf = (tag: number, fn: number, taskTag: number, lun = 0) =>
    host.send(encodeTaskManagementIu({ tag, function: fn, taskTag, lun }));
  await tmf(100, TaskFunction.ABORT_TASK, 2);
  assertEquals(await host.status(), {
    type: "response",
    tag: 100,
    code: ResponseCode.TMF_COMPLETE,
  });
  await tmf(101, TaskFunction.QUERY_TASK, 1);
  assertEquals(await host.status(), {
    type: "response",
    tag: 101,
    code: ResponseCode.TMF_SUCCEEDED,
  });
  await tmf(102, TaskFunction.QUERY_TASK, 2);
  assertEquals(await host.status(), {
    type: "response",
    tag: 102,
    code: ResponseCode.TMF_COMPLETE,
  });
  await tmf(103, TaskFunction.CLEAR_ACA, 0);
  assertEquals(await host.status(), {
    type: "response",
    tag: 103,
    code: ResponseCode.TMF_NOT_SUPPORTED,
  });
  await tmf(104, TaskFunction.ABORT_TASK, 1, 3);
  assertEquals(await host.status(), {
    type: "response",
    tag: 104,
    code: ResponseCode.INCORRECT_LUN,
  });
  // Command 1 goes on; the aborted command 2 never gets the write pipe.
  await host.dataOut(pattern(BLOCK, 2));
  assertGood(await host.status(), 1);
  assertFalse(await settlesSoon(host.status()), "the aborted command was answered");
  assertEquals(ram[0]!.writes.map((w) => w.offset), [0]);
});

Deno.test("UAS: QUERY TASK answers TMF SUCCEEDED for a command held", async () => {
  const { host } = await UasHost.open();
  await host.command(1, read10(0, 1));
  assertEquals((await host.status()).type, "read_ready");
  await host.send(
    encodeTaskManagementIu({ tag: 9, function: TaskFunction.QUERY_TASK, taskTag: 1, lun: 0 }),
  );
  assertEquals(await host.status(), { type: "response", tag: 9, code: ResponseCode.TMF_SUCCEEDED });
});

Deno.test("UAS: LOGICAL UNIT RESET waits for a write under way, aborts every command, then a unit attention", async () => {
  const { host, ram } = await UasHost.open();
  const disk = ram[0]!;
  let releaseWrite!: () => void;
  const plainWrite = disk.write.bind(disk);
  disk.write = (offset, bytes) =>
    new Promise<void>((resolve) => releaseWrite = resolve).then(() => plainWrite(offset, bytes));
  await host.command(1, write10(8, 1));
  await host.command(2, read10(0, 1));
  assertEquals((await host.status()).type, "write_ready");
  assertEquals((await host.status()).type, "read_ready");
  const written = host.dataOut(pattern(BLOCK, 7));
  await host.send(
    encodeTaskManagementIu({
      tag: 50,
      function: TaskFunction.LOGICAL_UNIT_RESET,
      taskTag: 0,
      lun: 0,
    }),
  );
  const response = host.status();
  assertFalse(await settlesSoon(response), "the reset was answered before the write ended");
  releaseWrite();
  assertEquals((await written).status, "cancelled");
  assertEquals(await response, { type: "response", tag: 50, code: ResponseCode.TMF_COMPLETE });
  // The block was written whole, and nobody hears about commands 1 and 2 again.
  assertEquals(disk.bytes.slice(8 * BLOCK, 9 * BLOCK), pattern(BLOCK, 7));
  await host.command(3, TEST_UNIT_READY);
  assertSense(await host.status(), 3, SenseKey.UNIT_ATTENTION, 0x29, 0x03);
  await host.command(4, TEST_UNIT_READY);
  assertGood(await host.status(), 4);
});

Deno.test("UAS: a malformed IU is answered INVALID INFORMATION UNIT and the drive goes on", async () => {
  const { host } = await UasHost.open();
  const bad = [
    new Uint8Array([0x09, 0, 0, 5]), // an unknown IU type
    new Uint8Array([UasIu.COMMAND, 0, 0, 6, 0, 0]), // a COMMAND IU cut short
    encodeCommandIu({ tag: 7, lun: 0, cdb: TEST_UNIT_READY }).subarray(0, 31),
    new Uint8Array(0),
  ];
  for (const iu of bad) {
    assertEquals((await host.send(iu)).status, "ok");
    const r = await host.status();
    assertEquals([r.type, r.type === "response" && r.code], [
      "response",
      ResponseCode.INVALID_INFO_UNIT,
    ]);
  }
  // A COMMAND IU announcing additional CDB bytes it carries: a CDB this drive does not take.
  const long = new Uint8Array(36);
  long.set(encodeCommandIu({ tag: 8, lun: 0, cdb: TEST_UNIT_READY }));
  long[6] = 4;
  await host.send(long);
  assertSense(await host.status(), 8, SenseKey.ILLEGAL_REQUEST, 0x24);
  await host.command(9, TEST_UNIT_READY);
  assertGood(await host.status(), 9);
});

Deno.test("UAS: a LUN the drive lacks is LOGICAL UNIT NOT SUPPORTED; two LUNs are told apart", async () => {
  const { host, ram } = await UasHost.open([
    new MemoryBacking(16 * BLOCK, { fill: 0x11 }),
    new MemoryBacking(16 * BLOCK, { fill: 0x22 }),
  ]);
  await host.command(1, TEST_UNIT_READY, { lun: 2 });
  assertSense(await host.status(), 1, SenseKey.ILLEGAL_REQUEST, 0x25);
  await host.command(2, read10(0, 1), { lun: 1 });
  assertEquals((await host.status()).tag, 2);
  assertEquals((await host.dataIn(BLOCK)).data, ram[1]!.bytes.slice(0, BLOCK));
  assertGood(await host.status(), 2);
});

Deno.test(`UAS: more than ${MAX_TASKS} commands at once: the next is TASK SET FULL and is not held`, async () => {
  const { host } = await UasHost.open();
  for (let tag = 1; tag <= MAX_TASKS; tag++) await host.command(tag, read10(0, 1));
  await host.command(MAX_TASKS + 1, TEST_UNIT_READY);
  for (let tag = 1; tag <= MAX_TASKS; tag++) {
    const ready = await host.status();
    assertEquals([ready.type, ready.tag], ["read_ready", tag]);
  }
  assertEquals(await host.status(), {
    type: "sense",
    tag: MAX_TASKS + 1,
    status: SamStatus.TASK_SET_FULL,
    sense: new Uint8Array(0),
  });
});

Deno.test("UAS: SET_INTERFACE back to Bulk-Only drops the commands; a cancelled status read leaves nothing waiting", async () => {
  const { host } = await UasHost.open();
  const abort = new AbortController();
  const waiting = data(host.drive, E.UAS_STATUS & 0x0f, true, {
    length: 112,
    signal: abort.signal,
  });
  abort.abort();
  assertEquals((await waiting).status, "cancelled");
  await host.command(1, read10(0, 1));
  assertEquals((await host.setInterface(0)).status, "ok");
  assertFalse(host.drive.usingUas);
  const bot = new BotHost(host.drive);
  const r = await bot.command(TEST_UNIT_READY);
  assertEquals(r.csw.status, 0);
});

Deno.test("UAS: the end of a session waits for a write under way, then flushes", async () => {
  const { host, ram } = await UasHost.open();
  const disk = ram[0]!;
  let releaseWrite!: () => void;
  const plainWrite = disk.write.bind(disk);
  disk.write = (offset, bytes) =>
    new Promise<void>((resolve) => releaseWrite = resolve).then(() => plainWrite(offset, bytes));
  await host.command(1, write10(2, 1));
  await host.status();
  const written = host.dataOut(pattern(BLOCK, 6));
  const released = Promise.resolve(host.drive.released());
  assertFalse(await settlesSoon(released), "the session ended before the write did");
  releaseWrite();
  await released;
  await written;
  assertEquals(disk.bytes.slice(2 * BLOCK, 3 * BLOCK), pattern(BLOCK, 6));
  assertEquals(disk.syncs, 1);
});

Deno.test("UAS: the most commands in flight at once is counted until taken", () => {
  const transport = new UasTransport({
    lunCount: 1,
    command: () => ({
      direction: "in",
      length: 4,
      read: () => new Uint8Array(4),
      finish: () => "good",
    }),
    resetUnit: () => {},
  });
  const signal = new AbortController().signal;
  const send = (tag: number) =>
    transport.handleCommand({
      endpoint: 4,
      dirIn: false,
      type: "bulk",
      length: 32,
      data: encodeCommandIu({ tag, lun: 0, cdb: read10(0, 1) }),
      signal,
    } as UsbTransfer);
  for (let tag = 1; tag <= 5; tag++) send(tag);
  assertEquals(transport.tags, [1, 2, 3, 4, 5]);
  assertEquals(transport.takeMostInFlight(), 5);
  assertEquals(transport.takeMostInFlight(), 0);
  transport.reset();
  assertEquals(transport.tags, []);
  send(9);
  assertEquals(transport.takeMostInFlight(), 1);
});

Deno.test("UAS: READ data go out in a buffer the drive fills again only once it is released", async () => {
  const { host, ram } = await UasHost.open();
  ram[0]!.bytes.set(pattern(48 * BLOCK, 3), 0);
  const read = async (tag: number, lba: number) => {
    await host.command(tag, read10(lba, 16));
    assertEquals((await host.status()).type, "read_ready");
    const r = await host.dataIn(16 * BLOCK);
    assertGood(await host.status(), tag);
    assertEquals(r.data, ram[0]!.bytes.slice(lba * BLOCK, (lba + 16) * BLOCK));
    return r;
  };
  const first = await read(1, 0);
  assert(first.release !== undefined, "a medium read comes in a lent buffer");
  const second = await read(2, 16);
  assert(second.data!.buffer !== first.data!.buffer, "a buffer not released was filled again");
  first.release!();
  const third = await read(3, 32);
  assertEquals(third.data!.buffer, first.data!.buffer, "the released buffer was not reused");
  assertEquals(second.data, ram[0]!.bytes.slice(16 * BLOCK, 32 * BLOCK), "second read intact");
});
