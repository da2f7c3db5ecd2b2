/** Tests of the emulated FTDI FT232R, driven through submit() (ftdi_sio.c, ftdi_sio.h). */

import { assert, assertEquals } from "@std/assert";
import { DescriptorType } from "../../mod.ts";
import { openCharBackend } from "../../lib/backends/char/mod.ts";
import {
  decodeFtdiBaudRate,
  FTDI_TERMIOS_RATES,
  type FtdiDataCharacteristics,
  type FtdiFlowControl,
  type FtdiModemControl,
  FtdiSerial,
  requestedFtdiBaudRate,
} from "../../lib/devices/ftdi.ts";
import { Speed } from "../../lib/protocol/constants.ts";
import { control, data, getDescriptor, setConfiguration } from "./_transfers.ts";

const VENDOR_OUT = 0x40;
const VENDOR_IN = 0xc0;

/** ftdi_sio's ftdi_232bm_baud_base_to_divisor() with base 48 MHz, written out for the test. */
function ftdiSioDivisor(baud: number): number {
  const divfrac = [0, 3, 2, 4, 1, 5, 6, 7];
  const base = 48_000_000;
  const divisor3 = Math.floor((base + baud) / (2 * baud)); // DIV_ROUND_CLOSEST(base, 2 * baud)
  let divisor = (divisor3 >> 3) | (divfrac[divisor3 & 7]! << 14);
  if (divisor === 1) divisor = 0;
  else if (divisor === 0x4001) divisor = 1;
  return divisor;
}

async function configured(options: Partial<ConstructorParameters<typeof FtdiSerial>[0]> = {}) {
  const backend = options.backend ?? await openCharBackend("loopback");
  const dev = new FtdiSerial({ ...options, backend });
  dev.imported();
  assertEquals((await setConfiguration(dev, 1)).status, "ok");
  return { dev, backend };
}

function vendorOut(dev: FtdiSerial, bRequest: number, wValue: number, wIndex = 0) {
  return control(dev, { bmRequestType: VENDOR_OUT, bRequest, wValue, wIndex, wLength: 0 });
}

function vendorIn(dev: FtdiSerial, bRequest: number, wLength: number, wIndex = 0) {
  return control(dev, { bmRequestType: VENDOR_IN, bRequest, wValue: 0, wIndex, wLength });
}

/** Strips the status bytes from each 64-byte packet of an IN transfer. */
function payload(bytes: Uint8Array): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i += 64) out.push(...bytes.subarray(i + 2, i + 64));
  return new Uint8Array(out);
}

Deno.test("FtdiSerial describes an FT232R that ftdi_sio recognises", async () => {
  const backend = await openCharBackend("loopback");
  const dev = new FtdiSerial({ backend, serial: "A50285BI" });
  assertEquals(dev.speed, Speed.FULL);
  const d = (await getDescriptor(dev, DescriptorType.DEVICE, 0)).data!;
  assertEquals([...d.subarray(8, 14)], [0x03, 0x04, 0x01, 0x60, 0x00, 0x06]);
  assertEquals(d[7], 8);
  const c = (await getDescriptor(dev, DescriptorType.CONFIGURATION, 0)).data!;
  assertEquals([...c.subarray(9, 18)].slice(0, 8), [9, 4, 0, 0, 2, 0xff, 0xff, 0xff]);
  assertEquals([...c.subarray(18, 25)], [7, 5, 0x81, 2, 64, 0, 0]);
  assertEquals([...c.subarray(25, 32)], [7, 5, 0x02, 2, 64, 0, 0]);
  const serialIndex = d[16]!;
  const s = (await getDescriptor(dev, DescriptorType.STRING, serialIndex)).data!;
  assertEquals(
    String.fromCharCode(...new Uint16Array(s.slice(2).buffer)),
    "A50285BI",
  );
  await backend.close();
});

Deno.test("decodeFtdiBaudRate() inverts ftdi_sio's divisor for common rates", () => {
  const rates = [300, 1200, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, 1_000_000];
  for (const baud of [...rates, 1_500_000, 2_000_000, 3_000_000]) {
    const divisor = ftdiSioDivisor(baud);
    const decoded = decodeFtdiBaudRate(divisor & 0xffff, divisor >>> 16);
    assert(Math.abs(decoded - baud) <= baud * 0.03, `baud ${baud}: decoded ${decoded}`);
  }
  assertEquals(decodeFtdiBaudRate(ftdiSioDivisor(9600), 0), 9600);
  assertEquals(ftdiSioDivisor(115200), 0x001a);
  assertEquals(decodeFtdiBaudRate(0x001a, 0), 115385);
  assertEquals(ftdiSioDivisor(230400), 0x000d);
  assertEquals(decodeFtdiBaudRate(0x000d, 0), 230769);
  assertEquals(ftdiSioDivisor(921600), 0x8003);
  assertEquals(decodeFtdiBaudRate(0x8003, 0), 923077);
  assertEquals(ftdiSioDivisor(3_000_000), 0);
  assertEquals(decodeFtdiBaudRate(0, 0), 3_000_000);
  assertEquals(ftdiSioDivisor(2_000_000), 1);
  assertEquals(decodeFtdiBaudRate(1, 0), 2_000_000);
  // A code with bit 2 in wIndex: 0.625 (code 5) -> 24e6 / (10 * 8 + 5).
  assertEquals(decodeFtdiBaudRate(0x400a, 1), Math.round(24_000_000 / 85));
});

Deno.test("requestedFtdiBaudRate() gives back every termios rate ftdi_sio encodes", () => {
  for (const baud of FTDI_TERMIOS_RATES) {
    const divisor = ftdiSioDivisor(baud);
    assertEquals(requestedFtdiBaudRate(divisor & 0xffff, divisor >>> 16), baud, `baud ${baud}`);
  }
  // Rates no termios name maps to are the chip's: divisor 25 and 10.625.
  assertEquals(requestedFtdiBaudRate(25, 0), 120000);
  assertEquals(requestedFtdiBaudRate(0x400a, 1), Math.round(24_000_000 / 85));
  // A divisor near a termios rate but not its own is not taken for it (115200 is 26).
  assertEquals(requestedFtdiBaudRate(0xc019, 1), Math.round(24_000_000 / 207));
});

Deno.test("FtdiSerial answers the vendor requests ftdi_sio sends", async () => {
  const bauds: number[] = [];
  const chars: FtdiDataCharacteristics[] = [];
  const modem: FtdiModemControl[] = [];
  const flows: FtdiFlowControl[] = [];
  const { dev, backend } = await configured({
    onBaudRate: (b) => bauds.push(b),
    onDataCharacteristics: (c) => chars.push(c),
    onModemControl: (m) => modem.push(m),
    onFlowControl: (f) => flows.push(f),
  });
  assertEquals((await vendorOut(dev, 0, 0)).status, "ok"); // reset SIO
  assertEquals((await vendorOut(dev, 0, 1)).status, "ok"); // purge RX
  assertEquals((await vendorOut(dev, 0, 2)).status, "ok"); // purge TX
  assertEquals((await vendorOut(dev, 0, 3)).status, "stall");

  assertEquals((await vendorOut(dev, 3, ftdiSioDivisor(115200))).status, "ok");
  assertEquals(bauds, [115385]);
  assertEquals(dev.baudRate, 115385);
  assertEquals(dev.requestedBaudRate, 115200);

  // 7 data bits, even parity, 2 stop bits, then break on.
  assertEquals((await vendorOut(dev, 4, 7 | (2 << 8) | (2 << 11))).status, "ok");
  assertEquals((await vendorOut(dev, 4, 7 | (2 << 8) | (2 << 11) | (1 << 14))).status, "ok");
  // The back-end is told the rate the host asked for (stty 115200), not the chip's.
  assertEquals(backend.lineSettings, {
    baudRate: 115200,
    dataBits: 7,
    parity: "even",
    stopBits: 2,
  });
  assertEquals(chars, [
    { dataBits: 7, parity: 2, stopBits: 2, break: false },
    { dataBits: 7, parity: 2, stopBits: 2, break: true },
  ]);

  // DTR and RTS on (masks set), then RTS off with only its mask; no mask changes nothing.
  assertEquals((await vendorOut(dev, 1, 0x0303)).status, "ok");
  assertEquals((await vendorOut(dev, 1, 0x0200)).status, "ok");
  assertEquals((await vendorOut(dev, 1, 0x0000)).status, "ok");
  assertEquals(modem, [{ dtr: true, rts: true }, { dtr: true, rts: false }]);

  assertEquals((await vendorOut(dev, 2, 0x1311, 0x0100)).status, "ok");
  assertEquals((await vendorOut(dev, 2, 0x1311, 0x0400)).status, "ok");
  assertEquals((await vendorOut(dev, 2, 0, 0x0300)).status, "stall");
  assertEquals(flows.map((f) => f.mode), ["rts-cts", "xon-xoff"]);
  assertEquals(dev.flowControl, { mode: "xon-xoff", xon: 0x11, xoff: 0x13 });

  assertEquals([...(await vendorIn(dev, 5, 2)).data!], [0xb1, 0x60]);

  assertEquals((await vendorOut(dev, 6, 0x017e)).status, "ok");
  assertEquals(dev.eventChar, { char: 0x7e, enabled: true });
  assertEquals((await vendorOut(dev, 7, 0x0000)).status, "ok");
  assertEquals(dev.errorChar, { char: 0, enabled: false });

  assertEquals([...(await vendorIn(dev, 10, 1)).data!], [16]);
  assertEquals((await vendorOut(dev, 9, 1)).status, "ok");
  assertEquals([...(await vendorIn(dev, 10, 1)).data!], [1]);
  assertEquals(dev.latencyTimer, 1);
  assertEquals((await vendorOut(dev, 0, 0)).status, "ok");
  assertEquals(dev.latencyTimer, 16, "reset restores the latency timer");

  assertEquals([...(await vendorIn(dev, 0x90, 2, 0x0a)).data!], [0, 0]);
  assertEquals((await vendorIn(dev, 0x42, 2)).status, "stall");
  assertEquals((await vendorOut(dev, 0x42, 0)).status, "stall");
  await backend.close();
});

/** A read of the back-end held for the test to answer, with what FtdiSerial asked for. */
interface HeldRead {
  max: number;
  timeoutMs: number | undefined;
  answer(bytes: Uint8Array): void;
}

/**
 * A loopback back-end whose reads the test answers: the latency timer is then the timeout
 * FtdiSerial asks the read for, and its expiry is the test answering an empty read (what
 * CharBackend.read() does when the timeout passes first), not wall time.
 */
async function heldReads() {
  const loopback = await openCharBackend("loopback");
  const reads: HeldRead[] = [];
  const backend = new Proxy(loopback, {
    get(target, key) {
      if (key === "read") {
        return (max: number, signal: AbortSignal, timeoutMs?: number) =>
          new Promise<Uint8Array | null>((resolve) => {
            signal.addEventListener("abort", () => resolve(null), { once: true });
            reads.push({ max, timeoutMs, answer: resolve });
          });
      }
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { backend, reads, close: () => loopback.close() };
}

/** A bulk IN on 0x81 whose completion can be checked without waiting for it. */
function bulkIn(dev: FtdiSerial, length: number, signal?: AbortSignal) {
  const state = {
    done: false,
    result: data(dev, 1, true, { length, ...(signal ? { signal } : {}) }),
  };
  state.result.then(() => state.done = true);
  return state;
}

/** Lets queued macrotasks run (a premature completion would show by then); not a delay check. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
}

// The chip sends what it holds, or the two status bytes alone, when its latency timer expires
// (FTDI AN232B-04; ftdi_sio sets the timer with FTDI_SIO_SET_LATENCY_TIMER, request 9).
Deno.test("FtdiSerial answers an idle IN with the status bytes when its latency timer expires", async () => {
  const { backend, reads, close } = await heldReads();
  const { dev } = await configured({ backend });
  // Default 16 ms: the IN waits on one read bounded by it, and not beyond the read.
  let r = bulkIn(dev, 64);
  await settle();
  assertEquals(reads.map((x) => [x.max, x.timeoutMs]), [[62, 16]]);
  assertEquals(r.done, false, "the IN completed before the latency timer expired");
  reads[0]!.answer(new Uint8Array(0));
  assertEquals([...(await r.result).data!], [0xb1, 0x60]);
  // The timer the host sets is the one that bounds the wait; 0 counts as 1 ms.
  for (const [latency, timeoutMs] of [[2, 2], [255, 255], [0, 1]] as const) {
    assertEquals((await vendorOut(dev, 9, latency)).status, "ok");
    r = bulkIn(dev, 64);
    await settle();
    assertEquals(reads.at(-1)!.timeoutMs, timeoutMs, `latency timer ${latency}`);
    assertEquals(r.done, false);
    reads.at(-1)!.answer(new Uint8Array(0));
    assertEquals([...(await r.result).data!], [0xb1, 0x60]);
  }
  // A partial packet is sent as soon as the back-end has it, in order, without waiting to fill
  // the packet: one read, one short packet.
  const before = reads.length;
  r = bulkIn(dev, 512);
  await settle();
  reads.at(-1)!.answer(new Uint8Array([1, 2, 3, 4, 5]));
  assertEquals([...(await r.result).data!], [0xb1, 0x60, 1, 2, 3, 4, 5]);
  assertEquals(reads.length, before + 1, "it read again instead of sending the partial packet");
  // An aborted IN completes as cancelled.
  const ac = new AbortController();
  r = bulkIn(dev, 64, ac.signal);
  await settle();
  ac.abort();
  assertEquals((await r.result).status, "cancelled");
  await close();
});

Deno.test("FtdiSerial reports CTS, DSR and DCD only while the back-end has a peer", async () => {
  const backend = await openCharBackend("tcp:127.0.0.1:0");
  const { dev } = await configured({ backend });
  try {
    assertEquals([...(await vendorIn(dev, 5, 2)).data!], [0x01, 0x60]);
    const port = Number(backend.address.split(":").at(-1));
    const client = await Deno.connect({ hostname: "127.0.0.1", port });
    const t0 = performance.now();
    while (!backend.connected && performance.now() - t0 < 5000) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assertEquals([...(await vendorIn(dev, 5, 2)).data!], [0xb1, 0x60]);
    client.close();
  } finally {
    await backend.close();
  }
});

Deno.test("FtdiSerial packs 62 data bytes after the status bytes of each 64-byte packet", async () => {
  const { dev, backend } = await configured();
  const bytes = new Uint8Array(200).map((_, i) => i);
  assertEquals((await data(dev, 2, false, { data: bytes })).status, "ok");
  // A 64-byte transfer carries 62 bytes.
  let r = await data(dev, 1, true, { length: 64 });
  assertEquals(r.data!.length, 64);
  assertEquals([...r.data!.subarray(0, 2)], [0xb1, 0x60]);
  assertEquals([...r.data!.subarray(2)], [...bytes.subarray(0, 62)]);
  // A 512-byte transfer carries the remaining 138 bytes in 3 packets: 64 + 64 + 16.
  r = await data(dev, 1, true, { length: 512 });
  assertEquals(r.data!.length, 64 + 64 + 2 + 14);
  for (const at of [0, 64, 128]) assertEquals([...r.data!.subarray(at, at + 2)], [0xb1, 0x60]);
  assertEquals([...payload(r.data!)], [...bytes.subarray(62)]);
  // A transfer that ends in a short packet: 100 bytes hold 62 + 34.
  await data(dev, 2, false, { data: bytes });
  r = await data(dev, 1, true, { length: 100 });
  assertEquals(r.data!.length, 100);
  assertEquals([...payload(r.data!)], [...bytes.subarray(0, 96)]);
  await backend.close();
});

Deno.test("FtdiSerial echoes 1 MB of random data through a loopback back-end", async () => {
  const { dev, backend } = await configured();
  const total = 1024 * 1024;
  const input = new Uint8Array(total);
  for (let i = 0; i < total; i += 65536) crypto.getRandomValues(input.subarray(i, i + 65536));
  const output = new Uint8Array(total);
  let received = 0;
  for (let sent = 0; sent < total;) {
    const chunk = input.subarray(sent, Math.min(total, sent + 4096));
    assertEquals((await data(dev, 2, false, { data: chunk })).status, "ok");
    sent += chunk.length;
    while (received < sent) {
      const r = await data(dev, 1, true, { length: 512 });
      assertEquals(r.status, "ok");
      const p = payload(r.data!);
      output.set(p, received);
      received += p.length;
    }
  }
  assertEquals(received, total);
  assertEquals(output, input);
  await backend.close();
});

Deno.test("FtdiSerial keeps memory bounded and counts dropped bytes when nobody reads", async () => {
  const backend = await openCharBackend("loopback", { queueBytes: 2048, stallTimeoutMs: 30 });
  const { dev } = await configured({ backend });
  for (let i = 0; i < 1000; i++) {
    assertEquals((await data(dev, 2, false, { data: new Uint8Array(64) })).status, "ok");
    assert(backend.inputAvailable <= 2048);
  }
  assertEquals(backend.stats.droppedOut, 64 * 1000 - 2048);
  await backend.close();
});
