/**
 * What sessions tell observers of the traffic (the pcapng capture, the metrics): an import,
 * each URB as it is submitted and answered, each unlink, the release with the URBs a hang-up
 * left unanswered. Observers come and go while the gateway runs (a live capture); a session
 * asks {@linkcode UrbObservers.active} before it reports anything, so with none attached the
 * data path does one property read per URB.
 *
 * @module
 */

import { getLogger } from "../logtape.ts";
import type { CmdSubmit } from "../protocol/urb_messages.ts";
import type { AttachRequest } from "../protocol/op_messages.ts";
import type { TransferTypeName } from "../devices/descriptors.ts";
import { errorMessage } from "../util/error_message.ts";
import type { PeerInfo } from "../transport/connection.ts";
import type { PolicyDecision } from "../policy/policy.ts";
import type { ExportedDevice } from "./exported_device.ts";
import type { UrbCompletion } from "./ret_submit.ts";
import type { SessionLimits } from "./session_limits.ts";

const log = getLogger(["usbipgw", "server"]);

/** A session's import, as observers see it. */
export interface ObservedImport {
  /** The session's number (its logs'). */
  readonly session: number;
  /** The transport the importer came over. */
  readonly transport: PeerInfo["transport"];
  /** The imported device. */
  readonly exported: ExportedDevice;
}

/** Why an import was refused: the OP_REP_IMPORT status ST_NA, ST_DEV_BUSY, ST_NODEV, ST_DEV_ERR. */
export type ImportRefusal = "policy" | "busy" | "no_device" | "device_error";

/**
 * What the server decided outside the URB phase, for counting (the metrics): each where the
 * decision is made, never parsed back out of a log line.
 */
export type ServerEvent =
  /** The server was handed a connection (before the connection limits). */
  | { readonly kind: "connection"; readonly transport: PeerInfo["transport"] }
  /** A session started on a connection the limits let in. */
  | { readonly kind: "session"; readonly transport: PeerInfo["transport"] }
  /** A connection was refused at accept, or a session closed, for exceeding `limit`. */
  | { readonly kind: "limit"; readonly limit: keyof SessionLimits }
  /** An OP_REQ_IMPORT was refused. */
  | { readonly kind: "import_refused"; readonly reason: ImportRefusal }
  /** The policy decided on a device for a device list or an import. */
  | {
    readonly kind: "policy";
    readonly request: "list" | "import";
    readonly decision: PolicyDecision;
  }
  /** An OP_REQ_ATTACH of `attachKind` was answered with the OpStatus `status`. */
  | {
    readonly kind: "attach";
    readonly attachKind: AttachRequest["kind"];
    readonly status: number;
  }
  /** An OP_REQ_DETACH was answered with the OpStatus `status`. */
  | { readonly kind: "detach"; readonly status: number };

/** One observer's view; every method is optional. Methods must not throw (a throw is logged). */
export interface UrbObserver {
  /** The server decided something worth counting (a connection, a refusal, a policy decision). */
  event?(e: ServerEvent): void;
  /** A session imported a device; its URBs follow. */
  imported?(i: ObservedImport): void;
  /** A CMD_SUBMIT was accepted, before the device sees it. */
  submitted?(i: ObservedImport, cmd: CmdSubmit): void;
  /**
   * The URB's RET_SUBMIT is sent, with what it says (-ENODEV for a vanished device). `c.data`
   * is valid only during the call (the device may reuse its buffer afterwards): copy what you
   * keep.
   */
  completed?(i: ObservedImport, cmd: CmdSubmit, c: UrbCompletion): void;
  /**
   * A CMD_UNLINK `seqnum` for URB `unlinkSeqnum` was answered: -ECONNRESET when it cancelled
   * the URB (no RET_SUBMIT follows), 0 when the URB had already been answered.
   */
  unlinked?(i: ObservedImport, seqnum: number, unlinkSeqnum: number, status: number): void;
  /** The session ended; `aborted` were pending and will never be answered. */
  released?(i: ObservedImport, aborted: readonly CmdSubmit[]): void;
}

/**
 * The transfer type of a submitted URB on the imported device: control on endpoint 0, else the
 * active endpoint's type in the URB's direction (bulk when the endpoint is not active).
 */
export function urbTransferType(i: ObservedImport, cmd: CmdSubmit): TransferTypeName {
  if (cmd.ep === 0) return "control";
  return i.exported.device.transferType(cmd.ep, cmd.direction === 1) ?? "bulk";
}

/**
 * The observers of a server: added and removed at any time; each report goes to every one in
 * the order they were added. An observer that throws is logged (once per observer) and the
 * others and the session go on.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { UrbObservers } from "./urb_observer.ts";
 * const observers = new UrbObservers();
 * assertEquals(observers.active, false);
 * const seen: number[] = [];
 * const remove = observers.add({ unlinked: (_i, seqnum) => seen.push(seqnum) });
 * assertEquals(observers.active, true);
 * observers.report("unlinked", {} as never, 7, 3, -104);
 * remove();
 * observers.report("unlinked", {} as never, 8, 3, 0);
 * assertEquals([seen, observers.active], [[7], false]);
 * ```
 */
export class UrbObservers {
  #list: UrbObserver[] = [];
  #failed = new WeakSet<UrbObserver>();
  /** Completions reported with {@linkcode UrbObservers.reportCompleted}, not yet delivered. */
  #completions: {
    i: ObservedImport;
    cmd: CmdSubmit;
    c: UrbCompletion;
    delivered: (() => void) | undefined;
  }[] = [];
  /** A microtask that delivers the completions is queued. */
  #scheduled = false;

  /** Whether any observer is attached. */
  get active(): boolean {
    return this.#list.length > 0;
  }

  /** Adds `observer`; the function returned removes it. */
  add(observer: UrbObserver): () => void {
    this.#deliver();
    this.#list = [...this.#list, observer];
    return () => {
      this.#deliver();
      this.#list = this.#list.filter((o) => o !== observer);
    };
  }

  /**
   * Reports an URB's completion once the code running now has returned, before anything else
   * happens (a microtask): a session calls it after handing the RET_SUBMIT to its writer, so
   * that the reply reaches the socket before an observer copies its data (a capture), and the
   * client's next request overlaps that work. Any other report first delivers those waiting,
   * so observers see every session's events in the order they happened. `delivered` is called
   * once every observer has seen it.
   */
  reportCompleted(
    i: ObservedImport,
    cmd: CmdSubmit,
    c: UrbCompletion,
    delivered?: () => void,
  ): void {
    this.#completions.push({ i, cmd, c, delivered });
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(this.#scheduledDelivery);
  }

  #scheduledDelivery = (): void => {
    this.#scheduled = false;
    this.#deliver();
  };

  /** Delivers the completions waiting; no-op when there are none. */
  #deliver(): void {
    const waiting = this.#completions;
    if (waiting.length === 0) return;
    this.#completions = [];
    for (const { i, cmd, c, delivered } of waiting) {
      this.#report("completed", i, cmd, c);
      delivered?.();
    }
  }

  /** Reports to every observer that has `method` (after the completions waiting). */
  report<M extends keyof UrbObserver>(
    method: M,
    ...args: Parameters<NonNullable<UrbObserver[M]>>
  ): void {
    this.#deliver();
    this.#report(method, ...args);
  }

  #report<M extends keyof UrbObserver>(
    method: M,
    ...args: Parameters<NonNullable<UrbObserver[M]>>
  ): void {
    for (const o of this.#list) {
      const f = o[method] as ((...a: typeof args) => void) | undefined;
      if (f === undefined) continue;
      try {
        f.apply(o, args);
      } catch (e) {
        if (this.#failed.has(o)) continue;
        this.#failed.add(o);
        log.error("An observer of the traffic failed at {method}: {error}", {
          method,
          error: errorMessage(e),
        });
      }
    }
  }
}
