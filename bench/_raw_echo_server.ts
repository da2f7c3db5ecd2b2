// The baseline for the URB and scale benchmarks (bench/_urb.ts, bench/_scale.ts): the fastest
// honest Deno server for USB/IP's frame shape (a 48-byte header, then a payload), no USB in it.
// It runs in its own process, sets TCP_NODELAY, reads into buffers it reuses, and writes each
// reply (header + payload) from a buffer kept per reply size with one write. The header's u32
// at 0x18 is the payload length that follows the request; the u32 at 0x1c is the payload length
// of the reply. Usage: _raw_echo_server.ts PORT PATH

const [portText, path] = Deno.args;
const HEADER = 48;

async function readFull(conn: Deno.Conn, buf: Uint8Array): Promise<boolean> {
  let off = 0;
  while (off < buf.length) {
    const n = await conn.read(buf.subarray(off));
    if (n === null) return false;
    off += n;
  }
  return true;
}

async function serve(conn: Deno.Conn) {
  const header = new Uint8Array(HEADER);
  const view = new DataView(header.buffer);
  let payload = new Uint8Array(65536);
  const replies = new Map<number, Uint8Array>();
  try {
    while (await readFull(conn, header)) {
      const inLength = view.getUint32(0x18);
      const outLength = view.getUint32(0x1c);
      if (inLength > payload.length) payload = new Uint8Array(inLength);
      if (inLength > 0 && !(await readFull(conn, payload.subarray(0, inLength)))) break;
      let reply = replies.get(outLength);
      if (reply === undefined) {
        reply = new Uint8Array(HEADER + outLength);
        replies.set(outLength, reply);
      }
      // The reply buffer is reused: the request's first 8 bytes (the seqnum's place) go in.
      const out = reply;
      out.set(header.subarray(0, 8));
      let off = 0;
      while (off < out.length) off += await conn.write(out.subarray(off));
    }
  } catch {
    // Client went away.
  } finally {
    try {
      conn.close();
    } catch {
      // Closed.
    }
  }
}

async function accept(listener: Deno.Listener, tcp: boolean) {
  for await (const conn of listener) {
    if (tcp) (conn as Deno.TcpConn).setNoDelay(true);
    serve(conn);
  }
}

const tcp = Deno.listen({ hostname: "127.0.0.1", port: Number(portText) });
try {
  Deno.removeSync(path!);
} catch {
  // Not there.
}
const unix = Deno.listen({ transport: "unix", path: path! });
console.log("ready");
await Promise.all([accept(tcp, true), accept(unix, false)]);
