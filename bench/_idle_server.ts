// The baseline for the idle-session memory figure (bench/_memory.ts): a Deno server that holds
// every connection it accepts with one pending read of a 48-byte buffer (a USB/IP header),
// over TCP and a unix socket, and does nothing else. Usage: _idle_server.ts PORT PATH

const [portText, path] = Deno.args;

async function hold(conn: Deno.Conn): Promise<void> {
  const header = new Uint8Array(48);
  try {
    while ((await conn.read(header)) !== null) {
      // Whatever arrives is dropped; the connection stays open.
    }
  } catch {
    // The client went away.
  } finally {
    try {
      conn.close();
    } catch {
      // Closed.
    }
  }
}

async function accept(listener: Deno.Listener): Promise<void> {
  for await (const conn of listener) hold(conn);
}

const tcp = Deno.listen({ hostname: "127.0.0.1", port: Number(portText) });
try {
  Deno.removeSync(path!);
} catch {
  // Not there.
}
const unix = Deno.listen({ transport: "unix", path: path! });
await Promise.all([accept(tcp), accept(unix)]);
