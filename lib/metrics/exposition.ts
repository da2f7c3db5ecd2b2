/**
 * A writer of the Prometheus text exposition format, version 0.0.4, as the Prometheus
 * documentation describes it ("Exposition formats", prometheus.io/docs/instrumenting/
 * exposition_formats/): for each metric family one `# HELP` and one `# TYPE` line, then its
 * samples together, one per line, `name{label="value",...} value`; label values escape `\`,
 * `"` and line feeds, HELP text `\` and line feeds; values are Go floats (`NaN`, `+Inf`,
 * `-Inf`). A histogram is cumulative `_bucket` samples with an `le` label ending at `+Inf`,
 * then `_sum` and `_count`.
 *
 * usbipgw writes this format itself rather than with `prom-client` (npm): see
 * `server_metrics.ts` for why.
 *
 * @example A counter with one labelled sample
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { ExpositionWriter } from "./exposition.ts";
 * const w = new ExpositionWriter();
 * w.family("demo_requests_total", "counter", "Requests served.");
 * w.sample("demo_requests_total", { path: 'a"b' }, 3);
 * assertEquals(w.text(), [
 *   "# HELP demo_requests_total Requests served.",
 *   "# TYPE demo_requests_total counter",
 *   'demo_requests_total{path="a\\"b"} 3',
 *   "",
 * ].join("\n"));
 * ```
 *
 * @module
 */

/** The Content-Type of the text format, version 0.0.4. */
export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** The metric types this writer writes (the format also knows summary and untyped). */
export type MetricType = "counter" | "gauge" | "histogram";

/** Label names and values of a sample, in the order they are written. */
export type Labels = Readonly<Record<string, string>>;

/** Metric names: `[a-zA-Z_:][a-zA-Z0-9_:]*` (Prometheus data model). */
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
/** Label names: `[a-zA-Z_][a-zA-Z0-9_]*`; names starting with `__` are reserved. */
const LABEL_NAME = /^(?!__)[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A label value as the format writes it: `\` as `\\`, `"` as `\"`, a line feed as `\n`. */
export function escapeLabelValue(value: string): string {
  return /[\\"\n]/.test(value)
    ? value.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`)
    : value;
}

/** HELP text as the format writes it: `\` as `\\`, a line feed as `\n`. */
export function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => c === "\n" ? "\\n" : "\\\\");
}

/** A sample value as a Go float: `NaN`, `+Inf`, `-Inf`, or JavaScript's shortest form. */
export function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function labelText(labels: Labels): string {
  let text = "";
  for (const name in labels) {
    if (!LABEL_NAME.test(name)) throw new TypeError(`Invalid label name "${name}"`);
    text += `${text === "" ? "" : ","}${name}="${escapeLabelValue(labels[name]!)}"`;
  }
  return text === "" ? "" : `{${text}}`;
}

/**
 * Builds one exposition: families in the order they are declared, each declared once and its
 * samples written right after it.
 */
export class ExpositionWriter {
  #lines: string[] = [];
  #families = new Map<string, MetricType>();
  #current: string | undefined;

  /** Declares a family: its HELP and TYPE lines. Throws `TypeError` for a bad or repeated name. */
  family(name: string, type: MetricType, help: string): void {
    if (!METRIC_NAME.test(name)) throw new TypeError(`Invalid metric name "${name}"`);
    if (this.#families.has(name)) throw new TypeError(`Metric family ${name} is declared twice`);
    this.#families.set(name, type);
    this.#current = name;
    this.#lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
  }

  /** One sample of the family declared last (a counter or a gauge). */
  sample(name: string, labels: Labels, value: number): void {
    this.#check(name, "sample");
    this.#lines.push(`${name}${labelText(labels)} ${formatValue(value)}`);
  }

  /**
   * One histogram of the family declared last: `counts[i]` observations fell in bucket i (at
   * most `bounds[i]`, above `bounds[i - 1]`), and `counts[bounds.length]` above the last bound.
   */
  histogram(
    name: string,
    labels: Labels,
    bounds: readonly number[],
    counts: ArrayLike<number>,
    sum: number,
  ): void {
    this.#check(name, "histogram");
    if (counts.length !== bounds.length + 1) {
      throw new RangeError(
        `Cannot write histogram ${name}: ${counts.length} counts, expected ${bounds.length + 1}`,
      );
    }
    let cumulative = 0;
    for (let i = 0; i <= bounds.length; i++) {
      cumulative += counts[i]!;
      const le = i < bounds.length ? formatValue(bounds[i]!) : "+Inf";
      this.#lines.push(`${name}_bucket${labelText({ ...labels, le })} ${cumulative}`);
    }
    const text = labelText(labels);
    this.#lines.push(
      `${name}_sum${text} ${formatValue(sum)}`,
      `${name}_count${text} ${cumulative}`,
    );
  }

  /** The exposition: every line so far, each ending in a line feed. */
  text(): string {
    return this.#lines.length === 0 ? "" : `${this.#lines.join("\n")}\n`;
  }

  #check(name: string, what: "sample" | "histogram"): void {
    if (this.#current !== name) {
      throw new TypeError(`Cannot write ${name}: declare its family right before its samples`);
    }
    const histogram = this.#families.get(name) === "histogram";
    if (histogram !== (what === "histogram")) {
      throw new TypeError(`Cannot write a ${what} of ${name}: it is a ${this.#families.get(name)}`);
    }
  }
}
