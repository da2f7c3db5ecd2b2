// Tests of FrameReader: whole frames from any chunking, clean and unclean ends, and limits.
import { assertEquals, assertRejects, assertStrictEquals } from "@std/assert";
import {
  DEFAULT_LIMITS,
  encodeCmdSubmit,
  encodeCmdUnlink,
  encodeOpRepAttach,
  encodeOpRepBind,
  encodeOpRepDetach,
  encodeOpRepDevlist,
  encodeOpRepImport,
  encodeOpRepStatus,
  encodeOpRepUnbind,
  encodeOpReqAttach,
  encodeOpReqBind,
  encodeOpReqDetach,
  encodeOpReqDevlist,
  encodeOpReqImport,
  encodeOpReqStatus,
  encodeOpReqUnbind,
  encodeRetSubmit,
  encodeRetUnlink,
  FrameReader,
  UsbipProtocolError,
} from "../../protocol.ts";
import { BufferPool } from "../../lib/protocol/buffer_pool.ts";
import { golden } from "../testdata/golden.ts";

/** A stream delivering `bytes` in chunks of `size` bytes. */
function chunked(bytes: Uint8Array, size: number): ReadableStream<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.slice(i, i + size));
  return ReadableStream.from(chunks);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const isoEp2 = (ep: number) => ep === 2;

/** `frame` with the big-endian u32 at `offset` (the length of what follows) set to `length`. */
function withLength(frame: Uint8Array, offset: number, length: number): Uint8Array {
  new DataView(frame.buffer, frame.byteOffset).setUint32(offset, length);
  return frame;
}

/** Asserts that `read` refuses `bytes`, come in one chunk, as a protocol error naming `detail`. */
async function assertRefused(
  bytes: Uint8Array,
  read: (reader: FrameReader) => Promise<unknown>,
  detail: string,
): Promise<void> {
  await assertRejects(
    () => read(new FrameReader(ReadableStream.from([bytes]))),
    UsbipProtocolError,
    detail,
  );
}

Deno.test("FrameReader reads the same URB commands whatever the chunk size", async () => {
  const stream = concat(
    golden("cmd_submit_bulk_out.hex"),
    golden("cmd_submit_iso_out.hex"),
    golden("cmd_unlink.hex"),
    golden("cmd_submit_control_in.hex"),
  );
  for (const size of [1, 3, 47, 48, 49, 64, 1000]) {
    const reader = new FrameReader(chunked(stream, size));
    const kinds: string[] = [];
    const seqnums: number[] = [];
    while (true) {
      const cmd = await reader.readUrbCommand(isoEp2);
      if (cmd === null) break;
      kinds.push(cmd.kind);
      seqnums.push(cmd.seqnum);
      if (cmd.kind === "cmd_submit" && cmd.ep === 2) assertEquals(cmd.isoPackets.length, 2);
      if (cmd.kind === "cmd_submit" && cmd.ep === 1) {
        assertEquals([...cmd.data], [0xde, 0xad, 0xbe, 0xef]);
      }
    }
    assertEquals(
      kinds,
      ["cmd_submit", "cmd_submit", "cmd_unlink", "cmd_submit"],
      `chunk size ${size}`,
    );
    assertEquals(seqnums, [42, 9, 43, 7]);
  }
});

Deno.test("FrameReader reads op requests back to back", async () => {
  const reader = new FrameReader(
    chunked(concat(encodeOpReqDevlist(), encodeOpReqImport("3-1.2")), 5),
  );
  assertEquals(await reader.readOpRequest(), { kind: "op_req_devlist" });
  assertEquals(await reader.readOpRequest(), { kind: "op_req_import", busid: "3-1.2" });
  assertEquals(await reader.readOpRequest(), null);
});

Deno.test("FrameReader returns null at a clean end and throws at an end inside a frame", async () => {
  assertEquals(await new FrameReader(ReadableStream.from([])).readUrbCommand(isoEp2), null);
  const cut = golden("cmd_submit_bulk_out.hex").subarray(0, 50);
  const e = await assertRejects(
    () => new FrameReader(chunked(cut, 7)).readUrbCommand(isoEp2),
    UsbipProtocolError,
    "ends after 2 of 4 bytes",
  );
  assertEquals(e.field, "length");
  const header = golden("cmd_unlink.hex").subarray(0, 20);
  await assertRejects(
    () => new FrameReader(chunked(header, 7)).readUrbCommand(isoEp2),
    UsbipProtocolError,
    "ends after 20 of 48",
  );
});

Deno.test("FrameReader rejects a huge transfer_buffer_length without waiting for its data", async () => {
  const bytes = golden("cmd_submit_bulk_out.hex").slice(0, 48);
  new DataView(bytes.buffer).setUint32(0x18, 0x7fffffff);
  // The stream never ends: the reader must fail on the header alone.
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(bytes);
    },
  });
  const e = await assertRejects(
    () => new FrameReader(stream).readUrbCommand(isoEp2),
    UsbipProtocolError,
  );
  assertEquals(e.field, "transfer_buffer_length");
});

Deno.test("FrameReader rejects a RET_SUBMIT on a server and an unknown command", async () => {
  const ret = encodeRetUnlink({
    kind: "ret_unlink",
    seqnum: 1,
    devid: 0,
    direction: 0,
    ep: 0,
    status: 0,
  });
  const e = await assertRejects(
    () => new FrameReader(ReadableStream.from([ret])).readUrbCommand(isoEp2),
    UsbipProtocolError,
  );
  assertEquals(e.field, "command");
});

Deno.test("FrameReader reads replies on the client side and sizes them from what was submitted", async () => {
  const submit = encodeRetSubmit({
    kind: "ret_submit",
    seqnum: 3,
    devid: 0,
    direction: 0,
    ep: 0,
    status: 0,
    actualLength: 2,
    startFrame: 0,
    numberOfPackets: 0,
    errorCount: 0,
    data: new Uint8Array([7, 8]),
    isoPackets: [],
  });
  const unlink = encodeRetUnlink({
    kind: "ret_unlink",
    seqnum: 4,
    devid: 0,
    direction: 0,
    ep: 0,
    status: -104,
  });
  const reader = new FrameReader(chunked(concat(submit, unlink), 9));
  const lookup = (seqnum: number) =>
    seqnum === 3 ? { dirIn: true, isochronous: false, transferBufferLength: 64 } : undefined;
  const first = await reader.readUrbReturn(lookup);
  assertEquals(first?.kind === "ret_submit" ? [...first.data] : [], [7, 8]);
  const second = await reader.readUrbReturn(lookup);
  assertEquals(second?.kind === "ret_unlink" ? second.status : 0, -104);
  const stray = new FrameReader(ReadableStream.from([submit]));
  const e = await assertRejects(
    () => stray.readUrbReturn(() => undefined),
    UsbipProtocolError,
    "not pending",
  );
  assertEquals(e.field, "seqnum");
});

Deno.test("FrameReader reads OP_REP_DEVLIST and OP_REP_IMPORT in pieces", async () => {
  const devlist = golden("op_rep_devlist_gadget_zero.hex");
  const devices = await new FrameReader(chunked(devlist, 13)).readOpRepDevlist();
  assertEquals(devices.devices.map((d) => d.busid), ["1-1"]);
  const refused = encodeOpRepImport({ kind: "op_rep_import", status: 4 });
  assertEquals(await new FrameReader(ReadableStream.from([refused])).readOpRepImport(), {
    kind: "op_rep_import",
    status: 4,
  });
  const empty = encodeOpRepDevlist({ kind: "op_rep_devlist", status: 0, devices: [] });
  assertEquals(
    (await new FrameReader(ReadableStream.from([empty])).readOpRepDevlist()).devices,
    [],
  );
  const notDevlist = encodeCmdUnlink({
    kind: "cmd_unlink",
    seqnum: 1,
    devid: 0,
    direction: 0,
    ep: 0,
    unlinkSeqnum: 0,
  });
  await assertRejects(
    () => new FrameReader(ReadableStream.from([notDevlist])).readOpRepDevlist(),
    UsbipProtocolError,
  );
});

Deno.test("FrameReader hands out a large frame split over many chunks intact", async () => {
  const data = new Uint8Array(65536).map((_, i) => i & 0xff);
  const bytes = encodeCmdSubmit({
    kind: "cmd_submit",
    seqnum: 1,
    devid: 0,
    direction: 0,
    ep: 1,
    transferFlags: 0,
    transferBufferLength: data.length,
    startFrame: 0,
    numberOfPackets: 0,
    interval: 0,
    setup: new Uint8Array(8),
    data,
    isoPackets: [],
  });
  const cmd = await new FrameReader(chunked(bytes, 1000)).readUrbCommand(isoEp2);
  assertEquals(cmd?.kind === "cmd_submit" ? cmd.data : undefined, data);
});

Deno.test("OP_REQ_STATUS and OP_REP_STATUS: round trip, refusal, and a body over the limit", async () => {
  assertEquals(await new FrameReader(chunked(encodeOpReqStatus(), 3)).readOpRequest(), {
    kind: "op_req_status",
  });
  const json = JSON.stringify({ devices: ["1-1"], note: "é" });
  const rep = encodeOpRepStatus(0, json);
  assertEquals(rep.length, 12 + new TextEncoder().encode(json).length);
  assertEquals(await new FrameReader(chunked(rep, 5)).readOpRepStatus(), { status: 0, json });
  const refused = encodeOpRepStatus(1, json);
  assertEquals(refused.length, 12, "a refusal carries no body");
  assertEquals(await new FrameReader(ReadableStream.from([refused])).readOpRepStatus(), {
    status: 1,
    json: "",
  });
  const big = encodeOpRepStatus(0, "x".repeat(100));
  const e = await assertRejects(
    () => new FrameReader(ReadableStream.from([big])).readOpRepStatus(99),
    UsbipProtocolError,
  );
  assertEquals(e.message.includes("is 100 bytes, limit is 99"), true, e.message);
  await assertRejects(
    () =>
      new FrameReader(ReadableStream.from([
        encodeOpRepDevlist({ kind: "op_rep_devlist", status: 0, devices: [] }),
      ])).readOpRepStatus(),
    UsbipProtocolError,
    "expected 0x00f0",
  );
});

/** A ByteSource (direct reads, as Deno sockets give) over `bytes`, at most `chunk` per read. */
function byteSource(bytes: Uint8Array, chunk = 1 << 20) {
  let off = 0;
  return {
    read(buffer: Uint8Array): Promise<number | null> {
      if (off >= bytes.length) return Promise.resolve(null);
      const n = Math.min(buffer.length, chunk, bytes.length - off);
      buffer.set(bytes.subarray(off, off + n));
      off += n;
      return Promise.resolve(n);
    },
  };
}

Deno.test("FrameReader.recycle: a payload buffer handed back takes the next payload of its size", async () => {
  const out = (seqnum: number, fill: number, length = 64 * 1024) =>
    encodeCmdSubmit({
      kind: "cmd_submit",
      seqnum,
      devid: 0x10002,
      direction: 0,
      ep: 1,
      transferFlags: 0,
      transferBufferLength: length,
      startFrame: 0,
      numberOfPackets: 0,
      interval: 0,
      setup: new Uint8Array(8),
      data: new Uint8Array(length).fill(fill),
      isoPackets: [],
    });
  const reader = new FrameReader(
    byteSource(concat(out(1, 1), out(2, 2), out(3, 3), out(4, 4), out(5, 5, 8192)), 5000),
  );
  const read = async () => {
    const cmd = await reader.readUrbCommand(() => false);
    if (cmd?.kind !== "cmd_submit") throw new Error("expected a CMD_SUBMIT");
    return cmd.data;
  };
  const first = await read();
  assertEquals([first.length, first[0], first[65535]], [65536, 1, 1]);
  reader.recycle(first);
  const second = await read();
  assertEquals(second.buffer, first.buffer, "the recycled buffer was reused");
  assertEquals([second[0], second[65535]], [2, 2], "and holds the new payload whole");
  // Not recycled: a fresh buffer, so the second payload stays intact.
  const third = await read();
  assertEquals(third.buffer === second.buffer, false);
  assertEquals([second[0], third[0]], [2, 3]);
  // A view into a larger buffer is never pooled.
  reader.recycle(third.subarray(0, 8192));
  const fourth = await read();
  assertEquals(fourth[0], 4);
  const fifth = await read();
  assertEquals(fifth.buffer === third.buffer, false, "a view was not taken for a smaller size");
  assertEquals([fifth.length, fifth[8191]], [8192, 5]);
});

Deno.test("FrameReader: readers sharing a BufferPool reuse each other's payload buffers", async () => {
  const out = (fill: number) =>
    encodeCmdSubmit({
      kind: "cmd_submit",
      seqnum: fill,
      devid: 0x10002,
      direction: 0,
      ep: 1,
      transferFlags: 0,
      transferBufferLength: 16384,
      startFrame: 0,
      numberOfPackets: 0,
      interval: 0,
      setup: new Uint8Array(8),
      data: new Uint8Array(16384).fill(fill),
      isoPackets: [],
    });
  const pool = new BufferPool(1 << 20);
  const a = new FrameReader(byteSource(out(1), 3000), DEFAULT_LIMITS, pool);
  const b = new FrameReader(byteSource(out(2), 3000), DEFAULT_LIMITS, pool);
  const first = await a.readUrbCommand(() => false);
  if (first?.kind !== "cmd_submit") throw new Error("expected a CMD_SUBMIT");
  a.recycle(first.data);
  assertEquals(pool.bytes, 16384);
  const second = await b.readUrbCommand(() => false);
  if (second?.kind !== "cmd_submit") throw new Error("expected a CMD_SUBMIT");
  assertStrictEquals(
    second.data.buffer,
    first.data.buffer,
    "reader b read into the buffer reader a gave back",
  );
  assertEquals([second.data[0], second.data[16383], pool.bytes], [2, 2, 0]);
});

Deno.test("OP_REQ_BIND, OP_REP_BIND and OP_REP_UNBIND from any chunking; a long message is refused unread", async () => {
  const requests = concat(encodeOpReqBind("3-1.2"), encodeOpReqUnbind("3-1.2"));
  const reqReader = new FrameReader(chunked(requests, 7));
  assertEquals(await reqReader.readOpRequest(), { kind: "op_req_bind", busid: "3-1.2" });
  assertEquals(await reqReader.readOpRequest(), { kind: "op_req_unbind", busid: "3-1.2" });
  assertEquals(await reqReader.readOpRequest(), null);
  const bind = { kind: "op_rep_bind" as const, status: 0, message: "Exported 3-1.2 (hôte)" };
  const unbind = { kind: "op_rep_unbind" as const, status: 5, message: "3-1.2 is not bound" };
  for (const size of [1, 5, 13, 1000]) {
    const reader = new FrameReader(
      chunked(concat(encodeOpRepBind(bind), encodeOpRepUnbind(unbind)), size),
    );
    assertEquals(await reader.readOpRepBind(), bind);
    assertEquals(await reader.readOpRepUnbind(), unbind);
  }
  // The head alone, announcing 4 GiB: refused on the length, before any of it is read.
  const head = withLength(encodeOpRepBind({ ...bind, message: "" }), 8, 0xffffffff);
  await assertRefused(head, (r) => r.readOpRepBind(), "is 4294967295 bytes, limit is 1024");
  await assertRefused(encodeOpRepBind(bind), (r) => r.readOpRepUnbind(), "expected 0x00f2");
  await assertRefused(
    encodeOpRepBind(bind).subarray(0, 15),
    (r) => r.readOpRepBind(),
    "ends after",
  );
});

Deno.test("OP_REQ_ATTACH, OP_REQ_DETACH and their answers from any chunking; a long message is refused unread", async () => {
  const remote = { kind: "remote" as const, host: "192.0.2.9", port: 3240, busid: "1-2" };
  const requests = concat(
    encodeOpReqAttach(remote),
    encodeOpReqDetach(4),
    encodeOpReqAttach({ kind: "stream", busid: "1-1" }),
  );
  for (const size of [1, 7, 299, 1000]) {
    const reader = new FrameReader(chunked(requests, size));
    assertEquals(await reader.readOpRequest(), { kind: "op_req_attach", request: remote });
    assertEquals(await reader.readOpRequest(), { kind: "op_req_detach", vhciPort: 4 });
    assertEquals(await reader.readOpRequest(), {
      kind: "op_req_attach",
      request: { kind: "stream", busid: "1-1" },
    });
    assertEquals(await reader.readOpRequest(), null);
  }
  const sendSocket = {
    kind: "op_rep_attach" as const,
    status: 0,
    vhciPort: 0xfffffffe,
    message: "",
  };
  const attached = {
    kind: "op_rep_attach" as const,
    status: 0,
    vhciPort: 2,
    message: "Attached ✓",
  };
  const detached = { kind: "op_rep_detach" as const, status: 1, message: "Not yours" };
  const replies = concat(
    encodeOpRepAttach(sendSocket),
    encodeOpRepAttach(attached),
    encodeOpRepDetach(detached),
  );
  for (const size of [1, 5, 17, 1000]) {
    const reader = new FrameReader(chunked(replies, size));
    assertEquals(await reader.readOpRepAttach(), sendSocket);
    assertEquals(await reader.readOpRepAttach(), attached);
    assertEquals(await reader.readOpRepDetach(), detached);
  }
  // The heads alone, announcing 4 GiB: refused on the length, before any of it is read.
  const head = withLength(encodeOpRepAttach({ ...attached, message: "" }), 12, 0xffffffff);
  await assertRefused(head, (r) => r.readOpRepAttach(), "is 4294967295 bytes, limit is 1024");
  const detachHead = withLength(encodeOpRepDetach({ ...detached, message: "" }), 8, 1025);
  await assertRefused(detachHead, (r) => r.readOpRepDetach(), "is 1025 bytes, limit is 1024");
  await assertRefused(encodeOpRepAttach(attached), (r) => r.readOpRepDetach(), "expected 0x00f4");
  await assertRefused(
    encodeOpRepAttach(attached).subarray(0, 20),
    (r) => r.readOpRepAttach(),
    "ends after",
  );
});
