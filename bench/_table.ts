// The one table bench/main.ts prints: every figure beside its baseline from the same run.

/** One line of the table. */
export interface Row {
  /** "URB", "scale", "memory", "startup", ... */
  section: string;
  /** "tcp", "unix" or "-". */
  transport: string;
  /** What is measured, with its unit. */
  figure: string;
  usbipgw: string;
  baseline: string;
  /** usbipgw / baseline where that means something, else "". */
  ratio: string;
  /** The target and whether it is met, or "". */
  target: string;
}

/** Formats `n` with thousands separators and `digits` decimals. */
export function num(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return "-";
  return n.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/** `a / b` with two decimals, or "" when `b` is 0. */
export function ratio(a: number, b: number): string {
  return b === 0 ? "" : (a / b).toFixed(2);
}

/** "met" or "MISSED" after a target's text. */
export function verdict(text: string, met: boolean): string {
  return `${text}: ${met ? "met" : "MISSED"}`;
}

/** Renders rows as a Markdown table. */
export function renderTable(rows: Row[]): string {
  const head = ["section", "transport", "figure", "usbipgw", "baseline", "ratio", "target"];
  const all = [
    head,
    ...rows.map((r) => [
      r.section,
      r.transport,
      r.figure,
      r.usbipgw,
      r.baseline,
      r.ratio,
      r.target,
    ]),
  ];
  const widths = head.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [
    line(head),
    `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`,
    ...rows.map((r) =>
      line([r.section, r.transport, r.figure, r.usbipgw, r.baseline, r.ratio, r.target])
    ),
  ].join("\n");
}
