/**
 * The socket back-ends, after QEMU's chardev/char-socket.c: the `tcp:HOST:PORT` and
 * `unix:PATH` servers (QEMU's `server=on`), which take one client at a time, and
 * `tcp-connect:HOST:PORT` (`server=off`), which connects in the background and reconnects.
 *
 * @module
 */

import {
  type Connection,
  type DirectIo,
  formatHostPort,
  type Listener,
} from "../../transport/connection.ts";
import { TcpListener, wrapTcpConn } from "../../transport/tcp.ts";
import { UnixListener } from "../../transport/unix.ts";
import { ConnectError, connectError } from "../../transport/connect_error.ts";
import { CharBackend, type CharBackendOptions } from "./char_backend.ts";
import { listenFailed } from "../backend_error.ts";
import { sleep } from "../../util/wait.ts";

/** Direct I/O over a connection's web streams, for transports without `direct`. */
function _streamIo(conn: Connection): DirectIo {
  const reader = conn.readable.getReader();
  const writer = conn.writable.getWriter();
  let left: Uint8Array = new Uint8Array(0);
  return {
    async read(buffer) {
      if (left.length === 0) {
        const r = await reader.read();
        if (r.done) return null;
        left = r.value;
      }
      const n = Math.min(buffer.length, left.length);
      buffer.set(left.subarray(0, n));
      left = left.subarray(n);
      return n;
    },
    async write(buffer) {
      await writer.write(buffer.slice());
      return buffer.length;
    },
  };
}

/** A back-end whose peer is one connection at a time. */
abstract class SocketBackend extends CharBackend {
  /**
   * Moves bytes between a connection and the queues until either side ends or the back-end
   * closes; marks the back-end connected meanwhile. Closes the connection.
   */
  protected async serveConnection(conn: Connection): Promise<void> {
    if (this.closed) {
      conn.close();
      return;
    }
    const io = conn.direct ?? _streamIo(conn);
    const stop = new AbortController();
    const end = () => {
      stop.abort();
      conn.close();
    };
    this.closing.addEventListener("abort", end, { once: true });
    this.setConnected(true);
    // Either side ending ends both. An error is the peer resetting or going away, or the
    // socket closed under the I/O; output still queued is counted as dropped by setConnected.
    const pump = (p: Promise<void>) => p.catch(() => {}).finally(end);
    await Promise.all([
      pump(this.pumpInput((buffer) => io.read(buffer), stop.signal)),
      // A copy: some sockets keep the buffer after write() resolves.
      pump(this.pumpOutput((bytes) => io.write(bytes.slice()), stop.signal)),
    ]);
    this.closing.removeEventListener("abort", end);
    this.setConnected(false);
  }
}

/** A server that takes one client at a time and refuses others while one is connected. */
class ServerBackend extends SocketBackend {
  readonly address: string;
  #listener: Listener;
  #accepting: Promise<void>;
  #client: Connection | undefined;
  #serving: Promise<void> = Promise.resolve();

  constructor(
    kind: "tcp" | "unix",
    listener: Listener,
    address: string,
    options: CharBackendOptions,
  ) {
    super(kind, options, false);
    this.#listener = listener;
    this.address = address;
    this.#accepting = this.#accept();
    this.log.info("{backend}: waiting for a client", { backend: this.description });
  }

  async #accept(): Promise<void> {
    for await (const conn of this.#listener) {
      if (this.#client !== undefined || this.closed) {
        this.log.warn("{backend}: refused {peer}, a client is already connected", {
          backend: this.description,
          peer: conn.peer.address,
        });
        conn.close();
        continue;
      }
      this.#client = conn;
      this.#serving = this.serveConnection(conn).finally(() => this.#client = undefined);
    }
  }

  protected async shutdown(): Promise<void> {
    this.#listener.close();
    this.#client?.close();
    await this.#accepting;
    await this.#serving;
  }
}

class TcpConnectBackend extends SocketBackend {
  readonly address: string;
  #running: Promise<void>;

  constructor(hostname: string, port: number, options: CharBackendOptions) {
    super("tcp-connect", options, false);
    this.address = formatHostPort(hostname, port);
    this.#running = this.#run(hostname, port, options);
  }

  async #run(hostname: string, port: number, options: CharBackendOptions): Promise<void> {
    const min = options.reconnectMinMs ?? 100;
    const max = options.reconnectMaxMs ?? 5000;
    let delay = min;
    let failures = 0;
    while (!this.closed) {
      let conn: Connection;
      try {
        conn = wrapTcpConn(
          await Deno.connect({ transport: "tcp", hostname, port, signal: this.closing }),
        );
      } catch (e) {
        if (this.closed) break;
        failures++;
        const why = connectError(this.address, "tcp", e);
        const fields = {
          backend: this.description,
          error: why instanceof ConnectError ? why.detail : why.message,
          delay,
        };
        if (failures === 1) this.log.warn("{backend}: cannot connect: {error}; retrying", fields);
        else this.log.debug("{backend}: cannot connect: {error}; retrying in {delay} ms", fields);
        await sleep(delay, this.closing);
        delay = Math.min(max, delay * 2);
        continue;
      }
      failures = 0;
      delay = min;
      await this.serveConnection(conn);
      await sleep(min, this.closing);
    }
  }

  protected async shutdown(): Promise<void> {
    await this.#running;
  }
}

/**
 * Listens on `hostname:port` (port 0: any free port, which {@linkcode CharBackend.address}
 * then names).
 *
 * @throws {BackendOpenError} When it cannot listen there.
 */
export function listenTcp(
  hostname: string,
  port: number,
  options: CharBackendOptions,
): CharBackend {
  let listener: TcpListener;
  try {
    listener = new TcpListener({ hostname, port });
  } catch (e) {
    throw listenFailed("tcp back-end", `on ${formatHostPort(hostname, port)}`, e, options.label);
  }
  return new ServerBackend("tcp", listener, formatHostPort(hostname, listener.port), options);
}

/**
 * Listens on a unix socket at `path` with {@linkcode CharBackendOptions.unixMode}.
 *
 * @throws {BackendOpenError} When the socket cannot be made.
 */
export async function listenUnix(path: string, options: CharBackendOptions): Promise<CharBackend> {
  let listener: UnixListener;
  try {
    listener = await UnixListener.listen({ path, mode: options.unixMode ?? 0o600 });
  } catch (e) {
    throw listenFailed("unix back-end", `on ${path}`, e, options.label);
  }
  return new ServerBackend("unix", listener, path, options);
}

/** Connects to `hostname:port` in the background; never fails to open. */
export function connectTcp(
  hostname: string,
  port: number,
  options: CharBackendOptions,
): CharBackend {
  return new TcpConnectBackend(hostname, port, options);
}
