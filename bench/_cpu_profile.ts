// Summaries of a V8 CPU profile (the Chrome DevTools Protocol's `Profiler.Profile`, which is also
// what `deno run --cpu-prof` writes): the functions with the most time of their own, and of their
// own plus their callees', over the samples that are not idle.

/** One node of the profile's call tree. */
export interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

/** A V8 CPU profile; `samples` and `timeDeltas` (µs) are absent from some producers. */
export interface CpuProfile {
  nodes: ProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
}

/** A function's share of the busy samples. */
export interface ProfileRow {
  /** `name file:line`, the file from its main/, lib/, ext/, node/, bench/ or tests/ folder on. */
  key: string;
  /** Of the busy samples, the fraction in the function itself. */
  self: number;
  /** Of the busy samples, the fraction with the function anywhere on the stack. */
  total: number;
}

const NOT_BUSY = new Set(["(idle)", "(root)"]);

function keyOf(n: ProfileNode): string {
  const f = n.callFrame;
  const file = f.url.replace(/^.*\/(main|lib|ext|node|bench|tests)\//, "$1/");
  return `${f.functionName || "(anonymous)"} ${file}:${f.lineNumber + 1}`;
}

/**
 * The busy samples of `profile` by function, most time of its own first, and how many busy
 * samples there were. Each sample counts once per function on its stack for `total`.
 */
export function profileRows(profile: CpuProfile): { rows: ProfileRow[]; busy: number } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Sample counts per leaf node: from `samples` when present, else each node's hitCount.
  const hits = new Map<number, number>();
  if (profile.samples !== undefined) {
    for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
  } else {
    for (const n of profile.nodes) hits.set(n.id, n.hitCount ?? 0);
  }
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let busy = 0;
  for (const [id, count] of hits) {
    const leaf = byId.get(id);
    if (leaf === undefined || count === 0 || NOT_BUSY.has(leaf.callFrame.functionName)) continue;
    busy += count;
    const leafKey = keyOf(leaf);
    self.set(leafKey, (self.get(leafKey) ?? 0) + count);
    const onStack = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const n = byId.get(at)!;
      if (!NOT_BUSY.has(n.callFrame.functionName)) onStack.add(keyOf(n));
    }
    for (const k of onStack) total.set(k, (total.get(k) ?? 0) + count);
  }
  const rows = [...total].map(([key, t]) => ({
    key,
    self: busy === 0 ? 0 : (self.get(key) ?? 0) / busy,
    total: busy === 0 ? 0 : t / busy,
  }));
  return { rows, busy };
}

/** The `limit` rows with the most time of their own, then those with the most in all, as text. */
export function profileTable(profile: CpuProfile, limit = 25): string {
  const { rows, busy } = profileRows(profile);
  const pct = (f: number) => `${(100 * f).toFixed(1).padStart(5)}%`;
  const lines = [`${busy} busy samples`, "  self  total  function (most time of its own)"];
  for (const r of [...rows].sort((a, b) => b.self - a.self).slice(0, limit)) {
    lines.push(`${pct(r.self)} ${pct(r.total)}  ${r.key}`);
  }
  lines.push("  self  total  function (most time with its callees)");
  for (const r of [...rows].sort((a, b) => b.total - a.total).slice(0, limit)) {
    lines.push(`${pct(r.self)} ${pct(r.total)}  ${r.key}`);
  }
  return lines.join("\n");
}
