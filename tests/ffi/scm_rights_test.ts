// Tests of SCM_RIGHTS between two processes: a Deno child (_fd_peer.ts) connects to a unix
// socket of this process and sends a descriptor, or something else; this side receives with
// receiveFd() on the accepted socket's fd (a node:net server with pauseOnConnect, so that
// node:net never reads it) and checks what came with checkStreamFd(). Every test checks that
// this process has as many open descriptors after it as before.
import * as net from "node:net";
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import {
  checkStreamFd,
  FdPassingError,
  type ReceivedFd,
  receiveFd,
  StreamFdError,
} from "../../lib/ffi/scm_rights.ts";
import { closeFd } from "../../lib/ffi/fd.ts";
import { fdFlags, fdTests, pingThrough, runPeer } from "./_fds.ts";

/** Tests that must leave as many descriptors open as they found, each in its own process. */
const fdTest = fdTests(import.meta.url);

const td = new TextDecoder();

/**
 * Starts `_fd_peer.ts send PATH mode` against a fresh unix socket and hands `body` the fd of the
 * accepted connection; closes everything afterwards, the child included.
 */
async function fromChild(mode: string, body: (fd: number) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "scm_rights_" });
  const path = `${dir}/r.sock`;
  const server = net.createServer({ pauseOnConnect: true });
  const accepted = new Promise<net.Socket>((resolve) => server.once("connection", resolve));
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const child = runPeer(["send", path, mode]);
  const sock = await accepted;
  try {
    // deno-lint-ignore no-explicit-any
    await body((sock as any)._handle.fd);
  } finally {
    sock.destroy();
    await child;
    await new Promise((resolve) => server.close(resolve));
    await Deno.remove(dir, { recursive: true });
  }
}

fdTest(
  "a socket another process sends arrives close-on-exec and works",
  () =>
    fromChild("socketpair", async (fd) => {
      const got = await receiveFd(fd, 1, { timeoutMs: 5000 });
      assertEquals(td.decode(got.bytes), "F");
      assertEquals(fdFlags(got.fd) & 0o2000000, 0o2000000, "O_CLOEXEC");
      checkStreamFd(got.fd);
      // The child wrote PING into the other end of the pair.
      assertEquals(await pingThrough(got.fd), "PING");
    }),
);

/**
 * The error, of `ErrorClass` and with `msgIncludes` in its message when given, that `receive`
 * rejects with on the accepted connection while the child sends in `mode`.
 */
async function rejectionOf<E extends Error>(
  mode: string,
  receive: (fd: number) => Promise<unknown>,
  ErrorClass: abstract new (...args: never[]) => E,
  msgIncludes?: string,
): Promise<E> {
  let error: E | undefined;
  await fromChild(mode, async (fd) => {
    error = await assertRejects(() => receive(fd), ErrorClass, msgIncludes);
  });
  return error!;
}

/** How receiveFd(), given `timeoutMs`, fails on what the child sends in `mode`. */
const failureOf = (mode: string, timeoutMs = 5000) =>
  rejectionOf(mode, (fd) => receiveFd(fd, 1, { timeoutMs }), FdPassingError);

fdTest("a byte another process sends without a descriptor is no_fd, with the byte", async () => {
  const e = await failureOf("plain");
  assertEquals([e.failure, td.decode(e.bytes)], ["no_fd", "P"]);
});

/** Receives the one descriptor the child sends and checks it, closing it either way. */
async function receiveAndCheck(fd: number): Promise<ReceivedFd> {
  const got = await receiveFd(fd, 1, { timeoutMs: 5000 });
  try {
    checkStreamFd(got.fd);
  } finally {
    closeFd(got.fd);
  }
  return got;
}

/** How checkStreamFd() refuses the descriptor the child sends in `mode` (see rejectionOf). */
const refusalOf = (mode: string, msgIncludes?: string) =>
  rejectionOf(mode, receiveAndCheck, StreamFdError, msgIncludes);

fdTest("checkStreamFd() refuses a listening socket another process sends", async () => {
  const e = await refusalOf("listening");
  assertEquals(e.failure, "listening");
  assert(e.message.includes("listening socket"), e.message);
});

fdTest("checkStreamFd() refuses a datagram socket another process sends", async () => {
  const e = await refusalOf("datagram");
  assertEquals(e.failure, "not_stream");
  assert(e.message.includes("a datagram socket"), e.message);
});

fdTest("checkStreamFd() refuses a stream socket another process never connected", async () => {
  const e = await refusalOf("unconnected", "ENOTCONN");
  assertEquals([e.failure, e.errno], ["not_connected", 107]);
});

fdTest("receiveFd() closes both descriptors of a message that carries two", async () => {
  const e = await failureOf("two");
  assertEquals(e.failure, "too_many_fds");
  assertEquals(td.decode(e.bytes), "T");
});

fdTest(
  "receiveFd() closes what fitted of a message with more descriptors than it has room for",
  async () => {
    assertEquals((await failureOf("many")).failure, "truncated");
  },
);

fdTest(
  "receiveFd() gives up when another process sends nothing, and tells a closed peer",
  async () => {
    assertEquals((await failureOf("nothing", 250)).failure, "timeout");
    assertEquals((await failureOf("close")).failure, "closed");
  },
);

Deno.test("checkStreamFd() names the fd and the reason in its message", () => {
  const e = assertThrows(() => checkStreamFd(-5), StreamFdError);
  assertEquals(e.failure, "not_a_socket");
  assert(e.message.startsWith("Cannot use fd -5: it is not a socket"), e.message);
});
