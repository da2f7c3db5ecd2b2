// Tests of the unix transport's descriptor plumbing over real sockets: a socketpair end served as
// a Connection with the peer its caller names (wrapSocketFd), and Connection.receiveFd(), which
// takes one descriptor sent with SCM_RIGHTS after a request although node:net reads the socket
// eagerly; end to end with a Deno child process (tests/ffi/_fd_peer.ts) as the client. Every
// test checks that this process has as many open descriptors after it as before.
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import {
  type Connection,
  connectUnix,
  memoryConnectionPair,
  type PeerInfo,
  TcpListener,
  UnixListener,
} from "../../mod.ts";
import { wrapSocketFd } from "../../lib/transport/unix.ts";
import { socketPair } from "../../lib/ffi/socket_pair.ts";
import { closeFd } from "../../lib/ffi/fd.ts";
import { FdPassingError, StreamFdError } from "../../lib/ffi/scm_rights.ts";
import { FdSocket } from "../../lib/client/fd_socket.ts";
import { fdTests, fileOf, pingThrough, runPeer, withListeningAndDatagram } from "../ffi/_fds.ts";

/** Tests that must leave as many descriptors open as they found, each in its own process. */
const fdTest = fdTests(import.meta.url);

const te = new TextEncoder();
const td = new TextDecoder();

/** Reads exactly `n` bytes through the connection's direct I/O, as a session does. */
async function readText(conn: Connection, n: number): Promise<string> {
  const buf = new Uint8Array(n);
  let off = 0;
  while (off < n) {
    const got = await conn.direct!.read(buf.subarray(off));
    if (got === null) throw new Deno.errors.UnexpectedEof(`EOF after ${off} of ${n} bytes`);
    off += got;
  }
  return td.decode(buf);
}

fdTest(
  "wrapSocketFd() serves a socketpair end as a Connection with the peer the caller gives",
  async () => {
    const [mine, theirs] = socketPair();
    const peer: PeerInfo = {
      transport: "unix",
      address: "socketpair",
      uid: 1000,
      gid: 1000,
      pid: 4242,
    };
    const conn = wrapSocketFd(mine, peer);
    const other = FdSocket.adopt(theirs, { transport: "unix", path: "socketpair:session" });
    try {
      // Not SO_PEERCRED, which would name this process (root here) on both ends.
      assertEquals(conn.peer, peer);
      assert(conn.receiveFd !== undefined, "a unix connection offers receiveFd");
      await conn.direct!.write(te.encode("to the far end"));
      assertEquals(td.decode(await other.readExactly(14)), "to the far end");
      await other.writeAll(te.encode("back"));
      assertEquals(await readText(conn, 4), "back");
      // node:net owns the fd now: closing the connection closes it, and the far end sees EOF.
      conn.close();
      await assertRejects(
        () => other.readExactly(1, { timeoutMs: 2000 }),
        Deno.errors.UnexpectedEof,
      );
    } finally {
      other.close();
      conn.close();
    }
  },
);

fdTest(
  "wrapSocketFd() refuses a listening or datagram socket and leaves the fd to the caller",
  () =>
    withListeningAndDatagram((listening, dgram) => {
      const peer = { transport: "unix", address: "x" } as const;
      assertEquals(
        assertThrows(() => wrapSocketFd(listening, peer), StreamFdError).failure,
        "listening",
      );
      assertEquals(
        assertThrows(() => wrapSocketFd(dgram, peer), StreamFdError).failure,
        "not_stream",
      );
      assert(fileOf(dgram).startsWith("socket:["), "still open");
    }),
);

fdTest(
  "receiveFd() on a socketpair connection takes the descriptor sent after the cue",
  async () => {
    const [mine, theirs] = socketPair();
    const conn = wrapSocketFd(mine, { transport: "unix", address: "socketpair", uid: 1000 });
    const client = FdSocket.adopt(theirs, { transport: "unix", path: "socketpair:gateway" });
    const [x, y] = socketPair();
    try {
      await client.writeAll(te.encode("REQ!"));
      assertEquals(await readText(conn, 4), "REQ!");
      const pending = conn.receiveFd!(2000);
      await conn.direct!.write(te.encode("SEND"));
      assertEquals(td.decode(await client.readExactly(4)), "SEND");
      await client.sendFd(x, te.encode("F"));
      await client.writeAll(te.encode("MORE"));
      const fd = await pending;
      assertEquals(fileOf(fd), fileOf(x));
      closeFd(fd);
      assertEquals(await readText(conn, 4), "MORE", "reading resumed, nothing lost");
    } finally {
      for (const fd of [x, y]) closeFd(fd);
      client.close();
      conn.close();
    }
  },
);

/**
 * Runs `_fd_peer.ts cue PATH mode rounds` against a UnixListener and serves each connection
 * with `serve`; resolves to what `serve` returned, in order.
 */
async function withCueClient(
  mode: string,
  rounds: number,
  serve: (conn: Connection) => Promise<string>,
): Promise<string[]> {
  const dir = await Deno.makeTempDir({ prefix: "unix_fd_" });
  const path = `${dir}/gw.sock`;
  const listener = await UnixListener.listen({ path, mode: 0o600 });
  const results: string[] = [];
  try {
    const child = runPeer(["cue", path, mode, String(rounds)]);
    const it = listener[Symbol.asyncIterator]();
    for (let i = 0; i < rounds; i++) {
      const conn = (await it.next()).value!;
      assertEquals(conn.peer.uid, Deno.uid(), "SO_PEERCRED of an accepted connection");
      try {
        results.push(await serve(conn));
      } finally {
        conn.close();
      }
    }
    await child;
  } finally {
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
  return results;
}

/**
 * The gateway's side: request, receiveFd, cue, then what the descriptor and the stream carry.
 * With `cueFirst` the cue is written just before the call, in the same synchronous run.
 */
async function serveDescriptor(conn: Connection, cueFirst = false): Promise<string> {
  assertEquals(await readText(conn, 4), "REQ!");
  let pending: Promise<number>;
  if (cueFirst) {
    const cue = conn.direct!.write(te.encode("SEND"));
    pending = conn.receiveFd!(5000);
    await cue;
  } else {
    pending = conn.receiveFd!(5000);
    await conn.direct!.write(te.encode("SEND"));
  }
  let outcome: string;
  try {
    outcome = `fd ${await pingThrough(await pending)}`;
  } catch (e) {
    if (!(e instanceof FdPassingError)) throw e;
    outcome = e.failure;
  }
  const more = await readText(conn, 4);
  await conn.direct!.write(te.encode("DONE"));
  return `${outcome} then ${more}`;
}

/** `withCueClient(mode, rounds)`, each connection served by `serveDescriptor(conn, cueFirst)`. */
const descriptorRounds = (mode: string, rounds: number, cueFirst = false) =>
  withCueClient(mode, rounds, (conn) => serveDescriptor(conn, cueFirst));

fdTest(
  "a unix listener's connection receives a descriptor another process sends after the cue",
  async () => {
    // The byte with the descriptor alone, then MORE in a second write.
    assertEquals(await descriptorRounds("fd", 20), Array(20).fill("fd PING then MORE"));
    // The descriptor on F of FMORE, one sendmsg: MORE stays for node:net to read.
    assertEquals(await descriptorRounds("joined", 20), Array(20).fill("fd PING then MORE"));
    // The cue written first, receiveFd() called in the same run: nothing is read in between.
    assertEquals(await descriptorRounds("fd", 20, true), Array(20).fill("fd PING then MORE"));
  },
);

fdTest(
  "receiveFd() reports a byte without a descriptor and a time limit passed; reading resumes",
  async () => {
    assertEquals(await descriptorRounds("plain", 3), Array(3).fill("no_fd then MORE"));
    const late = async (conn: Connection) => {
      assertEquals(await readText(conn, 4), "REQ!");
      const pending = conn.receiveFd!(300);
      await conn.direct!.write(te.encode("SEND"));
      const e = await assertRejects(() => pending, FdPassingError, "within 300 ms");
      // MORE comes at 600 ms, after the handle reads again.
      const more = await readText(conn, 4);
      await conn.direct!.write(te.encode("DONE"));
      return `${e.failure} then ${more}`;
    };
    assertEquals(await withCueClient("late", 1, late), ["timeout then MORE"]);
  },
);

fdTest("receiveFd() refuses when data came before it was asked for", async () => {
  const early = async (conn: Connection) => {
    // REQ!X arrives in one piece: the reader takes REQ!, X stays unread in the connection.
    assertEquals(await readText(conn, 4), "REQ!");
    const e = await assertRejects(() => conn.receiveFd!(2000), FdPassingError, "1 unread");
    return e.failure;
  };
  assertEquals(await withCueClient("early", 1, early), ["early_data"]);
});

fdTest(
  "receiveFd() ends when the connection closes, refuses a second call meanwhile, and a closed one",
  async () => {
    const [mine, theirs] = socketPair();
    const conn = wrapSocketFd(mine, { transport: "unix", address: "socketpair" });
    try {
      const started = performance.now();
      const pending = conn.receiveFd!(10000);
      await assertRejects(() => conn.receiveFd!(10000), Deno.errors.Busy);
      setTimeout(() => conn.close(), 50);
      await assertRejects(() => pending, Deno.errors.ConnectionAborted, "was closed");
      assert(performance.now() - started < 2000, "well before the time limit");
      await assertRejects(() => conn.receiveFd!(100), Deno.errors.BadResource);
    } finally {
      conn.close();
      closeFd(theirs);
    }
  },
);

fdTest("receiveFd() is offered by unix connections only", async () => {
  const listener = new TcpListener({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener[Symbol.asyncIterator]().next();
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.port });
  const conn = (await accepted).value!;
  assertEquals(conn.receiveFd, undefined);
  client.close();
  conn.close();
  listener.close();
  const [a, b] = memoryConnectionPair();
  assertEquals([a.receiveFd, b.receiveFd], [undefined, undefined]);
  a.close();
  b.close();
  // The client side of connectUnix is a Deno socket: it has no fd of its own to offer.
  const dir = await Deno.makeTempDir({ prefix: "unix_fd_" });
  const unix = await UnixListener.listen({ path: `${dir}/c.sock` });
  const served = unix[Symbol.asyncIterator]().next();
  const out = await connectUnix(`${dir}/c.sock`);
  assertEquals(out.receiveFd, undefined);
  out.close();
  (await served).value!.close();
  unix.close();
  await Deno.remove(dir, { recursive: true });
});
