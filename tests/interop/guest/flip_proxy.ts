// A TCP proxy for the tls scenarios that tampers with a session on request: it forwards
// 127.0.0.1:LISTEN to 127.0.0.1:TARGET, and once the file ARM exists it flips one bit in the
// body of the next TLS application-data record (RFC 5246 section 6.2: type 23, then version
// and a 16-bit length) going in DIRECTION (s2c: server to client, c2s: client to server),
// once, and writes the guest's uptime at that moment to ARM.done. Record headers are left
// alone, so the receiver reads a whole record that fails authentication.
//
// deno run -A flip_proxy.ts LISTEN TARGET DIRECTION ARM
const [listenPort, targetPort, direction, arm] = Deno.args;
if (!arm || (direction !== "s2c" && direction !== "c2s")) {
  console.error("usage: flip_proxy.ts LISTEN TARGET s2c|c2s ARM");
  Deno.exit(2);
}

let flipped = false;

function armed(): boolean {
  if (flipped) return false;
  try {
    Deno.statSync(arm!);
    return true;
  } catch {
    return false;
  }
}

/** Where the stream is within its TLS records. */
interface RecordState {
  header: number[];
  type: number;
  left: number;
}

/** Flips one bit in the body of an application-data record within `chunk`, if armed. */
function tamper(chunk: Uint8Array, st: RecordState): void {
  let i = 0;
  while (i < chunk.length) {
    if (st.left === 0) {
      st.header.push(chunk[i]!);
      i++;
      if (st.header.length === 5) {
        st.type = st.header[0]!;
        st.left = (st.header[3]! << 8) | st.header[4]!;
        st.header = [];
      }
      continue;
    }
    const take = Math.min(st.left, chunk.length - i);
    if (st.type === 23 && armed()) {
      flipped = true;
      chunk[i + (take >> 1)]! ^= 0x10;
      const uptime = Deno.readTextFileSync("/proc/uptime").split(" ")[0];
      Deno.writeTextFileSync(`${arm}.done`, `${uptime}\n`);
      console.error(`flip_proxy: flipped a bit of a record ${direction} at uptime ${uptime}`);
    }
    st.left -= take;
    i += take;
  }
}

async function forward(from: Deno.Conn, to: Deno.Conn, tampering: boolean): Promise<void> {
  const buf = new Uint8Array(65536);
  const st: RecordState = { header: [], type: 0, left: 0 };
  try {
    while (true) {
      const n = await from.read(buf);
      if (n === null) break;
      const chunk = buf.subarray(0, n);
      if (tampering) tamper(chunk, st);
      let off = 0;
      while (off < n) off += await to.write(chunk.subarray(off));
    }
  } catch {
    // Either side reset: end both.
  }
  for (const c of [from, to]) {
    try {
      c.close();
    } catch {
      // closed already
    }
  }
}

const listener = Deno.listen({ hostname: "127.0.0.1", port: Number(listenPort) });
console.error(`flip_proxy: 127.0.0.1:${listenPort} -> 127.0.0.1:${targetPort}, ${direction}`);
for await (const client of listener) {
  const server = await Deno.connect({ hostname: "127.0.0.1", port: Number(targetPort) });
  client.setNoDelay(true);
  server.setNoDelay(true);
  forward(client, server, direction === "c2s");
  forward(server, client, direction === "s2c");
}
