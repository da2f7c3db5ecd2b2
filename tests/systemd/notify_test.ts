// The gateway as a Type=notify service: the real process started with NOTIFY_SOCKET pointing
// at a datagram socket this test owns, the way systemd starts it.
import { assert, assertEquals, assertMatch } from "@std/assert";
import { connectUnix, importDevice } from "../../mod.ts";
import { field, type Notification, NotifySocket, spawnService } from "./_service.ts";

const has = (key: string) => (n: Notification) => field(n, key) !== undefined;

Deno.test("the gateway sends READY=1, STATUS= updates, WATCHDOG=1 pings, RELOADING=1 and STOPPING=1 in order", async () => {
  const dir = await Deno.makeTempDir({ prefix: "usbipgw-notify-" });
  const notify = new NotifySocket(`${dir}/notify`);
  const gw = spawnService(
    [
      "serve",
      "--tcp",
      "127.0.0.1:0",
      "--unix",
      `${dir}/gw.sock`,
      "--device",
      "gadget-zero:busid=1-1",
    ],
    // 300 ms: a ping every 150 ms.
    { env: { NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: "300000" } },
  );
  try {
    const ready = await notify.next(has("READY"));
    assertEquals(field(ready, "READY"), "1");
    assertEquals(field(ready, "MAINPID"), String(gw.process.pid));
    assertMatch(
      field(ready, "STATUS") ?? "",
      new RegExp(
        `^Serving 1 device on tcp 127\\.0\\.0\\.1:\\d+, unix ${dir}/gw\\.sock; 0 imported, 0 connections$`,
      ),
    );
    // The gateway logs that it serves before it says READY=1.
    await gw.waitFor(/usbipgw serving 1 device/);

    // Pings at about half of WATCHDOG_USEC.
    const first = await notify.next(has("WATCHDOG"));
    const pings = () => notify.received.filter(has("WATCHDOG"));
    await notify.next((n) => has("WATCHDOG")(n) && pings().length >= 4);
    const times = pings().map((n) => n.at);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    assert(gaps.every((g) => g > 75 && g < 600), `watchdog gaps ${gaps.join(", ")} ms`);
    assert(first.at > ready.at, "WATCHDOG=1 before READY=1");

    // An import shows in the status line, and its end too.
    const channel = await importDevice(await connectUnix(`${dir}/gw.sock`), "1-1");
    const busy = await notify.next((n) =>
      /; 1 imported, 1 connection$/.test(field(n, "STATUS") ?? "")
    );
    assert(busy.at > ready.at);
    await channel.close();
    await notify.next((n) =>
      n.at > busy.at && /; 0 imported, 0 connections$/.test(field(n, "STATUS") ?? "")
    );

    // SIGHUP (ExecReload=): RELOADING=1, the reload, then READY=1 again.
    gw.process.kill("SIGHUP");
    const reloading = await notify.next(has("RELOADING"));
    const readyAgain = await notify.next((n) => has("READY")(n) && n.at > reloading.at);
    assertMatch(field(readyAgain, "STATUS") ?? "", /^Serving 1 device on /);

    const status = await gw.stop("SIGTERM");
    assertEquals(status.code, 0);
    const stopping = await notify.next(has("STOPPING"));
    assertEquals(field(stopping, "STATUS"), "Stopping: SIGTERM");
    // STOPPING=1 is the last word: no ping or status after it.
    assertEquals(notify.received.at(-1), stopping);
    assertEquals(notify.received.filter(has("READY")), [ready, readyAgain]);
    assertEquals(notify.received[0], ready);
  } finally {
    await gw.stop("SIGKILL");
    await notify.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an abstract NOTIFY_SOCKET gets READY=1, and no pings go out for another WATCHDOG_PID", async () => {
  const name = `usbipgw-test-${Deno.pid}-${Date.now()}`;
  const notify = new NotifySocket(`\0${name}`);
  const gw = spawnService(
    // A --tcp flag alone: no unix listener.
    ["serve", "--tcp", "127.0.0.1:0", "--device", "gadget-zero"],
    { env: { NOTIFY_SOCKET: `@${name}`, WATCHDOG_USEC: "200000", WATCHDOG_PID: "1" } },
  );
  try {
    const ready = await notify.next(has("READY"));
    assertMatch(field(ready, "STATUS") ?? "", /^Serving 1 device on tcp 127\.0\.0\.1:\d+; /);
    // Ten ping intervals: the watchdog is another process's.
    await new Promise((r) => setTimeout(r, 1000));
    assertEquals(notify.received.filter(has("WATCHDOG")), []);
    assertEquals((await gw.stop("SIGINT")).code, 0);
    assertEquals(field(await notify.next(has("STOPPING")), "STATUS"), "Stopping: SIGINT");
  } finally {
    await gw.stop("SIGKILL");
    await notify.close();
  }
});
