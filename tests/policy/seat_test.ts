// Tests of the logind seat reader and watcher, over temporary seat folders written the way
// logind writes them (temporary file renamed over the seat file).
import { assert, assertEquals, assertLess, assertRejects } from "@std/assert";
import { parseSeatFile, SeatWatcher } from "../../lib/policy/seat.ts";

/** A seat file as systemd-logind 25x writes it for a graphical session. */
function seatText(session: string, uid: number): string {
  return [
    "# This is private data. Do not parse.",
    "IS_SEAT0=1",
    "CAN_MULTI_SESSION=1",
    "CAN_TTY=1",
    "CAN_GRAPHICAL=yes",
    `ACTIVE=${session}`,
    `ACTIVE_UID=${uid}`,
    `SESSIONS=${session} 3`,
    `UIDS=${uid} 120`,
    "",
  ].join("\n");
}

let tempCount = 0;

/** Replaces `${dir}/seat0` the way logind does: a temporary file renamed over it. */
async function logindWrite(dir: string, text: string): Promise<void> {
  const temp = `${dir}/.#seat0${(tempCount++).toString(36)}`;
  await Deno.writeTextFile(temp, text);
  await Deno.rename(temp, `${dir}/seat0`);
}

type Change = [number | undefined, number | undefined];

/** The next change the watcher reports, or a rejection after `ms`. */
function nextChange(seat: SeatWatcher, ms = 2000): Promise<Change> {
  return new Promise<Change>((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`No seat change within ${ms} ms`));
    }, ms);
    const off = seat.onChange((uid, previous) => {
      clearTimeout(timer);
      off();
      resolve([uid, previous]);
    });
  });
}

/** Records every change the watcher reports. */
function record(seat: SeatWatcher): Change[] {
  const changes: Change[] = [];
  seat.onChange((uid, previous) => changes.push([uid, previous]));
  return changes;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `body` with a fresh temporary seat folder holding `initial` as seat0 (if given). */
async function withSeatDir(
  initial: string | undefined,
  body: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "seats_" });
  try {
    if (initial !== undefined) await Deno.writeTextFile(`${dir}/seat0`, initial);
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("parseSeatFile() reads the active uid and session from logind's seat file", () => {
  assertEquals(parseSeatFile(seatText("c1", 1000)), { activeUid: 1000, activeSession: "c1" });
  assertEquals(parseSeatFile("ACTIVE=2\nACTIVE_UID=0\n"), { activeUid: 0, activeSession: "2" });
});

Deno.test("parseSeatFile() leaves out what the file does not say", () => {
  assertEquals(parseSeatFile(""), {});
  assertEquals(parseSeatFile("IS_SEAT0=1\nCAN_GRAPHICAL=yes\nSESSIONS=\nUIDS=\n"), {});
  assertEquals(parseSeatFile("ACTIVE=c3\n"), { activeSession: "c3" });
  assertEquals(parseSeatFile("ACTIVE_UID=1000\n"), { activeUid: 1000 });
  assertEquals(parseSeatFile("ACTIVE=\nACTIVE_UID=\n"), {});
});

Deno.test("parseSeatFile() skips junk, comments and values that are not uids", () => {
  const junk = [
    "garbage without equals",
    "=1000",
    "# ACTIVE_UID=5",
    "; ACTIVE_UID=6",
    "\u0000\u00ff\ufffd",
    "  ACTIVE = c7  ",
    "ACTIVE_UID=1001\r",
    "UIDS=1 2 3",
  ].join("\n");
  assertEquals(parseSeatFile(junk), { activeUid: 1001, activeSession: "c7" });
  assertEquals(parseSeatFile('ACTIVE="c2"\nACTIVE_UID="1002"\n'), {
    activeUid: 1002,
    activeSession: "c2",
  });
  for (const bad of ["abc", "-1", "1.5", "1e3", "0x10", "4294967295", "99999999999", "1000 x"]) {
    assertEquals(parseSeatFile(`ACTIVE_UID=${bad}\n`), {}, `ACTIVE_UID=${bad}`);
  }
  assertEquals(parseSeatFile("ACTIVE_UID=4294967294\n"), { activeUid: 4294967294 });
  // The last occurrence of a key wins, as in systemd's own env-file reader.
  assertEquals(parseSeatFile("ACTIVE_UID=1\nACTIVE_UID=2\n"), { activeUid: 2 });
});

Deno.test("SeatWatcher reads the console user when it opens", async () => {
  await withSeatDir(seatText("c1", 1000), async (dir) => {
    const seat = await SeatWatcher.open({ seatDir: dir });
    try {
      assertEquals(seat.source, "logind");
      assertEquals(seat.path, `${dir}/seat0`);
      assertEquals(seat.consoleUid, 1000);
      assertEquals(seat.activeSession, "c1");
    } finally {
      await seat.close();
    }
  });
});

Deno.test("SeatWatcher reports a seat switch done by rename within a bounded time", async () => {
  await withSeatDir(seatText("c1", 1000), async (dir) => {
    const seat = await SeatWatcher.open({ seatDir: dir });
    try {
      const changed = nextChange(seat);
      const start = performance.now();
      await logindWrite(dir, seatText("c2", 1001));
      assertEquals(await changed, [1001, 1000]);
      assertLess(performance.now() - start, 500, "a switch is seen within 500 ms");
      assertEquals(seat.consoleUid, 1001);
      assertEquals(seat.activeSession, "c2");

      // And back again: the watch survives the seat file being replaced.
      const back = nextChange(seat);
      await logindWrite(dir, seatText("c1", 1000));
      assertEquals(await back, [1000, 1001]);
    } finally {
      await seat.close();
    }
  });
});

Deno.test("SeatWatcher stays quiet when the seat file is rewritten with the same user", async () => {
  await withSeatDir(seatText("c1", 1000), async (dir) => {
    const seat = await SeatWatcher.open({ seatDir: dir });
    try {
      const changes = record(seat);
      for (let i = 0; i < 5; i++) {
        await logindWrite(dir, seatText("c1", 1000));
        await sleep(5);
      }
      // Another session of the same user is no change of console user either.
      await logindWrite(dir, seatText("c4", 1000));
      await sleep(60);
      assertEquals(seat.activeSession, "c4");
      // Reads happen in order, so the real switch below comes after every rewrite above.
      const changed = nextChange(seat);
      await logindWrite(dir, seatText("c5", 1001));
      await changed;
      assertEquals(changes, [[1001, 1000]]);
    } finally {
      await seat.close();
    }
  });
});

Deno.test("SeatWatcher takes a removed seat file as nobody at the console", async () => {
  await withSeatDir(seatText("c1", 1000), async (dir) => {
    const seat = await SeatWatcher.open({ seatDir: dir });
    try {
      const gone = nextChange(seat);
      await Deno.remove(`${dir}/seat0`);
      assertEquals(await gone, [undefined, 1000]);
      assertEquals(seat.consoleUid, undefined);
      assertEquals(seat.activeSession, undefined);

      const back = nextChange(seat);
      await logindWrite(dir, seatText("c2", 1000));
      assertEquals(await back, [1000, undefined]);
    } finally {
      await seat.close();
    }
  });
});

Deno.test("SeatWatcher takes a seat file missing at open as nobody, then sees it appear", async () => {
  await withSeatDir(undefined, async (dir) => {
    const seat = await SeatWatcher.open({ seatDir: dir, fallbackUid: 1000 });
    try {
      assertEquals(seat.source, "logind");
      assertEquals(seat.consoleUid, undefined, "the fallback is only for a missing folder");
      const changed = nextChange(seat);
      await logindWrite(dir, "ACTIVE=c1\nACTIVE_UID=1002\n");
      assertEquals(await changed, [1002, undefined]);
    } finally {
      await seat.close();
    }
  });
});

Deno.test("SeatWatcher falls back to fallbackUid when the seat folder does not exist", async () => {
  await withSeatDir(undefined, async (dir) => {
    const seatDir = `${dir}/no-logind`;
    const withFallback = await SeatWatcher.open({ seatDir, fallbackUid: 1000 });
    assertEquals(withFallback.source, "fallback");
    assertEquals(withFallback.consoleUid, 1000);
    assertEquals(withFallback.activeSession, undefined);
    const changes = record(withFallback);
    // A folder that appears later is not picked up.
    await Deno.mkdir(seatDir);
    await logindWrite(seatDir, seatText("c1", 1001));
    await sleep(60);
    assertEquals(withFallback.consoleUid, 1000);
    assertEquals(changes, []);
    await withFallback.close();

    const without = await SeatWatcher.open({ seatDir: `${dir}/also-missing` });
    assertEquals(without.source, "fallback");
    assertEquals(without.consoleUid, undefined);
    await without.close();
  });
});

Deno.test("SeatWatcher.close() stops notifications and keeps the last console user", async () => {
  await withSeatDir(seatText("c1", 1000), async (dir) => {
    const seat = await SeatWatcher.open({ seatDir: dir });
    const changes = record(seat);
    await seat.close();
    await logindWrite(dir, seatText("c2", 1001));
    await sleep(100);
    assertEquals(changes, []);
    assertEquals(seat.consoleUid, 1000);
    const late = record(seat);
    await logindWrite(dir, seatText("c3", 1002));
    await sleep(60);
    assertEquals(late, [], "a listener added after close() is never called");
    await seat.close(); // A second close() is harmless.
  });
});

Deno.test("SeatWatcher.close() during a burst of events leaves nothing pending", async () => {
  await withSeatDir(seatText("c1", 1000), async (dir) => {
    const seat = await SeatWatcher.open({ seatDir: dir });
    const changes = record(seat);
    await logindWrite(dir, seatText("c2", 1001));
    // Long enough for the events to arrive, shorter than the 20 ms the watcher gathers them
    // for: the debounce timer is (usually) running now. The test ends right after close(), so
    // the sanitizers fail it if close() leaves that timer, a read or the watch behind.
    await sleep(5);
    await seat.close();
    const seen = changes.length === 0 ? 1000 : 1001;
    assertEquals(seat.consoleUid, seen, "the uid matches what the listeners were told");
  });
});

Deno.test("SeatWatcher unsubscribes one listener and survives a throwing one", async () => {
  await withSeatDir(seatText("c1", 1000), async (dir) => {
    const seat = await SeatWatcher.open({ seatDir: dir });
    try {
      seat.onChange(() => {
        throw new Error("listener bug");
      });
      const removed: Change[] = [];
      const off = seat.onChange((uid, previous) => removed.push([uid, previous]));
      const kept = record(seat);
      off();
      const changed = nextChange(seat);
      await logindWrite(dir, seatText("c2", 1001));
      await changed;
      assertEquals(kept, [[1001, 1000]]);
      assertEquals(removed, []);
    } finally {
      await seat.close();
    }
  });
});

Deno.test("SeatWatcher takes an unreadable seat file as nobody at the console", async () => {
  await withSeatDir(undefined, async (dir) => {
    await Deno.mkdir(`${dir}/seat0`); // Reading a folder fails, as a permission error would.
    const seat = await SeatWatcher.open({ seatDir: dir, fallbackUid: 1000 });
    try {
      assertEquals(seat.consoleUid, undefined);
    } finally {
      await seat.close();
    }
  });
});

Deno.test("SeatWatcher.open() rejects a bad seat name, fallback uid or seat folder", async () => {
  await withSeatDir(seatText("c1", 1000), async (dir) => {
    for (const seat of ["", ".", "..", "../etc/passwd", "a/b"]) {
      await assertRejects(() => SeatWatcher.open({ seatDir: dir, seat }), TypeError, "file name");
    }
    for (const fallbackUid of [-1, 1.5, 4294967295, NaN]) {
      await assertRejects(
        () => SeatWatcher.open({ seatDir: `${dir}/none`, fallbackUid }),
        TypeError,
        "fallback uid",
      );
    }
    await assertRejects(
      () => SeatWatcher.open({ seatDir: `${dir}/seat0` }),
      Deno.errors.NotADirectory,
      "not a folder",
    );
  });
});

Deno.test("SeatWatcher watches another seat when asked", async () => {
  await withSeatDir(seatText("c1", 1000), async (dir) => {
    await Deno.writeTextFile(`${dir}/seat1`, "ACTIVE=7\nACTIVE_UID=2000\n");
    const seat = await SeatWatcher.open({ seatDir: `${dir}/`, seat: "seat1" });
    try {
      assertEquals(seat.path, `${dir}/seat1`);
      assertEquals(seat.consoleUid, 2000);
      const changes = record(seat);
      await logindWrite(dir, seatText("c2", 1001)); // seat0 changes: not ours.
      await sleep(60);
      assertEquals(changes, []);
      assert(seat.consoleUid === 2000);
    } finally {
      await seat.close();
    }
  });
});
