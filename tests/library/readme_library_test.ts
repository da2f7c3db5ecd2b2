// The README's library section, run: the counter example serves on a unix socket and loopback
// TCP, answers its vendor requests, completes an interrupt IN at the next tick, cancels one the
// host unlinks, and ends on SIGINT; the testing example runs as written.
import { assert, assertEquals } from "@std/assert";
import { connectUnix, importDevice, Request, RequestType } from "../../mod.ts";

const ROOT = new URL("../../", import.meta.url);

/** The ```ts blocks of the README's "## Library" section, in order. */
async function libraryBlocks(): Promise<string[]> {
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  const section = readme.slice(readme.indexOf("\n## Library\n"), readme.indexOf("\n## Layout"));
  return [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

/** Writes `code` to a temporary file with `./mod.ts` and `./testing.ts` as file URLs. */
async function program(dir: string, name: string, code: string): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(
    path,
    code.replaceAll('"./mod.ts"', `"${new URL("mod.ts", ROOT).href}"`)
      .replaceAll('"./testing.ts"', `"${new URL("testing.ts", ROOT).href}"`),
  );
  return path;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

Deno.test({
  name: "the README's counter example serves, answers, waits, cancels and stops on SIGINT",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const [counter] = await libraryBlocks();
    assert(counter?.includes("class Counter"), "the first block is the counter");
    const dir = await Deno.makeTempDir({ prefix: "usbipgw-readme-" });
    const socket = `${dir}/counter.sock`;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", await program(dir, "counter.ts", counter!)],
      env: { COUNTER_SOCKET: socket, COUNTER_PORT: String(freePort()) },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    try {
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let out = "";
      while (!out.includes("Counter on")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`the example ended: ${out}`);
        out += value;
      }
      assert((await Deno.stat(socket)).mode! & 0o600, "the socket exists");
      assertEquals((await Deno.stat(socket)).mode! & 0o077, 0, "only its user may open it");
      const channel = await importDevice(await connectUnix(socket), "1-1");
      const vendor = RequestType.TYPE_VENDOR | RequestType.RECIPIENT_DEVICE;
      const set = await channel.submit({
        ep: 0,
        dirIn: false,
        setup: { bmRequestType: vendor, bRequest: 0x01, wValue: 41, wIndex: 0, wLength: 0 },
      }).done;
      assertEquals(set.status, 0);
      const get = await channel.submit({
        ep: 0,
        dirIn: true,
        length: 4,
        setup: {
          bmRequestType: RequestType.DIR_IN | vendor,
          bRequest: 0x02,
          wValue: 0,
          wIndex: 0,
          wLength: 4,
        },
      }).done;
      const count = new DataView(get.data.buffer, get.data.byteOffset).getUint32(0, true);
      assert(count === 41 || count === 42, `GET after SET 41 answered ${count}`);
      const configured = await channel.submit({
        ep: 0,
        dirIn: false,
        setup: {
          bmRequestType: 0,
          bRequest: Request.SET_CONFIGURATION,
          wValue: 1,
          wIndex: 0,
          wLength: 0,
        },
      }).done;
      assertEquals(configured.status, 0);
      // The interrupt IN completes at the next tick (once a second) with the count.
      const tick = await channel.submit({ ep: 1, dirIn: true, length: 4 }).done;
      assertEquals(tick.status, 0);
      assert(new DataView(tick.data.buffer, tick.data.byteOffset).getUint32(0, true) > count);
      // One the host unlinks before a tick is cancelled (-ECONNRESET), not left pending.
      const pending = channel.submit({ ep: 1, dirIn: true, length: 4 });
      const unlinked = await channel.unlink(pending.seqnum);
      const outcome = await pending.done.then((r) => r.status, () => "unlinked");
      assert(
        unlinked.status === -104 || outcome === -104,
        `unlink: ${unlinked.status}, submit: ${outcome}`,
      );
      await channel.close();
      child.kill("SIGINT");
      assertEquals((await child.status).code, 0);
      await reader.cancel();
    } finally {
      try {
        child.kill("SIGKILL");
      } catch {
        // ended
      }
      await child.stderr.cancel().catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("the README's testing example runs as written", async () => {
  const blocks = await libraryBlocks();
  const example = blocks.find((b) => b.includes("importInMemory"));
  assert(example, "a block uses importInMemory");
  const dir = await Deno.makeTempDir({ prefix: "usbipgw-readme-" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      // "@std/assert" of the example through this project's import map, as in the README.
      args: [
        "run",
        "-A",
        `--config=${new URL("deno.json", ROOT).pathname}`,
        await program(dir, "testing_example.ts", example),
      ],
      stdin: "null",
    }).output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
