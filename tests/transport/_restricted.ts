// Runs tests/transport/_open_probe.ts in a child with fewer privileges than the runner, for
// checks that root would pass regardless: without CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH,
// CAP_FOWNER and CAP_NET_BIND_SERVICE (setpriv(1) lowers the bounding set, so even uid 0
// obeys file modes and cannot bind ports below 1024), or with a folder bind-mounted
// read-only in a mount namespace of its own (unshare(1)), so nothing leaks to the host; and
// makes a unix socket of another user for the tests of sockets this user may not use.
import { UnixListener } from "../../lib/transport/unix.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const PROBE = new URL("./_open_probe.ts", import.meta.url).pathname;

async function works(cmd: string, args: string[]): Promise<boolean> {
  try {
    return (await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

const isRoot = Deno.uid() === 0;

/** Why a child without the DAC and bind capabilities cannot be started, or undefined. */
export const noCapsProblem: string | undefined = !isRoot
  ? undefined // not needed: this user obeys file modes and port privileges already
  : await works("setpriv", ["--bounding-set", "-dac_override", "true"])
  ? undefined
  : "setpriv(1) cannot lower the capability bounding set here";

/** Why a unix socket of another user (nobody) cannot be made and tested here, or undefined. */
export const foreignSocketProblem: string | undefined = !isRoot
  ? "handing a socket to another user (nobody) needs root"
  : noCapsProblem;

/**
 * Runs `fn` with the path of a live unix socket owned by nobody, mode 0600, in a temporary
 * folder (root without CAP_DAC_OVERRIDE cannot connect to it either); then closes the socket
 * and removes the folder.
 */
export async function withForeignSocket(fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/gw.sock`;
  const listener = await UnixListener.listen({ path, mode: 0o600, uid: 65534 });
  try {
    await fn(path);
  } finally {
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Why a read-only bind mount cannot be made, or undefined. */
export const readOnlyProblem: string | undefined = !isRoot
  ? "a read-only bind mount needs root (unshare --mount)"
  : await works("unshare", ["--mount", "true"])
  ? undefined
  : "unshare(1) cannot make a mount namespace here";

/** What the probe printed: the error's name, message, failure and code, or `{ ok: true }`. */
export interface ProbeResult {
  ok?: boolean;
  name?: string;
  message?: string;
  failure?: string;
  code?: string;
}

/**
 * Runs the probe with `args`: as this user without root's DAC and bind capabilities
 * (`"no-caps"`; as a non-root user simply as it is), or with `readOnly` bind-mounted
 * read-only.
 */
export async function probe(
  args: string[],
  how: "no-caps" | { readOnly: string },
): Promise<ProbeResult> {
  const deno = [Deno.execPath(), "run", "-A", "--quiet", PROBE, ...args];
  let cmd: string[];
  if (how === "no-caps") {
    cmd = isRoot
      ? [
        "setpriv",
        "--bounding-set",
        "-dac_override,-dac_read_search,-fowner,-net_bind_service",
        "--",
        ...deno,
      ]
      : deno;
  } else {
    cmd = [
      "unshare",
      "--mount",
      "--",
      "sh",
      "-c",
      'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && shift && exec "$@"',
      "sh",
      how.readOnly,
      ...deno,
    ];
  }
  const out = await new Deno.Command(cmd[0]!, { args: cmd.slice(1), cwd: ROOT, stdin: "null" })
    .output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success || text === "") {
    throw new Error(
      `The probe failed (${out.code}): ${text}${new TextDecoder().decode(out.stderr)}`,
    );
  }
  return JSON.parse(text.split("\n").at(-1)!);
}
