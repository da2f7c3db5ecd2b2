// polkit through pkcheck: the start-time parser, pkcheck's arguments and the refusals made
// without asking polkit; and, as root with Debian's polkitd and dbus, the answers of a real
// polkitd started for the test on a private system bus, then stopped. The action file itself is
// tested in tests/polkit/actions_test.ts.
import { assert, assertEquals, assertLess, assertStringIncludes } from "@std/assert";
import {
  type Authorization,
  type AuthorizationRequest,
  checkAuthorization,
  type CheckAuthorizationOptions,
  parseProcStartTime,
  pkcheckArgs,
  readProcessStartTime,
} from "../../lib/policy/polkit.ts";
import { PolkitAction, polkitExampleRules } from "../../lib/polkit/actions.ts";
import { tempDir } from "../e2e/_gateway.ts";
import { lookUp, realPolkitIgnored, startPolkitEnv, type User } from "./_polkit_env.ts";

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("parseProcStartTime() counts field 22 after the command name's last parenthesis", async () => {
  // A command name with spaces and parentheses, as a real process has it: a shell that
  // renames itself (proc(5), /proc/PID/comm), then waits.
  const name = "x) (y z";
  const child = new Deno.Command("sh", {
    args: ["-c", `printf '%s' '${name}' > /proc/$$/comm; sleep 30; :`],
    stdin: "null",
  }).spawn();
  try {
    let stat = "";
    for (let i = 0; i < 200 && !stat.includes(`(${name})`); i++) {
      await delay(5);
      stat = await Deno.readTextFile(`/proc/${child.pid}/stat`);
    }
    assertStringIncludes(stat, `(${name})`);
    // Counted from the known name: independent of the parser's last-")" rule.
    const after = stat.slice(stat.indexOf("(") + 1 + name.length + 1).trim().split(" ");
    assertEquals(parseProcStartTime(stat), Number(after[22 - 3]));
    assertEquals(await readProcessStartTime(child.pid), Number(after[22 - 3]));
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
  for (const bad of ["", "4242", "4242 (sleep) S 1 2 3", "(sleep) S" + " 0".repeat(30), "x"]) {
    assertEquals(parseProcStartTime(bad), undefined, bad);
  }
  assertEquals(await readProcessStartTime(0), undefined);
  assertEquals(await readProcessStartTime(4_194_305), undefined);
});

Deno.test("pkcheckArgs() passes each detail as one --detail KEY VALUE, and never asks to prompt", () => {
  const args = pkcheckArgs(PolkitAction.ATTACH_REMOTE, 42, 7, 1000, {
    remote: "[fe80::1%eth0]:3240",
    busid: "1-2.3",
  });
  assertEquals(args, [
    "--action-id",
    "org.usbipgw.attach-remote",
    "--process",
    "42,7,1000",
    "--detail",
    "busid",
    "1-2.3",
    "--detail",
    "remote",
    "[fe80::1%eth0]:3240",
  ]);
  assert(!args.includes("--allow-user-interaction") && !args.includes("-u"));
});

/** A request from this process, as its own user. */
function mine(overrides: Partial<AuthorizationRequest> = {}): AuthorizationRequest {
  return { action: PolkitAction.ATTACH_LOCAL, pid: Deno.pid, uid: Deno.uid()!, ...overrides };
}

Deno.test("checkAuthorization() refuses a malformed request without asking polkit", async () => {
  // A pkcheck that would fail differently if it were run.
  const options = { pkcheck: "/nonexistent/pkcheck" };
  const cases: [Partial<AuthorizationRequest> | Record<string, unknown>, string][] = [
    [{ action: "org.freedesktop.policykit.exec" }, "is not an action of usbipgw"],
    [{ pid: 0 }, '"0" is not a pid'],
    [{ pid: -1 }, "is not a pid"],
    [{ pid: 1.5 }, "is not a pid"],
    [{ uid: -1 }, "is not a uid"],
    [{ uid: 0xffff_ffff }, "is not a uid"],
    [{ startTime: -3 }, "is not a start time"],
    [{ details: { "polkit.message": "Hello" } }, '"polkit.message" is not a detail'],
    [{ details: { busid: "--allow-user-interaction" } }, "detail busid"],
    [{ details: { busid: "-u" } }, "detail busid"],
    [{ details: { busid: "1-1 --detail" } }, "detail busid"],
    [{ details: { busid: "1".repeat(32) } }, "detail busid"],
    [{ details: { busid: "" } }, "detail busid"],
    [{ details: { vid_pid: "0525:a4a" } }, "detail vid_pid"],
    [{ details: { vid_pid: 1 } }, "detail vid_pid"],
    [{ details: { remote: "-x:3240" } }, "detail remote"],
    [{ details: { remote: "host\n:3240" } }, "detail remote"],
    [{ details: { remote: `${"a".repeat(300)}:3240` } }, "detail remote"],
  ];
  for (const [overrides, why] of cases) {
    const answer = await checkAuthorization(
      mine(overrides as Partial<AuthorizationRequest>),
      options,
    );
    assertEquals(answer.result, "bad_request", JSON.stringify(overrides));
    assertEquals(answer.authorized, false);
    assertStringIncludes(answer.reason, "not asked: ");
    assertStringIncludes(answer.reason, why);
  }
  // Long values are cut in the reason.
  const long = await checkAuthorization(mine({ details: { busid: "x".repeat(100) } }), options);
  assertLess(long.reason.length, 160);
});

Deno.test("checkAuthorization() is unavailable without pkcheck, on a timeout, and for a process that is gone or runs as another uid", async () => {
  const missing = await checkAuthorization(mine(), { pkcheck: "/nonexistent/pkcheck" });
  assertEquals(missing, {
    result: "unavailable",
    authorized: false,
    reason: "polkit is unavailable: there is no /nonexistent/pkcheck (Debian package: polkitd)",
  });

  const dir = await tempDir();
  try {
    const slow = `${dir.path}/pkcheck`;
    await Deno.writeTextFile(slow, "#!/bin/sh\nexec sleep 30\n", { mode: 0o755 });
    const started = performance.now();
    const late = await checkAuthorization(mine(), { pkcheck: slow, timeoutMs: 200 });
    assertLess(performance.now() - started, 5000);
    assertEquals(late.result, "unavailable");
    assertEquals(late.reason, "polkit is unavailable: pkcheck did not answer within 200 ms");
  } finally {
    await dir.remove();
  }

  const done = new Deno.Command("/bin/true", { stdin: "null" }).spawn();
  await done.status;
  const gone = await checkAuthorization(mine({ pid: done.pid }), { pkcheck: "/nonexistent/x" });
  assertEquals(gone.result, "unavailable");
  assertEquals(gone.reason, `not asked: process ${done.pid} is gone`);

  const other = Deno.uid() === 0 ? 12345 : 0;
  const wrong = await checkAuthorization(mine({ uid: other }), { pkcheck: "/nonexistent/x" });
  assertEquals(wrong.result, "unavailable");
  assertEquals(
    wrong.reason,
    `not asked: process ${Deno.pid} runs as uid ${Deno.uid()}, not uid ${other} (replaced?)`,
  );
});

Deno.test("checkAuthorization() runs pkcheck with a clean environment and reads every exit status", async () => {
  // A stand-in pkcheck that records its arguments and environment and exits as told: the
  // statuses a real polkitd gives are in the test below; 3 (dismissed) needs an agent.
  const dir = await tempDir();
  try {
    const fake = `${dir.path}/pkcheck`;
    await Deno.writeTextFile(
      fake,
      `#!/bin/sh\nprintf '%s\\n' "$@" > ${dir.path}/args\nenv > ${dir.path}/env\n` +
        `echo "first line" >&2\necho "  the reason  " >&2\nexit $(cat ${dir.path}/code)\n`,
      { mode: 0o755 },
    );
    const ask = async (code: number, options: CheckAuthorizationOptions = {}) => {
      await Deno.writeTextFile(`${dir.path}/code`, `${code}\n`);
      return await checkAuthorization(
        mine({ startTime: 99, details: { busid: "3-1", vid_pid: "0525:A4A0" } }),
        { pkcheck: fake, ...options },
      );
    };
    const who = `uid ${Deno.uid()} (pid ${Deno.pid})`;
    const expected: [number, Authorization][] = [
      [0, {
        result: "authorized",
        authorized: true,
        reason: `polkit authorizes ${who} for org.usbipgw.attach-local`,
      }],
      [1, {
        result: "not_authorized",
        authorized: false,
        reason: `polkit does not authorize ${who} for org.usbipgw.attach-local`,
      }],
      [2, {
        result: "needs_authentication",
        authorized: false,
        reason:
          `polkit wants ${who} to authenticate for org.usbipgw.attach-local, which a service cannot ask: no`,
      }],
      [3, {
        result: "dismissed",
        authorized: false,
        reason: `the authentication of ${who} for org.usbipgw.attach-local was dismissed`,
      }],
      [126, {
        result: "unavailable",
        authorized: false,
        reason: "polkit is unavailable: no system bus: the reason",
      }],
      [127, {
        result: "unavailable",
        authorized: false,
        reason: "polkit is unavailable: the reason",
      }],
      [4, {
        result: "unavailable",
        authorized: false,
        reason: "polkit is unavailable: pkcheck exited with 4: the reason",
      }],
    ];
    for (const [code, answer] of expected) assertEquals(await ask(code), answer, `exit ${code}`);

    assertEquals((await Deno.readTextFile(`${dir.path}/args`)).split("\n"), [
      "--action-id",
      "org.usbipgw.attach-local",
      "--process",
      `${Deno.pid},99,${Deno.uid()}`,
      "--detail",
      "busid",
      "3-1",
      "--detail",
      "vid_pid",
      "0525:a4a0", // In lower case, as rules compare it.
      "",
    ]);
    // Nothing of this process's environment but what pkcheck needs.
    await ask(0, { systemBusAddress: "unix:path=/tmp/bus" });
    const env = (await Deno.readTextFile(`${dir.path}/env`)).split("\n").filter((l) =>
      l !== "" && !/^(PWD|SHLVL|_)=/.test(l)
    ).sort();
    assertEquals(env, ["DBUS_SYSTEM_BUS_ADDRESS=unix:path=/tmp/bus", "LC_ALL=C"]);
  } finally {
    await dir.remove();
  }
});

// --- a real polkitd ------------------------------------------------------------------------

const polkitIgnored = await realPolkitIgnored("the test with a real polkitd");

/** A process running `sleep` as `user`: a real subject for polkit. */
async function subject(user: User): Promise<{ pid: number; stop(): Promise<void> }> {
  const child = new Deno.Command("setpriv", {
    args: [`--reuid=${user.uid}`, `--regid=${user.gid}`, "--clear-groups", "sleep", "60"],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const stop = async () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Exited.
    }
    await child.status;
  };
  // Until setpriv has switched user and run sleep.
  for (let i = 0; i < 200; i++) {
    const status = await Deno.readTextFile(`/proc/${child.pid}/status`).catch(() => "");
    if (/^Name:\tsleep$/m.test(status) && new RegExp(`^Uid:\\t${user.uid}\\t`, "m").test(status)) {
      return { pid: child.pid, stop };
    }
    await delay(10);
  }
  await stop();
  throw new Error(`Cannot run a process as ${user.name}`);
}

/** The implicit authorizations polkitd read for `action`, as pkaction(1) shows them. */
async function implicit(action: string, address: string): Promise<string[]> {
  const out = await new Deno.Command("pkaction", {
    args: ["--verbose", "--action-id", action],
    env: { DBUS_SYSTEM_BUS_ADDRESS: address },
    stdin: "null",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  return ["any", "inactive", "active"].map((k) =>
    new RegExp(`implicit ${k}:\\s+(\\S+)`).exec(text)?.[1] ?? `(none: ${text})`
  );
}

Deno.test({
  name:
    "a real polkitd: a rule's user is authorized, others are not, auth_admin is a no, and a stopped polkitd or bus is unavailable",
  ignore: polkitIgnored,
  async fn() {
    const local = (await lookUp("daemon"))!; // The rules below let it attach-local busid 1-1.
    const other = (await lookUp("nobody"))!; // The example rules let its group attach-remote.
    // Without logind no subject is in an active session, and polkit takes allow_any (no) for
    // all three actions. The first rules stand in for an administrator's: the user "daemon" may
    // attach the gateway's device 1-1, and gets auth_admin for attach-remote, which is what
    // allow_active gives an active console session.
    const env = await startPolkitEnv({
      test: `// Written by usbipgw's tests/policy/polkit_test.ts; removed when it ends.
polkit.addRule(function (action, subject) {
    if (subject.user != "${local.name}") return polkit.Result.NOT_HANDLED;
    if (action.id == "${PolkitAction.ATTACH_LOCAL}" && action.lookup("busid") == "1-1") {
        return polkit.Result.YES;
    }
    if (action.id == "${PolkitAction.ATTACH_REMOTE}") return polkit.Result.AUTH_ADMIN;
    return polkit.Result.NOT_HANDLED;
});
`,
      example: polkitExampleRules(other.group),
    });
    const cleanups: (() => Promise<unknown>)[] = [];
    try {
      const { address, bus, polkitd } = env;
      const options = { systemBusAddress: address };
      // Root is always authorized (the gateway does not ask for root: this only shows polkitd
      // answers).
      const root = await checkAuthorization(
        { action: PolkitAction.ATTACH_STREAM, pid: Deno.pid, uid: 0 },
        options,
      );
      assertEquals(root.result, "authorized");

      // polkitd read the action file as written.
      assertEquals(await implicit(PolkitAction.ATTACH_LOCAL, address), ["no", "no", "yes"]);
      assertEquals(await implicit(PolkitAction.ATTACH_REMOTE, address), [
        "no",
        "no",
        "auth_admin",
      ]);
      assertEquals(await implicit(PolkitAction.ATTACH_STREAM, address), [
        "no",
        "no",
        "auth_admin",
      ]);

      const a = await subject(local);
      cleanups.push(() => a.stop());
      const b = await subject(other);
      cleanups.push(() => b.stop());
      const ask = (
        user: User,
        pid: number,
        action: AuthorizationRequest["action"],
        extra: Partial<AuthorizationRequest> = {},
      ) => checkAuthorization({ action, pid, uid: user.uid, ...extra }, options);
      const timings: number[] = [];
      const timed = async (p: Promise<Authorization>) => {
        const t = performance.now();
        const r = await p;
        timings.push(performance.now() - t);
        return r;
      };

      // The rule's user, for the device the rule names: yes.
      const yes = await timed(
        ask(local, a.pid, PolkitAction.ATTACH_LOCAL, { details: { busid: "1-1" } }),
      );
      assertEquals(yes, {
        result: "authorized",
        authorized: true,
        reason: `polkit authorizes uid ${local.uid} (pid ${a.pid}) for org.usbipgw.attach-local`,
      });
      // The details reach the rule: another device is allow_any's no.
      const otherDevice = await timed(
        ask(local, a.pid, PolkitAction.ATTACH_LOCAL, { details: { busid: "1-2" } }),
      );
      assertEquals(otherDevice.result, "not_authorized");
      // Another user: no.
      const no = await timed(
        ask(other, b.pid, PolkitAction.ATTACH_LOCAL, {
          details: { busid: "1-1", vid_pid: "0525:a4a0" },
        }),
      );
      assertEquals(no, {
        result: "not_authorized",
        authorized: false,
        reason:
          `polkit does not authorize uid ${other.uid} (pid ${b.pid}) for org.usbipgw.attach-local`,
      });
      // auth_admin: a service cannot ask for the password, so no.
      const auth = await timed(
        ask(local, a.pid, PolkitAction.ATTACH_REMOTE, { details: { remote: "10.0.0.2:3240" } }),
      );
      assertEquals(auth.result, "needs_authentication");
      assertEquals(auth.authorized, false);
      assertStringIncludes(auth.reason, "which a service cannot ask: no");
      // The example rules file works as written: the group's member may attach-remote...
      const remote = await timed(
        ask(other, b.pid, PolkitAction.ATTACH_REMOTE, {
          details: { busid: "1-1", remote: "server.example:3240" },
        }),
      );
      assertEquals(remote.result, "authorized");
      // ...and nothing else: attach-stream stays allow_any's no.
      const stream = await timed(ask(other, b.pid, PolkitAction.ATTACH_STREAM));
      assertEquals(stream.result, "not_authorized");
      // A start time that is not the process's: polkitd sees a replaced process.
      const startTime = (await readProcessStartTime(a.pid))!;
      const replaced = await ask(local, a.pid, PolkitAction.ATTACH_LOCAL, {
        startTime: startTime + 1,
        details: { busid: "1-1" },
      });
      assertEquals(replaced.result, "unavailable");
      assertStringIncludes(replaced.reason, `process with PID ${a.pid} has been replaced`);

      // polkitd stopped: the bus knows no org.freedesktop.PolicyKit1 (and activates nothing).
      await polkitd.stop();
      const down = await ask(local, a.pid, PolkitAction.ATTACH_LOCAL, {
        details: { busid: "1-1" },
      });
      assertEquals(down.result, "unavailable");
      assertEquals(down.authorized, false);
      assertStringIncludes(down.reason, "polkit is unavailable: ");
      assertStringIncludes(down.reason, "org.freedesktop.PolicyKit1");
      // The bus stopped too.
      await bus.stop();
      const noBus = await ask(local, a.pid, PolkitAction.ATTACH_LOCAL, {
        details: { busid: "1-1" },
      });
      assertEquals(noBus.result, "unavailable");
      assertStringIncludes(noBus.reason, "polkit is unavailable: no system bus: ");

      // pkcheck against a running polkitd is quick (median well under a second).
      timings.sort((x, y) => x - y);
      assertLess(timings[Math.floor(timings.length / 2)]!, 1000);
    } finally {
      for (const cleanup of cleanups.reverse()) await cleanup();
      await env.restore();
    }
    // The machine is as before.
    await env.assertRestored();
  },
});
