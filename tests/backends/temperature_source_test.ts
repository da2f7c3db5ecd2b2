/** Tests of the Go!Temp temperature sources and their `source=` parser (issue 7). */

import { assertLess } from "@std/assert";
import { assertEquals, assertRejects, assertThrows } from "@std/assert";
import {
  constantSource,
  lineSource,
  openTemperatureSource,
  parseReadings,
  parseTemperatureSource,
  sineSource,
} from "../../lib/backends/temperature_source.ts";

function near(actual: number, expected: number, tolerance = 1e-7): void {
  assertLess(Math.abs(actual - expected), tolerance, `${actual} is not ${expected}`);
}

Deno.test("parseTemperatureSource: the four forms", () => {
  assertEquals(parseTemperatureSource("constant:21.5"), { kind: "constant", celsius: 21.5 });
  assertEquals(parseTemperatureSource("constant:-3"), { kind: "constant", celsius: -3 });
  assertEquals(parseTemperatureSource("sine:18:25:60"), {
    kind: "sine",
    min: 18,
    max: 25,
    periodS: 60,
  });
  assertEquals(parseTemperatureSource("file:/tmp/a:b"), { kind: "file", path: "/tmp/a:b" });
  assertEquals(parseTemperatureSource("unix:/run/t.sock"), { kind: "unix", path: "/run/t.sock" });
});

Deno.test("parseTemperatureSource: errors name the bad part", () => {
  assertThrows(() => parseTemperatureSource("ramp:1"), TypeError, `kind "ramp"`);
  assertThrows(() => parseTemperatureSource("constant"), TypeError, "Missing the value");
  assertThrows(() => parseTemperatureSource("constant:warm"), TypeError, `temperature "warm"`);
  assertThrows(() => parseTemperatureSource("constant:"), TypeError, `temperature ""`);
  assertThrows(() => parseTemperatureSource("sine:1:2"), TypeError, "got 2");
  assertThrows(() => parseTemperatureSource("sine:x:2:3"), TypeError, `MIN "x"`);
  assertThrows(() => parseTemperatureSource("sine:1:y:3"), TypeError, `MAX "y"`);
  assertThrows(() => parseTemperatureSource("sine:1:2:0"), TypeError, `PERIOD_S "0"`);
  assertThrows(() => parseTemperatureSource("sine:5:2:3"), TypeError, "MIN 5 > MAX 2");
  assertThrows(() => parseTemperatureSource("file:"), TypeError, "Missing PATH");
  assertThrows(() => parseTemperatureSource("unix"), TypeError, "Missing PATH");
});

Deno.test("sine: known values at known times", () => {
  const s = sineSource(10, 30, 60);
  near(s.read(0)!, 20, 1e-9);
  near(s.read(15_000)!, 30, 1e-9);
  near(s.read(30_000)!, 20, 1e-9);
  near(s.read(45_000)!, 10, 1e-9);
  near(s.read(60_000 * 1000 + 15_000)!, 30, 1e-6);
  assertEquals(constantSource(21.5).read(123), 21.5);
});

Deno.test("file: readings are read once and repeat", async () => {
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(path, "# degrees C\n20\n\n20.5\r\n-1.25\n");
    const s = await openTemperatureSource(parseTemperatureSource(`file:${path}`));
    await Deno.writeTextFile(path, "99\n"); // not read again
    assertEquals([0, 1, 2, 3, 4, 5, 6].map((t) => s.read(t)), [
      20,
      20.5,
      -1.25,
      20,
      20.5,
      -1.25,
      20,
    ]);
    await s.close();
    await Deno.writeTextFile(path, "1\nhot\n");
    await assertRejects(
      () => openTemperatureSource({ kind: "file", path }),
      TypeError,
      `"hot" on line 2`,
    );
  } finally {
    await Deno.remove(path);
  }
  assertThrows(() => parseReadings("\n# none\n", "x"), TypeError, "No temperatures in x");
});

Deno.test("lines: each line is the next reading, the last repeats, junk is skipped", () => {
  const s = lineSource();
  assertEquals(s.read(0), undefined);
  s.push("21");
  assertEquals(s.read(0), undefined); // no newline yet
  s.push(".5\n22\nnope\n23");
  assertEquals(s.read(0), 21.5);
  assertEquals(s.read(0), 22);
  assertEquals(s.read(0), 22);
  s.push("\n");
  assertEquals(s.read(0), 23);
});

Deno.test("unix: lines written to the socket become readings", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/t.sock`;
  const s = await openTemperatureSource(parseTemperatureSource(`unix:${path}`));
  try {
    assertEquals(s.read(0), undefined);
    const conn = await Deno.connect({ transport: "unix", path });
    await conn.write(new TextEncoder().encode("19.25\n30\n"));
    conn.close();
    const deadline = Date.now() + 2000;
    let first: number | undefined;
    while (first === undefined && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
      first = s.read(0);
    }
    assertEquals(first, 19.25);
    assertEquals(s.read(0), 30);
    assertEquals(s.read(0), 30);
  } finally {
    await s.close();
    await Deno.remove(dir, { recursive: true });
  }
});
