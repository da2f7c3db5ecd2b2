// Tests of Gadget Zero against what Linux's usbtest expects of f_sourcesink/f_loopback.
import { assert, assertEquals } from "@std/assert";
import { DescriptorType, GADGET_ZERO, GadgetZero } from "../../mod.ts";
import { control, data, getDescriptor, setConfiguration } from "./_transfers.ts";
import { countedAbort } from "../util/_listeners.ts";

Deno.test("Gadget Zero is 0525:a4a0, vendor class, bcdUSB 2.0, with configurations 3 then 2", async () => {
  const gz = new GadgetZero();
  const d = (await getDescriptor(gz, DescriptorType.DEVICE, 0, 18)).data!;
  assertEquals([d[2], d[3], d[4], d[8], d[9], d[10], d[11], d[17]], [
    0x00,
    0x02,
    0xff,
    0x25,
    0x05,
    0xa0,
    0xa4,
    2,
  ]);
  assertEquals((await getDescriptor(gz, DescriptorType.CONFIGURATION, 0)).data?.[5], 3);
  assertEquals((await getDescriptor(gz, DescriptorType.CONFIGURATION, 1)).data?.[5], 2);
  assertEquals(
    (await getDescriptor(gz, DescriptorType.DEVICE_QUALIFIER, 0)).data?.length,
    10,
    "a device qualifier for a high-speed device",
  );
  const other = (await getDescriptor(gz, DescriptorType.OTHER_SPEED_CONFIGURATION, 0)).data!;
  assertEquals(other[1], 7);
  // Full-speed bulk endpoints in the other-speed configuration: wMaxPacketSize 64.
  assertEquals(other[9 + 9 + 4], 64);
});

Deno.test("source/sink alt 1 adds isochronous IN and OUT of 1024 bytes, interval 4", async () => {
  const gz = new GadgetZero();
  const config = (await getDescriptor(gz, DescriptorType.CONFIGURATION, 0)).data!;
  const endpoints: number[][] = [];
  for (let o = 0; o < config.length; o += config[o]!) {
    if (config[o + 1] === 5) endpoints.push([...config.subarray(o + 2, o + 7)]);
  }
  assertEquals(endpoints, [
    [0x81, 2, 0x00, 0x02, 0],
    [0x01, 2, 0x00, 0x02, 0],
    [0x81, 2, 0x00, 0x02, 0],
    [0x01, 2, 0x00, 0x02, 0],
    [0x82, 1, 0x00, 0x04, 4],
    [0x02, 1, 0x00, 0x04, 4],
  ]);
});

Deno.test("pattern 1 sources (i % maxpacket) % 63 and sinks only matching data", async () => {
  const gz = new GadgetZero({ pattern: 1 });
  await setConfiguration(gz, GADGET_ZERO.SOURCE_SINK_CONFIG);
  const r = await data(gz, 1, true, { length: 1500 });
  assertEquals(r.data?.length, 1500);
  assert(r.data!.every((b, i) => b === (i % 512) % 63));
  const good = new Uint8Array(1024).map((_, i) => (i % 512) % 63);
  assertEquals((await data(gz, 1, false, { data: good })).status, "ok");
  good[700] = good[700]! ^ 1;
  assertEquals((await data(gz, 1, false, { data: good })).status, "stall");
  assertEquals(gz.isHalted(0x01), true, "a bad OUT byte halts the sink like f_sourcesink");
});

Deno.test("Gadget Zeros of both speeds and patterns share pattern buffers without mixing them", async () => {
  const high = new GadgetZero({ pattern: 1 });
  const full = new GadgetZero({ pattern: 1, speed: "full" });
  const zeros = new GadgetZero();
  for (const gz of [high, full, zeros]) await setConfiguration(gz, 3);
  let last: Uint8Array = new Uint8Array(0);
  // Interleaved, and growing past the first buffer of each kind.
  for (const length of [100, 5000, 20000]) {
    const h = (await data(high, 1, true, { length })).data!;
    const f = (await data(full, 1, true, { length })).data!;
    const z = (await data(zeros, 1, true, { length })).data!;
    assertEquals([h.length, f.length, z.length], [length, length, length]);
    assert(h.every((b, i) => b === (i % 512) % 63), "high speed: maxpacket 512");
    assert(f.every((b, i) => b === (i % 64) % 63), "full speed: maxpacket 64");
    assert(z.every((b) => b === 0), "pattern 0: zeros");
    // What a device sources, its sink takes.
    assertEquals((await data(high, 1, false, { data: h })).status, "ok");
    assertEquals((await data(full, 1, false, { data: f })).status, "ok");
    assertEquals((await data(zeros, 1, false, { data: z })).status, "ok");
    last = f;
  }
  assertEquals((await data(high, 1, false, { data: last })).status, "stall", "64 != 512");
});

Deno.test("pattern 0 sources zeros and sinks only zeros", async () => {
  const gz = new GadgetZero();
  await setConfiguration(gz, 3);
  assert((await data(gz, 1, true, { length: 4096 })).data!.every((b) => b === 0));
  assertEquals((await data(gz, 1, false, { data: new Uint8Array(100) })).status, "ok");
  assertEquals((await data(gz, 1, false, { data: new Uint8Array([0, 1]) })).status, "stall");
});

Deno.test("vendor requests 0x5b and 0x5c store and return the control buffer", async () => {
  const gz = new GadgetZero();
  const payload = new Uint8Array(300).map((_, i) => i * 7);
  const w = await control(gz, {
    bmRequestType: 0x40,
    bRequest: 0x5b,
    wValue: 0,
    wIndex: 0,
    wLength: 300,
  }, payload);
  assertEquals(w.status, "ok");
  const r = await control(gz, {
    bmRequestType: 0xc0,
    bRequest: 0x5c,
    wValue: 0,
    wIndex: 0,
    wLength: 300,
  });
  assertEquals(r.data, payload);
  const tooLong = await control(gz, {
    bmRequestType: 0xc0,
    bRequest: 0x5c,
    wValue: 0,
    wIndex: 0,
    wLength: 4097,
  });
  assertEquals(tooLong.status, "stall");
  const wrongType = await control(gz, {
    bmRequestType: 0x41,
    bRequest: 0x5b,
    wValue: 0,
    wIndex: 0,
    wLength: 1,
  }, new Uint8Array(1));
  assertEquals(wrongType.status, "stall");
  const withValue = await control(gz, {
    bmRequestType: 0xc0,
    bRequest: 0x5c,
    wValue: 1,
    wIndex: 0,
    wLength: 1,
  });
  assertEquals(withValue.status, "stall");
});

Deno.test("isochronous IN fills each packet and OUT accepts each packet", async () => {
  const gz = new GadgetZero({ pattern: 1 });
  await setConfiguration(gz, 3);
  await control(gz, { bmRequestType: 0x01, bRequest: 11, wValue: 1, wIndex: 0, wLength: 0 });
  const isoPackets = [0, 1, 2].map((i) => ({ offset: i * 1024, length: 1024 }));
  const r = await data(gz, 2, true, { length: 3072, isoPackets });
  assertEquals(r.isoPackets, isoPackets.map(() => ({ actualLength: 1024, status: "ok" as const })));
  assertEquals(r.data?.[1024 + 100], 100 % 63);
  const w = await data(gz, 2, false, { data: new Uint8Array(3072), isoPackets });
  assertEquals(w.isoPackets?.every((p) => p.status === "ok" && p.actualLength === 1024), true);
});

Deno.test("loopback returns what went OUT, and an IN with nothing to return waits", async () => {
  const gz = new GadgetZero();
  await setConfiguration(gz, GADGET_ZERO.LOOPBACK_CONFIG);
  const controller = new AbortController();
  const waiting = data(gz, 1, true, { length: 512, signal: controller.signal });
  const race = await Promise.race([
    waiting.then(() => "done"),
    new Promise((r) => setTimeout(() => r("pending"), 20)),
  ]);
  assertEquals(race, "pending");
  controller.abort();
  assertEquals((await waiting).status, "cancelled");
  await data(gz, 1, false, { data: new Uint8Array([1, 2, 3]) });
  await data(gz, 1, false, { data: new Uint8Array([4]) });
  assertEquals([...(await data(gz, 1, true, { length: 512 })).data!], [1, 2, 3]);
  assertEquals([...(await data(gz, 1, true, { length: 512 })).data!], [4]);
});

Deno.test("a full loopback queue holds OUT transfers until IN drains it", async () => {
  const gz = new GadgetZero({ loopbackQueueLength: 1 });
  await setConfiguration(gz, 2);
  await data(gz, 1, false, { data: new Uint8Array([1]) });
  const blocked = data(gz, 1, false, { data: new Uint8Array([2]) });
  const race = await Promise.race([
    blocked.then(() => "done"),
    new Promise((r) => setTimeout(() => r("pending"), 20)),
  ]);
  assertEquals(race, "pending");
  assertEquals([...(await data(gz, 1, true, { length: 8 })).data!], [1]);
  assertEquals((await blocked).status, "ok");
  assertEquals([...(await data(gz, 1, true, { length: 8 })).data!], [2]);
});

Deno.test("10,000 loopback INs that wait on one signal leave no abort listener behind", async () => {
  const gz = new GadgetZero();
  await setConfiguration(gz, GADGET_ZERO.LOOPBACK_CONFIG);
  const a = countedAbort();
  for (let i = 0; i < 10_000; i++) {
    const read = data(gz, 1, true, { length: 8, signal: a.signal }); // nothing queued: it waits
    await data(gz, 1, false, { data: new Uint8Array([i & 0xff]) });
    assertEquals((await read).data?.[0], i & 0xff);
  }
  assertEquals({ added: a.added, live: a.live, peak: a.peak }, {
    added: 10_000,
    live: 0,
    peak: 1,
  });
});

Deno.test("iso: false leaves source/sink alternate setting 1 out, as f_sourcesink on dummy_hcd", async () => {
  for (const speed of ["high", "full", "super"] as const) {
    const gz = new GadgetZero({ speed, iso: false });
    const config = (await getDescriptor(gz, DescriptorType.CONFIGURATION, 0)).data!;
    const alternates: number[] = [];
    let endpoints = 0;
    for (let o = 0; o < config.length; o += config[o]!) {
      if (config[o + 1] === DescriptorType.INTERFACE) alternates.push(config[o + 3]!);
      if (config[o + 1] === DescriptorType.ENDPOINT) endpoints++;
    }
    assertEquals([alternates, endpoints], [[0], 2], speed);
    assertEquals((await setConfiguration(gz, GADGET_ZERO.SOURCE_SINK_CONFIG)).status, "ok");
    const setAlt1 = { bmRequestType: 0x01, bRequest: 11, wValue: 1, wIndex: 0, wLength: 0 };
    assertEquals((await control(gz, setAlt1)).status, "stall", speed);
  }
});
