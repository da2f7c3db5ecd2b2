// Captures the log records of a test (LogTape), rendered as text.
import { configureSync, type LogRecord, resetSync } from "@logtape/logtape";

/** The message of a record with its values filled in. */
export function render(r: LogRecord): string {
  return r.message.map((m) => typeof m === "string" ? m : String(m)).join("");
}

/** The records logged while capturing; {@linkcode LogCapture.stop} ends it. */
export interface LogCapture {
  records: LogRecord[];
  /** `[level, message]` of each record in category `usbipgw.<sub>`, in order. */
  lines(sub: string): [string, string][];
  stop(): void;
}

/** Sends every `usbipgw` record, debug level up, to memory until `stop()`. */
export function captureLogs(): LogCapture {
  const records: LogRecord[] = [];
  configureSync({
    reset: true,
    sinks: { memory: (r) => records.push(r) },
    loggers: [
      { category: ["usbipgw"], lowestLevel: "debug", sinks: ["memory"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  return {
    records,
    lines: (sub) => records.filter((r) => r.category[1] === sub).map((r) => [r.level, render(r)]),
    stop: () => resetSync(),
  };
}
