/**
 * `usbipgw capture`: streams a running gateway's USB traffic as pcapng (Linux usbmon records,
 * what Wireshark reads from `usbmon` interfaces) over its unix socket (OP_REQ_CAPTURE,
 * usbipgw's own op), to stdout or a file, until SIGINT or SIGTERM or the gateway's end.
 *
 * @module
 */

import { requestCapture } from "../../client/usbip_client.ts";
import { PcapngBlockStream } from "../../capture/pcapng.ts";
import { connectUnix } from "../../transport/mod.ts";
import type { Command, CommandIo, ParsedFlags } from "../command.ts";
import { ExitCode } from "../exit_codes.ts";
import { onStopSignals } from "../stop_signals.ts";
import { UsageError } from "../usage_error.ts";
import { GATEWAY_SOCKET_FLAG, gatewaySocket } from "./status.ts";

async function run(flags: ParsedFlags, io: CommandIo): Promise<number> {
  flags.noMorePositional();
  const busid = flags.one("busid") ?? "";
  const file = flags.one("write") ?? "-";
  const snaplenText = flags.one("snaplen");
  let snaplen = 0; // all
  if (snaplenText !== undefined) {
    snaplen = /^\d+$/.test(snaplenText) ? Number(snaplenText) : NaN;
    if (!(snaplen >= 1 && snaplen <= 0xffffffff)) {
      throw new UsageError(`Invalid -s ${snaplenText}: expected a number of bytes, at least 1`);
    }
  }
  if (file === "-" && Deno.stdout.isTerminal()) {
    throw new UsageError(
      "Not writing pcapng to a terminal: pipe it (usbipgw capture | wireshark -k -i -) or give -w FILE",
    );
  }
  const path = gatewaySocket(flags, io);
  const conn = await connectUnix(path);
  const stream = await requestCapture(conn, busid, snaplen);
  const output = file === "-"
    ? Deno.stdout
    : await Deno.open(file, { write: true, create: true, truncate: true, mode: 0o600 });
  const what = busid === "" ? "every device" : busid;
  io.err(`usbipgw: capturing ${what} from ${path}; Ctrl-C stops\n`);
  const stopped = new AbortController();
  const unlisten = onStopSignals(() => stopped.abort());
  let ended = "the gateway ended the capture";
  try {
    // Whole blocks only, so that a stop leaves a file that ends on a block boundary.
    await stream.pipeThrough(new PcapngBlockStream()).pipeTo(
      new WritableStream({
        async write(block) {
          let o = 0;
          while (o < block.length) o += await output.write(block.subarray(o));
        },
      }),
      { signal: stopped.signal },
    );
  } catch (e) {
    if (stopped.signal.aborted) ended = "";
    else if (e instanceof Deno.errors.BrokenPipe) ended = "";
    else throw e;
  } finally {
    unlisten();
    if (file !== "-") output.close();
    conn.close();
  }
  if (ended !== "") io.err(`usbipgw: ${ended}\n`);
  return ExitCode.OK;
}

/** `usbipgw capture`. */
export const captureCommand: Command = {
  name: "capture",
  summary: "stream a running gateway's USB traffic as pcapng (for Wireshark)",
  usage: ["capture [-b BUSID] [-w FILE|-] [-s BYTES] [--unix PATH]"],
  description:
    `Asks a running gateway, over its unix socket, for its USB traffic as it happens and writes
it as pcapng in the form of Linux usbmon captures (link type 220), which Wireshark and tshark
decode: each URB's submit and completion, control setup packets, data, unlinks, and the
descriptors that let Wireshark decode mass storage (SCSI) and HID. Runs until SIGINT or
SIGTERM (exit 0) or until the gateway closes the capture. Root, the console user and the
gateway's own user may capture: a capture shows everything the devices move, typed keys
and disk contents included.`,
  flags: [
    { name: "busid", short: "b", value: "BUSID", help: "capture only this device (default: all)" },
    {
      name: "write",
      short: "w",
      value: "FILE",
      help: "write to FILE (mode 0600) instead of stdout (-)",
      complete: "file",
    },
    {
      name: "snaplen",
      short: "s",
      value: "BYTES",
      help: "keep at most BYTES of each transfer's data (default: all)",
    },
    GATEWAY_SOCKET_FLAG,
  ],
  epilogue: `Examples:
  usbipgw capture -b 1-1 | wireshark -k -i -
  usbipgw capture -w gw.pcapng          # then: tshark -r gw.pcapng
  usbipgw capture -s 64 | tshark -r - -Y usbms

Exit codes: 0 stopped or ended by the gateway, 1 error, 2 usage, 3 cannot reach the gateway,
6 not allowed for this user.`,
  run,
};
