// For the tests of attaching through the gateway for users who are not root: the fake kernel
// over the client tests' fake vhci sysfs tree, requests sent as other uids (setpriv + socat),
// waiting for a condition, and the sockets and pipes this process holds (all of them, or the
// gateway's).
import { assert } from "@std/assert";
import { controllerPorts, type FakePort, type fakeSysfs } from "../client/_vhci_tree.ts";

/** Whether setpriv and socat, with which {@linkcode asUser} acts as another uid, are here. */
export const USER_TOOLS = [["setpriv", "--version"], ["socat", "-V"]].every(([t, version]) => {
  try {
    return new Deno.Command(t!, { args: [version!] }).outputSync().success;
  } catch {
    return false;
  }
});

/** Sends `request` over the gateway's socket as `uid`, through socat; returns the reply bytes. */
export async function asUser(
  uid: number,
  socket: string,
  request: Uint8Array,
): Promise<Uint8Array> {
  const child = new Deno.Command("setpriv", {
    args: [
      `--reuid=${uid}`,
      `--regid=${uid}`,
      "--clear-groups",
      "socat",
      "-T",
      "10",
      // ignoreeof: no half-close after the request; socat ends when the gateway closes.
      "-,ignoreeof",
      `UNIX-CONNECT:${socket}`,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(request);
  await writer.close();
  const out = await child.output();
  if (out.stdout.length === 0) {
    throw new Error(`socat as uid ${uid}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return out.stdout;
}

/** The fake kernel: an attach written to the tree makes its port used, a detach frees it. */
export function fakeKernel(tree: Awaited<ReturnType<typeof fakeSysfs>>) {
  const used = new Map<number, FakePort>();
  const attached: string[] = [];
  const detached: string[] = [];
  const timer = setInterval(() => {
    // Each write is taken once, as the kernel does; the file is emptied for the next one.
    const attach = tree.read("attach").trim();
    if (attach !== "") {
      attached.push(attach);
      Deno.writeTextFileSync(`${tree.vhci}/attach`, "");
      const [port = 0, sockfd = 0, devid = 0, speed = 0] = attach.split(" ").map(Number);
      used.set(port, { hub: "hs", port, status: 6, speed, devid, sockfd, busid: "3-1" });
    }
    const detach = tree.read("detach").trim();
    if (detach !== "") {
      detached.push(detach);
      Deno.writeTextFileSync(`${tree.vhci}/detach`, "");
      used.delete(Number(detach));
    }
    tree.setStatus(0, controllerPorts(0).map((p) => used.get(p.port) ?? p));
  }, 10);
  return { used, attached, detached, stop: () => clearInterval(timer) };
}

/** Waits (at most `ms`, 1 s by default) until `done()` holds. */
export async function until(done: () => boolean, what: string, ms = 1000): Promise<void> {
  const start = performance.now();
  while (!done()) {
    assert(performance.now() - start < ms, `not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * The sockets and pipes this process holds. (Deno 2.9.6's `watchFs`, which the seat watcher
 * uses, keeps its inotify and event fds after `close()`: not counted, they are not ours.)
 */
export function openSockets(): string[] {
  const fds: string[] = [];
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      const target = Deno.readLinkSync(`/proc/self/fd/${e.name}`);
      if (/^(socket|pipe):/.test(target)) fds.push(`${e.name} ${target}`);
    } catch {
      // Closed meanwhile (the readDir's own fd).
    }
  }
  return fds.sort();
}

/**
 * The gateway's sockets among {@linkcode openSockets}: the unix sockets bound at its socket
 * `path`, its listener and the connections it accepted (/proc/net/unix shows both with the
 * path). Unlike all of the process's sockets, these are the gateway's alone while
 * `deno test --parallel` runs other test modules in the same process.
 */
export function gatewaySockets(path: string): string[] {
  const bound = new Set<string>();
  for (const line of Deno.readTextFileSync("/proc/net/unix").split("\n").slice(1)) {
    // Num RefCount Protocol Flags Type St Inode Path
    const fields = line.trim().split(/\s+/);
    if (fields.slice(7).join(" ") === path) bound.add(`socket:[${fields[6]}]`);
  }
  return openSockets().filter((fd) => bound.has(fd.slice(fd.indexOf(" ") + 1)));
}
