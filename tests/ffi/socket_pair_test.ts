// Tests of socketPair(), the fd helpers and descriptor passing within one process, on real
// sockets; every test checks that no descriptor is left open.
import { assert, assertEquals, assertNotEquals, assertRejects, assertThrows } from "@std/assert";
import { socketPair } from "../../lib/ffi/socket_pair.ts";
import { closeFd, dupFd, setNonBlocking } from "../../lib/ffi/fd.ts";
import {
  checkStreamFd,
  FdPassingError,
  receiveFd,
  sendFd,
  StreamFdError,
} from "../../lib/ffi/scm_rights.ts";
import { getIntOption, SockOpt } from "../../lib/ffi/sockopt.ts";
import { C, cString, lib as clientLib } from "../../lib/client/_libc_socket.ts";
import { fdFlags, fdTests, fileOf } from "./_fds.ts";

/** Tests that must leave as many descriptors open as they found, each in its own process. */
const fdTest = fdTests(import.meta.url);

const te = new TextEncoder();
const td = new TextDecoder();

/** Reads up to `n` bytes from a blocking socket fd with one recv(2). */
function recvSome(fd: number, n: number): string {
  const b = new Uint8Array(n);
  const got = Number(clientLib().recv(fd, b, BigInt(n), C.MSG_DONTWAIT));
  return got < 0 ? "" : td.decode(b.subarray(0, got));
}

function sendAll(fd: number, text: string): void {
  const b = te.encode(text);
  assertEquals(Number(clientLib().send(fd, b, BigInt(b.length), C.MSG_NOSIGNAL)), b.length);
}

fdTest("socketPair() makes two connected, blocking, close-on-exec unix stream sockets", () => {
  const [a, b] = socketPair();
  try {
    assertNotEquals(a, b);
    for (const fd of [a, b]) {
      assert(fileOf(fd).startsWith("socket:["));
      assertEquals(getIntOption(fd, SockOpt.SOL_SOCKET, SockOpt.SO_DOMAIN), 1, "AF_UNIX");
      assertEquals(getIntOption(fd, SockOpt.SOL_SOCKET, SockOpt.SO_TYPE), 1, "SOCK_STREAM");
      assertEquals(fdFlags(fd) & 0o2000000, 0o2000000, "O_CLOEXEC");
      assertEquals(fdFlags(fd) & 0o4000, 0, "blocking");
      checkStreamFd(fd);
    }
    sendAll(a, "to b");
    assertEquals(recvSome(b, 16), "to b");
    sendAll(b, "to a");
    assertEquals(recvSome(a, 16), "to a");
  } finally {
    closeFd(a);
    closeFd(b);
  }
  return Promise.resolve();
});

fdTest(
  "dupFd() gives a second close-on-exec fd for the same socket; closeFd() says what it closed",
  () => {
    const [a, b] = socketPair();
    const copy = dupFd(a);
    assert(copy > 2 && copy !== a && copy !== b);
    assertEquals(fileOf(copy), fileOf(a));
    assertEquals(fdFlags(copy) & 0o2000000, 0o2000000);
    // O_NONBLOCK belongs to the open file: both numbers see it.
    setNonBlocking(copy, true);
    assertEquals(fdFlags(a) & 0o4000, 0o4000);
    setNonBlocking(a, false);
    assertEquals(fdFlags(copy) & 0o4000, 0);
    // The socket stays open while one of its numbers is.
    assert(closeFd(a));
    sendAll(b, "still");
    assertEquals(recvSome(copy, 16), "still");
    assert(closeFd(copy));
    assertEquals(closeFd(copy), false, "closed already");
    assertEquals(closeFd(-1), false);
    closeFd(b);
    return Promise.resolve();
  },
);

fdTest("sendFd() and receiveFd() carry a descriptor across a socketpair", async () => {
  const [a, b] = socketPair();
  const [x, y] = socketPair();
  try {
    await sendFd(a, x, te.encode("xy"));
    const got = await receiveFd(b, 8, { timeoutMs: 1000 });
    assertEquals(td.decode(got.bytes), "xy");
    assertNotEquals(got.fd, x);
    assertEquals(fileOf(got.fd), fileOf(x), "the same socket under a new number");
    assertEquals(fdFlags(got.fd) & 0o2000000, 0o2000000, "MSG_CMSG_CLOEXEC");
    // The sender still owns its fd; the received one works on its own.
    closeFd(x);
    sendAll(got.fd, "via copy");
    assertEquals(recvSome(y, 16), "via copy");
    closeFd(got.fd);
  } finally {
    for (const fd of [a, b, y]) closeFd(fd);
  }
});

fdTest(
  "receiveFd() with maxBytes 1 takes the byte with the descriptor and leaves the rest",
  async () => {
    const [a, b] = socketPair();
    try {
      await sendFd(a, a, te.encode("Frest"));
      const got = await receiveFd(b, 1);
      assertEquals(td.decode(got.bytes), "F");
      closeFd(got.fd);
      assertEquals(recvSome(b, 16), "rest");
    } finally {
      closeFd(a);
      closeFd(b);
    }
  },
);

fdTest(
  "receiveFd() reports bytes without a descriptor, a time limit passed and a closed peer",
  async () => {
    const [a, b] = socketPair();
    try {
      const timeout = await assertRejects(
        () => receiveFd(b, 1, { timeoutMs: 150 }),
        FdPassingError,
        "nothing arrived within 150 ms",
      );
      assertEquals(timeout.failure, "timeout");
      sendAll(a, "P");
      const plain = await assertRejects(() => receiveFd(b, 4), FdPassingError);
      assertEquals([plain.failure, td.decode(plain.bytes)], ["no_fd", "P"]);
      const ac = new AbortController();
      const aborted = receiveFd(b, 1, { timeoutMs: 5000, signal: ac.signal });
      ac.abort(new Error("stop"));
      await assertRejects(() => aborted, Error, "stop");
      closeFd(a);
      const closed = await assertRejects(() => receiveFd(b, 1), FdPassingError);
      assertEquals(closed.failure, "closed");
    } finally {
      closeFd(a);
      closeFd(b);
    }
  },
);

fdTest("sendFd() needs at least one byte to carry the descriptor", async () => {
  const [a, b] = socketPair();
  await assertRejects(() => sendFd(a, b, new Uint8Array(0)), RangeError, "at least 1 byte");
  closeFd(a);
  closeFd(b);
});

fdTest("checkStreamFd() refuses what is not a socket, naming the errno", () => {
  const bad = assertThrows(() => checkStreamFd(-1), StreamFdError, "EBADF");
  assertEquals([bad.failure, bad.errno], ["not_a_socket", 9]);
  const file = clientLib().open(cString("/dev/null"), C.O_CLOEXEC, 0);
  assert(file >= 0);
  try {
    const e = assertThrows(() => checkStreamFd(file), StreamFdError, "ENOTSOCK");
    assertEquals([e.failure, e.errno], ["not_a_socket", 88]);
  } finally {
    closeFd(file);
  }
  return Promise.resolve();
});

fdTest(
  "checkStreamFd() refuses a stream socket never connected, and passes one whose peer left",
  () => {
    const fresh = clientLib().socket(C.AF_UNIX, C.SOCK_STREAM | C.SOCK_CLOEXEC, 0);
    const [a, b] = socketPair();
    try {
      const e = assertThrows(() => checkStreamFd(fresh), StreamFdError, "is not connected");
      assertEquals([e.failure, e.errno], ["not_connected", 107]);
      // A peer that closed since is for the first read or write to tell.
      closeFd(b);
      checkStreamFd(a);
      assertEquals(recvSome(a, 4), "", "EOF");
    } finally {
      closeFd(fresh);
      closeFd(a);
    }
    return Promise.resolve();
  },
);
