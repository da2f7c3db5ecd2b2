/**
 * `usbipgw capture` on the gateway's side: the handler of OP_REQ_CAPTURE that streams a
 * server's traffic as pcapng into the requester's connection (the same blocks as a capture
 * file), for one device or all of them, until either side closes. What a slow reader leaves
 * unread is bounded by the connection ({@linkcode LiveCaptureOutput.maxQueued}): past it
 * records are dropped, counted and logged, and sessions never wait.
 *
 * @module
 */

import { getLogger } from "../logtape.ts";
import type { LiveCaptureHandler, UsbipServer } from "../server/server.ts";
import type { LiveCaptureOutput } from "../server/session_host.ts";
import { describePeer } from "../transport/connection.ts";
import { Capture, type CaptureOutput, serverSource } from "./capture.ts";

const log = getLogger(["usbipgw", "capture"]);

/**
 * The OP_REQ_CAPTURE handler of `server()` (a function, so that the handler can be given to
 * the server's own constructor).
 *
 * @example
 * ```ts
 * import { UsbipServer } from "../server/server.ts";
 * import { liveCapture } from "./live_capture.ts";
 * const server: UsbipServer = new UsbipServer({
 *   statusAccess: () => true,
 *   liveCapture: liveCapture(() => server),
 * });
 * await server.close();
 * ```
 */
export function liveCapture(server: () => UsbipServer): LiveCaptureHandler {
  return (request, peer, out: LiveCaptureOutput) => {
    const what = request.busid === "" ? "every device" : request.busid;
    const who = describePeer(peer);
    const capture = new Capture(serverSource(server()), connectionOutput(out), {
      maxQueued: out.maxQueued,
      label: `live capture of ${what} for ${who}`,
      ...(request.snaplen > 0 ? { snaplen: request.snaplen } : {}),
      ...(request.busid !== "" ? { includes: (e) => e.busid === request.busid } : {}),
    });
    capture.start(`usbipgw live capture of ${what} started`);
    log.info("Live capture of {what} for {peer} started", { what, peer: who });
    return () => {
      capture.stop();
      log.info("Live capture of {what} for {peer} ended: {written} record(s), {dropped} dropped", {
        what,
        peer: who,
        written: capture.written,
        dropped: capture.dropped,
      });
    };
  };
}

/**
 * Blocks for the requester's connection: each in a buffer of its own (the connection keeps it
 * until written, and says no more than how much it holds), handed over in order once filled.
 */
function connectionOutput(out: LiveCaptureOutput): CaptureOutput {
  const filling: Uint8Array[] = [];
  let bytes = 0;
  const hand = () => {
    for (const block of filling.splice(0)) out.write(block);
    bytes = 0;
  };
  return {
    reserve(size) {
      const block = new Uint8Array(size);
      if (filling.length === 0) queueMicrotask(hand);
      filling.push(block);
      bytes += size;
      return block;
    },
    get pending() {
      return out.pending + bytes;
    },
  };
}
