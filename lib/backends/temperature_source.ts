/**
 * Temperature sources for the emulated Go!Temp thermometer (issue 7): a constant, a sine over
 * time, lines of numbers from a file, or lines written to a unix socket; readings in °C.
 *
 * Forms of the `source=` option (parsed by {@linkcode parseTemperatureSource}):
 * - `constant:C`: always C °C (e.g. `constant:21.5`);
 * - `sine:MIN:MAX:PERIOD_S`: `(MIN+MAX)/2 + (MAX-MIN)/2 · sin(2π·t/PERIOD_S)`, where `t` is the
 *   sample's time in seconds on the clock's epoch (the Unix epoch by default), so the value
 *   depends only on when the sample is taken;
 * - `file:PATH`: one number in °C per line (blank lines and lines starting with `#` are
 *   skipped), read once when opened; samples take the values in order and start over at the end;
 * - `unix:PATH`: a unix socket server; every line written to it is the next reading. Between
 *   lines the last reading is repeated; before the first line there is no reading (the device
 *   then sends nothing). Lines that are not numbers are logged and skipped, and at most
 *   {@linkcode UNIX_SOURCE_BACKLOG} unread readings are kept (older ones are dropped, counted and
 *   logged).
 *
 * @module
 */

import { backendLogger } from "./_backend_log.ts";
import { BackendOpenError, pathFailed } from "./backend_error.ts";
import { openTextSocket } from "./text_socket.ts";

/** A parsed `source=` option. */
export type TemperatureSourceSpec =
  | { kind: "constant"; celsius: number }
  | { kind: "sine"; min: number; max: number; periodS: number }
  | { kind: "file"; path: string }
  | { kind: "unix"; path: string };

/** Where temperature readings come from. */
export interface TemperatureSource {
  /**
   * The reading for a sample taken at `timeMs` (milliseconds on the device's clock), in °C;
   * `undefined` when there is no reading yet. Each call is one sample: sequence sources
   * (file, unix) advance by one.
   */
  read(timeMs: number): number | undefined;
  /** Releases what the source holds (a socket); idempotent. */
  close(): Promise<void>;
}

/** Unread readings a `unix:` source keeps at most. */
export const UNIX_SOURCE_BACKLOG = 4096;

const FORMS = "constant:C, sine:MIN:MAX:PERIOD_S, file:PATH or unix:PATH";

function finite(text: string, what: string, whole: string): number {
  const v = text.trim() === "" ? NaN : Number(text);
  if (!Number.isFinite(v)) {
    throw new TypeError(`Invalid ${what} "${text}" in temperature source "${whole}"`);
  }
  return v;
}

/**
 * Parses a `source=` option; pure (opens nothing).
 *
 * @throws {TypeError} Naming the bad part: an unknown kind, a missing path, a value that is not
 * a finite number, MIN > MAX, or a period that is not positive.
 *
 * @example
 * ```ts
 * import { parseTemperatureSource } from "./temperature_source.ts";
 * const s = parseTemperatureSource("sine:18:25:60");
 * console.assert(s.kind === "sine" && s.periodS === 60);
 * ```
 */
export function parseTemperatureSource(text: string): TemperatureSourceSpec {
  const colon = text.indexOf(":");
  const kind = colon < 0 ? text : text.slice(0, colon);
  const rest = colon < 0 ? undefined : text.slice(colon + 1);
  switch (kind) {
    case "constant":
      if (rest === undefined) {
        throw new TypeError(`Missing the value in temperature source "${text}": constant:C`);
      }
      return { kind, celsius: finite(rest, "temperature", text) };
    case "sine": {
      const parts = rest?.split(":") ?? [];
      if (parts.length !== 3) {
        throw new TypeError(
          `Invalid sine "${text}": expected sine:MIN:MAX:PERIOD_S (3 numbers, got ${parts.length})`,
        );
      }
      const [minText = "", maxText = "", periodText = ""] = parts;
      const min = finite(minText, "MIN", text);
      const max = finite(maxText, "MAX", text);
      const periodS = finite(periodText, "PERIOD_S", text);
      if (min > max) throw new TypeError(`Invalid sine "${text}": MIN ${min} > MAX ${max}`);
      if (periodS <= 0) {
        throw new TypeError(`Invalid PERIOD_S "${periodText}" in "${text}": must be > 0`);
      }
      return { kind, min, max, periodS };
    }
    case "file":
    case "unix":
      if (rest === undefined || rest === "") {
        throw new TypeError(`Missing PATH in temperature source "${text}": ${kind}:PATH`);
      }
      return { kind, path: rest };
    default:
      throw new TypeError(`Unknown temperature source kind "${kind}" in "${text}": ${FORMS}`);
  }
}

/**
 * The readings of a `file:` source's text: one number per line; blank lines and `#` comments
 * are skipped.
 *
 * @throws {TypeError} Naming the line that is not a number, or if there is no number at all.
 */
export function parseReadings(text: string, name = "the file"): number[] {
  const values: number[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const t = line.trim();
    if (t === "" || t.startsWith("#")) return;
    const v = Number(t);
    if (!Number.isFinite(v)) {
      throw new TypeError(`Invalid temperature "${t}" on line ${i + 1} of ${name}`);
    }
    values.push(v);
  });
  if (values.length === 0) throw new TypeError(`No temperatures in ${name}`);
  return values;
}

/** A source that always reads `celsius`. */
export function constantSource(celsius: number): TemperatureSource {
  return { read: () => celsius, close: () => Promise.resolve() };
}

/** A sine between `min` and `max` with period `periodS` seconds over the sample time. */
export function sineSource(min: number, max: number, periodS: number): TemperatureSource {
  const mid = (min + max) / 2;
  const amp = (max - min) / 2;
  return {
    read: (timeMs) => mid + amp * Math.sin((2 * Math.PI * (timeMs / 1000)) / periodS),
    close: () => Promise.resolve(),
  };
}

/** A source that reads `values` in order, starting over after the last. */
export function sequenceSource(values: readonly number[]): TemperatureSource {
  if (values.length === 0) throw new TypeError("A sequence source needs at least one value");
  let i = 0;
  return {
    read: () => {
      const v = values[i % values.length];
      i = (i + 1) % values.length;
      return v;
    },
    close: () => Promise.resolve(),
  };
}

/**
 * A source fed with text (what a `unix:` socket receives): every complete line is the next
 * reading; the last reading repeats while no new one is queued. `push` takes text in pieces.
 */
export function lineSource(
  options: { label?: string } = {},
): TemperatureSource & { push(text: string): void } {
  const log = backendLogger(options.label);
  const queue: number[] = [];
  let partial = "";
  let last: number | undefined;
  let dropped = 0;
  const line = (raw: string) => {
    const t = raw.trim();
    if (t === "") return;
    const v = Number(t);
    if (!Number.isFinite(v)) {
      log.warn("Skipped a temperature line that is not a number: {line}", { line: t });
      return;
    }
    queue.push(v);
    if (queue.length > UNIX_SOURCE_BACKLOG) {
      queue.shift();
      dropped++;
      if (dropped === 1 || dropped % 1000 === 0) {
        log.warn("Temperature readings arrive faster than sampled: {dropped} dropped", {
          dropped,
        });
      }
    }
  };
  return {
    push(text) {
      const lines = (partial + text).split("\n");
      partial = lines.pop() ?? "";
      for (const l of lines) line(l);
    },
    read() {
      const next = queue.shift();
      if (next !== undefined) last = next;
      return last;
    },
    close: () => Promise.resolve(),
  };
}

/** Options of {@linkcode openTemperatureSource}. */
export interface TemperatureSourceOptions {
  /**
   * The device the source feeds, e.g. `gotemp 1-4`: every log line of the source then starts
   * with it (and carries it as the `label` property), and so does an open error.
   */
  label?: string;
}

/**
 * Opens the source `spec` describes: reads a `file:` (once), or listens on a `unix:` socket
 * (mode 0600; closing the source closes the socket).
 *
 * @throws {TypeError} If a file holds no numbers or a line that is not one (the message
 * starts with the label when given).
 * @throws {BackendOpenError} If the file cannot be read (missing, not readable, ...) or the
 * socket cannot be made (its folder is missing or read-only, ...): the message starts with
 * the label when given, then names the file or socket and the reason.
 */
export async function openTemperatureSource(
  spec: TemperatureSourceSpec,
  options: TemperatureSourceOptions = {},
): Promise<TemperatureSource> {
  const label = options.label;
  switch (spec.kind) {
    case "constant":
      return constantSource(spec.celsius);
    case "sine":
      return sineSource(spec.min, spec.max, spec.periodS);
    case "file": {
      let text: string;
      try {
        text = await Deno.readTextFile(spec.path);
      } catch (e) {
        throw await pathFailed("temperature file", spec.path, e, "read", label);
      }
      try {
        return sequenceSource(parseReadings(text, spec.path));
      } catch (e) {
        if (label === undefined || !(e instanceof TypeError)) throw e;
        throw new TypeError(`${label}: ${e.message}`, { cause: e });
      }
    }
    case "unix": {
      const lines = lineSource(label === undefined ? {} : { label });
      let socket;
      try {
        socket = await openTextSocket(
          { path: spec.path, mode: 0o600, ...(label === undefined ? {} : { label }) },
          (t) => lines.push(t),
        );
      } catch (e) {
        if (!(e instanceof BackendOpenError)) throw e;
        throw new BackendOpenError({
          what: "temperature socket",
          where: `on ${spec.path}`,
          detail: e.detail,
          label,
          cause: e.cause,
        });
      }
      let closing: Promise<void> | undefined;
      return { read: (t) => lines.read(t), close: () => closing ??= socket.close() };
    }
  }
}
