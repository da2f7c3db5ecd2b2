// Back-ends that cannot open say which device, which back-end, where and why (a
// BackendOpenError), and a labelled back-end's log lines carry the device's label. Real
// sockets, files and mounts; checks root would pass regardless run in a child without
// root's capabilities (tests/transport/_restricted.ts).
import { assert, assertEquals, assertRejects } from "@std/assert";
import { configureSync, type LogRecord, resetSync } from "@logtape/logtape";
import { openCharBackend } from "../../lib/backends/char/mod.ts";
import { BackendOpenError } from "../../lib/backends/backend_error.ts";
import { openTextSocket } from "../../lib/backends/text_socket.ts";
import {
  lineSource,
  openTemperatureSource,
  parseTemperatureSource,
} from "../../lib/backends/temperature_source.ts";
import { ListenError } from "../../lib/transport/listen_error.ts";
import { renderMessage } from "../../lib/cli/logging.ts";
import { noCapsProblem, probe, readOnlyProblem } from "../transport/_restricted.ts";

const LABEL = "cdc-acm 1-3";

/** Runs `fn` with the `usbipgw` log records captured (every level). */
async function captureLogs(fn: (records: LogRecord[]) => Promise<void>): Promise<void> {
  const records: LogRecord[] = [];
  configureSync({
    reset: true,
    sinks: { memory: (r: LogRecord) => records.push(r) },
    loggers: [
      { category: ["usbipgw"], lowestLevel: "debug", sinks: ["memory"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["memory"] },
    ],
  });
  try {
    await fn(records);
  } finally {
    resetSync();
  }
}

/** Waits until `cond()` holds, polling every 5 ms, for at most `ms`. */
async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error("Timed out waiting for a condition");
    await new Promise((r) => setTimeout(r, 5));
  }
}

Deno.test("a tcp back-end on an occupied port names the device, the address and the reason", async () => {
  const holder = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = holder.addr.port;
    const e = await assertRejects(
      () => openCharBackend(`tcp:127.0.0.1:${port}`, { label: LABEL }),
      BackendOpenError,
    );
    assertEquals(
      e.message,
      `cdc-acm 1-3: Cannot open the tcp back-end on 127.0.0.1:${port}: ` +
        "the address is in use (EADDRINUSE)",
    );
    assertEquals([e.label, e.what, e.where], [LABEL, "tcp back-end", `on 127.0.0.1:${port}`]);
    assert(e.cause instanceof ListenError);
    const bare = await assertRejects(
      () => openCharBackend(`tcp:127.0.0.1:${port}`),
      BackendOpenError,
    );
    assertEquals(
      bare.message,
      `Cannot open the tcp back-end on 127.0.0.1:${port}: the address is in use (EADDRINUSE)`,
    );
  } finally {
    holder.close();
  }
});

Deno.test("unix and file back-ends in a missing folder name the folder", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const sock = `${dir}/x/serial.sock`;
    const u = await assertRejects(
      () => openCharBackend(`unix:${sock}`, { label: LABEL }),
      BackendOpenError,
    );
    assertEquals(
      u.message,
      `cdc-acm 1-3: Cannot open the unix back-end on ${sock}: the folder ${dir}/x does not exist (ENOENT)`,
    );
    const file = `${dir}/x/y`;
    const f = await assertRejects(() => openCharBackend(`file:${file}`), BackendOpenError);
    assertEquals(
      f.message,
      `Cannot open the file back-end ${file}: the folder ${dir}/x does not exist (ENOENT)`,
    );
    const onDir = await assertRejects(() => openCharBackend(`file:${dir}`), BackendOpenError);
    assertEquals(onDir.message, `Cannot open the file back-end ${dir}: it is a folder (EISDIR)`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

if (readOnlyProblem) console.log(`Skipping the read-only back-end test: ${readOnlyProblem}`);

Deno.test({
  name: "file and unix back-ends in a read-only folder say so",
  ignore: readOnlyProblem !== undefined,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const file = await probe(["backend", `file:${dir}/out.log`, LABEL], { readOnly: dir });
      assertEquals(
        [file.name, file.message],
        [
          "BackendOpenError",
          `cdc-acm 1-3: Cannot open the file back-end ${dir}/out.log: the folder ${dir} is read-only (EROFS)`,
        ],
      );
      const sock = await probe(["backend", `unix:${dir}/s.sock`], { readOnly: dir });
      assertEquals(
        sock.message,
        `Cannot open the unix back-end on ${dir}/s.sock: the folder ${dir} is read-only (EROFS)`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

if (noCapsProblem) console.log(`Skipping the unwritable folder back-end test: ${noCapsProblem}`);

Deno.test({
  name: "a file back-end in a folder this user cannot write to says so",
  ignore: noCapsProblem !== undefined,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.chmod(dir, 0o555);
      const r = await probe(["backend", `file:${dir}/out.log`, LABEL], "no-caps");
      assertEquals(
        r.message,
        `cdc-acm 1-3: Cannot open the file back-end ${dir}/out.log: permission denied: ` +
          `this user cannot create files in the folder ${dir} (EACCES)`,
      );
      const t = await probe(["text", `${dir}/kbd.sock`, "keyboard 1-2"], "no-caps");
      assertEquals(
        t.message,
        `keyboard 1-2: Cannot open the text socket on ${dir}/kbd.sock: permission denied: ` +
          `this user cannot create files in the folder ${dir} (EACCES)`,
      );
    } finally {
      await Deno.chmod(dir, 0o700);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("a text socket and temperature sources that cannot open name the device and the path", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const sock = `${dir}/none/kbd.sock`;
    const t = await assertRejects(
      () => openTextSocket({ path: sock, label: "keyboard 1-2" }, () => {}),
      BackendOpenError,
    );
    assertEquals(
      t.message,
      `keyboard 1-2: Cannot open the text socket on ${sock}: the folder ${dir}/none does not exist (ENOENT)`,
    );
    const missing = `${dir}/readings.txt`;
    const f = await assertRejects(
      () =>
        openTemperatureSource(parseTemperatureSource(`file:${missing}`), { label: "gotemp 1-4" }),
      BackendOpenError,
    );
    assertEquals(
      f.message,
      `gotemp 1-4: Cannot open the temperature file ${missing}: there is no such file (ENOENT)`,
    );
    const u = await assertRejects(
      () => openTemperatureSource({ kind: "unix", path: `${dir}/none/t.sock` }),
      BackendOpenError,
    );
    assertEquals(
      u.message,
      `Cannot open the temperature socket on ${dir}/none/t.sock: the folder ${dir}/none does not exist (ENOENT)`,
    );
    await Deno.writeTextFile(missing, "20\nwarm\n");
    await assertRejects(
      () => openTemperatureSource({ kind: "file", path: missing }, { label: "gotemp 1-4" }),
      TypeError,
      `gotemp 1-4: Invalid temperature "warm" on line 2 of ${missing}`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("every log line of a labelled tcp back-end starts with and carries the label", async () => {
  await captureLogs(async (records) => {
    const b = await openCharBackend("tcp:127.0.0.1:0", { label: LABEL });
    try {
      const client = await Deno.connect({
        hostname: "127.0.0.1",
        port: Number(b.address.split(":")[1]),
      });
      await until(() => b.connected);
      client.close();
      await until(() => !b.connected);
    } finally {
      await b.close();
    }
    const mine = records.filter((r) => r.category.join(".") === "usbipgw.backend");
    const lines = mine.map(renderMessage);
    assert(lines.includes(`cdc-acm 1-3: tcp ${b.address}: waiting for a client`), lines.join("\n"));
    assert(lines.includes(`cdc-acm 1-3: tcp ${b.address}: a peer connected`), lines.join("\n"));
    assert(lines.includes(`cdc-acm 1-3: tcp ${b.address}: the peer went away`), lines.join("\n"));
    for (const r of mine) {
      assertEquals(r.properties.label, LABEL);
      assert(renderMessage(r).startsWith("cdc-acm 1-3: "), renderMessage(r));
    }
  });
});

Deno.test("a labelled tcp-connect back-end logs its refused connects with the label and the reason", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  await captureLogs(async (records) => {
    const b = await openCharBackend(`tcp-connect:127.0.0.1:${port}`, {
      label: "ftdi 1-5",
      reconnectMinMs: 10,
      reconnectMaxMs: 10,
    });
    await until(() => records.some((r) => r.level === "warning"));
    await b.close();
    const w = records.find((r) => r.level === "warning")!;
    assertEquals(
      renderMessage(w),
      `ftdi 1-5: tcp-connect 127.0.0.1:${port}: cannot connect: connection refused (ECONNREFUSED); retrying`,
    );
    assertEquals(w.properties.label, "ftdi 1-5");
  });
});

Deno.test("a labelled text socket and temperature lines log with the label", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await captureLogs(async (records) => {
      const path = `${dir}/kbd.sock`;
      const s = await openTextSocket({ path, label: "keyboard 1-2" }, () => {});
      await s.close();
      const lines = lineSource({ label: "gotemp 1-4" });
      lines.push("hot\n");
      const text = records.map(renderMessage);
      assertEquals(text, [
        `keyboard 1-2: Text input socket on ${path}`,
        "gotemp 1-4: Skipped a temperature line that is not a number: hot",
      ]);
      assertEquals(records.map((r) => r.properties.label), ["keyboard 1-2", "gotemp 1-4"]);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an unlabelled back-end logs as before", async () => {
  await captureLogs(async (records) => {
    const b = await openCharBackend("tcp:127.0.0.1:0");
    await b.close();
    assertEquals(records.map(renderMessage), [`tcp ${b.address}: waiting for a client`]);
    assertEquals(records[0]!.properties.label, undefined);
  });
});
