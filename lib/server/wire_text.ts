/**
 * Strings from the wire as they go into audit lines and op-phase answers: quoted unless they
 * have a usual form, so that a peer cannot forge a log line; and answers cut to a byte length.
 *
 * @module
 */

import { OpStatus } from "../protocol/constants.ts";
import type { AttachRequest } from "../protocol/op_messages.ts";
import { formatHostPort } from "../transport/connection.ts";
import { BUSID_PATTERN } from "../protocol/busid.ts";

const utf8 = new TextEncoder();

/** A bus id from the wire as it can go into a log line: quoted unless it has the usual form. */
export function printable(busid: string): string {
  return BUSID_PATTERN.test(busid) ? busid : JSON.stringify(busid);
}

/** The form of a host name or address that goes into a log line unquoted. */
const HOST_PATTERN = /^[A-Za-z0-9:][A-Za-z0-9.:-]{0,252}$/;

/** A host from the wire as it can go into a log line: quoted unless it has a usual form. */
export function printableHost(host: string): string {
  return HOST_PATTERN.test(host) ? host : JSON.stringify(host);
}

/**
 * A printable form of an attach request for logs and messages, with the strings from the wire
 * quoted unless they have a usual form: `local device 1-2`, `remote device 1-2 at
 * 192.0.2.9:3240`, `device 1-2 over a handed-over socket`.
 *
 * @example
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { describeAttachRequest } from "./wire_text.ts";
 * const text = describeAttachRequest({ kind: "remote", host: "::1", port: 3240, busid: "2-1" });
 * assertEquals(text, "remote device 2-1 at [::1]:3240");
 * const odd = describeAttachRequest({ kind: "local", busid: "1-1\nforged" });
 * assertEquals(odd, 'local device "1-1\\nforged"');
 * ```
 */
export function describeAttachRequest(request: AttachRequest): string {
  const busid = printable(request.busid);
  switch (request.kind) {
    case "local":
      return `local device ${busid}`;
    case "remote": {
      const at = HOST_PATTERN.test(request.host)
        ? formatHostPort(request.host, request.port)
        : `${JSON.stringify(request.host)} port ${request.port}`;
      return `remote device ${busid} at ${at}`;
    }
    case "stream":
      return `device ${busid} over a handed-over socket`;
  }
}

/** How a status reads in an audit line: done, refused (ST_NA), or failed with the status. */
export function outcomeOf(status: number): string {
  return status === OpStatus.ST_OK
    ? "done"
    : status === OpStatus.ST_NA
    ? "refused"
    : `failed (status ${status})`;
}

/** `text` cut to at most `maxBytes` bytes of UTF-8, never inside a character. */
export function truncateUtf8(text: string, maxBytes: number): string {
  if (text.length <= maxBytes / 3 || utf8.encode(text).length <= maxBytes) return text;
  let out = "";
  let bytes = 0;
  for (const ch of text) {
    const n = utf8.encode(ch).length;
    if (bytes + n > maxBytes) break;
    out += ch;
    bytes += n;
  }
  return out;
}
