// Counting this process's open file descriptors, for the no-leak checks of the fd-passing tests.
import { assertEquals } from "@std/assert";

/** The entries of /proc/self/fd (the listing's own descriptor is among them every time). */
export function openFdCount(): number {
  let n = 0;
  for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
  return n;
}

/**
 * Runs `body`, then checks that the process has as many open descriptors as before. node:net
 * closes a handle in its loop's close phase, after `destroy()` returns, so the count may take
 * a moment: it is read again for up to 2 s before the check fails.
 */
export async function withoutFdLeak(body: () => Promise<void>): Promise<void> {
  const before = openFdCount();
  await body();
  const deadline = performance.now() + 2000;
  let after = openFdCount();
  while (after !== before && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    after = openFdCount();
  }
  assertEquals(after, before, "open descriptors before and after");
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
