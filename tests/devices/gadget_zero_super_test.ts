// Tests of Gadget Zero at SuperSpeed (issue 18) against what Linux's usbtest and the kernel's
// f_sourcesink/composite.c serve and expect: bcdUSB 3.0, a BOS, endpoint companions, ISO packets
// of maxpacket x (Mult+1) x (bMaxBurst+1) bytes (USB 3.2 §9.6.2, §9.6.7).
import { assert, assertEquals, assertThrows } from "@std/assert";
import {
  DescriptorType,
  GADGET_ZERO,
  GadgetZero,
  Request,
  RequestType,
  Speed,
  TransferType,
} from "../../mod.ts";
import { importInMemory } from "../../testing.ts";
import { control, data, getDescriptor, setConfiguration } from "./_transfers.ts";

/** What usbtest's pattern 1 holds at byte `i` of a packet of maxpacket 1024. */
const mod63 = (i: number) => (i % 1024) % 63;

/** SET_INTERFACE(`alt`) on interface 0, as usbtest's get_endpoints does for alt 1. */
function setInterface(gz: GadgetZero, alt: number) {
  return control(gz, {
    bmRequestType: RequestType.RECIPIENT_INTERFACE,
    bRequest: Request.SET_INTERFACE,
    wValue: alt,
    wIndex: 0,
    wLength: 0,
  });
}

/** A configuration descriptor's descriptors after the first, each as [type, bytes]. */
function descriptorsOf(config: Uint8Array): [number, Uint8Array][] {
  const out: [number, Uint8Array][] = [];
  for (let o = config[0]!; o < config.length; o += config[o]!) {
    out.push([config[o + 1]!, config.subarray(o, o + config[o]!)]);
  }
  return out;
}

const u16 = (b: Uint8Array, at: number) => b[at]! | (b[at + 1]! << 8);

/** An endpoint as [address, type, wMaxPacketSize, bInterval]. */
const endpoint = (d: Uint8Array) => ["ep", d[2], d[3]! & 3, u16(d, 4), d[6]];
/** A companion as [bMaxBurst, bmAttributes, wBytesPerInterval]. */
const companion = (d: Uint8Array) => ["companion", d[2], d[3], u16(d, 4)];

/** The configuration's descriptors in order, in the shapes above (interfaces by alt). */
function layout(config: Uint8Array): unknown[] {
  return descriptorsOf(config).map(([type, d]) =>
    type === DescriptorType.INTERFACE
      ? ["interface", d[3], d[4]]
      : type === DescriptorType.ENDPOINT
      ? endpoint(d)
      : type === DescriptorType.SS_ENDPOINT_COMPANION
      ? companion(d)
      : ["other", type]
  );
}

Deno.test("speed=super: bcdUSB 3.0, ep0 2^9 bytes, speed 5, and no qualifier or other-speed configuration", async () => {
  const gz = new GadgetZero({ speed: "super" });
  assertEquals(gz.speed, Speed.SUPER);
  const d = (await getDescriptor(gz, DescriptorType.DEVICE, 0, 18)).data!;
  assertEquals(d.length, 18);
  // bcdUSB, class, bMaxPacketSize0, VID, PID, bcdDevice, bNumConfigurations.
  assertEquals([u16(d, 2), d[4], d[7], u16(d, 8), u16(d, 10), u16(d, 12), d[17]], [
    0x0300,
    0xff,
    9,
    GADGET_ZERO.idVendor,
    GADGET_ZERO.idProduct,
    0x0601,
    2,
  ]);
  // A SuperSpeed device answers neither (composite.c: not at SuperSpeed).
  assertEquals((await getDescriptor(gz, DescriptorType.DEVICE_QUALIFIER, 0)).status, "stall");
  assertEquals(
    (await getDescriptor(gz, DescriptorType.OTHER_SPEED_CONFIGURATION, 0)).status,
    "stall",
  );
  // High and full speed keep bcdUSB 2.0 and have no BOS.
  const high = new GadgetZero();
  assertEquals((await getDescriptor(high, DescriptorType.BOS, 0)).status, "stall");
});

Deno.test("speed=super: the BOS holds a USB 2.0 Extension and a SuperSpeed capability, reserved bits zero", async () => {
  const gz = new GadgetZero({ speed: "super" });
  // usbtest's ch9_postconfig (test 9): the 5-byte header first, then wTotalLength bytes.
  const head = (await getDescriptor(gz, DescriptorType.BOS, 0, 5)).data!;
  assertEquals([...head], [5, DescriptorType.BOS, 22, 0, 2]);
  const bos = (await getDescriptor(gz, DescriptorType.BOS, 0, u16(head, 2))).data!;
  assertEquals([...bos], [
    // BOS: bLength, type, wTotalLength 22, bNumDeviceCaps 2 (USB 3.2 §9.6.2).
    ...[5, DescriptorType.BOS, 22, 0, 2],
    // USB 2.0 Extension (capability 0x02): bmAttributes LPM (bit 1) (USB 3.2 §9.6.2.1).
    ...[7, DescriptorType.DEVICE_CAPABILITY, 0x02, 0x02, 0, 0, 0],
    // SuperSpeed USB Device Capability (0x03): no LTM, wSpeedsSupported 0x000f,
    // bFunctionalitySupport 1, U1 exit 1 µs, U2 exit 500 µs (USB 3.2 §9.6.2.2).
    ...[10, DescriptorType.DEVICE_CAPABILITY, 0x03, 0, 0x0f, 0x00, 1, 0x01, 0xf4, 0x01],
  ]);
  // usbtest's is_good_ext and is_good_ss_cap, capability by capability.
  let seen = 0;
  for (let o = 5; o < bos.length; o += bos[o]!, seen++) {
    assertEquals(bos[o + 1], DescriptorType.DEVICE_CAPABILITY);
    if (bos[o + 2] === 0x02) {
      assertEquals(bos[o], 7);
      const attributes = new DataView(bos.buffer, bos.byteOffset + o + 3, 4).getUint32(0, true);
      assertEquals(attributes & ~0xfffe, 0, "USB 2.0 Extension: bits 0 and 16..31 reserved");
    } else {
      assertEquals([bos[o], bos[o + 2]], [10, 0x03]);
      assertEquals(bos[o + 3]! & ~0x02, 0, "SuperSpeed capability: bmAttributes bit 1 only");
      assertEquals(u16(bos, o + 4) & ~0x0f, 0, "wSpeedsSupported: bits 0..3 only");
    }
  }
  assertEquals(seen, bos[4]);
});

Deno.test("speed=super: every endpoint is followed by its companion, ISO ones with Mult and bytes per interval", async () => {
  const gz = new GadgetZero({ speed: "super", maxBurst: 3, isoMult: 2 });
  const sourceSink = (await getDescriptor(gz, DescriptorType.CONFIGURATION, 0)).data!;
  // 9 + (9 + 2 x (7 + 6)) + (9 + 4 x (7 + 6)).
  assertEquals([sourceSink[5], u16(sourceSink, 2), sourceSink.length], [3, 105, 105]);
  const bulk = [
    ["ep", 0x81, TransferType.BULK, 1024, 0],
    ["companion", 3, 0, 0],
    ["ep", 0x01, TransferType.BULK, 1024, 0],
    ["companion", 3, 0, 0],
  ];
  assertEquals(layout(sourceSink), [
    ["interface", 0, 2],
    ...bulk,
    ["interface", 1, 4],
    ...bulk,
    ["ep", 0x82, TransferType.ISOCHRONOUS, 1024, 4],
    // wBytesPerInterval = 1024 x (2 + 1) x (3 + 1).
    ["companion", 3, 2, 12288],
    ["ep", 0x02, TransferType.ISOCHRONOUS, 1024, 4],
    ["companion", 3, 2, 12288],
  ]);
  // Loopback, as f_loopback: 1024-byte bulk packets, companions with bMaxBurst 0.
  const loopback = (await getDescriptor(gz, DescriptorType.CONFIGURATION, 1)).data!;
  assertEquals([loopback[5], u16(loopback, 2)], [2, 44]);
  assertEquals(layout(loopback), [
    ["interface", 0, 2],
    ["ep", 0x81, TransferType.BULK, 1024, 0],
    ["companion", 0, 0, 0],
    ["ep", 0x01, TransferType.BULK, 1024, 0],
    ["companion", 0, 0, 0],
  ]);
  // SuperSpeed power counts in 8 mA units; the configuration bits stay as at high speed.
  assertEquals([sourceSink[7], sourceSink[8]], [0xc0, 1]);
});

Deno.test("speed=super defaults: bMaxBurst 0, Mult 0, ISO 1024 bytes per interval", async () => {
  const gz = new GadgetZero({ speed: "super" });
  const config = (await getDescriptor(gz, DescriptorType.CONFIGURATION, 0)).data!;
  const companions = layout(config).filter((d) => (d as unknown[])[0] === "companion");
  assertEquals(companions, [
    ...Array(4).fill(["companion", 0, 0, 0]),
    ["companion", 0, 0, 1024],
    ["companion", 0, 0, 1024],
  ]);
  // isoMaxPacket above 1024 is cut to 1024 at SuperSpeed, as f_sourcesink does.
  const big = new GadgetZero({ speed: "super", isoMaxPacket: 3072 });
  const iso = layout((await getDescriptor(big, DescriptorType.CONFIGURATION, 0)).data!)
    .filter((d) => (d as unknown[])[2] === TransferType.ISOCHRONOUS);
  assertEquals(iso, [
    ["ep", 0x82, TransferType.ISOCHRONOUS, 1024, 4],
    ["ep", 0x02, TransferType.ISOCHRONOUS, 1024, 4],
  ]);
});

Deno.test("speed=super through a USB/IP session: the import record says 5, GET_DESCRIPTOR, bulk and ISO work", async () => {
  const gz = new GadgetZero({ speed: "super", pattern: 1, maxBurst: 1, isoMult: 2 });
  const { channel, close } = await importInMemory(gz);
  try {
    assertEquals(channel.device.speed, Speed.SUPER);
    assertEquals(channel.device.speed, 5, "vhci's SuperSpeed hub takes speed 5");
    const d = await channel.control({
      bmRequestType: RequestType.DIR_IN,
      bRequest: Request.GET_DESCRIPTOR,
      wValue: DescriptorType.DEVICE << 8,
      wIndex: 0,
      wLength: 18,
    });
    assertEquals([d.status, d.actualLength, d.data[1], u16(d.data, 2), d.data[7]], [
      0,
      18,
      DescriptorType.DEVICE,
      0x0300,
      9,
    ]);
    const set = await channel.control({
      bmRequestType: RequestType.TYPE_STANDARD | RequestType.RECIPIENT_DEVICE,
      bRequest: Request.SET_CONFIGURATION,
      wValue: GADGET_ZERO.SOURCE_SINK_CONFIG,
      wIndex: 0,
      wLength: 0,
    });
    assertEquals(set.status, 0);
    const bulk = await channel.submit({ ep: 1, dirIn: true, length: 16 * 1024 }).done;
    assertEquals([bulk.status, bulk.actualLength], [0, 16 * 1024]);
    assert(bulk.data.every((b, i) => b === mod63(i)), "pattern 1 with maxpacket 1024");
    const out = await channel.submit({ ep: 1, dirIn: false, data: bulk.data }).done;
    assertEquals([out.status, out.actualLength], [0, 16 * 1024]);
    // ISO IN on alt 1: two service intervals of 1024 x 3 x 2 bytes each.
    const alt = await channel.control({
      bmRequestType: RequestType.RECIPIENT_INTERFACE,
      bRequest: Request.SET_INTERFACE,
      wValue: 1,
      wIndex: 0,
      wLength: 0,
    });
    assertEquals(alt.status, 0);
    const isoPackets = [{ offset: 0, length: 6144 }, { offset: 6144, length: 6144 }];
    const iso = await channel.submit({ ep: 2, dirIn: true, length: 12288, isoPackets }).done;
    assertEquals([iso.status, iso.actualLength, iso.errorCount], [0, 12288, 0]);
    assertEquals(iso.isoPackets.map((p) => [p.actualLength, p.status]), [[6144, 0], [6144, 0]]);
    assert(iso.data.subarray(6144).every((b, i) => b === mod63(i)), "each packet from 0");
  } finally {
    await close();
  }
});

Deno.test("speed=super bulk: 1024-byte multiples in pattern 1, and a bad OUT byte halts the sink", async () => {
  const gz = new GadgetZero({ speed: "super", pattern: 1, maxBurst: 15 });
  await setConfiguration(gz, GADGET_ZERO.SOURCE_SINK_CONFIG);
  for (const length of [1024, 3072, 16 * 1024, 64 * 1024]) {
    const r = await data(gz, 1, true, { length });
    assertEquals([r.status, r.data?.length], ["ok", length]);
    assert(r.data!.every((b, i) => b === mod63(i)), `IN ${length}`);
    assertEquals((await data(gz, 1, false, { data: r.data! })).status, "ok", `OUT ${length}`);
  }
  // usbtest's simple_fill_buf at high speed (maxpacket 512) is not this device's pattern.
  const high = new Uint8Array(2048).map((_, i) => (i % 512) % 63);
  assertEquals((await data(gz, 1, false, { data: high })).status, "stall");
  assertEquals(gz.isHalted(0x01), true);
  // Pattern 0 at SuperSpeed: zeros.
  const zeros = new GadgetZero({ speed: "super" });
  await setConfiguration(zeros, GADGET_ZERO.SOURCE_SINK_CONFIG);
  assert((await data(zeros, 1, true, { length: 4096 })).data!.every((b) => b === 0));
});

Deno.test("speed=super ISO: packets as usbtest sizes them, maxpacket x (Mult+1) x (bMaxBurst+1)", async () => {
  const gz = new GadgetZero({ speed: "super", pattern: 1, maxBurst: 1, isoMult: 2 });
  await setConfiguration(gz, GADGET_ZERO.SOURCE_SINK_CONFIG);
  assertEquals((await setInterface(gz, 1)).status, "ok");
  // usbtest's iso_alloc_urb: usb_endpoint_maxp() x USB_SS_MULT(bmAttributes) x (1 + bMaxBurst)
  // from the companion it reads from the configuration descriptor.
  const config = (await getDescriptor(gz, DescriptorType.CONFIGURATION, 0)).data!;
  const all = descriptorsOf(config);
  const isoIn = all.findIndex(([t, d]) => t === DescriptorType.ENDPOINT && d[2] === 0x82);
  const [, ep] = all[isoIn]!;
  const [compType, comp] = all[isoIn + 1]!;
  assertEquals(compType, DescriptorType.SS_ENDPOINT_COMPANION);
  const maxp = u16(ep, 4) * ((comp[3]! & 3) + 1) * (1 + comp[2]!);
  assertEquals(maxp, 6144);
  // usbtest's ISO tests with length 20000: four packets, the last one short.
  const bytes = 20000;
  const isoPackets = Array.from({ length: Math.ceil(bytes / maxp) }, (_, i) => ({
    offset: i * maxp,
    length: Math.min(maxp, bytes - i * maxp),
  }));
  assertEquals(isoPackets.map((p) => p.length), [6144, 6144, 6144, 1568]);
  const r = await data(gz, 2, true, { length: bytes, isoPackets });
  assertEquals(
    r.isoPackets,
    isoPackets.map((p) => ({ actualLength: p.length, status: "ok" as const })),
  );
  // Each packet of the source starts the pattern again.
  for (const p of isoPackets) {
    const packet = r.data!.subarray(p.offset, p.offset + p.length);
    assert(packet.every((b, i) => b === mod63(i)), `packet at ${p.offset}`);
  }
  const w = await data(gz, 2, false, { data: new Uint8Array(bytes), isoPackets });
  assertEquals(
    w.isoPackets,
    isoPackets.map((p) => ({ actualLength: p.length, status: "ok" as const })),
  );
  // More than one service interval's bytes: IN is cut to it, OUT overflows.
  const tooBig = [{ offset: 0, length: maxp + 1024 }];
  const cut = await data(gz, 2, true, { length: maxp + 1024, isoPackets: tooBig });
  assertEquals(cut.isoPackets, [{ actualLength: maxp, status: "ok" }]);
  const over = await data(gz, 2, false, { data: new Uint8Array(maxp + 1024), isoPackets: tooBig });
  assertEquals(over.isoPackets, [{ actualLength: maxp, status: "overflow" }]);
});

Deno.test("speed=super ISO with the defaults: 1024 bytes per interval, as at high speed", async () => {
  const gz = new GadgetZero({ speed: "super" });
  await setConfiguration(gz, GADGET_ZERO.SOURCE_SINK_CONFIG);
  await setInterface(gz, 1);
  const isoPackets = [0, 1, 2].map((i) => ({ offset: i * 1024, length: 1024 }));
  const r = await data(gz, 2, true, { length: 3072, isoPackets });
  assertEquals(r.isoPackets, isoPackets.map(() => ({ actualLength: 1024, status: "ok" as const })));
  const over = await data(gz, 2, false, {
    data: new Uint8Array(2048),
    isoPackets: [{ offset: 0, length: 2048 }],
  });
  assertEquals(over.isoPackets, [{ actualLength: 1024, status: "overflow" }]);
});

Deno.test("speed=super loopback: 1024-byte transfers come back in order", async () => {
  const gz = new GadgetZero({ speed: "super" });
  await setConfiguration(gz, GADGET_ZERO.LOOPBACK_CONFIG);
  const a = new Uint8Array(1024).map((_, i) => i & 0xff);
  const b = new Uint8Array(2048).fill(7);
  await data(gz, 1, false, { data: a });
  await data(gz, 1, false, { data: b });
  assertEquals((await data(gz, 1, true, { length: 1024 })).data, a);
  assertEquals((await data(gz, 1, true, { length: 4096 })).data, b);
});

Deno.test("the burst and Mult are checked: ranges, and SuperSpeed only", () => {
  const bad: [ConstructorParameters<typeof GadgetZero>[0], string][] = [
    [{ speed: "super", maxBurst: 16 }, "maxBurst 16: expected an integer 0..15"],
    [{ speed: "super", maxBurst: -1 }, "maxBurst -1"],
    [{ speed: "super", maxBurst: 1.5 }, "maxBurst 1.5"],
    [{ speed: "super", isoMult: 3 }, "isoMult 3: expected an integer 0..2"],
    [{ maxBurst: 1 }, 'maxBurst: it applies only at speed "super"'],
    [{ speed: "full", isoMult: 0 }, 'isoMult: it applies only at speed "super"'],
  ];
  for (const [options, message] of bad) {
    assertThrows(() => new GadgetZero(options), RangeError, message);
  }
  assertEquals(new GadgetZero({ speed: "super", maxBurst: 15, isoMult: 2 }).speed, Speed.SUPER);
});
