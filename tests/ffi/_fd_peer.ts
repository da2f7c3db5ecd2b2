// A child process for the descriptor-passing tests: it connects to a unix socket and sends
// descriptors (or not) with SCM_RIGHTS, as an unprivileged client of the gateway would.
//
//   _fd_peer.ts send PATH MODE
//     sends at once after connecting, then waits for the other side to close. MODE:
//     socketpair  one end of a fresh socketpair on byte "F", then "PING" into the other end
//     plain       byte "P" without a descriptor
//     listening   a listening unix socket
//     datagram    an AF_UNIX datagram socket
//     unconnected an AF_UNIX stream socket that was never connected
//     two         both ends of a socketpair in one SCM_RIGHTS message
//     many        64 descriptors in one message, more than the receiver has room for
//     close       nothing: closes the connection at once
//     nothing     nothing: waits for the other side to close
//
//   _fd_peer.ts cue PATH MODE ROUNDS
//     ROUNDS connections; on each: "REQ!", then waits for the cue "SEND" and answers by MODE,
//     then waits for "DONE". MODE:
//     fd          a socketpair end on byte "F", "PING" into the pair, then "MORE" on its own
//     joined      a socketpair end on the bytes "FMORE" (one sendmsg), "PING" into the pair
//     plain       byte "P" without a descriptor, then "MORE"
//     late        nothing for 600 ms (the gateway gives up first), then "MORE"
//     early       "REQ!X" at once (data before the cue), then waits for the gateway to close
import * as net from "node:net";
import { FdSocket } from "../../lib/client/fd_socket.ts";
import { sendFd } from "../../lib/ffi/scm_rights.ts";
import { socketPair } from "../../lib/ffi/socket_pair.ts";
import { closeFd } from "../../lib/ffi/fd.ts";
import { C as ClientC, lib as clientLib } from "../../lib/client/_libc_socket.ts";
import { addressOf, C, CMSG_HDR, cmsgSpace, lib, MSGHDR } from "../../lib/ffi/_fd_libc.ts";

const [role, path = "", mode = "", roundsText = "1"] = Deno.args;
const te = new TextEncoder();
const td = new TextDecoder();

/** Waits until the other side closes the connection (or 10 s pass). */
async function awaitClose(sock: FdSocket): Promise<void> {
  try {
    await sock.readExactly(1, { timeoutMs: 10000 });
  } catch {
    // EOF, reset or time limit: done either way.
  }
}

/** Sends `fds` in one SCM_RIGHTS message on byte "T" (sendFd sends one only). */
function sendMany(socketFd: number, fds: number[]): void {
  const data = te.encode("T");
  const iov = new Uint8Array(16);
  const iv = new DataView(iov.buffer);
  iv.setBigUint64(0, addressOf(data), true);
  iv.setBigUint64(8, 1n, true);
  const control = new Uint8Array(cmsgSpace(4 * fds.length));
  const cv = new DataView(control.buffer);
  cv.setBigUint64(0, BigInt(CMSG_HDR + 4 * fds.length), true);
  cv.setInt32(8, C.SOL_SOCKET, true);
  cv.setInt32(12, C.SCM_RIGHTS, true);
  fds.forEach((fd, i) => cv.setInt32(CMSG_HDR + 4 * i, fd, true));
  const msg = new Uint8Array(MSGHDR.size);
  const m = new DataView(msg.buffer);
  m.setBigUint64(MSGHDR.msg_iov, addressOf(iov), true);
  m.setBigUint64(MSGHDR.msg_iovlen, 1n, true);
  m.setBigUint64(MSGHDR.msg_control, addressOf(control), true);
  m.setBigUint64(MSGHDR.msg_controllen, BigInt(control.length), true);
  if (lib().sendmsg(socketFd, msg, C.MSG_NOSIGNAL) !== 1n) throw new Error("sendmsg failed");
}

/** Sends one end of a fresh socketpair on `bytes`, then "PING" into the other end. */
async function sendPairEnd(sock: FdSocket, bytes: string): Promise<void> {
  const [a, b] = socketPair();
  await sendFd(sock.fd, a, te.encode(bytes));
  closeFd(a);
  const other = FdSocket.adopt(b, { transport: "unix", path: "socketpair" });
  await other.writeAll(te.encode("PING"));
  other.close();
}

async function send(sock: FdSocket): Promise<void> {
  switch (mode) {
    case "socketpair":
      return await sendPairEnd(sock, "F");
    case "plain":
      return await sock.writeAll(te.encode("P"));
    case "listening": {
      const server = net.createServer();
      await new Promise<void>((resolve) => server.listen(`${path}.listening`, resolve));
      // deno-lint-ignore no-explicit-any
      await sendFd(sock.fd, (server as any)._handle.fd, te.encode("L"));
      await new Promise((resolve) => server.close(resolve));
      return;
    }
    case "datagram": {
      const fd = clientLib().socket(ClientC.AF_UNIX, C.SOCK_DGRAM | C.SOCK_CLOEXEC, 0);
      await sendFd(sock.fd, fd, te.encode("D"));
      closeFd(fd);
      return;
    }
    case "unconnected": {
      const fd = clientLib().socket(ClientC.AF_UNIX, C.SOCK_STREAM | C.SOCK_CLOEXEC, 0);
      await sendFd(sock.fd, fd, te.encode("U"));
      closeFd(fd);
      return;
    }
    case "two": {
      const [a, b] = socketPair();
      sendMany(sock.fd, [a, b]);
      closeFd(a);
      closeFd(b);
      return;
    }
    case "many": {
      const [a, b] = socketPair();
      sendMany(sock.fd, Array(64).fill(a));
      closeFd(a);
      closeFd(b);
      return;
    }
    case "nothing":
      return;
    default:
      throw new Error(`Unknown mode ${mode}`);
  }
}

async function cueRound(): Promise<void> {
  const sock = await FdSocket.connect({ transport: "unix", path });
  try {
    if (mode === "early") {
      await sock.writeAll(te.encode("REQ!X"));
      return await awaitClose(sock);
    }
    await sock.writeAll(te.encode("REQ!"));
    const cue = td.decode(await sock.readExactly(4));
    if (cue !== "SEND") throw new Error(`Expected the cue SEND, got ${cue}`);
    switch (mode) {
      case "fd":
        await sendPairEnd(sock, "F");
        await sock.writeAll(te.encode("MORE"));
        break;
      case "joined":
        await sendPairEnd(sock, "FMORE");
        break;
      case "plain":
        await sock.writeAll(te.encode("P"));
        await sock.writeAll(te.encode("MORE"));
        break;
      case "late":
        await new Promise((resolve) => setTimeout(resolve, 600));
        await sock.writeAll(te.encode("MORE"));
        break;
      default:
        throw new Error(`Unknown mode ${mode}`);
    }
    const done = td.decode(await sock.readExactly(4));
    if (done !== "DONE") throw new Error(`Expected DONE, got ${done}`);
  } finally {
    sock.close();
  }
}

if (role === "send") {
  const sock = await FdSocket.connect({ transport: "unix", path });
  if (mode !== "close") {
    await send(sock);
    await awaitClose(sock);
  }
  sock.close();
} else if (role === "cue") {
  for (let i = 0; i < Number(roundsText); i++) await cueRound();
} else {
  throw new Error(`Unknown role ${role}`);
}
