/**
 * The metrics of a {@linkcode UsbipServer} in the Prometheus text format: an observer of the
 * server's traffic and decisions (`UsbipServer.observers`) that counts as it goes, plus
 * figures read at each scrape (open sessions, pending URBs, exported devices, the process).
 * Names follow the Prometheus naming conventions (prometheus.io/docs/practices/naming/): the
 * `usbipgw_` prefix, base units in the name (`_seconds`, `_bytes`), `_total` on counters.
 *
 * Label values are bounded: a bus id is always one the server exported (a refused import is
 * counted by its reason, never by the bus id the client sent), transports and transfer types
 * are fixed sets, URB statuses are the errno names of `UrbStatus` plus `other`, and policy
 * rules are numbered by the configuration. A device's counters stay after it is removed (they
 * are its history), so the series grow only with the devices the process ever exported.
 *
 * The data path pays, per URB, two `performance.now()` calls and a few typed-array reads and
 * writes (the submit time, the counters): no map of labels is looked up and no label string
 * is built until a scrape (0.3 to 0.5 µs per URB in all, measured by `deno task bench
 * metrics`).
 *
 * Why the format is written here (`exposition.ts`) and not with `prom-client`, the usual
 * client library on npm: checked with prom-client 15.1.3 under Deno 2.9.6, it works through
 * Deno's Node compatibility, default metrics included, but
 * - a labelled `inc()` or `observe()` hashes its label object at every call: 270 to 460 ns
 *   each, measured here, and a URB needs three, against a budget of 5% of a 64-byte URB that
 *   the gateway serves in about 35 µs;
 * - its default metrics are Node's, and under Deno some are wrong (`nodejs_version_info`
 *   says Node v26.3.0, `process_heap_bytes` gave 578 MB for a 61 MB process, the GC
 *   histogram stays empty);
 * - it brings four packages (prom-client, `@opentelemetry/api`, tdigest, bintrees; 4.7 MB)
 *   into the single binary, and whether `deno compile` embeds them cannot be tried on these
 *   machines (no denort).
 * The text format is small and stable (version 0.0.4, unchanged since 2014), so a writer of
 * about a hundred lines, tested against the format's own rules, costs less.
 *
 * @example Counting the traffic of a server and reading the exposition
 * ```ts
 * import { assertStringIncludes } from "@std/assert";
 * import { GadgetZero, UsbipServer } from "../../mod.ts";
 * import { ServerMetrics } from "./server_metrics.ts";
 * const server = new UsbipServer();
 * server.addDevice(new GadgetZero(), { busid: "1-1" });
 * const metrics = new ServerMetrics(server);
 * assertStringIncludes(metrics.render(), 'usbipgw_urbs_pending{busid="1-1"} 0');
 * metrics.close();
 * ```
 *
 * @module
 */

import { OpStatus, UrbStatus } from "../protocol/constants.ts";
import type { CmdSubmit } from "../protocol/urb_messages.ts";
import type { TransferTypeName } from "../devices/descriptors.ts";
import type { UsbipServer } from "../server/server.ts";
import type { UrbCompletion } from "../server/ret_submit.ts";
import {
  type ObservedImport,
  type ServerEvent,
  type UrbObserver,
  urbTransferType,
} from "../server/urb_observer.ts";
import { ExpositionWriter, type Labels } from "./exposition.ts";
import { readProcessFigures, writeProcessMetrics } from "./process_metrics.ts";

/**
 * The upper bounds of the URB latency buckets, in seconds: 50 µs (a 64-byte URB on loopback)
 * to 10 s (an interrupt IN that waits for a key), about 2.5 per decade.
 */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.00005,
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
]);

const TYPES: readonly TransferTypeName[] = ["control", "isochronous", "bulk", "interrupt"];
const TYPE_INDEX: Readonly<Record<TransferTypeName, number>> = {
  control: 0,
  isochronous: 1,
  bulk: 2,
  interrupt: 3,
};
const DIRECTIONS = ["out", "in"] as const;
/** URB status labels: `ok`, the errno names of `UrbStatus` (`EPIPE` for a stall), `other`. */
const STATUSES: readonly string[] = [
  "ok",
  ...Object.keys(UrbStatus).filter((k) => k !== "OK"),
  "other",
];
const STATUS_INDEX = new Map<number, number>(
  Object.entries(UrbStatus).map((
    [name, errno],
  ) => [errno, STATUSES.indexOf(name === "OK" ? "ok" : name)]),
);
const OTHER_STATUS = STATUSES.length - 1;
/** Series per device: transfer type x direction x status. */
const SERIES = TYPES.length * DIRECTIONS.length * STATUSES.length;

/** How an OP_REP_ATTACH or OP_REP_DETACH status is labelled. */
function outcomeLabel(status: number): string {
  switch (status) {
    case OpStatus.ST_OK:
      return "ok";
    case OpStatus.ST_NA:
      return "not_allowed";
    case OpStatus.ST_DEV_BUSY:
      return "busy";
    case OpStatus.ST_DEV_ERR:
      return "device_error";
    case OpStatus.ST_NODEV:
      return "no_device";
    case OpStatus.ST_ERROR:
      return "error";
    default:
      return "other";
  }
}

/** Counts by label set, for the events that come once per connection or request. */
class LabelledCounts {
  #counts = new Map<string, { labels: Labels; value: number }>();

  inc(labels: Labels, by = 1): void {
    const key = Object.values(labels).join("\0");
    const entry = this.#counts.get(key);
    if (entry) entry.value += by;
    else this.#counts.set(key, { labels, value: by });
  }

  get entries(): Iterable<{ labels: Labels; value: number }> {
    return this.#counts.values();
  }
}

/** What is counted for one bus id. */
class DeviceCounts {
  readonly busid: string;
  /** Completed URBs and their bytes, by `_seriesIndex`. */
  readonly urbs: Float64Array = new Float64Array(SERIES);
  readonly bytes: Float64Array = new Float64Array(SERIES);
  /** Latency observations per bucket, the last one above the last bound. */
  readonly latency: Float64Array = new Float64Array(LATENCY_BUCKETS_SECONDS.length + 1);
  latencySum = 0;
  unlinksCancelled = 0;
  unlinksNotPending = 0;

  constructor(busid: string) {
    this.busid = busid;
  }

  observe(seconds: number): void {
    const bounds = LATENCY_BUCKETS_SECONDS;
    let b = 0;
    while (b < bounds.length && seconds > bounds[b]!) b++;
    this.latency[b]!++;
    this.latencySum += seconds;
  }
}

/** Slots of {@linkcode SubmitTimes}: more than the URBs a vhci client keeps in flight. */
const TIME_SLOTS = 256;

/**
 * The submit times of a session's pending URBs by seqnum: a table indexed by the seqnum's low
 * bits (4 KiB), and a map for the seqnum whose slot is taken (a URB still pending after 255
 * later ones, such as an interrupt IN waiting for a key).
 */
class SubmitTimes {
  #seqnums = new Float64Array(TIME_SLOTS).fill(-1);
  #times = new Float64Array(TIME_SLOTS);
  #spilled = new Map<number, number>();

  set(seqnum: number, time: number): void {
    const k = seqnum & (TIME_SLOTS - 1);
    if (this.#seqnums[k] === -1) {
      this.#seqnums[k] = seqnum;
      this.#times[k] = time;
    } else this.#spilled.set(seqnum, time);
  }

  /** The submit time of `seqnum`, forgotten; `undefined` if it was not noted. */
  take(seqnum: number): number | undefined {
    const k = seqnum & (TIME_SLOTS - 1);
    if (this.#seqnums[k] === seqnum) {
      this.#seqnums[k] = -1;
      return this.#times[k];
    }
    if (this.#spilled.size === 0) return undefined;
    const time = this.#spilled.get(seqnum);
    this.#spilled.delete(seqnum);
    return time;
  }
}

/** One imported session: its device's counts and the submit time of each pending URB. */
interface SessionCounts {
  readonly device: DeviceCounts;
  readonly started: SubmitTimes;
}

/**
 * Counts what a {@linkcode UsbipServer} does, from the moment it is made until
 * {@linkcode ServerMetrics.close}, and writes it in the Prometheus text format with
 * {@linkcode ServerMetrics.render}.
 */
export class ServerMetrics implements UrbObserver {
  #server: UsbipServer;
  #remove: () => void;
  #devices = new Map<string, DeviceCounts>();
  #sessions = new Map<ObservedImport, SessionCounts>();
  /** The session reported last, and its counts: most reports in a row are of one session. */
  #lastImport: ObservedImport | undefined;
  #lastCounts: SessionCounts | undefined;
  #connections = new LabelledCounts();
  #sessionsStarted = new LabelledCounts();
  #limits = new LabelledCounts();
  #imports = new LabelledCounts();
  #refusals = new LabelledCounts();
  #policy = new LabelledCounts();
  #attach = new LabelledCounts();
  #detach = new LabelledCounts();

  /** Starts counting the traffic and decisions of `server`. */
  constructor(server: UsbipServer) {
    this.#server = server;
    this.#remove = server.observers.add(this);
  }

  /** Stops counting (the counts so far stay readable). */
  close(): void {
    this.#remove();
  }

  #device(busid: string): DeviceCounts {
    let d = this.#devices.get(busid);
    if (d === undefined) {
      d = new DeviceCounts(busid);
      this.#devices.set(busid, d);
    }
    return d;
  }

  /** The counts of a session; made on first sight when counting began after its import. */
  #session(i: ObservedImport): SessionCounts {
    if (i === this.#lastImport) return this.#lastCounts!;
    let s = this.#sessions.get(i);
    if (s === undefined) {
      s = { device: this.#device(i.exported.busid), started: new SubmitTimes() };
      this.#sessions.set(i, s);
    }
    this.#lastImport = i;
    this.#lastCounts = s;
    return s;
  }

  // UrbObserver

  /** Counts a connection, a session, a limit, a refusal, a policy decision or an attach or detach. */
  event(e: ServerEvent): void {
    switch (e.kind) {
      case "connection":
        return this.#connections.inc({ transport: e.transport });
      case "session":
        return this.#sessionsStarted.inc({ transport: e.transport });
      case "limit":
        return this.#limits.inc({ limit: e.limit });
      case "import_refused":
        return this.#refusals.inc({ reason: e.reason });
      case "policy":
        return this.#policy.inc({
          request: e.request,
          rule: e.decision.rule !== undefined ? String(e.decision.rule) : "default",
          effect: e.decision.effect,
        });
      case "attach":
        return this.#attach.inc({ kind: e.attachKind, outcome: outcomeLabel(e.status) });
      case "detach":
        return this.#detach.inc({ outcome: outcomeLabel(e.status) });
    }
  }

  /** Counts an import. */
  imported(i: ObservedImport): void {
    this.#session(i);
    this.#imports.inc({ busid: i.exported.busid, transport: i.transport });
  }

  /** Notes when a URB was submitted. */
  submitted(i: ObservedImport, cmd: CmdSubmit): void {
    this.#session(i).started.set(cmd.seqnum, performance.now());
  }

  /** Counts a completed URB, its bytes and its latency. */
  completed(i: ObservedImport, cmd: CmdSubmit, c: UrbCompletion): void {
    const s = this.#session(i);
    const t0 = s.started.take(cmd.seqnum);
    if (t0 !== undefined) s.device.observe((performance.now() - t0) / 1000);
    const status = c.status === 0 ? 0 : (STATUS_INDEX.get(c.status) ?? OTHER_STATUS);
    const index = (TYPE_INDEX[urbTransferType(i, cmd)] * 2 + (cmd.direction === 1 ? 1 : 0)) *
        STATUSES.length + status;
    s.device.urbs[index]!++;
    s.device.bytes[index]! += c.actualLength;
  }

  /** Counts an unlink. */
  unlinked(i: ObservedImport, _seqnum: number, unlinkSeqnum: number, status: number): void {
    const s = this.#session(i);
    if (status === 0) {
      s.device.unlinksNotPending++;
      return;
    }
    s.started.take(unlinkSeqnum);
    s.device.unlinksCancelled++;
  }

  /** Forgets a session that ended. */
  released(i: ObservedImport): void {
    this.#sessions.delete(i);
    if (i === this.#lastImport) this.#lastImport = this.#lastCounts = undefined;
  }

  /** The exposition: every metric now, in the Prometheus text format 0.0.4. */
  render(): string {
    const w = new ExpositionWriter();
    const counter = (name: string, help: string, counts: LabelledCounts) => {
      w.family(name, "counter", help);
      for (const { labels, value } of counts.entries) w.sample(name, labels, value);
    };
    const server = this.#server;
    const open = new LabelledCounts();
    const pending = new Map<string, number>(server.devices.map((d) => [d.busid, 0]));
    for (const { labels } of this.#sessionsStarted.entries) open.inc(labels, 0);
    for (const s of server.sessions) {
      open.inc({ transport: s.conn.peer.transport });
      const busid = s.device?.busid;
      if (busid !== undefined) pending.set(busid, (pending.get(busid) ?? 0) + s.usage.pendingUrbs);
    }
    const exported = new LabelledCounts();
    for (const d of server.devices) exported.inc({ origin: d.origin });

    counter(
      "usbipgw_connections_accepted_total",
      "Connections the listeners handed to the server, by transport, those then refused for a connection limit included.",
      this.#connections,
    );
    counter(
      "usbipgw_sessions_total",
      "Sessions started (connections the limits let in), by transport.",
      this.#sessionsStarted,
    );
    w.family("usbipgw_sessions_open", "gauge", "Sessions open now, by transport.");
    for (const { labels, value } of open.entries) w.sample("usbipgw_sessions_open", labels, value);
    counter(
      "usbipgw_limit_closures_total",
      "Connections refused at accept or sessions closed for exceeding a limit, by the limit's name.",
      this.#limits,
    );
    counter("usbipgw_imports_total", "Devices imported, by bus id and transport.", this.#imports);
    counter(
      "usbipgw_import_refusals_total",
      "Imports refused, by reason: policy (ST_NA), busy (ST_DEV_BUSY), no_device (ST_NODEV), device_error (ST_DEV_ERR).",
      this.#refusals,
    );
    counter(
      "usbipgw_policy_decisions_total",
      "Access policy decisions for device lists and imports, by the rule that decided (its number, or default) and the effect.",
      this.#policy,
    );
    counter(
      "usbipgw_attach_requests_total",
      "Requests to attach a device into this machine's kernel (OP_REQ_ATTACH), by kind and outcome.",
      this.#attach,
    );
    counter(
      "usbipgw_detach_requests_total",
      "Requests to detach a vhci port (OP_REQ_DETACH), by outcome.",
      this.#detach,
    );
    w.family("usbipgw_devices_exported", "gauge", "Devices exported now, by origin.");
    for (const { labels, value } of exported.entries) {
      w.sample("usbipgw_devices_exported", labels, value);
    }

    const devices = [...this.#devices.values()];
    const perSeries = (name: string, help: string, values: (d: DeviceCounts) => Float64Array) => {
      w.family(name, "counter", help);
      for (const d of devices) {
        const v = values(d);
        for (let k = 0; k < SERIES; k++) {
          if (d.urbs[k] === 0) continue;
          w.sample(name, seriesLabels(d.busid, k), v[k]!);
        }
      }
    };
    perSeries(
      "usbipgw_urbs_total",
      "URBs completed (answered with RET_SUBMIT), by bus id, transfer type, direction and status.",
      (d) => d.urbs,
    );
    perSeries(
      "usbipgw_urb_bytes_total",
      "Data bytes of completed URBs (RET_SUBMIT actual_length), by bus id, transfer type, direction and status.",
      (d) => d.bytes,
    );
    w.family(
      "usbipgw_unlinks_total",
      "counter",
      "CMD_UNLINKs answered, by bus id and result: cancelled (the URB was pending) or not_pending.",
    );
    for (const d of devices) {
      w.sample(
        "usbipgw_unlinks_total",
        { busid: d.busid, result: "cancelled" },
        d.unlinksCancelled,
      );
      w.sample(
        "usbipgw_unlinks_total",
        { busid: d.busid, result: "not_pending" },
        d.unlinksNotPending,
      );
    }
    w.family(
      "usbipgw_urbs_pending",
      "gauge",
      "URBs submitted and not yet answered nor unlinked, by bus id.",
    );
    for (const [busid, n] of pending) w.sample("usbipgw_urbs_pending", { busid }, n);
    w.family(
      "usbipgw_urb_latency_seconds",
      "histogram",
      "Time from CMD_SUBMIT to RET_SUBMIT of completed URBs, by bus id.",
    );
    for (const d of devices) {
      w.histogram(
        "usbipgw_urb_latency_seconds",
        { busid: d.busid },
        LATENCY_BUCKETS_SECONDS,
        d.latency,
        d.latencySum,
      );
    }
    writeProcessMetrics(w, readProcessFigures());
    return w.text();
  }
}

/** The labels of URB series `k` of device `busid`. */
function seriesLabels(busid: string, k: number): Labels {
  const status = k % STATUSES.length;
  const rest = (k - status) / STATUSES.length;
  return {
    busid,
    type: TYPES[rest >> 1]!,
    direction: DIRECTIONS[rest & 1]!,
    status: STATUSES[status]!,
  };
}
