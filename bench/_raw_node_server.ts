// A second baseline for the unix rows of the URB bench (bench/_urb.ts): the raw echo server's
// framing (bench/_raw_echo_server.ts) over node:net, the socket layer the gateway's unix
// listener must use to learn its peer's credentials (SO_PEERCRED; Deno.listen gives none). It
// runs in its own process, parses requests out of node:net's chunks in place and answers each
// with one corked write of a fresh 48-byte header and, for an IN, a payload buffer it never
// changes. Usage: _raw_node_server.ts PORT PATH (TCP on 127.0.0.1:PORT too, NODELAY).
import * as net from "node:net";

const [portText, path] = Deno.args;
const HEADER = 48;
const payloads = new Map<number, Uint8Array>();

function serve(sock: net.Socket): void {
  let pending: Uint8Array[] = [];
  let queued = 0;
  const take = (n: number): Uint8Array => {
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const c = pending[0]!;
      const k = Math.min(c.length, n - off);
      out.set(c.subarray(0, k), off);
      off += k;
      if (k === c.length) pending.shift();
      else pending[0] = c.subarray(k);
    }
    queued -= n;
    return out;
  };
  let header: Uint8Array | undefined;
  sock.on("data", (chunk: Uint8Array) => {
    pending.push(chunk);
    queued += chunk.length;
    for (;;) {
      if (header === undefined) {
        if (queued < HEADER) return;
        header = take(HEADER);
      }
      const view = new DataView(header.buffer);
      const inLength = view.getUint32(0x18);
      if (queued < inLength) return;
      // The request's payload is consumed without a copy when it sits in whole chunks.
      let skip = inLength;
      while (skip > 0) {
        const c = pending[0]!;
        if (c.length <= skip) {
          pending.shift();
          skip -= c.length;
        } else {
          pending[0] = c.subarray(skip);
          skip = 0;
        }
      }
      queued -= inLength;
      const outLength = view.getUint32(0x1c);
      const reply = new Uint8Array(HEADER);
      reply.set(header.subarray(0, 8));
      header = undefined;
      sock.cork();
      sock.write(reply);
      if (outLength > 0) {
        let payload = payloads.get(outLength);
        if (payload === undefined) payloads.set(outLength, payload = new Uint8Array(outLength));
        sock.write(payload);
      }
      sock.uncork();
      if (queued === 0) pending = [];
    }
  });
  sock.on("error", () => sock.destroy());
}

const tcp = net.createServer({ noDelay: true, allowHalfOpen: true }, serve);
tcp.listen(Number(portText), "127.0.0.1");
try {
  Deno.removeSync(path!);
} catch {
  // Not there.
}
const unix = net.createServer({ allowHalfOpen: true }, serve);
unix.listen(path!, () => console.log("ready"));
