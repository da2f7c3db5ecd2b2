// Tests of FdSocket, the FFI socket whose fd the process owns, over real TCP and unix sockets,
// and adopted from a socketpair whose other end a UsbipServer serves as a session.
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import {
  FdSocket,
  inetSockaddr,
  keepaliveFor,
  OsError,
  socketOption,
  StreamFdError,
  unixSockaddr,
} from "../../lib/client/fd_socket.ts";
import { importOverSocket } from "../../lib/client/attach.ts";
import { SockOpt } from "../../lib/ffi/sockopt.ts";
import { socketPair } from "../../lib/ffi/socket_pair.ts";
import { closeFd } from "../../lib/ffi/fd.ts";
import { receiveFd } from "../../lib/ffi/scm_rights.ts";
import { GadgetZero, type PeerInfo, UsbipServer } from "../../mod.ts";
import { wrapSocketFd } from "../../lib/transport/unix.ts";
import { encodeCmdSubmit } from "../../lib/protocol/urb_messages.ts";
import type { Policy } from "../../lib/policy/policy.ts";
import { fdFlags, fdTests, fileOf, withListeningAndDatagram } from "../ffi/_fds.ts";

/** Tests that must leave as many descriptors open as they found, each in its own process. */
const fdTest = fdTests(import.meta.url);

Deno.test("inetSockaddr() builds sockaddr_in and sockaddr_in6 for literals only", () => {
  const v4 = inetSockaddr("192.168.1.7", 3240)!;
  assertEquals(v4.family, 2);
  assertEquals([...v4.bytes.subarray(0, 8)], [2, 0, 0x0c, 0xa8, 192, 168, 1, 7]);
  const v6 = inetSockaddr("::1", 3240)!;
  assertEquals(v6.family, 10);
  assertEquals(v6.bytes.length, 28);
  assertEquals([...v6.bytes.subarray(2, 4)], [0x0c, 0xa8]);
  assertEquals([...v6.bytes.subarray(8, 24)], [...Array(15).fill(0), 1]);
  const mapped = inetSockaddr("::ffff:10.0.0.1", 1)!;
  assertEquals([...mapped.bytes.subarray(18, 24)], [0xff, 0xff, 10, 0, 0, 1]);
  const full = inetSockaddr("2001:db8:0:0:0:0:0:2", 1)!;
  assertEquals([...full.bytes.subarray(8, 12)], [0x20, 0x01, 0x0d, 0xb8]);
  assertEquals(full.bytes[23], 2);
  for (const bad of ["localhost", "256.1.1.1", "1.2.3", "1::2::3", "12345::1", "1:2:3:4:5:6:7"]) {
    assertEquals(inetSockaddr(bad, 1), undefined, bad);
  }
});

Deno.test("unixSockaddr() builds sockaddr_un, abstract names included", () => {
  const b = unixSockaddr("/run/x.sock");
  assertEquals([b[0], b[1]], [1, 0]);
  assertEquals(new TextDecoder().decode(b.subarray(2, b.length - 1)), "/run/x.sock");
  assertEquals(b.at(-1), 0);
  const abs = unixSockaddr("@gw");
  assertEquals([...abs.subarray(2)], [0, 0x67, 0x77]);
  let threw = false;
  try {
    unixSockaddr("/" + "x".repeat(200));
  } catch (e) {
    threw = e instanceof RangeError;
  }
  assert(threw, "an over-long path is refused");
});

Deno.test("keepaliveFor() stays within the asked dead-peer time", () => {
  for (const s of [1, 5, 10, 30, 120]) {
    const k = keepaliveFor(s);
    assert(k.idleSeconds >= 1 && k.intervalSeconds >= 1, `${s}`);
    assertEquals(k.userTimeoutMs, s * 1000);
    if (s >= 4) assert(k.idleSeconds + k.intervalSeconds * k.count <= s + 1, `${s}`);
  }
});

Deno.test("an FdSocket over TCP writes, reads exactly what it asks for and carries keep-alive", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const sock = await FdSocket.connect({
    transport: "tcp",
    host: "127.0.0.1",
    port: listener.addr.port,
  });
  const server = await accepted;
  try {
    assert(sock.fd > 2);
    assert(Deno.readLinkSync(`/proc/self/fd/${sock.fd}`).startsWith("socket:["));
    sock.setTcpOptions(keepaliveFor(10));
    const opt = (level: number, name: number) => socketOption(sock.fd, level, name);
    assertEquals(opt(SockOpt.SOL_SOCKET, SockOpt.SO_KEEPALIVE), 1);
    assertEquals(opt(SockOpt.IPPROTO_TCP, SockOpt.TCP_NODELAY), 1);
    assertEquals(opt(SockOpt.IPPROTO_TCP, SockOpt.TCP_KEEPIDLE), 5);
    assertEquals(opt(SockOpt.IPPROTO_TCP, SockOpt.TCP_KEEPINTVL), 1);
    assertEquals(opt(SockOpt.IPPROTO_TCP, SockOpt.TCP_KEEPCNT), 3);
    assertEquals(opt(SockOpt.IPPROTO_TCP, SockOpt.TCP_USER_TIMEOUT), 10000);

    await sock.writeAll(new Uint8Array([1, 2, 3]));
    const got = new Uint8Array(3);
    assertEquals(await server.read(got), 3);
    assertEquals([...got], [1, 2, 3]);
    // Ten bytes arrive; four then six are taken, nothing more.
    await server.write(new Uint8Array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
    assertEquals([...await sock.readExactly(4)], [0, 1, 2, 3]);
    assertEquals([...await sock.readExactly(6)], [4, 5, 6, 7, 8, 9]);
    // A large write goes out whole.
    const big = new Uint8Array(4 * 1024 * 1024).map((_, i) => i & 0xff);
    const reading = (async () => {
      const buf = new Uint8Array(big.length);
      let off = 0;
      while (off < big.length) {
        const n = await server.read(buf.subarray(off));
        if (n === null) break;
        off += n;
      }
      return buf;
    })();
    await sock.writeAll(big);
    assertEquals(await reading, big);
    // Nothing comes: the time limit ends the read.
    const e = await assertRejects(() => sock.readExactly(1, { timeoutMs: 300 }), OsError);
    assertEquals(e.errno, 110, "ETIMEDOUT");
    // The peer closes mid-frame.
    await server.write(new Uint8Array([1]));
    server.close();
    await assertRejects(() => sock.readExactly(8), Deno.errors.UnexpectedEof, "1 of 8");
    sock.setBlocking();
  } finally {
    sock.close();
    listener.close();
  }
  assertEquals(sock.fd, -1);
});

Deno.test("FdSocket.connect() reports a refused connection with its errno", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const e = await assertRejects(
    () => FdSocket.connect({ transport: "tcp", host: "127.0.0.1", port }),
    OsError,
    "ECONNREFUSED",
  );
  assertEquals(e.errno, 111);
  assert(e.message.startsWith(`Cannot connect to 127.0.0.1:${port}`), e.message);
});

Deno.test("FdSocket.connect() resolves names and honours an abort", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const sock = await FdSocket.connect({
    transport: "tcp",
    host: "localhost",
    port: listener.addr.port,
  });
  (await accepted).close();
  sock.close();
  listener.close();
  const ac = new AbortController();
  ac.abort(new Error("stop now"));
  await assertRejects(
    () => FdSocket.connect({ transport: "tcp", host: "127.0.0.1", port: 9 }, { signal: ac.signal }),
  );
  await assertRejects(
    () => FdSocket.connect({ transport: "tcp", host: "no-such-host.invalid", port: 1 }),
    OsError,
    "Cannot resolve no-such-host.invalid",
  );
});

Deno.test("an FdSocket connects to a unix socket", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/s.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  try {
    const accepted = listener.accept();
    const sock = await FdSocket.connect({ transport: "unix", path });
    const server = await accepted;
    await server.write(new TextEncoder().encode("hi"));
    assertEquals(new TextDecoder().decode(await sock.readExactly(2)), "hi");
    server.close();
    sock.close();
    const missing = await assertRejects(
      () => FdSocket.connect({ transport: "unix", path: `${dir}/none.sock` }),
      OsError,
    );
    assertEquals(missing.errno, 2, "ENOENT");
  } finally {
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** O_NONBLOCK of `fd`. */
const nonBlocking = (fd: number): boolean => (fdFlags(fd) & 0o4000) !== 0;

fdTest(
  "FdSocket.adopt() imports a device from a UsbipServer serving the other socketpair end",
  async () => {
    // The gateway's local attach: one end served as a session of the user who asked, the other
    // imported over and handed to vhci (here: one URB instead of the kernel).
    const seen: PeerInfo[] = [];
    const policy: Policy = {
      decide(peer) {
        seen.push(peer);
        return { effect: "allow", reason: "test" };
      },
    };
    const server = new UsbipServer({ policy });
    server.addDevice(new GadgetZero(), { busid: "1-1" });
    const [served, imported] = socketPair();
    const user: PeerInfo = { transport: "unix", address: "local attach", uid: 1000, gid: 1000 };
    const session = server.accept(wrapSocketFd(served, user));
    const sock = FdSocket.adopt(imported, { transport: "unix", path: "socketpair:gateway" });
    try {
      assertEquals(sock.fd, imported);
      assert(nonBlocking(sock.fd), "adopted sockets wait in poll(2), as connected ones do");
      const device = await importOverSocket(sock, "1-1", { timeoutMs: 5000 });
      assertEquals([device.busid, device.idVendor, device.idProduct], ["1-1", 0x0525, 0xa4a0]);
      assertEquals(seen.at(-1), user, "the policy saw the given peer, not SO_PEERCRED's root");
      assertEquals(server.status().sessions.map((x) => x.uid), [1000]);
      // The URB phase on the same fd: GET_DESCRIPTOR(DEVICE), 18 bytes.
      await sock.writeAll(encodeCmdSubmit({
        kind: "cmd_submit",
        seqnum: 1,
        devid: (device.busnum << 16) | device.devnum,
        direction: 1,
        ep: 0,
        transferFlags: 0x200,
        transferBufferLength: 18,
        startFrame: 0,
        numberOfPackets: 0,
        interval: 0,
        setup: new Uint8Array([0x80, 6, 0, 1, 0, 0, 18, 0]),
        data: new Uint8Array(0),
        isoPackets: [],
      }));
      const ret = new DataView((await sock.readExactly(48, { timeoutMs: 5000 })).buffer);
      assertEquals([ret.getUint32(0), ret.getUint32(4), ret.getInt32(20)], [3, 1, 0]);
      assertEquals(ret.getUint32(24), 18, "actual_length");
      const desc = await sock.readExactly(18, { timeoutMs: 5000 });
      assertEquals([desc[0], desc[1]], [18, 1], "a device descriptor");
      // Nothing more comes: the time limit ends a read, as on a connected FdSocket.
      const idle = await assertRejects(() => sock.readExactly(1, { timeoutMs: 200 }), OsError);
      assertEquals(idle.errno, 110, "ETIMEDOUT");
      sock.setBlocking();
      assert(!nonBlocking(sock.fd), "ready for vhci's attach");
    } finally {
      sock.close();
    }
    assertEquals(sock.fd, -1);
    await session;
    await server.close();
  },
);

fdTest(
  "FdSocket.adopt() refuses a listening or datagram socket and leaves the fd to the caller",
  () =>
    withListeningAndDatagram((listening, dgram) => {
      const remote = { transport: "unix", path: "x" } as const;
      const e = assertThrows(() => FdSocket.adopt(listening, remote), StreamFdError);
      assertEquals(e.failure, "listening");
      const d = assertThrows(() => FdSocket.adopt(dgram, remote), StreamFdError);
      assertEquals(d.failure, "not_stream");
      assert(!nonBlocking(dgram), "a refused fd is left as it was");
      assertEquals(assertThrows(() => FdSocket.adopt(-1, remote), StreamFdError).errno, 9);
    }),
);

fdTest("FdSocket.sendFd() passes a descriptor to the peer of an adopted socket", async () => {
  const [a, b] = socketPair();
  const [x, y] = socketPair();
  const left = FdSocket.adopt(a, { transport: "unix", path: "left" });
  try {
    await left.sendFd(x);
    const got = await receiveFd(b, 1, { timeoutMs: 2000 });
    assertEquals([...got.bytes], [0], "one zero byte by default");
    assertEquals(fileOf(got.fd), fileOf(x));
    closeFd(got.fd);
  } finally {
    left.close();
    for (const fd of [b, x, y]) closeFd(fd);
  }
});
