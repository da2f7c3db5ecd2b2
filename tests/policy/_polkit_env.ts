// A real polkitd for tests, as root with Debian's polkitd and dbus: a private system bus
// (dbus-daemon on a socket in a temporary directory), polkitd on it, usbipgw's action file
// and the test's rules.d files installed where polkitd reads them; then everything stopped and
// removed, and the machine's own action file put back. One test at a time holds it (an flock(2)
// on rules.d): `deno test --parallel` runs test files side by side in one process, and every
// polkitd reads all of rules.d.
import { errorMessage } from "../../lib/util/error_message.ts";
import { assertEquals } from "@std/assert";
import {
  POLKIT_ACTIONS_FILE,
  POLKIT_RULES_DIR,
  polkitPolicyFile,
} from "../../lib/polkit/actions.ts";

/** Where polkitd is on Debian (and elsewhere). */
export const POLKITD_PATHS = ["/usr/lib/polkit-1/polkitd", "/usr/libexec/polkitd"];

const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A daemon the test started, and its stderr once stopped. */
export interface Daemon {
  child: Deno.ChildProcess;
  /** Stops it (SIGTERM) and resolves with what it wrote to stderr; once only, then the same. */
  stop(): Promise<string>;
}

function daemon(child: Deno.ChildProcess, collect: boolean): Daemon {
  let stopped: Promise<string> | undefined;
  return {
    child,
    stop() {
      stopped ??= (async () => {
        try {
          child.kill("SIGTERM");
        } catch {
          // It has exited already.
        }
        if (!collect) {
          await child.status;
          return "";
        }
        const out = await child.output();
        return new TextDecoder().decode(out.stderr);
      })();
      return stopped;
    },
  };
}

/** The private system bus's configuration: the system bus's policy, no service activation. */
function busConfig(socket: string): string {
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
  </policy>
  <includedir>/usr/share/dbus-1/system.d</includedir>
</busconfig>
`;
}

/** Starts dbus-daemon on `dir`/system_bus_socket; resolves once it listens. */
export async function startBus(dir: string): Promise<{ bus: Daemon; address: string }> {
  await Deno.writeTextFile(`${dir}/bus.conf`, busConfig(`${dir}/system_bus_socket`));
  const child = new Deno.Command("dbus-daemon", {
    args: [`--config-file=${dir}/bus.conf`, "--nofork", "--nopidfile", "--print-address"],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const bus = daemon(child, false);
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let printed = "";
  const timer = setTimeout(() => reader.cancel(), 10_000);
  try {
    while (!printed.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      printed += value;
    }
  } finally {
    clearTimeout(timer);
    await reader.cancel();
  }
  const address = printed.split("\n")[0]!.trim();
  if (!address.startsWith("unix:")) {
    await bus.stop();
    throw new Error(`Cannot start dbus-daemon: it printed ${JSON.stringify(printed)}`);
  }
  return { bus, address };
}

/** Starts polkitd on the bus at `address`; resolves once it answers pkaction(1). */
export async function startPolkitd(program: string, address: string): Promise<Daemon> {
  const child = new Deno.Command(program, {
    args: ["--no-debug"],
    clearEnv: true,
    env: { DBUS_SYSTEM_BUS_ADDRESS: address, LC_ALL: "C" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const polkitd = daemon(child, true);
  let exited = false;
  child.status.then(() => exited = true);
  const deadline = performance.now() + 10_000;
  let last = "";
  while (performance.now() < deadline && !exited) {
    const out = await new Deno.Command("pkaction", {
      args: ["--action-id", "org.freedesktop.policykit.exec"],
      clearEnv: true,
      env: { DBUS_SYSTEM_BUS_ADDRESS: address, LC_ALL: "C" },
      stdin: "null",
      stdout: "null",
    }).output();
    if (out.success) return polkitd;
    last = new TextDecoder().decode(out.stderr).trim();
    await delay(50);
  }
  const said = await polkitd.stop();
  throw new Error(`Cannot start ${program}: pkaction says ${last}; polkitd said: ${said}`);
}

/** The polkitd program of this machine, if any. */
export async function polkitdProgram(): Promise<string | undefined> {
  for (const p of POLKITD_PATHS) if (await exists(p)) return p;
  return undefined;
}

/** A user as getent(1) knows it. */
export interface User {
  name: string;
  uid: number;
  gid: number;
  group: string;
}

/** The user `name` and its primary group, or undefined when there is none. */
export async function lookUp(name: string): Promise<User | undefined> {
  const run = async (db: string, key: string) => {
    try {
      const out = await new Deno.Command("getent", { args: [db, key], stdin: "null" }).output();
      return out.success ? new TextDecoder().decode(out.stdout).trim().split(":") : undefined;
    } catch {
      return undefined;
    }
  };
  const pw = await run("passwd", name);
  if (pw === undefined) return undefined;
  const gr = await run("group", pw[3]!);
  if (gr === undefined) return undefined;
  return { name, uid: Number(pw[2]), gid: Number(pw[3]), group: gr[0]! };
}

/** What a test with a real polkitd needs besides root, polkitd, pkcheck and dbus-daemon. */
export interface PolkitNeeds {
  /** Users that must exist; "daemon" and "nobody" when absent. */
  users?: string[];
  /** Commands that must be on the PATH, with the Debian package that has them. */
  commands?: [command: string, debianPackage: string][];
}

/** Why a test with a real polkitd cannot run here, or undefined when it can. */
export async function realPolkitMissing(needs: PolkitNeeds = {}): Promise<string | undefined> {
  if (Deno.uid() !== 0) return "it must run as root (it starts polkitd and writes its files)";
  for (const program of ["/usr/bin/pkcheck", "/usr/bin/pkaction"]) {
    if (!(await exists(program))) return `there is no ${program} (Debian package: polkitd)`;
  }
  const polkitd = await polkitdProgram();
  if (polkitd === undefined) {
    return `there is no polkitd (${POLKITD_PATHS.join(", ")}; Debian package: polkitd)`;
  }
  const commands: [string, string][] = [
    ["dbus-daemon", "dbus"],
    ["setpriv", "util-linux"],
    ...(needs.commands ?? []),
  ];
  for (const [command, debianPackage] of commands) {
    const which = await new Deno.Command("sh", {
      args: ["-c", 'command -v "$1"', "sh", command],
      stdin: "null",
      stdout: "null",
    }).output().catch(() => undefined);
    if (!which?.success) return `there is no ${command} (Debian package: ${debianPackage})`;
  }
  if (!(await exists(POLKIT_RULES_DIR))) return `there is no ${POLKIT_RULES_DIR}`;
  for (const name of needs.users ?? ["daemon", "nobody"]) {
    if ((await lookUp(name)) === undefined) return `there is no user "${name}"`;
  }
  // The daemons must start here: a trial run, stopped at once.
  const dir = await Deno.makeTempDir({ prefix: "usbipgw-polkit-" });
  try {
    await Deno.chmod(dir, 0o755);
    const { bus, address } = await startBus(dir);
    try {
      await (await startPolkitd(polkitd, address)).stop();
    } finally {
      await bus.stop();
    }
  } catch (e) {
    return errorMessage(e);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return undefined;
}

/**
 * Whether the test `what` must be ignored here: when the real polkitd cannot be set up, prints
 * why (in yellow) and returns true. For `Deno.test`'s `ignore`, at the test module's top level.
 */
export async function realPolkitIgnored(what: string, needs: PolkitNeeds = {}): Promise<boolean> {
  const missing = await realPolkitMissing(needs);
  if (missing === undefined) return false;
  console.log(`%cskipping ${what}: ${missing}`, "color: yellow");
  return true;
}

/** Writes `path` the way polkitd should see it appear: a temporary name, then a rename. */
export async function writeInPlace(path: string, text: string): Promise<void> {
  const slash = path.lastIndexOf("/");
  const temp = `${path.slice(0, slash)}/.${path.slice(slash + 1)}.new`;
  await Deno.writeTextFile(temp, text, { mode: 0o644 });
  await Deno.chmod(temp, 0o644);
  await Deno.rename(temp, path);
}

/** A running polkitd with usbipgw's actions and a test's rules, on a private system bus. */
export interface PolkitEnv {
  /** The private system bus's address, for `CheckAuthorizationOptions.systemBusAddress`. */
  address: string;
  bus: Daemon;
  polkitd: Daemon;
  /** The rules files written, in `rules`' order. */
  rulesFiles: string[];
  /**
   * Stops polkitd and the bus (when the test has not already), removes the rules files, puts
   * the machine's action file back (or removes it when there was none) and the temporary
   * directory. Idempotent.
   */
  restore(): Promise<void>;
  /** Asserts that the machine is as before: no rules file left, the action file as it was. */
  assertRestored(): Promise<void>;
}

/**
 * Installs usbipgw's action file and `rules` (a label, for the file's name, and the rules'
 * text, each its own file in rules.d in this order), then starts a private system bus and a
 * polkitd on it. Waits for the lock while another test holds it. On failure everything done
 * is undone and the error thrown.
 */
export async function startPolkitEnv(rules: Record<string, string>): Promise<PolkitEnv> {
  const program = await polkitdProgram();
  if (program === undefined) throw new Error("there is no polkitd");
  // Per open file, so it keeps out another test module of this process as well as another
  // process; the kernel drops it if this one dies.
  const lock = await Deno.open(POLKIT_RULES_DIR, { read: true });
  await lock.lock(true);
  const tag = `usbipgw-test-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const rulesFiles = Object.keys(rules).map((label, i) =>
    `${POLKIT_RULES_DIR}/${10 * (i + 1)}-${tag}-${label}.rules`
  );
  let before: string | undefined;
  let dir: string | undefined;
  const daemons: Daemon[] = [];
  let restored: Promise<void> | undefined;
  const restore = () =>
    restored ??= (async () => {
      try {
        for (const d of daemons.reverse()) await d.stop();
        for (const path of rulesFiles) await Deno.remove(path).catch(() => {});
        if (before === undefined) await Deno.remove(POLKIT_ACTIONS_FILE).catch(() => {});
        else await writeInPlace(POLKIT_ACTIONS_FILE, before);
        if (dir !== undefined) await Deno.remove(dir, { recursive: true });
      } finally {
        await lock.unlock();
        lock.close();
      }
    })();
  try {
    before = await Deno.readTextFile(POLKIT_ACTIONS_FILE).catch(() => undefined);
    dir = await Deno.makeTempDir({ prefix: "usbipgw-polkit-" });
    // polkitd drops root for its own user, which must reach the bus socket.
    await Deno.chmod(dir, 0o755);
    await writeInPlace(POLKIT_ACTIONS_FILE, polkitPolicyFile());
    for (const [i, text] of Object.values(rules).entries()) {
      await writeInPlace(rulesFiles[i]!, text);
    }
    const { bus, address } = await startBus(dir);
    daemons.push(bus);
    const polkitd = await startPolkitd(program, address);
    daemons.push(polkitd);
    return {
      address,
      bus,
      polkitd,
      rulesFiles,
      restore,
      async assertRestored() {
        for (const path of rulesFiles) assertEquals(await exists(path), false, path);
        assertEquals(await Deno.readTextFile(POLKIT_ACTIONS_FILE).catch(() => undefined), before);
      },
    };
  } catch (e) {
    await restore();
    throw e;
  }
}
