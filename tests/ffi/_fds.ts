// Listing this process's open file descriptors, for the no-leak checks of the fd-passing tests,
// and running each such test in a process of its own, where the list is its own; what is behind
// a descriptor, and the sockets that a stream connection refuses.
import * as net from "node:net";
import { assertEquals } from "@std/assert";
import { closeFd } from "../../lib/ffi/fd.ts";
import { FdSocket } from "../../lib/client/fd_socket.ts";
import { C, lib as clientLib } from "../../lib/client/_libc_socket.ts";

/**
 * This process's open descriptors and the file behind each (`socket:[inode]`, a path), from
 * /proc/self/fd; the listing's own descriptor, gone by the time it is read, is left out.
 */
export function openFds(): Map<number, string> {
  const fds = new Map<number, string>();
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      fds.set(Number(entry.name), Deno.readLinkSync(`/proc/self/fd/${entry.name}`));
    } catch {
      // Closed since the listing began (its own descriptor, or one the runtime closed).
    }
  }
  return fds;
}

/** The open file behind `fd` (`socket:[inode]` for a socket). */
export const fileOf = (fd: number): string => Deno.readLinkSync(`/proc/self/fd/${fd}`);

/** The `flags:` of /proc/self/fdinfo/FD (octal: O_NONBLOCK 04000, O_CLOEXEC 02000000). */
export function fdFlags(fd: number): number {
  const m = /^flags:\s+([0-7]+)$/m.exec(Deno.readTextFileSync(`/proc/self/fdinfo/${fd}`));
  return parseInt(m![1]!, 8);
}

/**
 * Reads PING (4 bytes, as text) from the far end of a received socketpair end, whose sender
 * wrote it into the other end, and closes it.
 */
export async function pingThrough(fd: number): Promise<string> {
  const sock = FdSocket.adopt(fd, { transport: "unix", path: "received" });
  try {
    return new TextDecoder().decode(await sock.readExactly(4, { timeoutMs: 5000 }));
  } finally {
    sock.close();
  }
}

/**
 * Runs `body` with the fds of a listening unix socket (node:net's, in a temporary folder) and of
 * an AF_UNIX datagram socket, then closes both (and removes the folder).
 */
export async function withListeningAndDatagram(
  body: (listening: number, datagram: number) => void | Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fds_" });
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(`${dir}/l.sock`, resolve));
  const datagram = clientLib().socket(C.AF_UNIX, 2 | C.SOCK_CLOEXEC, 0);
  try {
    // deno-lint-ignore no-explicit-any
    await body((server as any)._handle.fd as number, datagram);
  } finally {
    closeFd(datagram);
    await new Promise((resolve) => server.close(resolve));
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Runs `body`, then checks that it left no descriptor open: every one open after it was open
 * before, on the same file. (One the runtime closed meanwhile is no leak; counting them, as this
 * did, failed then.) node:net closes a handle in its loop's close phase, after `destroy()`
 * returns, so the check is made again for up to 2 s before it fails.
 */
export async function withoutFdLeak(body: () => Promise<void>): Promise<void> {
  const before = openFds();
  const leaked = () =>
    [...openFds()].filter(([fd, file]) => before.get(fd) !== file).map(([fd, file]) =>
      `${fd} (${file})`
    );
  await body();
  const deadline = performance.now() + 2000;
  let left = leaked();
  while (left.length > 0 && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    left = leaked();
  }
  assertEquals(left, [], "descriptors the test left open");
}

/** Set in the environment of a child `deno test` that runs one test of {@linkcode fdTests}. */
const CHILD_ENV = "USBIPGW_FD_TEST_CHILD";

/** A test name as a `--filter` regular expression that matches it alone. */
function exactFilter(name: string): string {
  return `/^${name.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}$/`;
}

/**
 * `Deno.test` for the test module at `moduleUrl` (its `import.meta.url`), each test run in a
 * child `deno test` of its own (filtered to that test); the test here passes when the child
 * passed. For tests that look at the whole process (its open descriptors, LogTape's global
 * configuration), which `deno test --parallel` shares between modules run side by side.
 */
export function ownProcessTests(
  moduleUrl: string,
): (name: string, body: () => Promise<void>) => void {
  const path = new URL(moduleUrl).pathname;
  return (name, body) => {
    if (Deno.env.get(CHILD_ENV) === "1") {
      Deno.test(name, body);
      return;
    }
    Deno.test(name, async () => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["test", "-A", "--no-check", "--filter", exactFilter(name), path],
        env: { [CHILD_ENV]: "1", NO_COLOR: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      if (!out.success || !/\bok \| 1 passed \| 0 failed\b/.test(text)) {
        throw new Error(`The test failed in its own process (exit ${out.code}):\n${text}`);
      }
    });
  };
}

/**
 * {@linkcode ownProcessTests} whose tests must leave their process with as many open
 * descriptors as they found (see {@linkcode withoutFdLeak}).
 */
export function fdTests(moduleUrl: string): (name: string, body: () => Promise<void>) => void {
  const test = ownProcessTests(moduleUrl);
  return (name, body) => test(name, () => withoutFdLeak(body));
}

/** The path to run a helper script of this folder with. */
export const FD_PEER = new URL("./_fd_peer.ts", import.meta.url).pathname;

/** Runs `_fd_peer.ts` with `args`; resolves once it exits, rejecting when it failed. */
export async function runPeer(args: string[]): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", FD_PEER, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `_fd_peer.ts ${args.join(" ")} failed (${out.code}): ${new TextDecoder().decode(out.stderr)}`,
    );
  }
}
