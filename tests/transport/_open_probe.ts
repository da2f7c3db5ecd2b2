// A child process for the tests that need fewer privileges than the test runner has (root
// without CAP_DAC_OVERRIDE or CAP_NET_BIND_SERVICE, or a read-only mount): it opens one
// listener, back-end or source and prints, as one JSON line, the error it got (or "ok").
//
//   _open_probe.ts tcp HOST PORT | unix PATH | backend SPEC [LABEL] | text PATH [LABEL]
import { TcpListener } from "../../lib/transport/tcp.ts";
import { UnixListener } from "../../lib/transport/unix.ts";
import { openCharBackend } from "../../lib/backends/char/mod.ts";
import { openTextSocket } from "../../lib/backends/text_socket.ts";

const [kind, a = "", b] = Deno.args;
let result: Record<string, unknown>;
try {
  switch (kind) {
    case "tcp":
      new TcpListener({ hostname: a, port: Number(b) }).close();
      break;
    case "unix":
      (await UnixListener.listen({ path: a })).close();
      break;
    case "backend":
      await (await openCharBackend(a, b === undefined ? {} : { label: b })).close();
      break;
    case "text":
      await (await openTextSocket({ path: a, ...(b === undefined ? {} : { label: b }) }, () => {}))
        .close();
      break;
    default:
      throw new Error(`Unknown probe ${kind}`);
  }
  result = { ok: true };
} catch (e) {
  const o = e as Record<string, unknown>;
  result = { name: o.name, message: o.message, failure: o.failure, code: o.code };
}
console.log(JSON.stringify(result));
