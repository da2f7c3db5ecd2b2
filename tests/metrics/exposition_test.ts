// The Prometheus text format 0.0.4 writer: HELP and TYPE once per family, samples right after
// it, escaping of label values and HELP text, Go float values, cumulative histograms; and
// promtool, Prometheus's own checker, accepts what it writes.
import { assertEquals, assertThrows } from "@std/assert";
import {
  escapeHelp,
  escapeLabelValue,
  ExpositionWriter,
  formatValue,
} from "../../lib/metrics/exposition.ts";
import { parseExposition, promtoolCheck, promtoolProblem } from "./_exposition.ts";

Deno.test("escapeLabelValue() escapes backslash, double quote and line feed only", () => {
  assertEquals(escapeLabelValue('a\\b"c\nd\te'), 'a\\\\b\\"c\\nd\te');
  assertEquals(escapeLabelValue("1-1"), "1-1");
});

Deno.test("escapeHelp() escapes backslash and line feed, not quotes", () => {
  assertEquals(escapeHelp('a\\b\n"c"'), 'a\\\\b\\n"c"');
});

Deno.test("formatValue() writes Go floats", () => {
  assertEquals([NaN, Infinity, -Infinity, 0, 1.5, 1e-7, 2 ** 53].map(formatValue), [
    "NaN",
    "+Inf",
    "-Inf",
    "0",
    "1.5",
    "1e-7",
    "9007199254740992",
  ]);
});

Deno.test("histogram() writes cumulative buckets, +Inf, _sum and _count", () => {
  const w = new ExpositionWriter();
  w.family("x_seconds", "histogram", "X.");
  w.histogram("x_seconds", { busid: "1-1" }, [0.001, 0.01], [2, 0, 3], 4.25);
  assertEquals(w.text().split("\n"), [
    "# HELP x_seconds X.",
    "# TYPE x_seconds histogram",
    'x_seconds_bucket{busid="1-1",le="0.001"} 2',
    'x_seconds_bucket{busid="1-1",le="0.01"} 2',
    'x_seconds_bucket{busid="1-1",le="+Inf"} 5',
    'x_seconds_sum{busid="1-1"} 4.25',
    'x_seconds_count{busid="1-1"} 5',
    "",
  ]);
});

Deno.test("ExpositionWriter refuses bad names, repeated families and stray samples", () => {
  const w = new ExpositionWriter();
  assertThrows(() => w.family("1x", "counter", "h"), TypeError, "Invalid metric name");
  w.family("a_total", "counter", "A.");
  assertThrows(() => w.family("a_total", "gauge", "A."), TypeError, "declared twice");
  assertThrows(() => w.sample("a_total", { "bad-name": "x" }, 1), TypeError, "Invalid label");
  assertThrows(() => w.sample("a_total", { __name__: "x" }, 1), TypeError, "Invalid label");
  assertThrows(() => w.histogram("a_total", {}, [1], [0, 0], 0), TypeError, "it is a counter");
  w.family("b", "gauge", "B.");
  assertThrows(() => w.sample("a_total", {}, 1), TypeError, "declare its family right before");
  w.family("c", "histogram", "C.");
  assertThrows(() => w.histogram("c", {}, [1, 2], [0, 0], 0), RangeError, "expected 3");
  assertEquals(new ExpositionWriter().text(), "");
});

Deno.test("what the writer writes reads back, and promtool accepts it", async () => {
  const w = new ExpositionWriter();
  w.family("demo_things_total", "counter", "Things, with a \\ and a\nsecond line.");
  const awkward = 'quote " backslash \\ line\nfeed ünïcode';
  w.sample("demo_things_total", { what: awkward, n: "1" }, 3);
  w.sample("demo_things_total", { what: "", n: "2" }, 0);
  w.family("demo_level", "gauge", "A gauge.");
  w.sample("demo_level", {}, NaN);
  w.family("demo_wait_seconds", "histogram", "Waits.");
  w.histogram("demo_wait_seconds", {}, [0.00005, 1], [1, 1, 1], 12.5);
  const text = w.text();
  const samples = parseExposition(text);
  assertEquals(samples[0], {
    name: "demo_things_total",
    labels: { what: awkward, n: "1" },
    value: 3,
  });
  assertEquals(samples.length, 2 + 1 + 5);
  if (promtoolProblem !== undefined) {
    console.log(`%cpromtool check skipped: ${promtoolProblem}`, "color: yellow");
    return;
  }
  assertEquals(await promtoolCheck(text), { code: 0, output: "" });
});
