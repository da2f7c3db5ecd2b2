/**
 * Unix-domain stream sockets (unix(7)) with the socket file's mode and owner set by options,
 * and each connection's peer credentials read with SO_PEERCRED. `Deno.listen` offers no peer
 * credentials, so the listener is a `node:net` server whose accepted fds FFI can query. A
 * socket this process made itself (one end of a socketpair(2)) is served the same way, with
 * the peer its caller names.
 *
 * Their connections can receive one file descriptor sent with SCM_RIGHTS (unix(7)) after a
 * request: `node:net` reads eagerly with read(2), which would drop the descriptor, so the
 * connection stops its native handle's reads, takes that one byte with recvmsg(2) on a
 * duplicate of the fd, and starts the reads again. Measured on Deno 2.9.6: the handle's
 * `readStop()` is honoured before its next read (reads happen in the event loop's poll of
 * handles that are reading, as in libuv), while `socket.pause()` is not enough: it does call
 * `readStop()`, but it also clears the handle's `reading` note, and the stream machinery calls
 * `Socket._read()` even while paused, which starts the reads again at once when that note is
 * clear. So the handle is stopped directly and its note left set; nothing else touches it while
 * no data comes.
 *
 * @module
 */

import { errorMessage } from "../util/error_message.ts";
import * as net from "node:net";
import { getPeerCredentials } from "./_libc.ts";
import { checkStreamFd, FdPassingError, receiveFd } from "../ffi/scm_rights.ts";
import { closeFd, dupFd } from "../ffi/fd.ts";
import {
  type Connection,
  type DirectIo,
  type Listener,
  type PeerInfo,
  wrapDenoConn,
} from "./connection.ts";
import { AcceptQueue } from "./accept_queue.ts";
import { connectError } from "./connect_error.ts";
import { errorCode, folderOf, ListenError, unixListenError } from "./listen_error.ts";

/**
 * Memory held by received bytes not yet read (their buffers, and CHUNK_COST per queued chunk)
 * above which the socket is paused, and the level at which it resumes.
 */
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;

/**
 * What a queued chunk costs beyond its buffer, counted high: the objects that hold it took
 * about 320 bytes each in Deno 2.9.6 (RSS over 100,000 one-byte chunks). So a peer whose bytes
 * come one per read gets the socket paused after about a thousand of them.
 */
const CHUNK_COST = 1024;

/** The umask under which a listening socket is made before its mode and owner are set. */
const OWNER_ONLY_UMASK = 0o177;

/**
 * Sets the process's umask to `mask` and returns the one before, or `undefined` without the
 * permission to (`--allow-sys=umask`; the gateway has it).
 */
function setUmask(mask: number): number | undefined {
  try {
    return Deno.umask(mask);
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable) return undefined;
    throw e;
  }
}

/** The most a unix connection reads at once into its own buffer. */
const OWN_READ_BYTES = 64 * 1024;

/**
 * The rest of a read that no read waits for is copied into a spare read buffer from this size
 * on, which then holds at most four times the bytes queued in it; a smaller rest into a buffer
 * of its own size.
 */
const SPARE_BUFFER_MIN_BYTES = OWN_READ_BYTES / 4;

/** node:net's private keys of a socket that reads into a buffer of its own (`onread`). */
interface OwnBufferKeys {
  buffer: symbol;
  callback: symbol;
}

let ownBufferKeys: OwnBufferKeys | null | undefined;

/**
 * The keys under which a `node:net` socket keeps its `onread` buffer and callback, read off a
 * socket made with that option (they are not exported), or null where there are none.
 */
function readOwnBufferKeys(): OwnBufferKeys | null {
  if (ownBufferKeys !== undefined) return ownBufferKeys;
  ownBufferKeys = null;
  try {
    const probe = new net.Socket(
      { onread: { buffer: new Uint8Array(1), callback: () => true } } as net.SocketConstructorOpts,
    );
    const keys = new Map(Object.getOwnPropertySymbols(probe).map((k) => [k.description, k]));
    probe.destroy();
    const buffer = keys.get("kBuffer");
    const callback = keys.get("kBufferCb");
    if (buffer !== undefined && callback !== undefined) ownBufferKeys = { buffer, callback };
  } catch {
    // No onread here: chunks come as 'data' events.
  }
  return ownBufferKeys;
}

/**
 * Direct I/O over a `node:net` socket: received bytes are copied straight into the reader's
 * buffer, or queued when no read waits (pausing the socket above HIGH_WATER); writes resolve
 * when node is done with the buffer.
 *
 * A unix socket reads into one buffer of its own, as node:net's `onread` option makes it do: the
 * socket is switched over in place (what node:net had read already is taken first), so that a
 * read is not a fresh 64 KiB allocation, which node:net makes for each 'data' chunk (5,000
 * reads, 5,000 buffers, in Deno 2.9.6). A read that waits gets the bytes copied into its buffer
 * at once; only bytes that come while no read waits are copied into a queued chunk.
 */
class NodeSocketIo implements DirectIo {
  #sock: net.Socket;
  #chunks: Uint8Array[] = [];
  #head = 0;
  #queued = 0;
  /** What the queued chunks hold in memory (see `held`). */
  #held = 0;
  #paused = false;
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;
  /** The buffer of the read waiting for bytes, and what the socket copied into it. */
  #into: Uint8Array | undefined;
  #intoCount = 0;
  /** Queued chunks' buffers of OWN_READ_BYTES to fill again once read (at most HIGH_WATER). */
  #spare: Uint8Array[] = [];
  #mine = new WeakSet<ArrayBufferLike>();

  constructor(sock: net.Socket, ownBuffer: boolean) {
    this.#sock = sock;
    const wake = () => {
      const w = this.#wake;
      this.#wake = undefined;
      w?.();
    };
    const keys = ownBuffer ? readOwnBufferKeys() : null;
    const handle = nativeHandle(sock);
    if (keys !== null && handle?.useUserBuffer !== undefined && !sock.destroyed) {
      sock.pause();
      for (let c: Uint8Array | null = sock.read(); c !== null; c = sock.read()) this.#queue(c);
      const own = new Uint8Array(OWN_READ_BYTES);
      // deno-lint-ignore no-explicit-any
      const s = sock as any;
      s[keys.buffer] = own;
      // Returning false stops the handle's reads; sock.resume() starts them again.
      s[keys.callback] = (n: number) => {
        this.#received(own, n);
        wake();
        return !this.#paused;
      };
      handle.useUserBuffer(own);
      sock.resume();
    } else {
      sock.on("data", (chunk: Uint8Array) => {
        this.#queue(chunk);
        wake();
      });
    }
    sock.on("end", () => {
      this.#ended = true;
      wake();
    });
    sock.on("error", (e: Error) => {
      this.#error = e;
      wake();
    });
    sock.on("close", () => {
      this.#ended = true;
      wake();
    });
  }

  /** Memory the queued chunks hold: their whole buffers and CHUNK_COST each. */
  get held(): number {
    return this.#held;
  }

  /** Bytes received and not read yet. */
  get queued(): number {
    return this.#queued;
  }

  /** Queues `chunk` (the reader's from now on), pausing the socket above HIGH_WATER. */
  #queue(chunk: Uint8Array): void {
    this.#chunks.push(chunk);
    this.#queued += chunk.length;
    this.#held += chunk.buffer.byteLength + CHUNK_COST;
    if (this.#held > HIGH_WATER && !this.#paused) {
      this.#paused = true;
      this.#sock.pause();
    }
  }

  /**
   * `n` bytes read into `own`: into the waiting read's buffer, the rest copied to the queue,
   * into a spare read buffer if it is large, else into a buffer of its size (so that a peer
   * sending a byte at a time cannot make each byte hold a whole read buffer).
   */
  #received(own: Uint8Array, n: number): void {
    let taken = 0;
    const into = this.#into;
    if (into !== undefined && this.#queued === 0) {
      taken = Math.min(n, into.length);
      into.set(own.subarray(0, taken));
      this.#intoCount = taken;
      this.#into = undefined;
    }
    if (taken === n) return;
    if (n - taken < SPARE_BUFFER_MIN_BYTES) {
      this.#queue(own.slice(taken, n));
      return;
    }
    let buffer = this.#spare.pop();
    if (buffer === undefined) {
      buffer = new Uint8Array(OWN_READ_BYTES);
      this.#mine.add(buffer.buffer);
    }
    const chunk = buffer.subarray(0, n - taken);
    chunk.set(own.subarray(taken, n));
    this.#queue(chunk);
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#queued === 0) {
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      this.#into = buffer;
      await new Promise<void>((resolve) => this.#wake = resolve);
      this.#into = undefined;
      const copied = this.#intoCount;
      if (copied > 0) {
        this.#intoCount = 0;
        return copied;
      }
    }
    let n = 0;
    while (n < buffer.length && this.#chunks.length > 0) {
      const chunk = this.#chunks[0]!;
      const take = Math.min(chunk.length - this.#head, buffer.length - n);
      buffer.set(chunk.subarray(this.#head, this.#head + take), n);
      n += take;
      this.#head += take;
      if (this.#head === chunk.length) {
        this.#chunks.shift();
        this.#head = 0;
        this.#held -= chunk.buffer.byteLength + CHUNK_COST;
        if (this.#mine.has(chunk.buffer) && this.#spare.length < HIGH_WATER / OWN_READ_BYTES) {
          this.#spare.push(new Uint8Array(chunk.buffer));
        }
      }
    }
    this.#queued -= n;
    if (this.#paused && this.#held < LOW_WATER) {
      this.#paused = false;
      this.#sock.resume();
    }
    return n;
  }

  /**
   * Resolves once the socket is done with `buffer` (node's write callback), not when
   * `socket.write()` returns: node may still hold the buffer then, and a caller may reuse it
   * after the promise (the session's writer releases a device's IN buffer).
   */
  write(buffer: Uint8Array): Promise<number> {
    const sock = this.#sock;
    if (sock.destroyed) return Promise.reject(new Deno.errors.BrokenPipe("The socket is closed"));
    return new Promise<number>((resolve, reject) => {
      const onClose = () => reject(new Deno.errors.BrokenPipe("The socket closed while writing"));
      sock.once("close", onClose);
      sock.write(buffer, (e) => {
        sock.off("close", onClose);
        if (e) reject(new Deno.errors.BrokenPipe(`The write failed: ${errorMessage(e)}`));
        else resolve(buffer.length);
      });
    });
  }
}

/** Where and how to create a unix socket. */
export interface UnixListenOptions {
  /** The socket file's path. A stale socket file there is replaced; a live one is an error. */
  path: string;
  /** File mode of the socket, e.g. `0o660`; the umask decides when absent. */
  mode?: number;
  /** Owner uid of the socket file. */
  uid?: number;
  /** Group gid of the socket file. */
  gid?: number;
}

/** The streams of a `node:net` socket, and how many received chunks they hold unread. */
interface SocketStreams extends Pick<Connection, "readable" | "writable"> {
  queued(): number;
}

/** Chunks the readable stream holds before it pauses the socket. */
const STREAM_HIGH_WATER = 4;

/** Adapts a `node:net` socket to web streams with backpressure in both directions. */
function socketStreams(sock: net.Socket): SocketStreams {
  let finished = false;
  let queued = () => 0;
  const readable = new ReadableStream<Uint8Array>({
    start(controller) {
      queued = () => finished ? 0 : STREAM_HIGH_WATER - (controller.desiredSize ?? 0);
      sock.on("data", (chunk: Uint8Array) => {
        if (finished) return;
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if ((controller.desiredSize ?? 0) <= 0) sock.pause();
      });
      const end = (error?: Error) => {
        if (finished) return;
        finished = true;
        if (error) controller.error(error);
        else controller.close();
      };
      sock.on("end", () => end());
      sock.on("error", (e: Error) => end(e));
      sock.on("close", () => end());
    },
    pull() {
      sock.resume();
    },
    cancel() {
      finished = true;
      sock.destroy();
    },
  }, { highWaterMark: STREAM_HIGH_WATER });
  const writable = new WritableStream<Uint8Array>({
    write(chunk) {
      if (sock.destroyed) return Promise.reject(new Deno.errors.BrokenPipe("The socket is closed"));
      if (sock.write(chunk)) return;
      return new Promise<void>((resolve, reject) => {
        const onDrain = () => {
          sock.off("close", onClose);
          resolve();
        };
        const onClose = () => {
          sock.off("drain", onDrain);
          reject(new Deno.errors.BrokenPipe("The socket closed while writing"));
        };
        sock.once("drain", onDrain);
        sock.once("close", onClose);
      });
    },
    close() {
      sock.end();
    },
    abort() {
      sock.destroy();
    },
  });
  return { readable, writable, queued: () => queued() };
}

/**
 * Wraps an accepted or connected `node:net` unix socket with its peer credentials
 * (SO_PEERCRED); `path` is the listening socket's path, for the peer's `address`.
 */
export function wrapUnixSocket(sock: net.Socket, path: string): Connection {
  const peer: PeerInfo = { transport: "unix", address: path };
  // deno-lint-ignore no-explicit-any
  const fd: unknown = (sock as any)._handle?.fd;
  if (typeof fd === "number" && fd >= 0) {
    const cred = getPeerCredentials(fd);
    if (cred) {
      peer.uid = cred.uid;
      peer.gid = cred.gid;
      peer.pid = cred.pid;
    }
  }
  return wrapNodeSocket(sock, peer);
}

/**
 * Wraps any connected `node:net` stream socket (unix, or TCP from an inherited listener) as a
 * {@linkcode Connection} with the given `peer`.
 */
export function wrapNodeSocket(sock: net.Socket, peer: PeerInfo): Connection {
  // Streams or direct I/O, made on first use: a connection is used one way or the other.
  let streams: SocketStreams | undefined;
  let direct: NodeSocketIo | undefined;
  const conn: Connection = {
    get readable() {
      streams ??= socketStreams(sock);
      return streams.readable;
    },
    get writable() {
      streams ??= socketStreams(sock);
      return streams.writable;
    },
    get direct(): DirectIo {
      direct ??= new NodeSocketIo(sock, peer.transport === "unix");
      return direct;
    },
    peer,
    close() {
      sock.destroy();
    },
  };
  if (peer.transport !== "unix") return conn;
  const unread = () => (direct?.queued ?? 0) + (streams?.queued() ?? 0) + sock.readableLength;
  return Object.assign(conn, {
    receiveFd: (timeoutMs?: number) => receiveSocketFd(sock, unread, timeoutMs),
  });
}

/**
 * Serves connected stream socket `fd`, e.g. one end of `socketPair()` (lib/ffi/socket_pair.ts),
 * as a {@linkcode Connection} whose peer is `peer`, as given: the gateway serves a socketpair
 * end as a session of the user who asked for it, while SO_PEERCRED would name the gateway.
 * `node:net` takes the fd over (made non-blocking): closing the connection closes it.
 *
 * @throws {StreamFdError} When `fd` is not a connected stream socket; the fd stays the
 * caller's then.
 *
 * @example A socketpair end served with the peer it is for
 * ```ts
 * import { wrapSocketFd } from "./unix.ts";
 * import { socketPair } from "../ffi/socket_pair.ts";
 * import { closeFd } from "../ffi/fd.ts";
 * const [mine, theirs] = socketPair();
 * const conn = wrapSocketFd(mine, { transport: "unix", address: "socketpair", uid: 1000 });
 * console.assert(conn.peer.uid === 1000);
 * conn.close();
 * closeFd(theirs);
 * ```
 */
export function wrapSocketFd(fd: number, peer: PeerInfo): Connection {
  checkStreamFd(fd);
  return wrapNodeSocket(new net.Socket({ fd, readable: true, writable: true }), peer);
}

/** What this module uses of a `node:net` socket's native handle (Deno's `PipeWrap`). */
interface NativeHandle {
  fd?: number;
  /** Reads into this buffer from now on (node:net's `onread`). */
  useUserBuffer?(buffer: Uint8Array): number;
  /** node:net's own note that it asked the handle to read (Node's stream_base_commons). */
  reading?: boolean;
  readStart(): number;
  readStop(): number;
}

function nativeHandle(sock: net.Socket): NativeHandle | undefined {
  // deno-lint-ignore no-explicit-any
  const h = (sock as any)._handle;
  return h && typeof h.readStop === "function" && typeof h.readStart === "function" ? h : undefined;
}

/** Sockets with a receive pending: one at a time. */
const receiving = new WeakSet<net.Socket>();

/**
 * {@linkcode Connection.receiveFd} of a `node:net` unix socket: stops the native handle's reads
 * (synchronously), receives one byte and its descriptor with recvmsg(2) on a duplicate of the
 * fd (which keeps the socket, and so the fd number, from being reused if the connection closes
 * meanwhile), then starts the reads again. `unread` counts bytes received but not read.
 */
function receiveSocketFd(
  sock: net.Socket,
  unread: () => number,
  timeoutMs = 10000,
): Promise<number> {
  const what = "Cannot receive a descriptor";
  const handle = nativeHandle(sock);
  const fd = handle?.fd;
  if (sock.destroyed || handle === undefined || typeof fd !== "number" || fd < 0) {
    return Promise.reject(new Deno.errors.BadResource(`${what}: the connection is closed`));
  }
  if (receiving.has(sock)) {
    return Promise.reject(new Deno.errors.Busy(`${what}: another receive is pending`));
  }
  if (sock.readableEnded) {
    return Promise.reject(new FdPassingError("closed", `${what}: the peer closed the connection`));
  }
  const early = unread();
  if (early > 0) {
    return Promise.reject(
      new FdPassingError(
        "early_data",
        `${what}: data came before it was asked for (${early} unread)`,
      ),
    );
  }
  let copy: number;
  try {
    copy = dupFd(fd);
  } catch (e) {
    return Promise.reject(e);
  }
  // A handle that node:net is not reading from (opened paused) is left as it is. `reading` stays
  // set: node:net's _read() restarts a handle whose note is clear (see the module doc).
  const wasReading = handle.reading === true;
  if (wasReading) handle.readStop();
  const bytesRead = sock.bytesRead;
  receiving.add(sock);
  const closed = new AbortController();
  const onClose = () => {
    closed.abort(new Deno.errors.ConnectionAborted(`${what}: the connection was closed`));
  };
  sock.once("close", onClose);
  return (async () => {
    try {
      const got = await receiveFd(copy, 1, { timeoutMs, signal: closed.signal });
      if (sock.bytesRead !== bytesRead) {
        closeFd(got.fd);
        throw new FdPassingError(
          "early_data",
          `${what}: the connection's reader took ${sock.bytesRead - bytesRead} bytes meanwhile`,
        );
      }
      return got.fd;
    } finally {
      sock.off("close", onClose);
      closeFd(copy);
      receiving.delete(sock);
      if (
        wasReading && !sock.destroyed && nativeHandle(sock) === handle && handle.reading === true
      ) {
        handle.readStart();
      }
    }
  })();
}

/**
 * Removes a socket file nobody accepts on (a killed server leaves one behind). A live socket,
 * or a file that is not a socket, is left alone and reported.
 */
async function removeStaleSocket(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  if (!info.isSocket) {
    throw new ListenError(path, "not_a_socket", "a file that is not a socket is in the way", {
      hint: "remove it or choose another path",
    });
  }
  let probe: Deno.Conn;
  try {
    probe = await Deno.connect({ transport: "unix", path });
  } catch (e) {
    // Only a refusal means nobody is there; a socket this user may not connect to stays.
    if (!(e instanceof Deno.errors.ConnectionRefused)) {
      const code = errorCode(e);
      throw new ListenError(
        path,
        "address_in_use",
        `a socket this user cannot connect to is there${code === undefined ? "" : ` (${code})`}`,
        { hint: "it may belong to a running server; remove it if not", cause: e },
      );
    }
    try {
      await Deno.remove(path);
    } catch (e) {
      const code = errorCode(e);
      throw new ListenError(
        path,
        "folder_not_writable",
        `a stale socket is there and this user cannot remove it from the folder ${folderOf(path)}${
          code === undefined ? "" : ` (${code})`
        }`,
        { ...(code === undefined ? {} : { code }), cause: e },
      );
    }
    return;
  }
  probe.close();
  throw new ListenError(path, "address_in_use", "a server is accepting on this socket already", {
    hint: "is another usbipgw running?",
    code: "EADDRINUSE",
  });
}

/**
 * How every node:net server of the gateway is made (here and for systemd's sockets). In Deno
 * 2.9.6's node:net, with `allowHalfOpen: false` the peer's EOF starts an automatic shutdown, and
 * a socket destroyed while that is in flight keeps its handle for good (about 1.4 KiB per
 * session: `deno task bench churn`'s heap figure). Sessions close their socket themselves once
 * they read EOF, so nothing needs the automatic end.
 */
export const NODE_SERVER_OPTIONS: net.ServerOpts = { pauseOnConnect: false, allowHalfOpen: true };

/** A unix-socket listener yielding {@linkcode Connection}s that carry peer credentials. */
export class UnixListener implements Listener {
  readonly description: string;
  /** The socket file's path, as given to {@linkcode UnixListener.listen}. */
  readonly path: string;
  #server: net.Server;
  #accepted = new AcceptQueue();

  private constructor(server: net.Server, path: string) {
    this.#server = server;
    this.path = path;
    this.description = `unix ${path}`;
    server.on("connection", (sock: net.Socket) => this.#accepted.push(wrapUnixSocket(sock, path)));
  }

  /** Closes the queue and the server after a failed {@linkcode UnixListener.listen}. */
  #abandon(): void {
    this.#accepted.close();
    this.#server.close();
  }

  /**
   * Creates the socket file (replacing a stale one), then applies owner and mode. Until they
   * are set the file is mode 0600, this process's user's (with `--allow-sys=umask`; without it,
   * what the process's umask gives). Connections are taken from the first one.
   *
   * @throws {ListenError} When the folder is missing, read-only or not writable for this
   * user, a server accepts on the path already, a file that is not a socket is in the way,
   * or the mode or owner cannot be set; the message names the path (and the folder).
   */
  static async listen(options: UnixListenOptions): Promise<UnixListener> {
    const path = options.path;
    const server = net.createServer(NODE_SERVER_OPTIONS);
    // Connections are queued from the first one: the kernel completes a client's connect(2) as
    // soon as the socket listens, and one that node:net accepts before a "connection" handler
    // exists is never read nor closed, its client left waiting (a client that connected while
    // the mode was being set below hung that way).
    const listener = new UnixListener(server, path);
    const later = options.mode !== undefined || options.uid !== undefined ||
      options.gid !== undefined;
    /** The process's umask, when it was replaced for the bind. */
    let umask: number | undefined;
    try {
      await removeStaleSocket(path);
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        // bind(2) makes the file with the umask's mode, synchronously in listen(). While a
        // mode or owner is still to come, only this process's user may connect (and root).
        umask = later ? setUmask(OWNER_ONLY_UMASK) : undefined;
        try {
          server.listen(path, () => {
            server.off("error", reject);
            resolve();
          });
        } finally {
          if (umask !== undefined) Deno.umask(umask);
        }
      });
    } catch (e) {
      listener.#abandon();
      throw await unixListenError(path, e);
    }
    try {
      // The owner first: the file is 0600 until the mode comes (without one, what the process's
      // umask gives).
      if (options.uid !== undefined || options.gid !== undefined) {
        await Deno.chown(path, options.uid ?? null, options.gid ?? null);
      }
      const mode = options.mode ?? (umask === undefined ? undefined : 0o777 & ~umask);
      if (mode !== undefined) await Deno.chmod(path, mode);
    } catch (e) {
      listener.#abandon();
      if (e instanceof Deno.errors.NotCapable) throw e;
      throw new ListenError(
        path,
        "permission_denied",
        `cannot set the socket's mode or owner: ${errorMessage(e)}`,
        { cause: e },
      );
    }
    return listener;
  }

  /**
   * Yields each accepted connection, with the peer's credentials (SO_PEERCRED) when they can
   * be read; ends once the listener is closed. Use one loop at a time.
   */
  [Symbol.asyncIterator](): AsyncIterator<Connection> {
    return this.#accepted[Symbol.asyncIterator]();
  }

  /**
   * Hands the socket file to `uid` (and to group `gid` when given; the group stays otherwise),
   * the way udev's uaccess hands device nodes to the seat's active user. With mode `0o600`
   * only that user (and root) can then connect.
   *
   * The owner is set with `lchown`, and only after checking that the path still holds a
   * socket, so a symlink or file put in its place is never handed over. Keep the socket in a
   * folder only root can write to: the check and the change are two steps.
   *
   * @throws {Deno.errors.BadResource} When the listener is closed.
   * @throws {Deno.errors.NotFound} When the socket file is gone or is no longer a socket.
   */
  async setOwner(uid: number, gid?: number): Promise<void> {
    await this.#checkSocketFile("set the owner of");
    // Imported here so that this change stays inside the class; Deno has no lchown of its own.
    const { lchown } = await import("node:fs/promises");
    await lchown(this.path, uid, gid ?? -1);
  }

  /**
   * Sets the socket file's mode, e.g. `0o600` so that only its owner (and root) can connect.
   * The path is checked to still hold a socket first, as in {@linkcode UnixListener.setOwner}.
   *
   * @throws {Deno.errors.BadResource} When the listener is closed.
   * @throws {Deno.errors.NotFound} When the socket file is gone or is no longer a socket.
   */
  async setMode(mode: number): Promise<void> {
    await this.#checkSocketFile("set the mode of");
    await Deno.chmod(this.path, mode);
  }

  async #checkSocketFile(what: string): Promise<void> {
    if (this.#accepted.closed) {
      throw new Deno.errors.BadResource(`Cannot ${what} ${this.path}: the listener is closed`);
    }
    const info = await Deno.lstat(this.path);
    if (!info.isSocket) {
      throw new Deno.errors.NotFound(`Cannot ${what} ${this.path}: it is no longer a socket`);
    }
  }

  /** Stops accepting and removes the socket file. */
  close(): void {
    if (this.#accepted.closed) return;
    this.#accepted.close();
    this.#server.close();
    try {
      Deno.removeSync(this.path);
    } catch {
      // Removed by someone else, or never created.
    }
  }
}

/**
 * Connects to a unix socket (the client side).
 *
 * @throws {ConnectError} When there is no socket at `path`, nobody accepts on it, or this
 * user may not connect; the message names the path and the reason.
 */
export async function connectUnix(path: string): Promise<Connection> {
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path });
  } catch (e) {
    throw connectError(path, "unix", e);
  }
  return wrapDenoConn(conn, { transport: "unix", address: path });
}
